"""fmhub's outputs equal timm's own ``model(transform(image))`` on real photos (scikit-image)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import fmhub
from fmhub_timm.testing import TINY_MODELS, tiny_model

PHOTOS = ("chelsea", "coffee", "astronaut", "camera", "logo")


def _timm_reference(name):
    """The same model and eval transform, built with timm directly from the same hub cache."""
    import timm
    from timm.data import create_transform, resolve_data_config

    model = timm.create_model(name, pretrained=True).eval()
    transform = create_transform(**resolve_data_config(model=model), is_training=False)
    return model, transform


def _rgb(arr):
    return Image.fromarray(arr).convert("RGB")


@pytest.fixture(scope="module")
def references():
    return {name: _timm_reference(name) for name in TINY_MODELS}


@pytest.fixture(scope="module")
def loaded():
    """Each tiny model twice: timm's default layout, and fmhub's default (channels_last for CNNs)."""
    out = {}
    for name in TINY_MODELS:
        out[name, False] = fmhub.load(f"timm:{name}", device="cpu", channels_last=False)
        out[name, None] = fmhub.load(f"timm:{name}", device="cpu")
    return out


def _logits(model, inputs):
    return model.forward(model.preprocess(inputs)).float()


@pytest.mark.parametrize("name", TINY_MODELS)
def test_batch_is_bit_identical_to_timm_transform(name, references, loaded, skimage_photos):
    _, transform = references[name]
    images = [_rgb(skimage_photos[p]) for p in PHOTOS]
    expected = torch.stack([transform(img) for img in images])
    for layout in (False, None):
        got = loaded[name, layout].preprocess(images)["pixel_values"]
        assert torch.equal(got, expected), f"{name} layout={layout}"


@pytest.mark.parametrize("name", TINY_MODELS)
def test_logits_equal_timm_on_photos(name, references, loaded, skimage_photos):
    model, transform = references[name]
    images = [_rgb(skimage_photos[p]) for p in PHOTOS]
    with torch.inference_mode():
        expected = torch.cat([model(transform(img).unsqueeze(0)) for img in images])
    assert expected.std(dim=0).mean() > 1e-3, "logits must vary from photo to photo"
    same = _logits(loaded[name, False], images)
    torch.testing.assert_close(same, expected, atol=1e-5, rtol=0)
    default = _logits(loaded[name, None], images)
    torch.testing.assert_close(default, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", TINY_MODELS)
def test_weights_come_from_the_hub_cache(name, loaded, skimage_photos):
    """The cache holds seeded weights: fmhub's model must compute exactly what those weights do."""
    ours = tiny_model(name.split(".")[0], seed=0)
    x = loaded[name, False].preprocess([_rgb(skimage_photos["chelsea"])])["pixel_values"]
    with torch.inference_mode():
        torch.testing.assert_close(
            _logits(loaded[name, False], [_rgb(skimage_photos["chelsea"])]),
            ours(x),
            atol=1e-6,
            rtol=0,
        )


def test_every_input_kind_matches_timm(references, loaded, skimage_photos, tmp_path):
    """PIL, path, bytes, numpy uint8, uint8 tensor: all equal timm on the RGB image; float tensors
    equal timm's transform applied to the tensor itself."""
    name = "test_resnet.r160_in1k"
    model, transform = references[name]
    fm = loaded[name, False]
    for photo in ("chelsea", "camera", "logo"):
        arr = skimage_photos[photo]
        img = _rgb(arr)
        path = tmp_path / f"{photo}.png"
        Image.fromarray(arr).save(path)
        with torch.inference_mode():
            expected = model(transform(img).unsqueeze(0))
        kinds = [
            Image.fromarray(arr),
            str(path),
            path,
            path.read_bytes(),
            arr,
            torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
            if arr.ndim == 3
            else torch.from_numpy(arr),
        ]
        got = _logits(fm, kinds)  # one batch of every kind
        for kind, row in zip(kinds, got):
            torch.testing.assert_close(
                row[None],
                expected,
                atol=1e-5,
                rtol=0,
                msg=lambda m: f"{photo} {type(kind).__name__}: {m}",
            )
    chw = torch.from_numpy(skimage_photos["coffee"]).permute(2, 0, 1).float() / 255
    with torch.inference_mode():
        expected = model(transform(chw).unsqueeze(0))
    torch.testing.assert_close(_logits(fm, [chw]), expected, atol=1e-5, rtol=0)


def test_classification_result_is_timm_softmax(references, loaded, skimage_photos):
    from timm.data import ImageNetInfo

    name = "test_vit.r160_in1k"
    model, transform = references[name]
    img = _rgb(skimage_photos["chelsea"])
    with torch.inference_mode():
        probs = model(transform(img).unsqueeze(0)).softmax(-1)[0]
    result = loaded[name, None](img)
    top = torch.topk(probs, 5)
    assert [t.index for t in result.top_k] == top.indices.tolist()
    np.testing.assert_allclose([t.score for t in result.top_k], top.values.numpy(), atol=1e-6)
    info = ImageNetInfo()
    assert result.label == info.index_to_description(int(top.indices[0]))
    assert len(loaded[name, None].labels) == 1000


def test_embedding_is_pre_logits_features(references, skimage_photos):
    name = "test_convnext.r160_in1k"
    model, transform = references[name]
    emb = fmhub.load(f"timm:{name}", task="embedding", device="cpu")
    img = _rgb(skimage_photos["astronaut"])
    with torch.inference_mode():
        expected = model.forward_head(
            model.forward_features(transform(img).unsqueeze(0)), pre_logits=True
        )
    got = emb(img)
    assert got.shape == (model.num_features,)
    np.testing.assert_allclose(got, expected[0].numpy(), atol=1e-4)


@pytest.mark.parametrize("name", ["test_resnet.r160_in1k", "test_vit.r160_in1k"])
def test_feature_maps_equal_timm_features_only(name, skimage_photos):
    import timm
    from timm.data import create_transform, resolve_data_config

    ref = timm.create_model(name, pretrained=True, features_only=True).eval()
    transform = create_transform(**resolve_data_config(model=ref), is_training=False)
    fm = fmhub.load(f"timm:{name}", task="feature-maps", device="cpu")
    img = _rgb(skimage_photos["coffee"])
    with torch.inference_mode():
        expected = ref(transform(img).unsqueeze(0))
    got = fm(img)
    assert len(got.maps) == len(expected)
    for g, e in zip(got.maps, expected):
        np.testing.assert_allclose(g, e[0].numpy(), atol=1e-4)
