"""Fine-tune hooks, tested directly: default adapter targets per family, fresh heads, the loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import fmhub
from fmhub_timm import fmhub_attach_head, fmhub_finetune_targets, fmhub_training_loss
from fmhub_timm._finetune import finetune_targets, head_names
from fmhub_timm.testing import tiny_model

IMG = np.random.default_rng(1).integers(0, 256, (100, 140, 3), dtype=np.uint8)

FAMILIES = {
    "vit": ("test_vit", {}, {"attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"}),
    "deit": (
        "deit_tiny_patch16_224",
        {"depth": 1},
        {"attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"},
    ),
    "eva": ("eva02_tiny_patch14_224", {"depth": 1, "num_classes": 10}, {"attn.qkv", "attn.proj"}),
    "swin": (
        "swin_tiny_patch4_window7_224",
        {"depths": (1, 1, 1, 1), "embed_dim": 32, "num_heads": (1, 1, 2, 2)},
        {"attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"},
    ),
    "convnext": ("test_convnext", {}, {"mlp.fc1", "mlp.fc2"}),
    "resnet-deep-stem": ("test_resnet", {}, {"conv2", "conv3"}),
    "resnet": ("resnet10t", {}, {"conv2"}),
    "efficientnet": ("test_efficientnet", {}, {"conv_pw", "conv_pwl", "se.conv_reduce"}),
    "mobilenetv3": ("mobilenetv3_small_050", {}, {"conv_pw", "conv_pwl"}),
    "regnet (generic rule)": ("regnety_002", {}, {"fc1", "fc2", "stem.conv"}),
}


def _matches(name: str, suffix: str) -> bool:
    return name == suffix or name.endswith("." + suffix)


@pytest.fixture(scope="module")
def family_models():
    return {fam: tiny_model(arch, **kw) for fam, (arch, kw, _) in FAMILIES.items()}


@pytest.mark.parametrize("family", FAMILIES)
def test_targets_match_real_modules_and_never_the_head(family, family_models):
    module = family_models[family]
    targets = finetune_targets(module)
    assert targets, f"{family}: no default targets"
    assert FAMILIES[family][2] <= set(targets), targets
    heads = head_names(module)
    assert heads, f"{family}: head not found"
    named = dict(module.named_modules())
    for suffix in targets:
        hits = [n for n in named if n and _matches(n, suffix)]
        assert hits, f"{family}: target {suffix!r} matches no module"
        for n in hits:
            m = named[n]
            assert isinstance(m, (nn.Linear, nn.Conv2d)) and getattr(m, "groups", 1) == 1, (n, m)
            assert not any(n == h or n.startswith(h + ".") for h in heads), f"{n} is in the head"


@pytest.mark.parametrize("family", ["vit", "resnet-deep-stem", "efficientnet", "swin"])
def test_lora_wraps_targets_not_the_classifier(family, family_models):
    import copy

    from peft import LoraConfig, get_peft_model

    module = copy.deepcopy(family_models[family])
    targets, heads = finetune_targets(module), head_names(module)
    peft_model = get_peft_model(
        module, LoraConfig(r=2, target_modules=targets, modules_to_save=heads)
    )
    wrapped = [n for n, m in peft_model.named_modules() if hasattr(m, "lora_A")]
    assert wrapped
    assert not any(h in n for n in wrapped for h in heads), "the classifier was wrapped by LoRA"
    size = 224 if family == "swin" else 160
    out = peft_model(torch.randn(1, 3, size, size))
    assert out.shape[-1] == module.num_classes


@pytest.fixture
def loaded(request):
    return fmhub.load(f"timm:{request.param}", device="cpu")


@pytest.mark.parametrize(
    ("loaded", "head"),
    [
        ("test_vit.r160_in1k", "head"),
        ("test_resnet.r160_in1k", "fc"),
        ("test_convnext.r160_in1k", "head.fc"),
        ("test_efficientnet.r160_in1k", "classifier"),
    ],
    indirect=["loaded"],
)
def test_attach_head_resets_classifier_to_the_labels(loaded, head):
    before = {k: v.clone() for k, v in loaded.module.state_dict().items() if not k.startswith(head)}
    names = fmhub_attach_head(model=loaded, labels=["cat", "dog", "cow"])
    assert names == [head]
    assert loaded.module.get_submodule(head).out_features == 3
    after = loaded.module.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items()), "backbone changed"
    loaded.task, loaded.labels = "classification", ("cat", "dog", "cow")  # what the core does
    result = loaded(IMG)
    assert result.label in {"cat", "dog", "cow"} and len(result.top_k) == 3


def test_head_targets_hook_and_loss_through_the_hooks():
    fm = fmhub.load("timm:test_vit.r160_in1k", device="cpu")
    targets = fmhub_finetune_targets(model=fm, method="lora")
    assert "head" not in targets and "attn.qkv" in targets
    fmhub_attach_head(model=fm, labels=["a", "b"])
    fm.module.train()
    batch = fm.preprocess([IMG, IMG[::-1]])
    logits = fm.forward(batch, grad=True)
    targets_t = torch.tensor([0, 1])
    loss = fmhub_training_loss(model=fm, outputs=logits, targets=targets_t)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, targets_t))
    loss.backward()
    assert fm.module.head.weight.grad is not None and fm.module.head.weight.grad.abs().sum() > 0


def test_fine_tuned_head_saves_and_reloads_with_labels(tmp_path):
    fm = fmhub.load("timm:test_resnet.r160_in1k", device="cpu")
    fmhub_attach_head(model=fm, labels=["red", "green", "blue", "grey"])
    fm.task, fm.labels = "classification", ("red", "green", "blue", "grey")
    before = fm(IMG)
    again = fmhub.load(str(fm.save(tmp_path / "ft")))
    assert again.labels == fm.labels and again.task == "classification"
    after = again(IMG)
    assert after.label == before.label and abs(after.score - before.score) < 1e-6


def test_embedding_model_gets_a_head():
    fm = fmhub.load("timm:test_vit.r160_in1k", num_classes=0, device="cpu")
    assert fmhub_attach_head(model=fm, labels=["x", "y"]) == ["head"]
    assert fm.module.num_classes == 2


def test_feature_map_models_refuse_a_head():
    fm = fmhub.load("timm:test_resnet.r160_in1k", task="feature-maps", device="cpu")
    with pytest.raises(fmhub.FineTuneError, match="feature maps"):
        fmhub_attach_head(model=fm, labels=["a"])
