"""fmhub outputs equal what Transformers and sentence-transformers compute on the same model and
inputs, for every task (tiny random models: any mismatch in pooling, softmax, grouping, spans or
truncation shows)."""

from __future__ import annotations

import numpy as np
import pytest

import fmhub
from fmhub_transformers.testing import CORPUS, build_tiny_model

TEXTS = list(CORPUS[:12]) + [""]


def _pipeline(task, folder, **kw):
    from transformers import pipeline

    return pipeline(task, model=str(folder), tokenizer=str(folder), device="cpu", **kw)


@pytest.mark.parametrize(
    "pooling,normalize",
    [
        ("mean", True),
        ("cls", False),
        ("max", False),
        (["cls", "mean"], True),
        ("lasttoken", False),
        ("weightedmean", False),
    ],
)
def test_embeddings_equal_sentence_transformers(tmp_path, pooling, normalize):
    from sentence_transformers import SentenceTransformer

    folder = build_tiny_model(
        tmp_path / "m", "bert", "embedding", pooling=pooling, normalize=normalize, max_seq_length=12
    )
    ours = np.stack(fmhub.load(str(folder), truncation="silent").predict(TEXTS, batch_size=4))
    theirs = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, batch_size=4)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=2e-5, rtol=0)


def test_plain_encoder_mean_pools_over_attention_mask(tiny_zoo):
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = tiny_zoo["mpnet-emb"]
    ours = np.stack(fmhub.load(str(folder)).predict(TEXTS, batch_size=5))
    tok, net = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    for text, vec in zip(TEXTS, ours):
        with torch.inference_mode():
            hidden = net(**tok([text], return_tensors="pt")).last_hidden_state[0]
        np.testing.assert_allclose(vec, hidden.mean(0).numpy(), atol=2e-5, rtol=0)


def test_classification_equals_pipeline(tiny_zoo):
    model = fmhub.load(str(tiny_zoo["roberta-cls"]))
    pipe = _pipeline("text-classification", tiny_zoo["roberta-cls"], top_k=None)
    for ours, theirs in zip(model.predict(TEXTS, batch_size=4), pipe(TEXTS)):
        assert ours.label == theirs[0]["label"]
        assert [t.label for t in ours.top_k] == [t["label"] for t in theirs]
        np.testing.assert_allclose(
            [t.score for t in ours.top_k], [t["score"] for t in theirs], atol=1e-5
        )
    assert model.labels == ("sad", "neutral", "happy")


@pytest.mark.parametrize("name,mask", [("distilbert-mlm", "[MASK]"), ("xlmr-mlm", "<mask>")])
def test_fill_mask_equals_pipeline(tiny_zoo, name, mask):
    texts = [
        f"Paris is the {mask} of France.",
        f"{mask}",
        f"A man is {mask} a horse on the ground.",
    ]
    model = fmhub.load(str(tiny_zoo[name]), top_k=4)
    pipe = _pipeline("fill-mask", tiny_zoo[name], top_k=4)
    for ours, theirs in zip(model.predict(texts), pipe(texts)):
        assert [p.token_id for p in ours.predictions] == [t["token"] for t in theirs]
        assert [p.token for p in ours.predictions] == [t["token_str"] for t in theirs]
        assert [p.sequence for p in ours.predictions] == [t["sequence"] for t in theirs]
        np.testing.assert_allclose(
            [p.score for p in ours.predictions], [t["score"] for t in theirs], atol=1e-5
        )


@pytest.mark.parametrize("arch", ["electra", "roberta"])
@pytest.mark.parametrize("aggregation", ["simple", "none"])
def test_token_classification_equals_pipeline(tmp_path, arch, aggregation):
    folder = build_tiny_model(tmp_path / arch, arch, "token-classification", seed=3)
    model = fmhub.load(str(folder), aggregation=aggregation)
    pipe = _pipeline("token-classification", folder, aggregation_strategy=aggregation)
    found = 0
    for text, ours, theirs in zip(TEXTS, model.predict(TEXTS, batch_size=4), pipe(TEXTS)):
        key = "entity_group" if aggregation == "simple" else "entity"
        assert [(e.label, e.start, e.end) for e in ours.entities] == [
            (t[key], t["start"], t["end"]) for t in theirs
        ]
        np.testing.assert_allclose(
            [e.score for e in ours.entities], [t["score"] for t in theirs], atol=1e-5
        )
        assert all(e.text == text[e.start : e.end] for e in ours.entities)
        found += len(ours.entities)
    assert found > 5, "random tiny model should tag some spans"


def test_truncated_inputs_equal_truncated_native(tiny_zoo):
    """An input past the limit is cut exactly as the tokenizer cuts it (the forward never sees
    more than max_length tokens)."""
    from sentence_transformers import SentenceTransformer

    long = " ".join(CORPUS) * 3
    model = fmhub.load(str(tiny_zoo["bert-st"]), truncation="silent")
    assert model.processor.max_length == 32
    ours = model(long)
    theirs = SentenceTransformer(str(tiny_zoo["bert-st"]), device="cpu").encode([long])[0]
    np.testing.assert_allclose(ours, theirs, atol=2e-5)


@pytest.mark.parametrize("side", ["right", "left"])
def test_pooling_equals_sentence_transformers_module_for_either_padding_side(side):
    import torch
    from sentence_transformers.models import Pooling

    from fmhub_transformers._stages import pool

    torch.manual_seed(0)
    hidden = torch.randn(4, 7, 8)
    lengths = [7, 3, 1, 5]
    mask = torch.zeros(4, 7, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    if side == "left":
        mask = mask.flip(1)
    for mode in ["cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"]:
        theirs = Pooling(8, pooling_mode=mode)(
            {"token_embeddings": hidden, "attention_mask": mask}
        )["sentence_embedding"]
        torch.testing.assert_close(pool(hidden, mask, (mode,)), theirs, msg=mode)
