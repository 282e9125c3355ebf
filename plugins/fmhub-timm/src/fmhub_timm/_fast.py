"""The fast CPU inference path of timm convnets (``fast=True``, the default for them on CPU).

Inference on CPU in float32 runs the forward stage through a frozen TorchScript graph of the
module instead of timm's eager modules, with the same float32 numbers (no reduced precision):

* the module is traced (``torch.jit.trace``) in the memory format it runs in (channels_last for
  convnets) and frozen (``torch.jit.freeze``): weights become constants, BatchNorm is folded into
  the convolution before it, dead code is dropped;
* networks built of convolution + BatchNorm (ResNet, RegNet, EfficientNet, MobileNet...) then go
  through ``torch.jit.optimize_for_inference``: oneDNN convolutions with the ReLU/add fused into
  them and weights pre-packed for the CPU's kernels;
* a timm ``Mlp`` whose activation is GELU (ConvNeXt, ViT) runs ``fc1`` and the GELU as one oneDNN
  linear with a fused GELU post-op (the same erf or tanh GELU, computed in the same kernel);
* a batch runs through the graph in slices of :data:`SLICE_PIXELS` input pixels, so that each
  slice's activations stay in the CPU's caches between layers.

The graph is built lazily, on the first inference batch (so loading costs nothing more), and is
checked on that batch against the eager module: outputs must agree within float32 noise and the
top-1 class must be identical, else the model keeps the eager path for good (``info["fast"]``
says why). It is rebuilt whenever a weight or buffer changes (fine-tuning, ``load_state_dict``,
``to()``): parameters are fingerprinted by storage and version counter before every batch.
Training, gradients, adapters, quantized models, other devices and dtypes always run eagerly.
The graph holds its own copy of the weights (folded, pre-packed): about the module's size again.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
import weakref
from typing import Any

import torch

__all__ = ["FastForward", "fast_forward", "fast_supported"]

#: The first batch through the graph must match the eager module this closely (float32 noise:
#: freezing folds BatchNorm into the convolution weights, which reorders a few roundings).
RTOL, ATOL = 1e-4, 1e-4
#: A batch runs through the graph in slices of about this many input pixels (4 images of 224 x 224):
#: a slice's activations stay in the CPU's caches between layers, where a whole batch of 32 streams
#: them through memory (ConvNeXt-T's first-stage MLP alone is 154 MB at batch 32). Each image's
#: outputs are the same either way; only the time changes (bench/vision.py).
SLICE_PIXELS = 4 * 224 * 224
_TASKS = ("classification", "embedding")
_lock = threading.Lock()
_by_module: weakref.WeakKeyDictionary[torch.nn.Module, FastForward] = weakref.WeakKeyDictionary()


def fast_supported(module: torch.nn.Module) -> bool:
    """The networks the fast path is on for by default: convnets (see ``is_convolutional``)."""
    from ._load import is_convolutional

    return is_convolutional(module)


def uses_batchnorm(module: torch.nn.Module) -> bool:
    """Convolution + BatchNorm networks (no LayerNorm): ``optimize_for_inference`` pays there;
    on ConvNeXt (LayerNorm, large linears) it is slower than the frozen graph alone."""
    mods = list(module.modules())
    has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in mods)
    has_ln = any(isinstance(m, (torch.nn.LayerNorm, torch.nn.GroupNorm)) for m in mods)
    return has_bn and not has_ln


# TorchScript source: the op's ``Scalar?[]`` argument can be neither traced nor annotated from
# Python, only written in TorchScript itself.
_LINEAR_GELU = """
def linear_gelu(x: Tensor, w: Tensor, b: Optional[Tensor], algorithm: str) -> Tensor:
    s: List[Optional[number]] = []
    return torch.ops.mkldnn._linear_pointwise(x, w, b, "gelu", s, algorithm)
