"""Names, weights (hub cache, checkpoint=, saved folders), options and their errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fmhub
from fmhub_timm.testing import tiny_model, write_checkpoint, write_hub_model

CAT = np.random.default_rng(0).integers(0, 256, (120, 90, 3), dtype=np.uint8)


def _logits(model, x=CAT):
    return model.forward(model.preprocess([x])).float()


def _reference(model_name, fm, seed=0, **kwargs):
    """What a timm model with the seeded tiny weights computes on fmhub's own batch."""
    net = tiny_model(model_name, seed=seed, **kwargs)
    with torch.inference_mode():
        return net(fm.preprocess([CAT])["pixel_values"])


# -- names -------------------------------------------------------------------------------------


def test_aliases_resolve_without_loading():
    assert fmhub.model_info("resnet50").id == "timm:resnet50.a1_in1k"
    assert fmhub.model_info("vit-base").id == "timm:vit_base_patch16_224.augreg2_in21k_ft_in1k"
    assert fmhub.model_info("convnext-tiny").id == "timm:convnext_tiny.in12k_ft_in1k"
    spec = fmhub.model_info("efficientnet-b0")
    assert spec.plugin == "timm" and spec.preprocessing.input_size == (3, 224, 224)


@pytest.mark.parametrize(
    "name",
    [
        "timm:resnet18",
        "timm:convnext_tiny.fb_in1k",
        "timm:hf-hub:timm/resnet18.a1_in1k",
        "timm:hf-hub:org/name@v1",
    ],
)
def test_open_names_resolve(name):
    spec = fmhub.model_info(name)
    assert spec.id == name and spec.plugin == "timm" and spec.modality == "image"


@pytest.mark.parametrize("name", ["timm:Res Net", "timm:hf-hub:noslash", "timm:resnet18.bad tag"])
def test_malformed_names_are_refused_at_resolution(name):
    with pytest.raises(fmhub.UnknownModelError, match="not a timm model name"):
        fmhub.model_info(name)


def test_unknown_architecture_suggests_close_match():
    with pytest.raises(fmhub.UnknownModelError, match="test_vit"):
        fmhub.load("timm:test_vitt", device="cpu")


def test_unknown_tag_lists_the_tags():
    with pytest.raises(fmhub.UnknownModelError, match="r160_in1k"):
        fmhub.load("timm:test_vit.r999_in1k", device="cpu")


def test_missing_weights_explain_the_cache():
    # test_byobnet.r160_in1k is never written into the offline cache.
    with pytest.raises(
        fmhub.PluginError, match="Hub repo 'timm/test_byobnet.r160_in1k'.*HF_HUB_CACHE"
    ):
        fmhub.load("timm:test_byobnet.r160_in1k", device="cpu")
    with pytest.raises(fmhub.PluginError, match="Hub repo 'timm/test_byobnet.r160_in1k'"):
        fmhub.load("timm:test_byobnet", device="cpu")  # the default tag's repo is named
    with pytest.raises(fmhub.PluginError, match="config.json and weights.*'org/missing'"):
        fmhub.load("timm:hf-hub:org/missing", device="cpu")


def test_architecture_without_weights_says_pretrained_false():
    with pytest.raises(fmhub.UnknownModelError, match="pretrained=False"):
        fmhub.load("timm:test_mambaout", device="cpu")


def test_bad_option_is_named():
    with pytest.raises(fmhub.InvalidOptionError, match="pretrained"):
        fmhub.load("timm:test_vit.r160_in1k", pretrainde=False)
    with pytest.raises(fmhub.InvalidOptionError, match="task"):
        fmhub.load("timm:test_vit.r160_in1k", task="transcription", device="cpu")


# -- weights -----------------------------------------------------------------------------------


def test_hf_hub_name_loads_config_and_weights_offline():
    fm = fmhub.load("timm:hf-hub:timm/test_resnet.r160_in1k", device="cpu", channels_last=False)
    torch.testing.assert_close(_logits(fm), _reference("test_resnet", fm), atol=1e-6, rtol=0)
    assert fm.labels[281] == "tabby, tabby cat"


def test_pytorch_bin_in_the_cache_loads(tmp_path):
    from fmhub_timm.testing import offline_hub

    with offline_hub(tmp_path):
        write_hub_model(
            tmp_path, "test_efficientnet.r160_in1k", seed=3, weights="pytorch_model.bin"
        )
        fm = fmhub.load("timm:test_efficientnet.r160_in1k", device="cpu", channels_last=False)
        torch.testing.assert_close(
            _logits(fm), _reference("test_efficientnet", fm, seed=3), atol=1e-6, rtol=0
        )


