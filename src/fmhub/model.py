"""The Model object: one type for every family."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ._device import module_devices, move_batch, resolve_device, resolve_dtype
from .errors import DeviceError, InputError, PluginError
from .spec import LoadOptions, ModelSpec, validate_model

if TYPE_CHECKING:
    from ._hub import Hub

__all__ = ["Loaded", "Model", "load_model"]

#: Show a progress bar once a predict call has run this many seconds (and stderr is a terminal).
PROGRESS_DELAY = 2.0


@dataclass
class Loaded:
    """What a plugin's ``fmhub_load`` returns.

    :param module: The torch module, in eval mode.
    :param task: The task the module does (``"embedding"``, ``"classification"``, ...).
    :param labels: Class names for classification models (index i is class i).
    :param processor: Whatever preprocessing needs (a tokenizer, a transform, a bundle...).
    :param placed: True when the plugin placed the module itself (e.g. across several devices);
        the core then never moves it.
    :param info: JSON-ready facts saved in manifests (library versions, resolved revision...).
    """

    module: Any
    task: str
    labels: Sequence[str] | None = None
    processor: Any = None
    placed: bool = False
    info: dict[str, Any] = field(default_factory=dict)


class Model:
    """A loaded model of any family.

    ``model(x)`` predicts one input, ``model.predict(xs)`` many; ``preprocess``/``forward``/
    ``postprocess`` run the stages by hand. The result type depends only on ``model.task``
    (see :mod:`fmhub.results`).
    """

    default_batch_size = 32

    def __init__(self, hub: Hub, spec: ModelSpec, loaded: Loaded, options: LoadOptions):
        self.hub = hub
        self.spec = spec
        self.options = options
        self.module = loaded.module
        self.task = options.task or loaded.task or spec.task
        self.labels = tuple(loaded.labels) if loaded.labels is not None else None
        self.processor = loaded.processor
        self.placed = loaded.placed
        self.info = dict(loaded.info)
        self.adapter: dict[str, Any] | None = None  # set by fine-tuning / adapter loading
        self.quantized: str | None = None  # set by quantize()
        self._owner = spec.plugin
        self._device = None
        self._dtype = None
        self._refresh_placement()

    # -- placement ------------------------------------------------------------------------------

    @property
    def device(self):
        """The device inputs are sent to (the first parameter's, for a model spread by a plugin)."""
        return self._device

    @property
    def dtype(self):
        """The floating dtype of the model's parameters."""
        return self._dtype

    def _refresh_placement(self) -> None:
        params = [p for p in self.module.parameters()]
        floats = [p for p in params if p.is_floating_point()]
        self._device = params[0].device if params else torch.device("cpu")
        self._dtype = floats[0].dtype if floats else torch.float32

    def to(self, device: Any = None, dtype: Any = None) -> Model:
        """Move the model; ``None`` keeps the current device or dtype. Returns ``self``."""
        if self.placed:
            raise DeviceError(
                f"Model {self.spec.id!r} was spread over {sorted(map(str, module_devices(self.module)))} "
                "by its plugin (device_map) and is never moved; load it again with other options."
            )
        if self.quantized:
            raise DeviceError(
                f"Model {self.spec.id!r} is quantized ({self.quantized}) for CPU and cannot move; "
                "load it again without quantize to use another device or dtype."
            )
        dev = resolve_device(device) if device is not None else self._device
        dt = resolve_dtype(dtype, dev) if dtype is not None else self._dtype
        if dt == torch.float16 and dev.type == "cpu":
            raise DeviceError("float16 is not supported on CPU; move with dtype='float32' or 'bfloat16'.")
        self.module.to(device=dev, dtype=dt)
        self._refresh_placement()
        return self

    # -- stages ---------------------------------------------------------------------------------

    def _call(self, hook: str, **kwargs):
        return self.hub.call(hook, self._owner, self.spec.id, model=self, **kwargs)

    def preprocess(self, inputs: Sequence[Any]) -> Any:
        """Raw inputs (a non-empty sequence) to one batch."""
        if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence):
            raise InputError(
                f"preprocess takes a sequence of inputs, got {type(inputs).__name__}; "
                "wrap a single input in a list, or call model(x)."
            )
        if not inputs:
            raise InputError("preprocess got an empty sequence of inputs.")
        return self._call("fmhub_preprocess", inputs=inputs)

    def forward(self, batch: Any, *, grad: bool = False) -> Any:
        """Run the module on a batch; tensors follow the model's device and dtype."""
        batch = move_batch(batch, self._device, self._dtype)
        if grad:
            return self._call("fmhub_forward", batch=batch)
        with torch.inference_mode():
            return self._call("fmhub_forward", batch=batch)

    def postprocess(self, outputs: Any, batch: Any) -> list[Any]:
        """Raw outputs to one typed result per input of ``batch``."""
        results = self._call("fmhub_postprocess", outputs=outputs, batch=batch)
        if results is None:
            raise PluginError(f"plugin {self._owner!r} returned no results from postprocess")
        return list(results)

    # -- prediction -----------------------------------------------------------------------------

    def __call__(self, x: Any) -> Any:
        """Predict one input."""
        return self.predict([x], batch_size=1, progress=False)[0]

    def predict(
        self, inputs: Iterable[Any], batch_size: int | None = None, progress: bool | None = None
    ) -> list[Any]:
        """Predict many inputs in batches; results come back in input order.

        ``progress=None`` shows a bar on a terminal once the call has run a couple of seconds.
        """
        items = list(inputs) if not isinstance(inputs, (str, bytes)) else None
        if items is None:
            raise InputError("predict takes a list of inputs; for one input call model(x).")
        if not items:
            return []
        bs = self.default_batch_size if batch_size is None else batch_size
        if not isinstance(bs, int) or bs < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}.")
        order = self._call("fmhub_batch_order", inputs=items) if len(items) > 1 else None
        order = list(range(len(items))) if order is None else list(order)
        if sorted(order) != list(range(len(items))):
            raise PluginError(f"plugin {self._owner!r} returned a batch order that is not a permutation")
        results: list[Any] = [None] * len(items)
        bar = _progress(len(items), progress)
        if self.module.training:
            self.module.eval()
        try:
            for start in range(0, len(order), bs):
                idx = order[start : start + bs]
                batch = self.preprocess([items[i] for i in idx])
                outs = self.postprocess(self.forward(batch), batch)
                if len(outs) != len(idx):
                    raise PluginError(
                        f"plugin {self._owner!r} returned {len(outs)} results for {len(idx)} inputs"
                    )
                for i, r in zip(idx, outs):
                    results[i] = r
                if bar is not None:
                    bar.update(len(idx))
        finally:
            if bar is not None:
                bar.close()
        return results

    # -- persistence ----------------------------------------------------------------------------

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the model to a folder ``fmhub.load(path)`` reads back; atomic (temp folder, rename).

        A fine-tuned model with an adapter is saved as an adapter folder (see fine-tuning docs).
        """
        from .manifest import save_model

        if self.quantized:
            raise InputError(
                f"A quantized model is not saved; save the float model and pass "
                f"quantize={self.quantized!r} when loading it."
            )
        return save_model(self, Path(path))

    # -- fine-tuning and inference variants ----------------------------------------------------

    def finetune(self, train: Any, eval: Any = None, **config: Any):
        """Fine-tune in place; see :func:`fmhub.finetune`."""
        from .finetuning import finetune

        return finetune(self, train, eval=eval, **config)

    def merge(self) -> Model:
        """Fold a LoRA adapter into the base weights (faster inference, same outputs)."""
        from .finetuning.adapter import merge

        return merge(self)

    def quantize(self, mode: str = "int8") -> Model:
        """Quantize for CPU inference (see docs/quantization.md for the accuracy cost)."""
        from .quantize import quantize

        return quantize(self, mode)

    def __repr__(self) -> str:
        return (
            f"<fmhub.Model {self.spec.id} task={self.task} device={self.device} "
            f"dtype={str(self.dtype).removeprefix('torch.')}>"
        )


def _progress(total: int, progress: bool | None):
    if progress is False or total < 2:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, unit="input", delay=0 if progress else PROGRESS_DELAY,
                disable=None if progress is None else False, leave=False)


def load_options(hub: Hub, spec: ModelSpec, options: dict[str, Any]) -> LoadOptions:
    ns = hub.registry.namespaces[spec.namespace]
    return validate_model(ns.options, {**spec.options, **options}, f"options for {spec.id!r}")


def load_model(hub: Hub, spec: ModelSpec, options: dict[str, Any]) -> Model:
    """Validate options, resolve the device, call the owner's load hook and place the module."""
    opts = load_options(hub, spec, options)
    device = resolve_device(opts.device)
    dtype = resolve_dtype(opts.dtype, device)
    loaded = hub.call("fmhub_load", spec.plugin, spec.id, spec=spec, options=opts,
                      device=device, dtype=dtype)
    if loaded is None:
        raise PluginError(f"plugin {spec.plugin!r} returned nothing from load for {spec.id!r}")
    model = Model(hub, spec, loaded, opts)
    if not loaded.placed:
        model.module.to(device=device, dtype=dtype)
        model._refresh_placement()
    model.module.eval()
    if opts.quantize:
        model.quantize(opts.quantize)
    return model
