"""The fast CPU path (``fast=``): same top-1 and float32-close outputs as the eager path, options
validated, rebuilt when weights change, eager whenever it cannot apply. No timing here: speed is
measured by bench/vision.py."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import fmhub
from fmhub_timm import _fast

RESNET, CONVNEXT, VIT = (
    "timm:test_resnet.r160_in1k",
    "timm:test_convnext.r160_in1k",
    "timm:test_vit.r160_in1k",
)


@pytest.fixture(scope="module")
def images(skimage_photos):
    return [Image.fromarray(a) for a in skimage_photos.values()]


def _pair(name: str, **options):
    fast = fmhub.load(name, device="cpu", **options)
    plain = fmhub.load(name, device="cpu", **{**options, "fast": False})
    plain.module.load_state_dict(fast.module.state_dict())
    return fast, plain


def _runner(model) -> _fast.FastForward:
    return _fast._by_module[model.module]


def test_default_policy():
    assert fmhub.load(RESNET, device="cpu").info["fast"] is True
    assert fmhub.load(CONVNEXT, device="cpu").info["fast"] is True
    assert fmhub.load(VIT, device="cpu").info["fast"] is False  # a transformer: eager
    assert fmhub.load(RESNET, device="cpu", dtype="bfloat16").info["fast"] is False
    assert fmhub.load(RESNET, device="cpu", task="feature-maps").info["fast"] is False
    assert fmhub.load(RESNET, device="cpu", fast=False).info["fast"] is False
    assert fmhub.load(VIT, device="cpu", fast=True).info["fast"] is True


@pytest.mark.parametrize("name", [RESNET, CONVNEXT, VIT])
@pytest.mark.parametrize("task", ["classification", "embedding"])
def test_same_top1_and_close_outputs(name, task, images):
    options = {"fast": True} if name == VIT else {}
    if task == "embedding":
        options["num_classes"] = 0
    fast, plain = _pair(name, **options)
    batch = fast.preprocess(images)
    first = fast.forward(batch)  # builds the graph, checks it, returns the eager outputs
    runner = _runner(fast)
    assert runner.failed is None and runner.graph is not None, runner.failed
    ours, ref = fast.forward(batch), plain.forward(batch)  # now through the graph
    torch.testing.assert_close(first, ref, rtol=0, atol=0)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)
    if task == "classification":
        assert torch.equal(ours.argmax(-1), ref.argmax(-1))
        a, b = fast.predict(images[:3]), plain.predict(images[:3])
        assert [r.label for r in a] == [r.label for r in b]
        assert [r.top_k[1].label for r in a] == [r.top_k[1].label for r in b]
    # another batch size than the one traced with
    torch.testing.assert_close(
        fast.forward(fast.preprocess(images[:3])),
        plain.forward(plain.preprocess(images[:3])),
        rtol=1e-4,
        atol=1e-5,
    )
    assert fast.info["fast"] is True


def test_conv_bn_nets_are_optimized_and_convnext_mlps_fused(images):
    resnet = fmhub.load(RESNET, device="cpu")
    resnet.predict(images[:2])
    assert _runner(resnet).optimized and _runner(resnet).fused_mlps == 0
    convnext = fmhub.load(CONVNEXT, device="cpu")
    convnext.predict(images[:2])
    runner = _runner(convnext)
    assert (
        not runner.optimized
        and runner.fused_mlps
        == len([m for m in convnext.module.modules() if type(m).__name__ == "Mlp"])
        > 0
    )
    # the swap is undone: the module's own structure and state dict are untouched
    assert not any(isinstance(m, _fast._LinearGelu) for m in convnext.module.modules())
    names = set(convnext.module.state_dict())
    assert names == set(fmhub.load(CONVNEXT, device="cpu").module.state_dict())


def test_a_batch_runs_through_the_graph_in_slices(images, monkeypatch):
    assert _fast.slice_rows(torch.empty(32, 3, 224, 224)) == 4  # the default: 4 ImageNet images
    assert _fast.slice_rows(torch.empty(2, 3, 1024, 1024)) == 1
    fast, plain = _pair(CONVNEXT)
    batch = fast.preprocess(images)
    fast.forward(batch)  # builds the graph
    runner = _runner(fast)
    graph, sizes = runner.graph, []
    runner.graph = lambda x: (sizes.append(x.shape[0]), graph(x))[1]
    x = batch["pixel_values"]
    monkeypatch.setattr(_fast, "SLICE_PIXELS", 2 * x.shape[-1] * x.shape[-2])
    ours = fast.forward(batch)
    assert len(x) > 2 and sizes == [2] * (len(x) // 2) + [1] * (len(x) % 2)
    torch.testing.assert_close(ours, plain.forward(batch), rtol=1e-4, atol=1e-5)


def test_rebuilt_when_weights_change(images):
    fast, plain = _pair(RESNET)
    batch = fast.preprocess(images[:2])
    fast.forward(batch)
    fast.forward(batch)
    graph = _runner(fast).graph
    with torch.no_grad():
        for m in (fast.module, plain.module):
            m.fc.weight.mul_(-2.0)
            m.fc.bias.add_(0.5)
    torch.testing.assert_close(fast.forward(batch), plain.forward(batch), rtol=1e-4, atol=1e-5)
    assert _runner(fast).graph is not graph
    state = {k: v + 0.01 for k, v in plain.module.state_dict().items() if v.is_floating_point()}
    for m in (fast.module, plain.module):
        m.load_state_dict(state, strict=False)
    torch.testing.assert_close(fast.forward(batch), plain.forward(batch), rtol=1e-4, atol=1e-5)


def test_gradients_and_training_run_eagerly(images):
    fast = fmhub.load(RESNET, device="cpu")
    batch = fast.preprocess(images[:2])
    fast.forward(batch)
    out = fast.forward(batch, grad=True)
    assert out.requires_grad  # a frozen graph would give a constant
    fast.module.train()
    with torch.no_grad():
        assert _fast.fast_forward(fast, batch["pixel_values"]) is None
    fast.module.eval()
    fast.to(dtype="bfloat16")
    with torch.inference_mode():
        assert _fast.fast_forward(fast, batch["pixel_values"].bfloat16()) is None


def test_quantized_model_runs_its_own_kernels(images):
    pytest.importorskip("torchao")
    fast = fmhub.load(RESNET, device="cpu")
    fast.quantize("int8-fast")
    with torch.inference_mode():
        assert _fast.fast_forward(fast, fast.preprocess(images[:1])["pixel_values"]) is None


def test_graph_that_fails_to_build_falls_back(images, monkeypatch):
    def broken(self, module, x):
        raise RuntimeError("cannot trace this")

    monkeypatch.setattr(_fast.FastForward, "_build", broken)
    fast, plain = _pair(RESNET)
    a, b = fast.predict(images), plain.predict(images)
    assert [r.label for r in a] == [r.label for r in b]
    assert fast.info["fast"].startswith("off: could not be traced (RuntimeError: cannot trace")
    fast.predict(images[:1])  # stays eager, no second attempt
    assert _runner(fast).graph is None


def test_graph_with_other_outputs_is_refused(images, monkeypatch):
    real = _fast.FastForward._build

    def wrong(self, module, x):
        graph = real(self, module, x)
        return lambda t: graph(t) + 1.0

    monkeypatch.setattr(_fast.FastForward, "_build", wrong)
    fast, plain = _pair(CONVNEXT)
    batch = fast.preprocess(images)
    torch.testing.assert_close(fast.forward(batch), plain.forward(batch), rtol=0, atol=0)
    torch.testing.assert_close(fast.forward(batch), plain.forward(batch), rtol=0, atol=0)
    assert fast.info["fast"].startswith("off: its graph's outputs differ")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"dtype": "bfloat16"}, "float32 only, not bfloat16"),
        ({"task": "feature-maps"}, "not 'feature-maps'"),
        ({"quantize": "int8-fast"}, "quantized model"),
    ],
)
def test_fast_true_where_it_cannot_apply_is_refused(options, match):
    with pytest.raises(fmhub.InvalidOptionError, match=match):
        fmhub.load(RESNET, device="cpu", fast=True, **options)


def test_fast_option_type_is_validated():
    with pytest.raises(fmhub.InvalidOptionError, match="fast"):
        fmhub.load(RESNET, device="cpu", fast="sometimes")