"""
_compiled: list[Any] = []


def _linear_gelu() -> Any:
    if not _compiled:
        _compiled.append(torch.jit.CompilationUnit(_LINEAR_GELU).linear_gelu)
    return _compiled[0]


class _LinearGelu(torch.nn.Module):
    """``gelu(linear(x))`` as one oneDNN kernel (the same GELU, erf or tanh, as a post-op)."""

    def __init__(self, linear: torch.nn.Linear, algorithm: str):
        super().__init__()
        self.weight, self.bias, self.algorithm = linear.weight, linear.bias, algorithm
        self.fn = _linear_gelu()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x, self.weight, self.bias, self.algorithm)


def _gelu_algorithm(act: Any) -> str | None:
    """``"none"`` (erf) or ``"tanh"`` for the GELU modules of torch and timm, else None."""
    from timm.layers import activations

    if type(act) is torch.nn.GELU:
        return act.approximate if act.approximate in ("none", "tanh") else None
    if type(act) is activations.GELU:
        return "none"
    if type(act) is getattr(activations, "GELUTanh", None):
        return "tanh"
    return None


@contextlib.contextmanager
def _fused_mlps(module: torch.nn.Module):
    """While tracing, timm ``Mlp`` blocks with a GELU run fc1 + GELU fused."""
    from timm.layers import Mlp

    swapped = []
    if torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        for m in module.modules():
            algorithm = _gelu_algorithm(getattr(m, "act", None)) if type(m) is Mlp else None
            if (
                algorithm is not None
                and type(m.fc1) is torch.nn.Linear
                and isinstance(m.drop1, torch.nn.Dropout | torch.nn.Identity)
            ):
                swapped.append((m, m.fc1, m.act))
                m.fc1, m.act = _LinearGelu(m.fc1, algorithm), torch.nn.Identity()
    try:
        yield len(swapped)
    finally:
        for m, fc1, act in swapped:
            m.fc1, m.act = fc1, act


def _fingerprint(module: torch.nn.Module) -> tuple:
    return tuple(
        (t.data_ptr(), t._version, t.dtype, tuple(t.shape))
        for t in (*module.parameters(), *module.buffers())
    )


class FastForward:
    """The frozen graph of one module for one input layout, built and checked on first use."""

    def __init__(self, module: torch.nn.Module, task: str):
        self.task = task
        self.graph: Any = None
        self.key: tuple | None = None
        self.failed: str | None = None
        self.optimized = uses_batchnorm(module)
        self.fused_mlps = 0

    def _build(self, module: torch.nn.Module, x: torch.Tensor) -> Any:
        from ._stages import _ForwardStage

        stage = _ForwardStage(module, self.task).eval()
        example = x[:2].clone()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarning, torch.jit's FutureWarning
            with _fused_mlps(module) as n:
                self.fused_mlps = n
                graph = torch.jit.freeze(torch.jit.trace(stage, example, check_trace=False))
            if self.optimized:
                graph = torch.jit.optimize_for_inference(graph)
        return graph

    def __call__(self, module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor | None:
        """The outputs for batch ``x``, or None when the eager module must run it."""
        if self.failed:
            return None
        key = (_fingerprint(module), tuple(x.shape[1:]), x.is_contiguous())
        if key == self.key and self.graph is not None:
            return _sliced(self.graph, x)
        with _lock:
            if self.failed:
                return None
            if key == self.key and self.graph is not None:  # built by another thread meanwhile
                return _sliced(self.graph, x)
            try:
                graph = self._build(module, x)
                with torch.inference_mode():
                    got = graph(x)
                    ref = _eager(module, self.task, x)
            except Exception as exc:  # noqa: BLE001 - any failure: the eager path, for good
                self.failed = f"could not be traced ({type(exc).__name__}: {str(exc)[:200]})"
                return None
            problem = _mismatch(got, ref)
            if problem:
                self.failed = problem
                return None
            self.graph, self.key = graph, key
            return ref


def slice_rows(x: torch.Tensor) -> int:
    """How many images of ``x`` (N, C, H, W) one slice through the graph holds: SLICE_PIXELS."""
    return max(1, SLICE_PIXELS // max(1, x.shape[-1] * x.shape[-2]))


def _sliced(graph: Any, x: torch.Tensor) -> torch.Tensor:
    """``graph(x)``, run over slices of :func:`slice_rows` images."""
    rows = slice_rows(x)
    if x.shape[0] <= rows:
        return graph(x)
    return torch.cat([graph(part) for part in x.split(rows)])


def _eager(module: torch.nn.Module, task: str, x: torch.Tensor) -> torch.Tensor:
    if task == "embedding":
        return module.forward_head(module.forward_features(x), pre_logits=True)
    return module(x)


def _mismatch(got: Any, ref: Any) -> str | None:
    if not isinstance(got, torch.Tensor) or got.shape != ref.shape:
        return "its graph returns outputs of another shape than the eager module"
    diff = float((got.float() - ref.float()).abs().max())
    scale = float(ref.float().abs().max())
    if not diff <= ATOL + RTOL * scale:
        return f"its graph's outputs differ from the eager module's by {diff:.2e}"
    if ref.ndim == 2 and ref.shape[-1] > 1 and not torch.equal(got.argmax(-1), ref.argmax(-1)):
        return "its graph's top-1 classes differ from the eager module's"
    return None


def fast_forward(model: Any, x: torch.Tensor) -> torch.Tensor | None:
    """``model``'s outputs for ``x`` through its frozen graph, or None: run the eager module.

    Used only for inference (no gradient, eval mode) of a float32 CPU model without adapter or
    quantization, tasks classification and embedding, when the model loaded with fast on.
    """
    info = model.info
    module = model.module
    if (
        info.get("fast") is not True
        or model.task not in _TASKS
        or torch.is_grad_enabled()
        or module.training
        or getattr(model, "adapter", None) is not None
        or getattr(model, "quantized", None)
        or x.device.type != "cpu"
        or x.dtype != torch.float32
        or model.dtype != torch.float32
    ):
        return None
    runner = _by_module.get(module)
    if runner is None or runner.task != model.task:
        runner = _by_module[module] = FastForward(module, model.task)
    out = runner(module, x)
    if runner.failed:
        info["fast"] = f"off: {runner.failed}"
    return out
