"""Device and dtype placement, owned by the core so every family behaves the same.

Nothing here is imported by ``import fmhub``; torch is imported on first use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .errors import DeviceError

__all__ = ["resolve_device", "resolve_dtype", "move_batch", "module_devices"]

_DTYPES = ("float32", "bfloat16", "float16")


def resolve_device(device: Any = "auto"):
    """``"auto"`` picks CUDA, then Apple MPS, then CPU; other values are checked to exist here."""
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(
            f"Invalid device {device!r} ({exc}); use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'."
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device={device!r} asks for CUDA, but no CUDA device is available here; "
                "use device='cpu' or device='auto'."
            )
        count = torch.cuda.device_count()
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        if index >= count:
            raise DeviceError(
                f"device={device!r} asks for CUDA device {index}, but only {count} "
                f"(0..{count - 1}) exist here."
            )
        return torch.device("cuda", index)
    if dev.type == "mps" and not _mps_available():
        raise DeviceError(
            f"device={device!r} asks for Apple MPS, which is not available here; "
            "use 'cpu' or 'auto'."
        )
    if dev.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"Unsupported device {device!r}; use 'auto', 'cpu', 'cuda:N' or 'mps'.")
    return dev


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_dtype(dtype: Any, device):
    """``"auto"``: float32 on CPU and MPS; bfloat16 on CUDA where supported, else float16."""
    import torch

    if isinstance(dtype, torch.dtype):
        name = str(dtype).removeprefix("torch.")
    else:
        name = "auto" if dtype is None else str(dtype)
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if name not in _DTYPES:
        choices = ", ".join(map(repr, _DTYPES))
        raise DeviceError(f"Unsupported dtype {dtype!r}; use 'auto', {choices}.")
    if name == "float16" and device.type == "cpu":
        raise DeviceError(
            "dtype='float16' is not supported on CPU (slow and inaccurate kernels); "
            "use dtype='bfloat16' or 'float32' on CPU, or a CUDA device for float16."
        )
    return getattr(torch, name)


def module_devices(module) -> set:
    """Every device a module's parameters and buffers live on."""
    devices = {p.device for p in module.parameters()}
    devices |= {b.device for b in module.buffers()}
    return devices


def move_batch(batch: Any, device, dtype=None) -> Any:
    """Move every tensor in ``batch`` to ``device``, floating tensors also to ``dtype``.

    Dicts (and other mappings such as a tokenizer's ``BatchEncoding``), lists, tuples, named
    tuples and dataclasses are walked. Tensors already in place are not copied. Copies to a CUDA
    device are non-blocking (ordered on the stream); copies to the CPU are not, so their values
    are there when the call returns.
    """
    import torch

    device = device if isinstance(device, torch.device) else torch.device(device)
    non_blocking = device.type == "cuda"

    def move(x):
        if isinstance(x, torch.Tensor):
            if dtype is not None and x.is_floating_point() and x.dtype != dtype:
                return x.to(device=device, dtype=dtype, non_blocking=non_blocking)
            if x.device != device:
                return x.to(device, non_blocking=non_blocking)
            return x
        if isinstance(x, Mapping):
            moved = {k: move(v) for k, v in x.items()}
            if type(x) is dict:
                return moved
            try:
                return type(x)(moved)
            except TypeError:
                return moved
        if isinstance(x, tuple) and hasattr(x, "_fields"):  # a named tuple
            return type(x)(*(move(v) for v in x))
        if isinstance(x, (list, tuple)):
            return type(x)(move(v) for v in x)
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            fields = {f.name: move(getattr(x, f.name)) for f in dataclasses.fields(x) if f.init}
            return dataclasses.replace(x, **fields)
        return x

    return move(batch)
