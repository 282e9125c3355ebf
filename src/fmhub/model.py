"""The Model object: one type for every family."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ._device import module_devices, move_batch, resolve_device, resolve_dtype
from .errors import (
    DeviceError,
    FineTuneError,
    FmhubError,
    InputError,
    ManifestError,
    NonFiniteOutputError,
    PluginError,
)
from .generation import (
    GENERATION_TASKS,
    CallOptions,
    GenerationOptions,
    TextStream,
    parse_call_options,
)
from .spec import LoadOptions, ModelSpec, validate_model

if TYPE_CHECKING:
    from ._hub import Hub
    from .evaluation.report import EvalReport
    from .finetuning.loop import FineTuneResult
    from .finetuning.methods import Adapter

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
    :param call_options: The class per-call options are validated against (a subclass of
        :class:`fmhub.CallOptions`); None: :class:`fmhub.GenerationOptions` for the generation
        tasks (``text-generation``, ``text2text``), no per-call options otherwise.
    :param call_defaults: Defaults for those options from the checkpoint (its
        ``generation_config.json``); keys the options class does not have are ignored.
    :param modality: The modality the checkpoint turned out to have (``"image"``...), for a
        namespace whose specs cannot tell before loading (``hf:org/name``); None keeps the spec's.
    """

    module: Any
    task: str
    labels: Sequence[str] | None = None
    processor: Any = None
    placed: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    call_options: Any = None
    call_defaults: dict[str, Any] = field(default_factory=dict)
    modality: str | None = None


