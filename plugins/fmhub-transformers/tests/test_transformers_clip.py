"""Image-text models (CLIP, SigLIP, SigLIP 2) through fmhub: zero-shot classification equal to
transformers' ``pipeline("zero-shot-image-classification")`` on the same weights and images,
embeddings equal to ``get_text_features`` / ``get_image_features``, the label-embedding cache,
task detection, clear errors, the conformance kit, and the image tower fine-tuned as a classifier.
Tiny random-weight checkpoints built here, in local folders and in an offline hub cache."""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

import fmhub
from fmhub.results import Classification, check_result
from fmhub.testing import ConformanceCase, ConformanceSuite, imported_after

pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

ROOT = Path(tempfile.gettempdir()) / f"fmhub-tf-tests-{os.getpid()}"  # as in conftest.py
HEAVY = ("torch", "transformers", "tokenizers", "huggingface_hub")
ARCHS = ("clip", "siglip", "siglip2", "chinese_clip")
LABELS = ["cat", "dog", "car", "bird"]
RNG = np.random.default_rng(0)
#: Images of several sizes and kinds (PIL, uint8 arrays, grey, RGBA).
IMAGES = [
    Image.fromarray(RNG.integers(0, 256, (40, 52, 3), dtype=np.uint8)),
    RNG.integers(0, 256, (33, 33, 3), dtype=np.uint8),
    Image.fromarray(RNG.integers(0, 256, (64, 48), dtype=np.uint8), mode="L"),
    Image.fromarray(RNG.integers(0, 256, (30, 45, 4), dtype=np.uint8), mode="RGBA"),
]


def _path(arch: str) -> Path:
    return ROOT / f"{arch}-image-text"


@pytest.fixture(scope="module", autouse=True)
def image_text_zoo(tiny_zoo, offline_hub):
    """Tiny CLIP, SigLIP and SigLIP 2 folders, also installed as hub repos tiny-org/<arch>."""
    from fmhub_transformers.testing import build_tiny_image_text, install_in_hub_cache

    for arch in ARCHS:
        if not _path(arch).is_dir():
            build_tiny_image_text(_path(arch), arch)
        install_in_hub_cache(ROOT / "hub", f"tiny-org/{arch}", _path(arch))
    yield


@functools.cache
def _pipe(arch: str):
    """transformers' zero-shot pipeline on the tiny folder of ``arch``: the reference, built once
    per architecture (it keeps no state between calls)."""
    import transformers

    return transformers.pipeline("zero-shot-image-classification", model=str(_path(arch)))


def _rgb(x):
    return x if isinstance(x, Image.Image) else Image.fromarray(x)


# -- fidelity ------------------------------------------------------------------------------------


#: Every architecture with the default template (its own text tower and probabilities: softmax
#: for CLIP and Chinese-CLIP, one sigmoid per label for SigLIP and SigLIP 2); a caller's template
#: goes through the same ``template.format(label)`` for every architecture, so it is checked once
#: per kind of probabilities (clip: softmax, siglip: sigmoid).
ZERO_SHOT_CASES = [(None, arch) for arch in ARCHS] + [
    ("a blurry photo of a {}", "clip"),
    ("a blurry photo of a {}", "siglip"),
]


@pytest.mark.parametrize("template,arch", ZERO_SHOT_CASES)
def test_zero_shot_equals_the_transformers_pipeline(arch, template):
    model = fmhub.load(f"hf:tiny-org/{arch}")
    assert model.task == "zero-shot-classification"
    opts = {} if template is None else {"template": template}
    got = model.predict(IMAGES, labels=LABELS, batch_size=3, **opts)
    pipe = _pipe(arch)
    for image, result in zip(IMAGES, got):
        check_result("zero-shot-classification", result)
        kw = {} if template is None else {"hypothesis_template": template}
        ref = pipe(_rgb(image).convert("RGB"), candidate_labels=LABELS, **kw)
        assert [t.label for t in result.top_k] == [r["label"] for r in ref]
        np.testing.assert_allclose(
            [t.score for t in result.top_k], [r["score"] for r in ref], atol=1e-5, rtol=0
        )
    sums = [sum(t.score for t in r.top_k) for r in got]
    if "siglip" not in arch:  # a softmax over the labels; SigLIP: one sigmoid per label
        np.testing.assert_allclose(sums, 1.0, atol=1e-5)
    else:
        assert all(0 < t.score < 1 for r in got for t in r.top_k)