def test_pretrained_false_builds_random_weights():
    fm = fmhub.load("timm:test_byobnet", pretrained=False, device="cpu")
    assert fm.task == "classification" and fm(CAT).top_k


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_checkpoint_file(tmp_path, suffix):
    path = write_checkpoint(tmp_path / f"w{suffix}", "test_resnet", seed=5)
    fm = fmhub.load("timm:test_resnet", checkpoint=str(path), device="cpu", channels_last=False)
    torch.testing.assert_close(
        _logits(fm), _reference("test_resnet", fm, seed=5), atol=1e-6, rtol=0
    )


def test_checkpoint_with_other_head_size_sets_num_classes(tmp_path):
    path = write_checkpoint(tmp_path / "seven.safetensors", "test_resnet", seed=2, num_classes=7)
    fm = fmhub.load("timm:test_resnet", checkpoint=str(path), device="cpu", channels_last=False)
    assert fm.module.num_classes == 7 and fm.labels is None
    assert "state_dict" not in fm.module.pretrained_cfg, "checkpoint tensors kept alive"
    result = fm(CAT)
    assert len(result.top_k) == 5 and result.label in {str(i) for i in range(7)}
    torch.testing.assert_close(
        _logits(fm), _reference("test_resnet", fm, seed=2, num_classes=7), atol=1e-6, rtol=0
    )


def test_checkpoint_errors(tmp_path):
    with pytest.raises(fmhub.InvalidOptionError, match="not a file"):
        fmhub.load("timm:test_resnet", checkpoint=str(tmp_path / "missing.pth"), device="cpu")
    bad = tmp_path / "junk.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(fmhub.InvalidOptionError, match="weights_only"):
        fmhub.load("timm:test_resnet", checkpoint=str(bad), device="cpu")
    txt = tmp_path / "w.txt"
    txt.write_text("x")
    with pytest.raises(fmhub.InvalidOptionError, match="expected one of"):
        fmhub.load("timm:test_resnet", checkpoint=str(txt), device="cpu")


def test_num_classes_zero_is_an_embedding_model():
    fm = fmhub.load("timm:test_vit.r160_in1k", num_classes=0, device="cpu")
    assert fm.task == "embedding" and fm(CAT).ndim == 1
    with pytest.raises(fmhub.InvalidOptionError, match="no classifier"):
        fmhub.load("timm:test_vit.r160_in1k", num_classes=0, task="classification", device="cpu")


def test_num_classes_gives_fresh_head_keeping_backbone():
    fm = fmhub.load("timm:test_vit.r160_in1k", num_classes=4, device="cpu")
    assert fm.module.num_classes == 4 and fm.labels is None
    base = fmhub.load("timm:test_vit.r160_in1k", device="cpu")
    torch.testing.assert_close(
        fm.module.blocks[0].attn.qkv.weight, base.module.blocks[0].attn.qkv.weight
    )


def test_channels_last_policy():
    assert fmhub.load("timm:test_resnet.r160_in1k", device="cpu").info["channels_last"] is True
    assert fmhub.load("timm:test_convnext.r160_in1k", device="cpu").info["channels_last"] is True
    assert fmhub.load("timm:test_vit.r160_in1k", device="cpu").info["channels_last"] is False
    fm = fmhub.load("timm:test_efficientnet.r160_in1k", device="cpu")
    assert fm.module.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    assert fm.preprocess([CAT])["pixel_values"].is_contiguous(memory_format=torch.channels_last)


# -- local folders -----------------------------------------------------------------------------


def test_timm_native_folder_is_claimed(tmp_path):
    from timm.models._hub import save_for_hf

    net = tiny_model("test_convnext", seed=9)
    save_for_hf(net, str(tmp_path / "native"), safe_serialization=True)
    spec = fmhub.model_info(str(tmp_path / "native"))
    assert spec.id == "timm:test_convnext" and spec.path
    fm = fmhub.load(str(tmp_path / "native"), device="cpu", channels_last=False)
    with torch.inference_mode():
        expected = net(fm.preprocess([CAT])["pixel_values"])
    torch.testing.assert_close(_logits(fm), expected, atol=1e-6, rtol=0)


def test_transformers_style_folder_is_not_claimed(tmp_path):
    import json

    from fmhub_timm import fmhub_claim_path

    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "vit", "architectures": ["ViT"]})
    )
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert fmhub_claim_path(str(tmp_path)) is None


def test_saved_folder_is_loadable_by_timm_itself(tmp_path):
    import timm

    fm = fmhub.load("timm:test_vit.r160_in1k", device="cpu")
    folder = fm.save(tmp_path / "saved")
    net = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    with torch.inference_mode():
        expected = net(fm.preprocess([CAT])["pixel_values"])
    torch.testing.assert_close(_logits(fm), expected, atol=1e-6, rtol=0)