class Model:
    """A loaded model of any family.

    ``model(x)`` predicts one input, ``model.predict(xs)`` many, ``model.stream(x)`` yields text
    pieces as a generative model produces them; all three take per-call options
    (``model(x, max_new_tokens=20)``, see :class:`fmhub.GenerationOptions`). ``preprocess``/
    ``forward``/``postprocess`` run the stages by hand. The result type depends only on
    ``model.task`` (see :mod:`fmhub.results`).
    """

    default_batch_size = 32

    def __init__(self, hub: Hub, spec: ModelSpec, loaded: Loaded, options: LoadOptions):
        self.hub = hub
        if loaded.modality and loaded.modality != spec.modality:
            spec = spec.model_copy(update={"modality": loaded.modality})
        self.spec = spec
        self.options = options
        self.module = loaded.module
        self.task = options.task or loaded.task or spec.task
        self.labels = tuple(loaded.labels) if loaded.labels is not None else None
        self.processor = loaded.processor
        self.placed = loaded.placed
        self.info = dict(loaded.info)
        self.adapter: Adapter | None = None  # set by the core: fine-tuning, adapter loading
        self.quantized: str | None = None  # set by quantize()
        self.runtime: Any = None  # an ONNX Runtime forward stage (fmhub.export.OrtRunner)
        self._call_options = loaded.call_options
        self.call_defaults: dict[str, Any] = dict(loaded.call_defaults)
        self._owner = spec.plugin
        self._device = None
        self._dtype = None
        self._refresh_placement()

    # -- placement ------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        """The device inputs are sent to (the first parameter's, for a model spread by a plugin)."""
        return self._device

    @property
    def dtype(self) -> torch.dtype:
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
            raise DeviceError(
                "float16 is not supported on CPU; move with dtype='float32' or 'bfloat16'."
            )
        self.module.to(device=dev, dtype=dt)
        self._refresh_placement()
        return self

    # -- per-call options -------------------------------------------------------------------

    @property
    def call_options(self) -> type[CallOptions] | None:
        """The class of this model's per-call options (None: it takes none)."""
        if self._call_options is not None:
            return self._call_options
        return GenerationOptions if self.task in GENERATION_TASKS else None

    def parse_options(self, **options: Any) -> CallOptions | None:
        """Validate per-call options on top of the checkpoint's defaults.

        Returns the options object the stage hooks receive (None for a model without per-call
        options). An unknown or invalid option is a :class:`fmhub.CallOptionError` (an
        ``InputError``) naming the valid ones.
        """
        return parse_call_options(self.call_options, self.call_defaults, options, self.spec.id)

    def _options(self, options: Any) -> CallOptions | None:
        if options is None or isinstance(options, dict):
            return self.parse_options(**(options or {}))
        return options

    # -- stages ---------------------------------------------------------------------------------

    def _call(self, hook: str, **kwargs):
        """Call one of this model's owner-dispatched hooks: the one place model hooks are called."""
        return self.hub.call(hook, self._owner, self.spec.id, model=self, **kwargs)

    def _stage_error(self, hook: str, problem: str) -> PluginError:
        """A :class:`PluginError` blaming the plugin whose ``hook`` returned something wrong."""
        return stage_error(self.hub, self._owner, hook, self.spec.id, problem)

    def _missing(self, hook: str, error: type[Exception], cannot: str) -> Exception:
        """The error for a hook that gave nothing: not implemented, or implemented and None."""
        implemented = bool(self.hub.caller(hook, self._owner).get_hookimpls())
        why = f"its {hook} returned nothing" if implemented else f"it does not implement {hook}"
        return error(
            f"plugin {self._owner!r} cannot {cannot} {self.spec.id!r}: {why}; "
            f"implement {hook} — docs/hooks.md#{hook}."
        )

    def preprocess(self, inputs: Sequence[Any], options: Any = None) -> Any:
        """Raw inputs (a non-empty sequence) to one batch; ``options`` as :meth:`parse_options`
        returns them (or a dict of them; None: the defaults)."""
        if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence):
            raise InputError(
                f"preprocess takes a sequence of inputs, got {type(inputs).__name__}; "
                "wrap a single input in a list, or call model(x)."
            )
        if not inputs:
            raise InputError("preprocess got an empty sequence of inputs.")
        batch = self._call("fmhub_preprocess", inputs=inputs, options=self._options(options))
        if not _holds_array(batch):
            raise self._stage_error(
                "fmhub_preprocess",
                f"returned {_describe(batch)}, which holds "
                "no tensor or array; a batch is what forward feeds the module",
            )
        return batch

    def forward(
        self,
        batch: Any,
        *,
        grad: bool = False,
        options: Any = None,
        stream: Callable[[int, str], None] | None = None,
    ) -> Any:
        """Run the module on a batch; tensors follow the model's device and dtype.

        ``stream(index, piece)`` is called by a generative plugin with each piece of text of input
        ``index`` as it is decoded (see :meth:`stream`)."""
        if self.runtime is not None and not grad:  # the forward stage on ONNX Runtime
            return self.runtime(batch)
        batch = move_batch(batch, self._device, self._dtype)
        kw = {"options": self._options(options), "stream": stream}
        if grad:
            outputs = self._call("fmhub_forward", batch=batch, **kw)
        else:
            with torch.inference_mode():
                outputs = self._call("fmhub_forward", batch=batch, **kw)
        if not _holds_array(outputs):
            raise self._stage_error(
                "fmhub_forward",
                f"returned {_describe(outputs)} instead of "
                "the module's outputs (no tensor or array in it)",
            )
        return outputs

    def postprocess(self, outputs: Any, batch: Any, options: Any = None) -> list[Any]:
        """Raw outputs to one typed result per input of ``batch``, checked against the task's
        result type (:mod:`fmhub.results`); a result with NaN or infinite numbers raises
        :class:`fmhub.NonFiniteOutputError`."""
        return self._postprocess(outputs, batch, None, options)

    def _postprocess(
        self, outputs: Any, batch: Any, positions: Sequence[int] | None, options: Any = None
    ) -> list[Any]:
        from .results import inspect_result

        results = self._call(
            "fmhub_postprocess", outputs=outputs, batch=batch, options=self._options(options)
        )
        if (
            results is None
            or isinstance(results, (str, bytes, Mapping))
            or not isinstance(results, Iterable)
        ):
            raise self._stage_error(
                "fmhub_postprocess",
                f"returned {_describe(results)}, not a list with one result per input",
            )
        results = list(results)
        positions = range(len(results)) if positions is None else positions
        if len(results) != len(positions):
            raise self._stage_error(
                "fmhub_postprocess", f"returned {len(results)} results for {len(positions)} inputs"
            )
        for pos, result in zip(positions, results):
            problem = inspect_result(self.task, result)
            if problem is None:
                continue
            kind, detail = problem
            if kind == "non-finite":
                err = NonFiniteOutputError(
                    f"model {self.spec.id!r} produced {detail} (plugin {self._owner!r}, stage "
                    "'postprocess'); fmhub never returns such a result. If the model runs in "
                    "float16, load it with dtype='float32'; else check its weights.",
                    index=pos,
                )
                err.plugin, err.stage = self._owner, "postprocess"
                raise err
            raise self._stage_error("fmhub_postprocess", f"returned, for input {pos}, {detail}")
        return results

    # -- fine-tuning stages ---------------------------------------------------------------------

    def finetune_targets(self, method: str) -> list[str] | None:
        """The owner plugin's default targets for ``method`` (``fmhub_finetune_targets``): module
        name suffixes, or None to let the method decide."""
        targets = self._call("fmhub_finetune_targets", method=method)
        return None if targets is None else list(targets)

    def attach_head(self, labels: Sequence[str]) -> list[str]:
        """Give the model a fresh classification head for ``labels`` (``fmhub_attach_head``), then
        set ``task`` and ``labels`` and place the new modules; returns the head module names."""
        labels = list(labels)
        head = self._call("fmhub_attach_head", labels=labels)
        if not head:
            raise self._missing(
                "fmhub_attach_head", FineTuneError, "attach a classification head to"
            )
        self.task = "classification"
        self.labels = tuple(labels)
        self.module.to(device=self._device, dtype=self._dtype)
        return list(head)

    def training_loss(self, outputs: Any, targets: Any) -> Any:
        """The loss of a batch (``fmhub_training_loss``), from forward outputs and class ids."""
        loss = self._call("fmhub_training_loss", outputs=outputs, targets=targets)
        if loss is None:
            raise self._missing("fmhub_training_loss", FineTuneError, "compute a training loss for")
        return loss

    def training_batch(self, examples: list[Any]) -> Any:
        """A generative model's training batch (``fmhub_training_batch``): inputs and ``labels``,
        -100 wherever no loss is taken."""
        batch = self._call("fmhub_training_batch", examples=examples)
        if batch is None:
            raise self._missing(
                "fmhub_training_batch", FineTuneError, "fine-tune as a generative model"
            )
        return batch

    def _save_files(self, path: str) -> None:
        """Write the family's own files into ``path`` (``fmhub_save``); see :meth:`save`."""
        if not self._call("fmhub_save", path=path):
            raise self._missing("fmhub_save", ManifestError, "save")

    # -- prediction -----------------------------------------------------------------------------

    def __call__(self, x: Any, **options: Any) -> Any:
        """Predict one input; ``options`` are per-call options (``max_new_tokens=20``...)."""
        return self.predict([x], batch_size=1, progress=False, **options)[0]

    def predict(
        self,
        inputs: Iterable[Any],
        batch_size: int | None = None,
        progress: bool | None = None,
        **options: Any,
    ) -> list[Any]:
        """Predict many inputs in batches; results come back in input order.

        ``progress=None`` shows a bar on a terminal once the call has run a couple of seconds.
        An error about one input (:class:`fmhub.InputError`, :class:`fmhub.NonFiniteOutputError`)
        names its position in ``inputs`` (``err.index``), whatever order batches were formed in.
        ``options`` are per-call options, validated once for the whole call (see
        :meth:`parse_options`).
        """
        from .inputs import input_list

        opts = self.parse_options(**options)
        # options only when there are any, so code that wraps the stages stays as it was
        extra, kw = ((), {}) if opts is None else ((opts,), {"options": opts})

        items = input_list(inputs, "predict")
        if not items:
            return []
        bs = self.default_batch_size if batch_size is None else batch_size
        if not isinstance(bs, int) or bs < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}.")
        order = self._call("fmhub_batch_order", inputs=items) if len(items) > 1 else None
        try:
            order = list(range(len(items))) if order is None else [int(i) for i in order]
        except (TypeError, ValueError):
            order = []
        if sorted(order) != list(range(len(items))):
            raise self._stage_error(
                "fmhub_batch_order",
                f"returned a batch order that is not a permutation of range({len(items)})",
            )
        results: list[Any] = [None] * len(items)
        bar = _progress(len(items), progress)
        if self.module.training:
            self.module.eval()
        try:
            for start in range(0, len(order), bs):
                idx = order[start : start + bs]
                try:
                    batch = self.preprocess([items[i] for i in idx], *extra)
                    outs = self._postprocess(self.forward(batch, **kw), batch, idx, *extra)
                except FmhubError as exc:
                    _in_caller_positions(exc, idx)
                    raise
                for i, r in zip(idx, outs):
                    results[i] = r
                if bar is not None:
                    bar.update(len(idx))
        finally:
            if bar is not None:
                bar.close()
        return results

    def stream(self, x: Any, **options: Any) -> TextStream:
        """Generate for one input, yielding text pieces as they are decoded.

        Returns a :class:`fmhub.TextStream`: iterate it for the pieces (they concatenate to the
        result's ``text``); its ``result`` (a ``Generation``, a ``Transcription``...) is set once
        it is exhausted; ``close()`` stops early. Bad inputs and options raise here, before any
        piece. Every stage runs through its hooks, so cross-cutting wrappers still apply.
        """
        opts = self.parse_options(**options)
        if self.module.training:
            self.module.eval()
        batch = self.preprocess([x], opts)
        return TextStream(self, batch, opts)

    # -- persistence ----------------------------------------------------------------------------

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the model to a folder ``fmhub.load(path)`` reads back; returns its absolute path.

        The folder is written beside ``path`` and swapped into place atomically; its
        ``fmhub.json`` records the size and SHA-256 of every file, checked when it loads. ``path``
        must be new, an empty folder, or (with ``overwrite=True``) a folder fmhub saved: an
        existing file, a folder holding anything else, and the working folder are refused with
        :class:`fmhub.DestinationError`. A fine-tuned model with an adapter is saved as an adapter
        folder (see docs/finetuning.md).
        """
        from .manifest import as_destination

        as_destination(path)  # a non-path or empty path is an InputError before anything else
        if self.quantized:
            raise InputError(
                f"A quantized model is not saved; save the float model and pass "
                f"quantize={self.quantized!r} when loading it."
            )
        if self.adapter is not None:
            from .finetuning.adapter import save_adapter

            return save_adapter(self, path, overwrite=overwrite)
        from .manifest import save_model

        return save_model(self, path, overwrite=overwrite)

    # -- fine-tuning and inference variants ----------------------------------------------------

    def finetune(self, train: Any, eval: Any = None, **config: Any) -> FineTuneResult:
        """Fine-tune in place; see :func:`fmhub.finetune`."""
        from .finetuning import finetune

        return finetune(self, train, eval=eval, **config)

    def evaluate(
        self,
        data: Any,
        metrics: Sequence[str] | None = None,
        batch_size: int | None = None,
        **options: Any,
    ) -> EvalReport:
        """Measure the model on labelled data; see :func:`fmhub.evaluate`."""
        from .evaluation import evaluate

        return evaluate(self, data, metrics=metrics, batch_size=batch_size, **options)

    def export(self, path: str | os.PathLike, format: str = "onnx", **kwargs: Any) -> Path:
        """Export the forward stage (pooling included, an adapter merged) to a folder that
        ``fmhub.load`` runs on ONNX Runtime; parity is checked first (see docs/export.md)."""
        from .export import export

        return export(self, path, format, **kwargs)

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


def _in_caller_positions(exc: FmhubError, idx: list[int]) -> None:
    """Renumber an error about input ``i`` of a batch to the position in the caller's list."""
    index = getattr(exc, "index", None)
    if isinstance(exc, (InputError, NonFiniteOutputError)) and index is not None:
        if not getattr(exc, "_renumbered", False) and 0 <= index < len(idx):
            exc.index, exc._renumbered = idx[index], True
    elif isinstance(exc, InputError) and idx != list(range(len(idx))):
        # a plugin that wrote a position into its message counted within this batch
        exc.add_note(
            f"(the batch held inputs {_positions(idx)} of the list passed to predict, "
            "in that order)"
        )