@pytest.mark.parametrize("arch", ARCHS)
def test_embeddings_equal_the_towers_features_in_input_order(arch):
    import transformers

    model = fmhub.load(str(_path(arch)), task="embedding")
    texts = ["a photo of a cat", "dog", "The quick brown fox jumps over the lazy dog."]
    mixed = [texts[0], IMAGES[0], texts[1], IMAGES[1], IMAGES[2], texts[2]]
    out = model.predict(mixed, batch_size=4)
    assert all(v.dtype == np.float32 and v.ndim == 1 for v in out)
    proc = transformers.AutoProcessor.from_pretrained(str(_path(arch)))
    module = model.module
    pad = {"padding": "max_length", "max_length": 64} if "siglip" in arch else {"padding": True}
    with torch.no_grad():
        t = module.get_text_features(
            **proc.tokenizer(texts, return_tensors="pt", truncation=True, **pad)
        ).pooler_output
        images = [_rgb(x).convert("RGB") for x in IMAGES[:3]]
        i = module.get_image_features(
            **proc.image_processor(images=images, return_tensors="pt")
        ).pooler_output
    t, i = torch.nn.functional.normalize(t, dim=-1), torch.nn.functional.normalize(i, dim=-1)
    expected = [t[0], i[0], t[1], i[1], i[2], t[2]]
    for got, ref in zip(out, expected):
        np.testing.assert_allclose(got, ref.numpy(), atol=1e-5)
        assert abs(np.linalg.norm(got) - 1) < 1e-5
    raw = fmhub.load(str(_path(arch)), task="embedding", normalize=False)
    v = raw(IMAGES[0])
    np.testing.assert_allclose(v / np.linalg.norm(v), out[1], atol=1e-5)
    assert abs(np.linalg.norm(v) - 1) > 1e-3


def test_image_vectors_rank_captions():
    model = fmhub.load("hf:tiny-org/clip", task="embedding")
    captions = ["a photo of a cat", "a photo of a dog", "a car", "a house"]
    text = np.stack(model.predict(captions))
    image = np.stack(model.predict(IMAGES))
    scores = image @ text.T
    assert scores.shape == (len(IMAGES), len(captions))
    assert np.all(np.abs(scores) <= 1 + 1e-5)
    ranked = np.argsort(-scores, axis=1)
    # the zero-shot model ranks the same captions in the same order (a template of '{}')
    zs = fmhub.load("hf:tiny-org/clip")
    for row, x in zip(ranked, IMAGES):
        r = zs(x, labels=captions, template="{}")
        assert [t.label for t in r.top_k] == [captions[j] for j in row]


# -- labels, templates and the cache ---------------------------------------------------------------


def test_labels_at_load_per_call_override_and_top_k():
    model = fmhub.load("hf:tiny-org/clip", labels=["a cat", "a dog"], template="a photo of {}")
    r = model(IMAGES[0])
    assert {t.label for t in r.top_k} == {"a cat", "a dog"}
    ref = _pipe("clip")(
        _rgb(IMAGES[0]), candidate_labels=["a cat", "a dog"], hypothesis_template="a photo of {}"
    )
    assert [t.label for t in r.top_k] == [x["label"] for x in ref]
    other = model(IMAGES[0], labels=LABELS, top_k=2)
    assert len(other.top_k) == 2 and other.label in LABELS
    assert model.info["probabilities"] == "softmax"
    assert fmhub.load("hf:tiny-org/siglip").info["probabilities"] == "sigmoid"


