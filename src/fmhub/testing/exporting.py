"""Test helpers for suites that export many tiny models to ONNX (imports torch when used)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

__all__ = ["shared_torchlib_registry"]


@contextlib.contextmanager
def shared_torchlib_registry() -> Iterator[None]:
    """Within the block, ``torch.onnx.export(..., dynamo=True)`` builds its table of ATen -> ONNX
    translations once per opset instead of on every export.

    torch builds that table (``ONNXRegistry.from_torchlib``: onnxscript's ~1000 torchlib functions,
    each parsed from its source) anew for every export, about 0.5 s of CPU, half of what a tiny
    model's export costs. The table is a function of the opset alone, and nothing registers into
    it unless a ``custom_translation_table`` is passed (fmhub passes none), so exports within the
    block get the same table they would build; everything else (``torch.export``, the
    decompositions, the translation, onnxscript's optimizer, fmhub's fusion and parity check) runs
    on every export. Where torch has no such method, the block changes nothing.
    """
    try:
        from torch.onnx._internal.exporter._registration import ONNXRegistry
    except ImportError:
        yield
        return
    original = ONNXRegistry.__dict__.get("from_torchlib")
    if not isinstance(original, classmethod):
        yield
        return
    build = original.__func__

    @functools.cache
    def one_per_opset(cls: type, *args: object, **kwargs: object) -> object:
        return build(cls, *args, **kwargs)

    ONNXRegistry.from_torchlib = classmethod(one_per_opset)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        ONNXRegistry.from_torchlib = original  # type: ignore[method-assign]
