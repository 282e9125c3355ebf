"""The same fine-tuning calls on a tiny model of every first-party family (Transformers text, timm
vision, torchaudio speech): accuracy rises well above chance, adapters round-trip exactly, merge
keeps outputs, resume is exact, the NaN guard fires, seeds reproduce."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

import fmhub

pytest.importorskip("peft")

# -- tiny learnable data sets, one per modality ----------------------------------------------------

RIDE = [
    "a man is riding a horse",
    "the girl is riding a white horse",
    "two men are riding",
    "a woman is riding on the ground",
    "a man rides a horse in the woods",
]
MUSIC = [
    "a monkey is playing drums",
    "a woman is playing violin",
    "someone is playing drums",
    "the girl is playing a violin",
    "a man in a costume is playing drums",
]


def text_data(n, seed):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        pool, label = (RIDE, "ride") if i % 2 else (MUSIC, "music")
        words = rng.choice(pool).split()
        rng.shuffle(words)
        out.append((" ".join(words), label))
    return out


def image_data(n, seed):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = "red" if i % 2 else "blue"
        img = rng.integers(0, 90, size=(48, 48, 3), dtype=np.uint8)
        img[..., 0 if label == "red" else 2] += 150
        out.append((img, label))
    return out


def audio_data(n, seed):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = "low" if i % 2 else "high"
        freq = rng.uniform(150, 300) if label == "low" else rng.uniform(1500, 3000)
        t = np.arange(8000) / 16000
        wave = 0.5 * np.sin(2 * math.pi * freq * t) + 0.05 * rng.standard_normal(t.size)
        out.append(((wave.astype(np.float32), 16000), label))
    return out


# -- the families ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def text_model_dir(tmp_path_factory):
    tt = pytest.importorskip("fmhub_transformers.testing")
    return tt.build_tiny_model(tmp_path_factory.mktemp("tiny-bert"), "bert", "embedding", seed=0)


@pytest.fixture(scope="module")
def vision_ckpt(tmp_path_factory):
    vt = pytest.importorskip("fmhub_timm.testing")
    return vt.write_checkpoint(
        tmp_path_factory.mktemp("tiny-timm") / "w.safetensors", "test_resnet"
    )


FAMILIES = {
    "text": dict(data=text_data, lr=5e-3, epochs=8),
    "vision": dict(data=image_data, lr=5e-3, epochs=4),
    "speech": dict(data=audio_data, lr=5e-3, epochs=6),
}


@pytest.fixture(params=sorted(FAMILIES))
def family(request, text_model_dir, vision_ckpt):
    name = request.param
    if name == "text":
        loader = lambda: fmhub.load(str(text_model_dir))  # noqa: E731
    elif name == "vision":
        loader = lambda: fmhub.load(
            "timm:test_resnet",
            pretrained=False,  # noqa: E731
            checkpoint=str(vision_ckpt),
        )
    else:
        at = pytest.importorskip("fmhub_torchaudio.testing")
        loader = lambda: fmhub.load(
            "torchaudio:models.wav2vec2_model",  # noqa: E731
            **at.tiny_options(seed=0),
        )
    f = FAMILIES[name]
    # options an adapter's manifest never replays (they read a file the caller must name)
    consent = {"checkpoint": str(vision_ckpt)} if name == "vision" else {}
    return dict(
        name=name,
        load=loader,
        train=f["data"](32, 0),
        eval=f["data"](16, 1),
        consent=consent,
        cfg=dict(learning_rate=f["lr"], epochs=f["epochs"], batch_size=8, progress=False),
    )


def labels_of(model, data):
    return [r.label for r in model.predict([x for x, _ in data], progress=False)]


def scores(results):
    return np.array([[t.score for t in sorted(r.top_k, key=lambda t: t.index)] for r in results])


def test_lora_learns_round_trips_and_merges(family, tmp_path):
    model = family["load"]()
    result = fmhub.finetune(
        model,
        family["train"],
        eval=family["eval"],
        method="lora",
        output_dir=str(tmp_path),
        **family["cfg"],
    )
    assert result.metrics["accuracy"] >= 0.8, result.history  # two balanced classes: chance 0.5
    xs = [x for x, _ in family["eval"]]
    before = model.predict(xs, progress=False)
    again = fmhub.load(str(result.adapter_path), **family["consent"])
    np.testing.assert_allclose(scores(again.predict(xs, progress=False)), scores(before), atol=1e-6)
    again.merge()
    np.testing.assert_allclose(scores(again.predict(xs, progress=False)), scores(before), atol=1e-4)
    manifest = json.loads((result.adapter_path / "fmhub.json").read_text())
    head = manifest["adapter"]["head"]
    assert head and not any(
        any(m == h or m.startswith(h + ".") for h in head) for m in manifest["adapter"]["modules"]
    ), "LoRA must not wrap the head"


def test_resume_is_exact_and_seeds_reproduce(family, tmp_path):
    cfg = dict(family["cfg"], method="lora", epochs=2, checkpoint_every=2, labels=None)
    cfg.pop("labels")
    straight = family["load"]()
    fmhub.finetune(straight, family["train"], output_dir=str(tmp_path / "a"), **cfg)

    class Interrupt(torch.utils.data.Dataset):
        calls = 0

        def __len__(self):
            return len(family["train"])

        def __getitem__(self, i):
            Interrupt.calls += 1
            if Interrupt.calls > 8 * 5 + 3:  # Ctrl-C during step 6, after checkpoint 4
                raise KeyboardInterrupt
            return family["train"][i]

    with pytest.raises(KeyboardInterrupt):
        fmhub.finetune(family["load"](), Interrupt(), output_dir=str(tmp_path / "b"), **cfg)
    resumed = family["load"]()
    result = fmhub.finetune(
        resumed, family["train"], output_dir=str(tmp_path / "b"), resume=True, **cfg
    )
    assert result.steps == 8
    twin = family["load"]()
    fmhub.finetune(twin, family["train"], **dict(cfg, checkpoint_every=None))
    for (n, p), (_, q), (_, r) in zip(
        straight.module.named_parameters(),
        resumed.module.named_parameters(),
        twin.module.named_parameters(),
    ):
        assert torch.allclose(p, q, atol=1e-6), f"resume diverged at {n}"
        assert torch.equal(p, r), f"same seed, different {n}"


class PoisonThirdLoss:
    """A cross-cutting plugin (public hooks only): the third training loss becomes NaN, and the
    weights at that moment are kept to compare with."""

    def __init__(self):
        self.calls, self.snapshot = 0, {}

    @fmhub.hookimpl(wrapper=True)
    def fmhub_training_loss(self, model, outputs, targets):
        loss = yield
        if model.module.training:
            self.calls += 1
            if self.calls == 3:
                self.snapshot = {n: p.detach().clone() for n, p in model.module.named_parameters()}
                return loss * float("nan")
        return loss


def test_nan_guard_fires_before_weights_change(family, fmhub_hub):
    poison = PoisonThirdLoss()
    fmhub_hub.register(poison, name="poison")
    model = family["load"]()
    with pytest.raises(fmhub.NonFiniteLossError, match="at step 3"):
        fmhub.finetune(model, family["train"], method="lora", **family["cfg"])
    assert poison.snapshot
    for n, p in model.module.named_parameters():
        assert torch.equal(p, poison.snapshot[n]), f"{n} changed after the non-finite loss"