def test_label_embeddings_are_computed_once_per_label_set():
    model = fmhub.load("hf:tiny-org/clip")
    calls = []
    original = model.module.get_text_features

    def counted(**kw):
        calls.append(kw["input_ids"].shape[0])
        return original(**kw)

    model.module.get_text_features = counted
    first = model.predict(IMAGES, labels=LABELS, batch_size=2)
    assert calls == [len(LABELS)]  # two batches, one text-tower pass
    again = model.predict(IMAGES, labels=LABELS, batch_size=4)
    assert calls == [len(LABELS)]
    for a, b in zip(first, again):
        assert a.top_k == b.top_k
    model.predict(IMAGES[:1], labels=LABELS[:2])
    assert calls == [len(LABELS), 2]
    with torch.no_grad():  # weights changed in place: the kept embeddings are stale
        model.module.text_projection.weight.mul_(2.0)
    model.predict(IMAGES[:1], labels=LABELS[:2])
    assert calls == [len(LABELS), 2, 2]


# -- errors --------------------------------------------------------------------------------------


def test_bad_inputs_and_options_are_clear_errors():
    model = fmhub.load("hf:tiny-org/clip")
    with pytest.raises(fmhub.InputError, match="needs candidate labels"):
        model(IMAGES[0])
    with pytest.raises(fmhub.InputError, match="labels is empty"):
        model(IMAGES[0], labels=[])
    with pytest.raises(fmhub.InputError, match="distinct"):
        model(IMAGES[0], labels=["a", "a"])
    with pytest.raises(fmhub.InputError, match="template"):
        model(IMAGES[0], labels=["a"], template="no placeholder")
    with pytest.raises(fmhub.InputError, match="no image file") as err:
        model.predict([IMAGES[0], "a cat"], labels=LABELS)
    assert err.value.index == 1
    for bad in (3, None, b"not an image", {"a": 1}):
        with pytest.raises(fmhub.InputError):
            model(bad, labels=LABELS)
    with pytest.raises(fmhub.InvalidOptionError, match="labels is empty"):
        fmhub.load("hf:tiny-org/clip", labels=[])
    with pytest.raises(fmhub.InvalidOptionError, match="zero-shot-classification or embedding"):
        fmhub.load("hf:tiny-org/clip", task="classification")
    with pytest.raises(fmhub.InvalidOptionError, match="labels= and template="):
        fmhub.load(str(ROOT / "mpnet-emb"), labels=["a"])
    with pytest.raises(fmhub.InputError, match="not text"):  # an image to a text-only model
        fmhub.load(str(ROOT / "mpnet-emb"))(IMAGES[0])
    with pytest.raises(fmhub.InvalidOptionError, match="pooling="):
        fmhub.load("hf:tiny-org/clip", task="embedding", pooling="cls")
    embedder = fmhub.load("hf:tiny-org/siglip", task="embedding")
    with pytest.raises(fmhub.InputError, match="no per-call options"):
        embedder(IMAGES[0], labels=["a"])
    with pytest.raises(fmhub.InputError):
        embedder.predict(["text", None])
    with pytest.raises(fmhub.ExportError):
        from fmhub.export import export_spec

        export_spec(model)


def test_texts_longer_than_the_text_tower_follow_truncation():
    long = " ".join(["the quick brown fox"] * 40)  # far over CLIP's 77 tokens
    strict = fmhub.load("hf:tiny-org/clip", task="embedding", truncation="error")
    with pytest.raises(fmhub.InputError, match="longer than 77 tokens") as err:
        strict.predict(["short", long])
    assert err.value.index == 1
    lenient = fmhub.load("hf:tiny-org/clip", task="embedding")
    with pytest.warns(UserWarning, match="truncated"):
        v = lenient(long)
    assert v.shape == (24,) and np.isfinite(v).all()
    zs = fmhub.load("hf:tiny-org/siglip", truncation="silent")
    r = zs(IMAGES[0], labels=[long, "cat"])  # a label prompt cut at SigLIP's 64 tokens
    assert {t.label for t in r.top_k} == {long, "cat"}


# -- detection, claim, aliases ---------------------------------------------------------------------