def _positions(idx: list[int]) -> str:
    shown = ", ".join(map(str, idx[:10]))
    return shown + (f", ... ({len(idx)} in all)" if len(idx) > 10 else "")


def _holds_array(batch: Any, depth: int = 0) -> bool:
    """Whether a batch holds a tensor or array (dicts, sequences and dataclasses are walked)."""
    import dataclasses

    if isinstance(batch, torch.Tensor) or (hasattr(batch, "__array__") and hasattr(batch, "shape")):
        return True
    if depth > 4 or isinstance(batch, (str, bytes)):
        return False
    if isinstance(batch, Mapping):
        return any(_holds_array(v, depth + 1) for v in batch.values())
    if isinstance(batch, (list, tuple)):
        return any(_holds_array(v, depth + 1) for v in batch[:64])
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        fields = dataclasses.fields(batch)
        return any(_holds_array(getattr(batch, f.name), depth + 1) for f in fields)
    return False


def _describe(value: Any) -> str:
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{type(value).__name__} {text}" if value is not None else "None"


def stage_error(hub: Hub, owner: str, hook: str, model_id: str | None, problem: str) -> PluginError:
    """A :class:`PluginError` naming the plugin and stage whose hook returned ``problem``, and the
    plugins wrapping that hook (their wrapper may have changed what the owner returned)."""
    stage = hook.removeprefix("fmhub_")
    names = [hub.pm.get_name(i.plugin) for i in hub.caller(hook, owner).get_hookimpls()]
    wrappers = sorted({n for n in names if n and n != owner})
    by = f" (wrapped by plugin {', '.join(map(repr, wrappers))})" if wrappers else ""
    where = f"stage {stage!r}" + (f", model {model_id!r}" if model_id else "")
    err = PluginError(
        f"plugin {owner!r}{by} {problem} ({where}); see docs/hooks.md#{hook} for "
        "what the hook must return."
    )
    err.plugin, err.stage = owner, stage
    return err


