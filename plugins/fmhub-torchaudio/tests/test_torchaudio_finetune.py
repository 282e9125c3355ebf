"""Fine-tune hooks, tested directly: head over pooled features, adapter targets, loss, saving."""

from __future__ import annotations

import numpy as np
import pytest

import fmhub
import fmhub_torchaudio as plugin
from fmhub_torchaudio.testing import tiny_options

LABELS = ["dog", "cat", "bird"]
RNG = np.random.default_rng(3)
CLIPS = [(RNG.standard_normal(n).astype(np.float32) * 0.2, 16000) for n in (9000, 12000, 16000)]


def with_head(model, labels=LABELS):
    """What fmhub's fine-tuning does around the hook: attach, then set task and labels."""
    head = plugin.fmhub_attach_head(model=model, labels=labels)
    model.task, model.labels = "classification", tuple(labels)
    return head


@pytest.mark.parametrize(
    "factory,family",
    [("wav2vec2_model", "wav2vec2"), ("wavlm_model", "wavlm"), ("hubert_base", "hubert")],
)
def test_targets_match_real_modules_and_never_the_head(factory, family):
    from torch import nn

    from fmhub_torchaudio._finetune import TARGETS

    opts = tiny_options(family=family) if factory.endswith("_model") else {}
    model = fmhub.load(f"torchaudio:models.{factory}", **opts)
    head = with_head(model)
    assert head == ["head"]
    names = dict(model.module.named_modules())
    for method in ("lora", "ia3"):
        suffixes = plugin.fmhub_finetune_targets(model=model, method=method)
        assert suffixes == TARGETS[family]
        for suffix in suffixes:
            hits = [n for n in names if n == suffix or n.endswith("." + suffix)]
            layers = model.processor.num_layers
            assert len(hits) == layers, (suffix, hits)  # one per transformer layer
            assert all(isinstance(names[n], nn.Linear) for n in hits)
            assert not any(n == "head" or n.startswith("head.") for n in hits)


def test_head_over_pooled_features_and_loss():
    import torch

    model = fmhub.load("torchaudio:models.wav2vec2_model", layer=1, **tiny_options(asr=True))
    with_head(model)
    assert tuple(model.module.head.weight.shape) == (3, model.processor.embed_dim)
    batch = model.preprocess(CLIPS)
    out = model.forward(batch)
    assert out["logits"].shape == (3, 3)
    with torch.inference_mode():
        torch.testing.assert_close(out["logits"], model.module.head(out["embeddings"]))
        feats, _ = model.module.model.extract_features(
            torch.from_numpy(CLIPS[0][0])[None], num_layers=1
        )
    torch.testing.assert_close(out["embeddings"][0], feats[-1][0].mean(0), atol=1e-5, rtol=0)
    results = model.postprocess(out, batch)
    assert all(r.label in LABELS and len(r.top_k) == 3 for r in results)
    probs = out["logits"].softmax(-1)
    assert results[1].score == pytest.approx(float(probs[1].max()), abs=1e-6)

    top2 = fmhub.load(
        "torchaudio:models.wav2vec2_model", layer=1, top_k=2, **tiny_options(asr=True)
    )
    with_head(top2)
    top2.module.head.load_state_dict(model.module.head.state_dict())
    two = top2.postprocess(top2.forward(top2.preprocess(CLIPS)), batch)
    assert [len(r.top_k) for r in two] == [2, 2, 2]  # the same option, meaning as timm/transformers
    assert [r.top_k for r in two] == [r.top_k[:2] for r in results]

    model.module.train()
    out = model.forward(model.preprocess(CLIPS), grad=True)
    targets = torch.tensor([0, 2, 1])
    loss = plugin.fmhub_training_loss(model=model, outputs=out, targets=targets)
    assert loss.ndim == 0 and loss.requires_grad
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(out["logits"], targets))
    loss.backward()
    assert model.module.head.weight.grad is not None
    assert float(model.module.head.weight.grad.abs().sum()) > 0


def test_lora_wraps_targets_but_not_the_head():
    import peft
    import torch

    model = fmhub.load("torchaudio:models.wav2vec2_model", **tiny_options())
    head = with_head(model)
    before = model.forward(model.preprocess(CLIPS))["logits"]
    suffixes = plugin.fmhub_finetune_targets(model=model, method="lora")
    peft_model = peft.get_peft_model(
        model.module, peft.LoraConfig(r=4, target_modules=suffixes, modules_to_save=head)
    )
    wrapped = [n for n, m in model.module.named_modules() if hasattr(m, "lora_A")]
    assert wrapped and not any(n.startswith("head") for n in wrapped)
    model.module = peft_model  # the hooks find the speech module under a PEFT wrapper too
    after = model.forward(model.preprocess(CLIPS))["logits"]
    torch.testing.assert_close(after, before)  # LoRA starts as the identity


def test_classifier_saves_and_loads(tmp_path):
    model = fmhub.load("torchaudio:models.wav2vec2_model", **tiny_options(asr=True))
    with_head(model)
    import torch

    with torch.no_grad():
        model.module.head.weight.normal_()
    before = model.predict(CLIPS)
    folder = model.save(tmp_path / "clf")
    again = fmhub.load(str(folder))
    assert again.task == "classification" and again.labels == tuple(LABELS)
    assert again.processor.labels == model.processor.labels  # the CTC labels survive too
    after = again.predict(CLIPS)
    for a, b in zip(before, after):
        assert a.label == b.label and a.score == pytest.approx(b.score, abs=1e-6)
    with pytest.raises(fmhub.InvalidOptionError, match="no classification head"):
        fmhub.load("torchaudio:models.wav2vec2_model", task="classification", **tiny_options())


def test_task_and_option_errors():
    with pytest.raises(fmhub.InvalidOptionError, match="cannot transcribe"):
        fmhub.load("torchaudio:models.wav2vec2_model", task="transcription", **tiny_options())
    with pytest.raises(fmhub.InvalidOptionError, match="layer=9"):
        fmhub.load("torchaudio:models.wav2vec2_model", layer=9, **tiny_options())
    with pytest.raises(fmhub.InvalidOptionError, match="pass labels"):
        fmhub.load("torchaudio:models.wav2vec2_model", **{**tiny_options(asr=True), "labels": None})
    with pytest.raises(fmhub.InvalidOptionError, match="does not fit"):
        fmhub.load("torchaudio:models.wav2vec2_model", config={"bogus": 1})
    with pytest.raises(fmhub.InvalidOptionError, match="factories only"):
        fmhub.load("torchaudio:hubert_base", config={"aux_num_out": 3})
    with pytest.raises(fmhub.InvalidOptionError, match="chunk_seconds"):
        fmhub.load("torchaudio:models.wav2vec2_model", chunk_seconds=-1, **tiny_options())