def test_task_detection_claim_and_aliases():
    spec = fmhub.model_info(str(_path("siglip")))
    assert spec.modality == "image-text" and spec.task == "zero-shot-classification"
    assert spec.architecture == "siglip"
    assert spec.tasks == ("zero-shot-classification", "embedding")
    for alias, arch in [
        ("clip-vit-b32", "clip"),
        ("siglip-base", "siglip"),
        ("siglip2-base", "siglip2"),
        ("clip-vit-l14", "clip"),
    ]:
        info = fmhub.model_info(alias)
        assert info.modality == "image-text" and info.task == "zero-shot-classification"
        assert info.architecture == arch and "embedding" in info.tasks
    heavy = imported_after(
        "import fmhub; fmhub.model_info('clip-vit-b16'); fmhub.model_info('siglip-base')", HEAVY
    )
    assert heavy == []


# -- fine-tuning ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method,arch",
    [("lora", "siglip"), ("head", "siglip"), ("full", "siglip"), ("lora", "chinese_clip")],
)
def test_image_tower_fine_tunes_as_a_classifier(method, arch, tmp_path):
    pytest.importorskip("peft")
    model = fmhub.load(f"hf:tiny-org/{arch}")
    train = [(x, ["round", "square"][i % 2]) for i, x in enumerate(IMAGES * 2)]
    plan = fmhub.finetune_plan(model, method, labels=["round", "square"])
    assert plan.head == ["classifier"]
    if method == "lora":
        assert plan.modules and all(m.startswith("vision_model.") for m in plan.modules)
        assert all(m.endswith(("q_proj", "v_proj")) for m in plan.modules)
    result = fmhub.finetune(
        model,
        train,
        method=method,
        max_steps=3,
        learning_rate=5e-2,
        batch_size=4,
        seed=0,
        progress=False,
        output_dir=str(tmp_path / "run"),
    )
    assert model.task == "classification" and model.labels == ("round", "square")
    got = model.predict(IMAGES)
    assert all(isinstance(r, Classification) and r.label in model.labels for r in got)
    again = fmhub.load(str(result.adapter_path))
    assert again.task == "classification" and again.labels == model.labels
    for a, b in zip(again.predict(IMAGES), got):
        np.testing.assert_allclose(
            [t.score for t in a.top_k], [t.score for t in b.top_k], atol=1e-5
        )


# -- conformance ---------------------------------------------------------------------------------


class TestImageTextConformance(ConformanceSuite):
    cases = [
        ConformanceCase(
            model="hf:tiny-org/clip",
            inputs=IMAGES,
            options={"labels": LABELS},
            task="zero-shot-classification",
            heavy_modules=HEAVY,
            bad_inputs=[None, 3, b"not an image", "no such file"],
            id="clip-zero-shot-hub",
        ),
        ConformanceCase(
            model=str(ROOT / "siglip-image-text"),
            inputs=IMAGES[:3],
            call_options={"labels": ["cat", "dog"], "template": "a {} photo"},
            task="zero-shot-classification",
            heavy_modules=HEAVY,
            bad_inputs=[None, "a cat"],
            id="siglip-zero-shot-local",
        ),
        ConformanceCase(
            model="hf:tiny-org/clip",
            inputs=["a photo of a cat", IMAGES[0], "", IMAGES[2], "a dog"],
            options={"task": "embedding"},
            task="embedding",
            heavy_modules=HEAVY,
            bad_inputs=[None, 3, b"bytes"],
            # an image classifier trains on images, and these inputs mix in texts: fine-tuning
            # is checked by the zero-shot case and test_image_tower_fine_tunes_as_a_classifier
            finetune=False,
            id="clip-embedding-hub",
        ),
    ]


def test_cli_predict_with_labels_given_as_a_load_option(tmp_path, capsys):
    import json

    from fmhub.cli import main

    image = tmp_path / "x.png"
    Image.fromarray(IMAGES[1]).save(image)
    assert main(["predict", "hf:tiny-org/clip", str(image), "-o", 'labels=["cat", "dog"]']) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    expected = fmhub.load("hf:tiny-org/clip")(image, labels=["cat", "dog"])
    assert line["result"]["label"] == expected.label
    assert abs(line["result"]["score"] - expected.score) < 1e-6
