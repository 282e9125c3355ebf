"""Hugging Face image models (ViT, DeiT, BEiT, DINOv2, ConvNeXt, Swin, ResNet): detection, fidelity
against transformers' own pipelines, the conformance kit, input errors, fine-tuning.

Tiny random-weight checkpoints (32-pixel images) are built once for the module, as local folders
and in an offline Hugging Face hub cache layout."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fmhub
from fmhub.results import Classification
from fmhub.testing import ConformanceCase, ConformanceSuite, imported_after
from fmhub_transformers.testing import (
    IMAGE_ARCHITECTURES,
    build_tiny_image_model,
    hub_cache_env,
    install_in_hub_cache,
)

ROOT = Path(tempfile.gettempdir()) / f"fmhub-tf-vision-{os.getpid()}"
HUB = ROOT / "hub"
HEAVY = ("torch", "transformers", "huggingface_hub")
#: local folder name -> (arch, task, the repo id it also has in the offline hub cache)
IMAGE_ZOO = {
    f"{arch}-{task}": (arch, task, f"tiny-org/{arch}-{task}")
    for arch in IMAGE_ARCHITECTURES
    for task in ("classification", "embedding")
}


def photos() -> list[np.ndarray]:
    from skimage import data

    return [data.chelsea(), data.coffee(), data.astronaut()[:300, 100:400], data.camera()]


PHOTOS = photos()
INPUTS = [PHOTOS[0], Image.fromarray(PHOTOS[1]), PHOTOS[2], Image.fromarray(PHOTOS[3])]
BAD = ["a photo of a cat", None, np.zeros((8, 8), dtype=np.float32)]


@pytest.fixture(scope="module", autouse=True)
def image_zoo():
    ROOT.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, (arch, task, repo) in IMAGE_ZOO.items():
        paths[name] = build_tiny_image_model(ROOT / name, arch, task)
        install_in_hub_cache(HUB, repo, paths[name])
    with hub_cache_env(HUB):
        yield paths
    shutil.rmtree(ROOT, ignore_errors=True)


def local(name: str) -> str:
    return str(ROOT / name)


# -- detection ---------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", sorted(IMAGE_ARCHITECTURES))
def test_a_folder_is_claimed_as_an_image_model(arch):
    spec = fmhub.model_info(local(f"{arch}-classification"))
    assert spec.namespace == "hf" and spec.modality == "image"
    assert spec.task == "classification" and spec.architecture == arch
    assert spec.tasks == ("classification", "embedding")
    assert fmhub.model_info(local(f"{arch}-embedding")).task == "embedding"


def test_hub_repo_loads_offline_and_reports_image():
    assert fmhub.model_info("hf:tiny-org/vit-classification").modality is None  # not read yet
    model = fmhub.load("hf:tiny-org/vit-classification")
    assert model.spec.modality == "image" and model.task == "classification"
    assert model.labels == ("cat", "dog", "bird")
    assert model.info["model_class"] == "ViTForImageClassification"
    emb = fmhub.load("hf:tiny-org/dinov2-embedding")
    assert emb.spec.modality == "image" and emb.task == "embedding"


def test_aliases_are_listed_without_torch():
    code = (
        "import fmhub\n"
        "specs = {s.id: s for s in fmhub.list_models('*-hf')}\n"
        "assert fmhub.model_info('vit-base-hf').id == 'hf:google/vit-base-patch16-224'\n"
        "assert fmhub.model_info('dinov2-small-hf').task == 'embedding'\n"
        "assert all(s.modality == 'image' for s in specs.values()), specs\n"
        "assert len(specs) >= 8, sorted(specs)\n"
    )
    assert imported_after(code, HEAVY) == []


def test_an_alias_loads_its_repo_from_the_cache():
    install_in_hub_cache(HUB, "google/vit-base-patch16-224", local("vit-classification"))
    spec = fmhub.model_info("vit-base-hf")
    assert spec.modality == "image" and spec.preprocessing.input_size == (3, 224, 224)
    assert spec.tasks == ("classification", "embedding")
    model = fmhub.load("vit-base-hf")
    assert model.spec.id == "hf:google/vit-base-patch16-224" and model.task == "classification"
    assert isinstance(model(PHOTOS[0]), Classification)


def test_image_detection_from_the_json_files():
    from fmhub_transformers._config import CheckpointConfig, is_image_model, is_image_processor

    vit_processor = {"image_processor_type": "ViTImageProcessor", "do_resize": True}
    old_processor = {"feature_extractor_type": "ViTFeatureExtractor", "image_mean": [0.5] * 3}
    audio = {"feature_extractor_type": "Wav2Vec2FeatureExtractor", "sampling_rate": 16000}
    assert is_image_processor(vit_processor) and is_image_processor(old_processor)
    assert not is_image_processor(audio) and not is_image_processor(None)
    unknown = CheckpointConfig(model_type="brand-new-vision")
    assert is_image_model(unknown, vit_processor, has_tokenizer=False)
    assert not is_image_model(unknown, vit_processor, has_tokenizer=True)  # image + text: not ours
    assert not is_image_model(CheckpointConfig(model_type="bert"), None, has_tokenizer=True)
    assert is_image_model(CheckpointConfig(model_type="dinov2"), None, has_tokenizer=False)
    teacher = CheckpointConfig(
        model_type="deit", architectures=["DeiTForImageClassificationWithTeacher"]
    )
    assert is_image_model(teacher, None, has_tokenizer=False)
    from fmhub_transformers._config import detect_task

    assert detect_task(teacher, False) == "classification"
    assert detect_task(CheckpointConfig(model_type="dinov2"), False) == "embedding"


def test_an_image_backbone_fmhub_does_not_list_is_found_by_its_image_processor(tmp_path):
    """SegFormer is not in fmhub's list of image model types: its image processor beside no
    tokenizer makes it an image model, embedded as the mean of its last feature map."""
    import torch
    from transformers import SegformerConfig, SegformerImageProcessor, SegformerModel

    config = SegformerConfig(
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[8, 16],
        num_attention_heads=[1, 2],
        mlp_ratios=[2, 2],
        decoder_hidden_size=16,
    )
    torch.manual_seed(0)
    SegformerModel(config).eval().save_pretrained(tmp_path / "seg")
    processor = SegformerImageProcessor(size={"height": 32, "width": 32})
    processor.save_pretrained(tmp_path / "seg")
    spec = fmhub.model_info(str(tmp_path / "seg"))
    assert spec.modality == "image" and spec.task == "embedding"
    model = fmhub.load(str(tmp_path / "seg"))
    pixels = processor(images=[Image.fromarray(PHOTOS[0])], return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        want = model.module(pixel_values=pixels).last_hidden_state.mean(dim=(2, 3))[0]
    np.testing.assert_allclose(model(PHOTOS[0]), want.numpy(), atol=1e-5, rtol=0)


def test_a_randomly_masking_encoder_is_refused(tmp_path):
    import torch
    from transformers import ViTImageProcessor, ViTMAEConfig, ViTMAEModel

    config = ViTMAEConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
    )
    torch.manual_seed(0)
    ViTMAEModel(config).save_pretrained(tmp_path / "mae")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "mae")
    with pytest.raises(fmhub.PluginError, match="at random"):
        fmhub.load(str(tmp_path / "mae"))


def test_task_override_and_refusals():
    clf = local("vit-classification")
    emb = fmhub.load(clf, task="embedding")  # the encoder of a classifier: the class token
    assert emb.task == "embedding" and emb(PHOTOS[0]).shape == (32,)
    assert emb.module.pooler is None  # the checkpoint has no pooler weights: none is invented
    with pytest.raises(fmhub.PluginError, match="no trained weights"):
        fmhub.load(local("vit-embedding"), task="classification")
    with pytest.raises(fmhub.InvalidOptionError, match="image model"):
        fmhub.load(clf, task="fill-mask")
    with pytest.raises(fmhub.InvalidOptionError, match="pooling='cls' or 'mean'"):
        fmhub.load(clf, task="embedding", pooling="max")
    with pytest.raises(fmhub.InvalidOptionError, match="max_length"):
        fmhub.load(clf, max_length=16)
    with pytest.raises(fmhub.InvalidOptionError, match="no class token"):
        fmhub.load(local("resnet-embedding"), pooling="cls")(PHOTOS[0])


def test_a_folder_without_image_processor_is_refused(tmp_path):
    folder = tmp_path / "vit"
    shutil.copytree(local("vit-classification"), folder)
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(fmhub.FmhubError, match="preprocessor_config.json"):
        fmhub.load("hf:" + str(folder))


# -- fidelity ------------------------------------------------------------------------------------


def _pipeline(kind: str, folder: str):
    from transformers import pipeline

    return pipeline(kind, model=folder, device="cpu")


@pytest.mark.parametrize("arch", sorted(IMAGE_ARCHITECTURES))
def test_classification_matches_the_pipeline(arch):
    folder = local(f"{arch}-classification")
    model = fmhub.load(folder, top_k=3)
    pipe = _pipeline("image-classification", folder)
    images = [Image.fromarray(p) if not isinstance(p, Image.Image) else p for p in INPUTS]
    ours = model.predict(INPUTS, batch_size=3)
    for image, got in zip(images, ours):
        want = pipe(image, top_k=3)
        assert isinstance(got, Classification)
        assert [t.label for t in got.top_k] == [w["label"] for w in want]
        np.testing.assert_allclose(
            [t.score for t in got.top_k], [w["score"] for w in want], atol=1e-5, rtol=0
        )


@pytest.mark.parametrize("arch", sorted(IMAGE_ARCHITECTURES))
def test_embedding_is_the_pipelines_pooled_output(arch):
    folder = local(f"{arch}-embedding")
    model = fmhub.load(folder)
    pipe = _pipeline("image-feature-extraction", folder)
    ours = model.predict(INPUTS, batch_size=3)
    for image, got in zip(INPUTS, ours):
        if not isinstance(image, Image.Image):
            image = Image.fromarray(image)
        want = np.asarray(pipe(image, pool=True), dtype=np.float32).reshape(-1)
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ["vit", "deit", "dinov2"])
def test_embedding_without_pooler_is_the_class_token(arch):
    """A classification checkpoint as an encoder: the class token of the pipeline's
    last_hidden_state (the pipeline's own pooler would be random)."""
    folder = local(f"{arch}-classification")
    model = fmhub.load(folder, task="embedding")
    pipe = _pipeline("image-feature-extraction", folder)
    for image, got in zip(INPUTS[:2], model.predict(INPUTS[:2])):
        if not isinstance(image, Image.Image):
            image = Image.fromarray(image)
        want = np.asarray(pipe(image), dtype=np.float32)[0, 0]
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_mean_pooling_and_normalize():
    folder = local("vit-embedding")
    pipe = _pipeline("image-feature-extraction", folder)
    hidden = np.asarray(pipe(Image.fromarray(PHOTOS[0])), dtype=np.float32)[0]
    got = fmhub.load(folder, pooling="mean", normalize=True)(PHOTOS[0])
    want = hidden.mean(0)
    np.testing.assert_allclose(got, want / np.linalg.norm(want), atol=1e-5, rtol=0)
    cls = fmhub.load(folder, pooling="cls")(PHOTOS[0])
    np.testing.assert_allclose(cls, hidden[0], atol=1e-5, rtol=0)


def test_same_result_types_as_timm():
    """The same photo through an HF image classifier / encoder and a timm one: the same types
    (timm's test ResNet: any timm classifier gives these types; a resnet18 cost 1 s more)."""
    from skimage import data

    photo = data.chelsea()
    timm_id = "timm:test_resnet.r160_in1k"
    hf = fmhub.load(local("convnext-classification"))(photo)
    tm = fmhub.load(timm_id, pretrained=False, device="cpu")(photo)
    assert type(hf) is type(tm) is Classification
    assert isinstance(hf.label, str) and isinstance(tm.label, str) and len(hf.top_k) == 3
    hf_vec = fmhub.load(local("convnext-embedding"))(photo)
    tm_vec = fmhub.load(timm_id, pretrained=False, device="cpu", task="embedding")(photo)
    assert type(hf_vec) is type(tm_vec) is np.ndarray
    assert hf_vec.dtype == tm_vec.dtype == np.float32 and hf_vec.ndim == tm_vec.ndim == 1


def test_bad_inputs_are_input_errors():
    model = fmhub.load(local("vit-classification"))
    with pytest.raises(fmhub.InputError, match="no such image file .a photo of a cat") as err:
        model.predict([PHOTOS[0], "a photo of a cat"])
    assert err.value.index == 1
    with pytest.raises(fmhub.InputError, match="dtype float32"):
        model(np.zeros((8, 8), dtype=np.float32))
    with pytest.raises(fmhub.InputError, match="aspect ratio"):
        model(np.zeros((2, 1000), dtype=np.uint8))


# -- fine-tuning ----------------------------------------------------------------------------------


def _train():
    labels = ["cool", "warm"]
    return [(img, labels[i % 2]) for i, img in enumerate(INPUTS)], labels


@pytest.mark.parametrize(
    "arch, targets",
    [
        ("vit", {"q_proj", "v_proj"}),
        ("deit", {"q_proj", "v_proj"}),
        ("beit", {"q_proj", "v_proj"}),
        ("dinov2", {"q_proj", "v_proj"}),
        ("swin", {"q_proj", "v_proj"}),
        ("convnext", {"pwconv1", "pwconv2"}),
        ("resnet", {"convolution"}),
    ],
)
def test_default_lora_targets_never_wrap_the_head(arch, targets):
    model = fmhub.load(local(f"{arch}-classification"))
    plan = fmhub.finetune_plan(model, "lora", labels=["a", "b"])
    assert plan.head == ["classifier"]
    assert plan.modules and {m.rsplit(".", 1)[-1] for m in plan.modules} == targets
    assert not [m for m in plan.modules if m.startswith("classifier")]
    ia3 = fmhub.finetune_plan(model, "ia3", labels=["a", "b"])
    assert ia3.modules and not [m for m in ia3.modules if m.startswith("classifier")]


def test_head_fine_tune_trains_only_the_head_and_round_trips(tmp_path):
    model = fmhub.load(local("dinov2-embedding"))
    frozen = {n: p.detach().clone() for n, p in model.module.named_parameters()}
    train, labels = _train()
    result = fmhub.finetune(
        model,
        train,
        method="head",
        max_steps=4,
        learning_rate=5e-2,
        batch_size=4,
        seed=0,
        progress=False,
        output_dir=str(tmp_path / "run"),
    )
    assert model.task == "classification" and model.labels == tuple(labels)
    assert type(model.module).__name__ == "Dinov2ForImageClassification"
    for name, p in model.module.named_parameters():
        if name.startswith("dinov2."):
            assert (p == frozen[name.removeprefix("dinov2.")]).all(), name
    got = model.predict(INPUTS)
    again = fmhub.load(str(result.adapter_path))
    assert again.spec.modality == "image" and again.labels == tuple(labels)
    for a, b in zip(again.predict(INPUTS), got):
        assert a.label == b.label and abs(a.score - b.score) < 1e-5


def test_full_fine_tune_saves_a_transformers_folder(tmp_path):
    model = fmhub.load(local("resnet-classification"))
    train, labels = _train()
    fmhub.finetune(
        model,
        train,
        method="full",
        max_steps=2,
        learning_rate=1e-2,
        batch_size=4,
        seed=0,
        progress=False,
        output_dir=str(tmp_path / "run"),
    )
    model.merge()  # a plain Transformers folder, not an adapter folder
    folder = model.save(tmp_path / "saved")
    assert (folder / "preprocessor_config.json").is_file()
    assert not (folder / "modules.json").exists()
    again = fmhub.load(str(folder))
    assert again.spec.modality == "image" and again.labels == tuple(labels)
    pipe = _pipeline("image-classification", str(folder))
    want = pipe(Image.fromarray(PHOTOS[0]), top_k=2)
    got = again(PHOTOS[0])
    assert [t.label for t in got.top_k] == [w["label"] for w in want]
    assert abs(got.score - want[0]["score"]) < 1e-5


def test_embedding_model_saves_no_sentence_transformers_files(tmp_path):
    model = fmhub.load(local("vit-classification"), task="embedding")
    folder = model.save(tmp_path / "saved")
    assert not (folder / "modules.json").exists()
    again = fmhub.load(str(folder))
    assert again.task == "embedding" and again.module.pooler is None
    np.testing.assert_allclose(again(PHOTOS[0]), model(PHOTOS[0]), atol=1e-6)


def test_onnx_export_of_an_image_classifier(tmp_path):
    """The export spec: the forward stage on pixel_values, parity-checked by fmhub.export."""
    pytest.importorskip("onnxruntime")
    from fmhub.export import export

    model = fmhub.load(local("vit-classification"))
    folder = export(model, tmp_path / "onnx", verbose=False)
    assert (folder / "fmhub.json").is_file() and list(folder.glob("*.onnx"))


# -- the conformance kit ------------------------------------------------------------------------


class TestImageConformance(ConformanceSuite):
    cases = [
        ConformanceCase(
            model="hf:tiny-org/vit-classification",
            inputs=INPUTS,
            task="classification",
            heavy_modules=HEAVY,
            bad_inputs=BAD,
            id="vit-classification-hub",
        ),
        ConformanceCase(
            model=str(ROOT / "convnext-classification"),
            inputs=INPUTS,
            task="classification",
            heavy_modules=HEAVY,
            bad_inputs=BAD,
            id="convnext-classification-local",
        ),
        ConformanceCase(
            model="hf:tiny-org/dinov2-embedding",
            inputs=INPUTS,
            task="embedding",
            heavy_modules=HEAVY,
            bad_inputs=BAD,
            id="dinov2-embedding-hub",
        ),
        ConformanceCase(
            model=str(ROOT / "swin-embedding"),
            inputs=INPUTS,
            task="embedding",
            heavy_modules=HEAVY,
            bad_inputs=BAD,
            id="swin-embedding-local",
        ),
    ]
