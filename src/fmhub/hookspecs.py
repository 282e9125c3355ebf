"""The fmhub hook contract.

Hooks come in three tiers:

* **Registration hooks** (``fmhub_register_*``) are called once per plugin when a :class:`~fmhub.Hub`
  starts. They hand objects to a ``register`` callback and must stay cheap: no torch, no model
  library import.
* **Owner-dispatched hooks** (resolution, the stages of a model, fine-tuning) are called only on
  the plugin that serves the model's namespace, plus every plugin that serves no namespace. A model
  plugin therefore never checks "is this model mine?", and a cross-cutting plugin (autocast,
  timing, caching) wraps a stage of *every* model with ``@hookimpl(wrapper=True)``.
* **Broadcast hooks** (``fmhub_claim_path``) are asked of every plugin.

All hooks are called with keyword arguments; an implementation may accept a subset of them, so a
hook can gain arguments without breaking plugins. Hooks are only ever added, never changed.

Every docstring follows one template: a summary, what the return value means, whether the first
non-None result stops the call, then the parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .evaluation.base import Metric
    from .export import ExportSpec
    from .finetuning.methods import FineTuneMethod
    from .generation import CallOptions
    from .model import Loaded, Model
    from .spec import LoadOptions, ModelSpec, Namespace

__all__ = ["hookimpl", "hookspec", "BROADCAST", "OWNER_DISPATCHED", "REGISTRATION"]

hookspec = pluggy.HookspecMarker("fmhub")
hookimpl = pluggy.HookimplMarker("fmhub")

#: Hooks called once per plugin at start-up, each plugin isolated from the others' failures.
REGISTRATION = (
    "fmhub_register_namespaces",
    "fmhub_register_models",
    "fmhub_register_finetune_methods",
    "fmhub_register_metrics",
)

#: Hooks called on the namespace owner plus the plugins that serve no namespace.
OWNER_DISPATCHED = (
    "fmhub_resolve_model",
    "fmhub_load",
    "fmhub_batch_order",
    "fmhub_preprocess",
    "fmhub_forward",
    "fmhub_postprocess",
    "fmhub_save",
    "fmhub_finetune_targets",
    "fmhub_attach_head",
    "fmhub_training_loss",
    "fmhub_training_batch",
    "fmhub_export_spec",
)

#: Hooks asked of every plugin.
BROADCAST = ("fmhub_claim_path",)


# ---------------------------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------------------------


@hookspec
def fmhub_register_namespaces(register: Callable[[Namespace], None]) -> None:
    """Register the ``namespace:`` prefixes this plugin serves.

    The plugin that registers a namespace owns it: every model whose id starts with it is loaded,
    run and fine-tuned by that plugin's owner-dispatched hooks. Two plugins registering the same
    namespace make its models ambiguous until one is disabled.

    Return value: ignored.

    :param register: Call with a :class:`fmhub.Namespace` for each namespace served.

    .. versionadded:: 0.1
    """


@hookspec
def fmhub_register_models(register: Callable[[ModelSpec], None]) -> None:
    """Register known models: ids, aliases, task, modality, preprocessing contract, provenance.

    Must not import torch or the plugin's model library: ``fmhub list`` and ``fmhub info`` call it.
    A plugin may register models in a namespace another plugin serves (to add aliases, say); the
    namespace owner still runs them.

    Return value: ignored.

    :param register: Call with a :class:`fmhub.ModelSpec` for each model.

    .. versionadded:: 0.1
    """


@hookspec
def fmhub_register_finetune_methods(register: Callable[[FineTuneMethod], None]) -> None:
    """Register fine-tuning methods (``lora``, ``ia3``, ... are registered this way by the core).

    Return value: ignored.

    :param register: Call with a :class:`fmhub.FineTuneMethod` instance for each method.

    .. versionadded:: 0.1
    """


@hookspec
def fmhub_register_metrics(register: Callable[[Metric], None]) -> None:
    """Register evaluation metrics (accuracy, F1, WER, ... are registered this way by the core).

    A metric is named per evaluation task; when two plugins register one name for one task, the
    plugin registered last wins, so a plugin can replace a built-in. Must not import torch.

    Return value: ignored.

    :param register: Call with a :class:`fmhub.evaluation.Metric` for each metric.

    .. versionadded:: 0.2
    """


# ---------------------------------------------------------------------------------------------
# Resolution
# ---------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def fmhub_resolve_model(namespace: str, name: str) -> ModelSpec | None:
    """Turn a name in an *open* namespace that no registered model matches into a spec.

    Owner-dispatched. Called for ``hf:org/repo`` style ids that were not registered. Must not
    import torch or the model library; validate what can be validated cheaply.

    Return value: a :class:`fmhub.ModelSpec` with ``id == f"{namespace}:{name}"``, or None when the
    name cannot be one of this namespace's models (fmhub then reports an unknown model).

    Stops at first non-None result.

    :param namespace: The namespace, without the colon.
    :param name: The rest of the id.

    .. versionadded:: 0.1
    """


@hookspec
def fmhub_claim_path(path: str) -> ModelSpec | None:
    """Recognise a local folder or file in this plugin's family format.

    Broadcast: asked of every plugin, for paths that were not saved by fmhub (those carry an
    ``fmhub.json`` manifest and need no claim). Two plugins claiming one path is an error that
    asks the caller to prefix the path with a namespace.

    Return value: a :class:`fmhub.ModelSpec` in one of the plugin's namespaces with ``path`` set,
    or None when the path is not in this plugin's format.

    :param path: Absolute path of the folder or file.

    .. versionadded:: 0.1
    """


# ---------------------------------------------------------------------------------------------
# The stages of a model
# ---------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def fmhub_load(spec: ModelSpec, options: LoadOptions, device: Any, dtype: Any) -> Loaded | None:
    """Build the model: weights, its torch module and whatever preprocessing needs.

    Owner-dispatched. The core then places the module on ``options.device`` / ``options.dtype``
    unless the plugin placed it itself (``Loaded.placed``, e.g. an accelerate ``device_map``).
    When ``spec.path`` is set the model comes from that local folder or file, which may be one
    written by this plugin's :func:`fmhub_save`, and from nowhere else: a load option naming other
    weights (``checkpoint=``, replayed from the saved manifest or given) must not override them.

    Return value: a :class:`fmhub.Loaded` with the module in eval mode.

    Stops at first non-None result.

    :param spec: The resolved spec.
    :param options: Validated options, an instance of the namespace's ``options`` class.
    :param device: The ``torch.device`` the core resolved from ``options.device`` (for plugins
        that place the module themselves).
    :param dtype: The ``torch.dtype`` the core resolved from ``options.dtype``.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def fmhub_batch_order(model: Model, inputs: Sequence[Any]) -> list[int] | None:
    """Choose the order in which ``predict`` batches its inputs (e.g. sorted by length).

    Owner-dispatched. Results are always returned in input order whatever this returns.

    Return value: a permutation of ``range(len(inputs))``, or None for input order.

    Stops at first non-None result.

    :param model: The model.
    :param inputs: Every input of the ``predict`` call.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def fmhub_preprocess(model: Model, inputs: Sequence[Any], options: CallOptions | None) -> Any:
    """Turn raw inputs into one batch the forward stage takes.

    Owner-dispatched. Bad inputs raise ``fmhub.InputError(detail, index=i)`` naming the fix, with
    ``i`` the position in ``inputs`` (the helpers of :mod:`fmhub.inputs` do; predict renumbers it
    to the caller's list). The batch is usually a dict of CPU tensors plus metadata; the core moves every tensor in it
    (also inside lists, tuples and dicts) to the model's device, and floating ones to its dtype.

    Return value: the batch, holding at least one tensor or array.

    Stops at first non-None result.

    :param model: The model.
    :param inputs: One batch of raw inputs, at least one.
    :param options: The validated per-call options (``model(x, max_new_tokens=20)``), an instance
        of ``model.call_options`` (e.g. :class:`fmhub.GenerationOptions`), or None for a model
        that takes none.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 ``options`` added.
    """


@hookspec(firstresult=True)
def fmhub_forward(
    model: Model, batch: Any, options: CallOptions | None, stream: Callable[[int, str], None] | None
) -> Any:
    """Run the torch module on a batch that is already on the model's device.

    Owner-dispatched. The core calls it under ``torch.inference_mode()`` for prediction and with
    gradients during fine-tuning (``model.module.training`` tells which).

    Return value: the raw outputs (tensors) that postprocess and the training loss take.

    Stops at first non-None result.

    :param model: The model.
    :param batch: The output of :func:`fmhub_preprocess`, moved to the device.
    :param options: The validated per-call options, as :func:`fmhub_preprocess` got them.
    :param stream: None, or (for ``model.stream``) a callback ``stream(index, piece)`` a
        generative plugin calls with each new piece of text of input ``index`` as it is decoded;
        the pieces must add up to the result's text. It raises when the consumer stopped
        listening: let that propagate (it ends the generation).

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 ``options`` and ``stream`` added.
    """


@hookspec(firstresult=True)
def fmhub_postprocess(
    model: Model, outputs: Any, batch: Any, options: CallOptions | None
) -> list[Any] | None:
    """Turn raw outputs into one typed result per input (see :mod:`fmhub.results`).

    Owner-dispatched. The result type depends only on ``model.task``, never on the family.

    Return value: a list with one result per input of the batch, in batch order, each of the
    task's result type and holding only finite numbers (the core checks).

    Stops at first non-None result.

    :param model: The model.
    :param outputs: The output of :func:`fmhub_forward`.
    :param batch: The batch it was computed from.
    :param options: The validated per-call options, as :func:`fmhub_preprocess` got them.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 ``options`` added.
    """


@hookspec(firstresult=True)
def fmhub_save(model: Model, path: str) -> bool | None:
    """Write the model into ``path`` in the family's own format, so ``fmhub_load`` can read it.

    Owner-dispatched. ``path`` is a fresh temporary folder; the core writes ``fmhub.json`` beside
    the plugin's files and renames the folder into place, so a save is atomic.

    Return value: True once written.

    Stops at first non-None result.

    :param model: The model.
    :param path: The folder to write into.

    .. versionadded:: 0.1
    """


# ---------------------------------------------------------------------------------------------
# Fine-tuning
# ---------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def fmhub_finetune_targets(model: Model, method: str) -> list[str] | None:
    """Name the modules a parameter-efficient method adapts by default for this architecture.

    Owner-dispatched. Names are module-name suffixes as PEFT's ``target_modules`` takes them
    (``["query", "value"]``) and must never match the classification head.

    Return value: a list of module-name suffixes, or None to let the method decide (for LoRA:
    every ``nn.Linear`` outside the head).

    Stops at first non-None result.

    :param model: The model.
    :param method: The method name (``"lora"``, ``"ia3"``, a third party's).

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def fmhub_attach_head(model: Model, labels: Sequence[str]) -> list[str] | None:
    """Give the model a fresh classification head for ``labels`` (or resize the one it has).

    Owner-dispatched. Replaces modules inside ``model.module``, or ``model.module`` itself (e.g. an
    encoder wrapped in a ``*ForSequenceClassification``), so that forward yields one logit per
    label. The core sets ``model.task`` to ``"classification"`` and ``model.labels`` afterwards.

    Return value: the dotted names of the head modules; they are trained and saved in full and
    never wrapped by an adapter.

    Stops at first non-None result.

    :param model: The model.
    :param labels: The class names, index i being class id i.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def fmhub_training_batch(model: Model, examples: Sequence[Any]) -> Any:
    """Turn training examples of a generative model into one batch that carries its targets.

    Owner-dispatched. Called instead of :func:`fmhub_preprocess` when a model of a generation task
    (``text-generation``, ``text2text``, ...) is fine-tuned: ``examples`` are
    ``("pair", prompt, completion)`` tuples or ``("chat", messages)`` tuples (see
    :mod:`fmhub.finetuning.data`). The batch is a dict of CPU tensors whose ``"labels"`` entry
    holds the target token ids, ``-100`` wherever no loss is taken (prompt, user turns, padding);
    the core passes it to :func:`fmhub_forward` in training mode, then ``batch["labels"]`` as
    ``targets`` to :func:`fmhub_training_loss`. Bad examples raise :class:`fmhub.InputError`.

    Return value: the batch, or None when the plugin cannot fine-tune this model generatively.

    Stops at first non-None result.

    :param model: The model.
    :param examples: One batch of training examples.

    .. versionadded:: 0.2
    """


@hookspec(firstresult=True)
def fmhub_training_loss(model: Model, outputs: Any, targets: Any) -> Any:
    """Compute the training loss of a batch.

    Owner-dispatched.

    Return value: a scalar tensor with gradients.

    Stops at first non-None result.

    :param model: The model.
    :param outputs: The output of :func:`fmhub_forward` in training mode.
    :param targets: A ``torch.long`` tensor of class ids on the model's device; for a generative
        model, the ``labels`` of :func:`fmhub_training_batch` (token ids, ``-100`` ignored).

    .. versionadded:: 0.1
    """


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def fmhub_export_spec(model: Model) -> ExportSpec | None:
    """Describe the model's forward stage for export to ONNX.

    Owner-dispatched. The module of the spec takes the batch's tensors named by ``input_names``
    (as ``fmhub_preprocess`` gives them) in order and returns exactly what ``fmhub_forward``
    returns for that batch (pooling and normalisation included), so the exported graph runs behind
    the plugin's own preprocess and postprocess. ``model`` is already on CPU in float32 with any
    adapter merged.

    Return value: a :class:`fmhub.ExportSpec` (module, input and output names, example raw inputs,
    raw inputs of another batch size and length for the parity check, dynamic axes), or None when
    the model cannot be exported.

    Stops at first non-None result.

    :param model: The model to export.

    .. versionadded:: 0.2
    """
