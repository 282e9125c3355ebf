"""The fine-tune hooks on every architecture family: a head with one logit per label, adapter
targets that exist and never touch the head, cross-entropy loss, and a real PEFT LoRA step."""

from __future__ import annotations

import pytest

import fmhub
from fmhub_transformers.testing import ARCHITECTURES, CORPUS, build_tiny_model

LABELS = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    return {arch: build_tiny_model(root / arch, arch, "embedding") for arch in ARCHITECTURES}


def _hook(model, name, **kw):
    return model.hub.call(name, model.spec.plugin, model.spec.id, model=model, **kw)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_attach_head_targets_and_loss(folders, arch):
    import torch
    import torch.nn.functional as F

    model = fmhub.load(str(folders[arch]))
    encoder = model.module
    head = _hook(model, "fmhub_attach_head", labels=LABELS)
    model.task, model.labels = "classification", tuple(LABELS)  # what the core does next
    assert head and all(model.module.get_submodule(h) is not None for h in head)
    assert getattr(model.module, model.module.base_model_prefix) is encoder, (
        "pretrained encoder kept"
    )
    assert all(p.device.type != "meta" for p in model.module.parameters())

    batch = model.preprocess(CORPUS[:3])
    logits = model.forward(batch)
    assert logits.shape == (3, len(LABELS))
    results = model.postprocess(logits, batch)
    assert {r.label for r in results} <= set(LABELS)

    for method in ("lora", "ia3"):
        suffixes = _hook(model, "fmhub_finetune_targets", method=method)
        assert suffixes, f"{arch} has default {method} targets"
        names = [n for n, _ in model.module.named_modules()]
        for s in suffixes:
            hits = [n for n in names if n == s or n.endswith("." + s)]
            assert hits, f"{method} target {s!r} matches no module of {arch}"
            assert not [n for n in hits if any(n == h or n.startswith(h + ".") for h in head)]
            assert all(isinstance(model.module.get_submodule(n), torch.nn.Linear) for n in hits)
    assert _hook(model, "fmhub_finetune_targets", method="someone-elses") is None

    model.module.train()
    targets = torch.tensor([0, 3, 1])
    out = model.forward(model.preprocess(CORPUS[:3]), grad=True)
    loss = _hook(model, "fmhub_training_loss", outputs=out, targets=targets)
    assert loss.requires_grad and torch.allclose(loss, F.cross_entropy(out, targets))


def test_head_is_saved_and_reloaded_as_a_classifier(folders, tmp_path):
    import numpy as np

    model = fmhub.load(str(folders["bert"]))
    _hook(model, "fmhub_attach_head", labels=LABELS)
    model.task, model.labels = "classification", tuple(LABELS)
    before = model.predict(CORPUS[:4])
    again = fmhub.load(str(model.save(tmp_path / "clf")))
    assert again.task == "classification" and again.labels == tuple(LABELS)
    after = again.predict(CORPUS[:4])
    np.testing.assert_allclose([r.score for r in after], [r.score for r in before], atol=1e-5)


def test_resizing_an_existing_classifier(tiny_zoo):
    model = fmhub.load(str(tiny_zoo["roberta-cls"]))
    head = _hook(model, "fmhub_attach_head", labels=["x", "y"])
    assert head == ["classifier"]
    assert model.forward(model.preprocess(["hi"])).shape == (1, 2)
    assert model.module.config.id2label == {0: "x", 1: "y"}


def test_lora_step_trains_adapters_and_head_only(folders):
    peft = pytest.importorskip("peft")
    import torch

    model = fmhub.load(str(folders["distilbert"]))
    head = _hook(model, "fmhub_attach_head", labels=LABELS)
    model.task, model.labels = "classification", tuple(LABELS)
    targets = _hook(model, "fmhub_finetune_targets", method="lora")
    config = peft.LoraConfig(r=4, target_modules=targets, modules_to_save=head)
    model.module.requires_grad_(False)
    peft.get_peft_model(model.module, config)
    trainable = {n for n, p in model.module.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "modules_to_save" in n for n in trainable)
    assert not [n for n in trainable if "lora_" in n and any(f".{h}." in n for h in head)]
    before = {n: p.detach().clone() for n, p in model.module.named_parameters()}
    opt = torch.optim.SGD([p for p in model.module.parameters() if p.requires_grad], lr=0.5)
    model.module.train()
    out = model.forward(model.preprocess(CORPUS[:4]), grad=True)
    _hook(model, "fmhub_training_loss", outputs=out, targets=torch.tensor([0, 1, 2, 3])).backward()
    opt.step()
    changed = {n for n, p in model.module.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trainable