def _progress(total: int, progress: bool | None):
    if progress is False or total < 2:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(
        total=total,
        unit="input",
        delay=0 if progress else PROGRESS_DELAY,
        disable=None if progress is None else False,
        leave=False,
    )


def load_options(hub: Hub, spec: ModelSpec, options: dict[str, Any]) -> LoadOptions:
    ns = hub.registry.namespaces[spec.namespace]
    return validate_model(ns.options, {**spec.options, **options}, f"options for {spec.id!r}")


def _loaded_problem(loaded: Any) -> str | None:
    """What is wrong with a value ``fmhub_load`` returned, or None."""
    if not isinstance(loaded, Loaded):
        return f"returned {_describe(loaded)}, not an fmhub.Loaded(module=..., task=...)"
    if not isinstance(loaded.module, torch.nn.Module):
        return (
            f"returned a Loaded whose module is {_describe(loaded.module)}, not a torch.nn.Module"
        )
    if loaded.task is not None and not (isinstance(loaded.task, str) and loaded.task):
        return f"returned a Loaded whose task is {_describe(loaded.task)}, not a task name"
    labels = loaded.labels
    if labels is not None and (
        isinstance(labels, (str, bytes))
        or not isinstance(labels, Sequence)
        or not all(isinstance(x, str) for x in labels)
    ):
        return f"returned a Loaded whose labels are {_describe(labels)}, not a sequence of str"
    if not isinstance(loaded.info, Mapping):
        return f"returned a Loaded whose info is {_describe(loaded.info)}, not a dict"
    return None


def load_model(hub: Hub, spec: ModelSpec, options: dict[str, Any]) -> Model:
    """Validate options, resolve the device, call the owner's load hook and place the module."""
    opts = load_options(hub, spec, options)
    device = resolve_device(opts.device)
    dtype = resolve_dtype(opts.dtype, device)
    loaded = hub.call(
        "fmhub_load", spec.plugin, spec.id, spec=spec, options=opts, device=device, dtype=dtype
    )
    problem = _loaded_problem(loaded)
    if problem:
        raise stage_error(hub, spec.plugin, "fmhub_load", spec.id, problem)
    model = Model(hub, spec, loaded, opts)
    if not loaded.placed:
        model.module.to(device=device, dtype=dtype)
        model._refresh_placement()
    model.module.eval()
    if opts.runtime == "onnxruntime":  # quantize='int8': ONNX Runtime's own int8, not torch's
        from .export import attach_onnx, exported_folder

        return attach_onnx(model, exported_folder(spec.path), quantize=opts.quantize)
    if opts.quantize:
        model.quantize(opts.quantize)
    return model
