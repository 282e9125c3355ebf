"""Export a model's forward stage to ONNX and run it back on ONNX Runtime (``fmhub[export]``).

A plugin describes its family's forward stage through ``fmhub_export_spec`` (an
:class:`ExportSpec`): a torch module taking the batch's tensors in order and returning what
``fmhub_forward`` returns (pooling and normalisation included), example raw inputs, raw inputs of
another batch size and length for the parity check, and the dynamic axes. The core exports it with
``torch.onnx.export(..., dynamo=True)``, checks parity on ONNX Runtime, and writes a folder that
``fmhub.load`` reads back: the plugin's own saved files (so preprocess and postprocess are the
plugin's), ``model.onnx``, and an ``fmhub.json`` whose options say ``runtime="onnxruntime"``.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import (
    DeviceError,
    ExportError,
    FmhubError,
    InputError,
    InvalidOptionError,
    PluginError,
)

if TYPE_CHECKING:
    from .model import Model

__all__ = [
    "ONNX_FILE",
    "TOLERANCE",
    "ExportSpec",
    "OrtRunner",
    "attach_onnx",
    "cached_export",
    "export",
]

ONNX_FILE = "model.onnx"
#: Parity tolerances by task: embeddings by cosine, classifiers by top-1 and logits, else logits.
TOLERANCE = {"cosine": 0.9999, "logits": 1e-3}


@dataclass
class ExportSpec:
    """What a plugin's ``fmhub_export_spec`` returns.

    :param module: A torch module whose ``forward(*tensors)`` takes the batch's tensors named by
        ``input_names`` in that order and returns what ``fmhub_forward`` returns for the batch, as
        a tensor or a tuple of tensors (in ``output_names`` order).
    :param input_names: Keys of the batch ``fmhub_preprocess`` gives, in the module's order.
    :param output_names: Names of the module's outputs.
    :param example: Raw inputs (two or more) that preprocess turns into the tracing example.
    :param check: Raw inputs of another batch size and length, for the parity check.
    :param dynamic_axes: Input name -> ``{axis: name}`` of its dynamic axes (``"batch"``,
        ``"sequence"``, ``"time"``...).
    :param pack: Builds ``fmhub_forward``'s outputs from the output tensors (in ``output_names``
        order) when they are not one tensor or a tuple (e.g. a dict); None: one tensor as is,
        several as a tuple.
    """

    module: Any
    input_names: Sequence[str]
    output_names: Sequence[str]
    example: Sequence[Any]
    check: Sequence[Any]
    dynamic_axes: Mapping[str, Mapping[int, str]] = field(default_factory=dict)
    pack: Callable[[list[Any]], Any] | None = None


def _require() -> None:
    missing = []
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise FmhubError(f"ONNX export needs {', '.join(missing)}; install fmhub[export].")


def export_spec(model: Model) -> ExportSpec:
    spec = model._call("fmhub_export_spec")
    if spec is None:
        raise ExportError(
            f"Model {model.spec.id!r} cannot be exported: plugin "
            f"{model.spec.plugin!r} implements no fmhub_export_spec."
        )
    if not isinstance(spec, ExportSpec):
        raise PluginError(
            f"plugin {model.spec.plugin!r} returned {type(spec).__name__} from "
            "fmhub_export_spec, not a fmhub.export.ExportSpec"
        )
    return spec


def _export_copy(model: Model) -> Model:
    """The model to export: CPU float32, a LoRA adapter merged (the caller's model is untouched)."""
    import torch

    if model.quantized:
        raise ExportError(
            f"A quantized model ({model.quantized}) is not exported; export the float "
            "model (ONNX Runtime has its own quantization tools)."
        )
    if model.placed:
        raise ExportError(
            f"Model {model.spec.id!r} is spread over several devices by its plugin; "
            "load it on one device to export it."
        )
    work = copy.copy(model)
    work.runtime = None
    module = model.module
    if model.adapter is not None and model.adapter.peft is not None:
        module = copy.deepcopy(model.adapter.peft).merge_and_unload()
    elif model.device.type != "cpu" or model.dtype != torch.float32:
        module = copy.deepcopy(module)
    module = module.to(device="cpu", dtype=torch.float32).eval()
    work.module = module
    work.adapter = None
    work._refresh_placement()
    return work


def _tensors(batch: Mapping[str, Any], names: Sequence[str], where: str) -> tuple[Any, ...]:
    missing = [n for n in names if n not in batch]
    if missing:
        raise PluginError(
            f"{where}: the export spec names inputs {missing} that preprocess's "
            f"batch lacks (it has {sorted(batch)})"
        )
    return tuple(batch[n] for n in names)


def _onnx_export(work: Model, spec: ExportSpec, file: Path, opset: int | None) -> None:
    import torch
    from torch.export import Dim

    if hasattr(spec.module, "eval"):
        spec.module.eval()
    batch = work.preprocess(list(spec.example))
    args = _tensors(batch, spec.input_names, work.spec.id)
    shapes: Any = tuple(
        {axis: Dim.DYNAMIC for axis in spec.dynamic_axes.get(name, {})} or None
        for name in spec.input_names
    )
    params = inspect.signature(spec.module.forward).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        shapes = (shapes,)  # forward(*tensors): one argument holding them all
    kwargs: dict[str, Any] = {}
    if opset is not None:
        kwargs["opset_version"] = opset
    try:
        with torch.inference_mode(False), torch.no_grad():
            program = torch.onnx.export(
                spec.module,
                args,
                dynamo=True,
                input_names=list(spec.input_names),
                output_names=list(spec.output_names),
                dynamic_shapes=shapes,
                verbose=False,
                report=False,
                **kwargs,
            )
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ExportError(
            f"torch.onnx.export could not export {work.spec.id!r}: "
            f"{type(exc).__name__}: {first[:500]}"
        ) from exc
    program.save(str(file), external_data=False)


def _fuse(file: Path, out: Path) -> dict[str, int]:
    """ONNX Runtime's fused kernels for the exported graph (onnxscript's ``optimize_for_ort``:
    attention, skip-LayerNorm, bias-GELU...), written to ``out``; the fusion counts (empty: no
    fusion applied, nothing written). The dynamo exporter's graph decomposes attention into
    MatMul/Softmax/Where nodes that ORT's own optimizers do not recognise; these rewrites do."""
    try:
        import onnx_ir as ir
        from onnxscript.rewriter.ort_fusions import optimize_for_ort
    except ImportError:
        return {}
    try:
        model, stats = optimize_for_ort(ir.load(str(file)))
    except Exception:  # noqa: BLE001 - a graph the rewriter cannot handle runs unfused
        return {}
    stats = {k: int(v) for k, v in stats.items() if v}
    if stats:
        ir.save(model, str(out))
        import onnx

        proto = onnx.load(str(out))
        folded = _fold_constant_concats(proto.graph)
        if folded:
            stats["constant_concat"] = folded
            onnx.save(proto, str(out))
    return stats


def _fold_constant_concats(graph: Any) -> int:
    """Replace each ``Concat`` of initializers by one initializer; the number folded.

    ``optimize_for_ort`` packs the query, key and value weights for ``Attention`` with a
    ``Concat`` of three initializers that it does not fold (over onnxscript's folding size
    limit), so ONNX Runtime would copy 1.7 MB of weights per layer on every run, and the int8
    quantizer, which needs the weight as an initializer, would leave the projection in float."""
    from onnx import numpy_helper

    inits = {i.name: i for i in graph.initializer}
    kept, folded = [], 0
    for node in graph.node:
        if (
            node.op_type == "Concat"
            and node.domain in ("", "ai.onnx")
            and node.input
            and all(name in inits for name in node.input)
        ):
            import numpy as np

            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            arr = np.concatenate([numpy_helper.to_array(inits[n]) for n in node.input], axis=axis)
            tensor = numpy_helper.from_array(arr, node.output[0])
            graph.initializer.append(tensor)
            inits[node.output[0]] = tensor
            folded += 1
        else:
            kept.append(node)
    if folded:
        del graph.node[:]
        graph.node.extend(kept)
        _drop_unused_initializers(graph)
    return folded


def _used_names(graph: Any) -> set[str]:
    """Every value name read in ``graph``, its subgraphs (If/Loop bodies) included."""
    used = {o.name for o in graph.output}
    for node in graph.node:
        used.update(node.input)
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                used |= _used_names(sub)
    return used


def _drop_unused_initializers(graph: Any) -> None:
    used = _used_names(graph)
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def session_options() -> Any:
    """ONNX Runtime session options: every graph optimization, the same intra-op thread count as
    torch (so the two runtimes compare on equal terms), one inter-op thread, sequential."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    threads = os.environ.get("OMP_NUM_THREADS")
    try:
        import torch

        options.intra_op_num_threads = torch.get_num_threads()
    except ImportError:
        if threads and threads.isdigit():
            options.intra_op_num_threads = int(threads)
    return options


#: A graph file over this size is handed to ONNX Runtime as is (no in-memory CPU rewrite).
_REWRITE_LIMIT = 1 << 30


def _split_skip_layer_norms(graph: Any) -> int:
    """Rewrite each ``SkipLayerNormalization`` (ORT contrib op) as ``Add`` (input + skip, + bias)
    and an ONNX ``LayerNormalization`` over the last axis, with the same epsilon; the number
    rewritten. ONNX Runtime's CPU ``SkipLayerNormalization`` kernel is a scalar loop that takes
    about 3.5x the time of its vectorised ``Add`` + ``LayerNormalization`` on BERT-sized
    activations (docs/export.md). Same numbers up to float32 rounding (the same sum, then the
    same normalisation). Nodes whose mean or inverse-std outputs are read are left fused."""
    from onnx import helper

    read = _used_names(graph)
    new, count = [], 0
    for node in graph.node:
        outs = list(node.output) + [""] * (4 - len(node.output))
        if (
            node.op_type != "SkipLayerNormalization"
            or node.domain != "com.microsoft"
            or any(o and o in read for o in outs[1:3])
        ):
            new.append(node)
            continue
        x, skip, gamma, beta, bias = (list(node.input) + [""] * 5)[:5]
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-12)
        total = outs[3] if outs[3] in read else f"{node.name or outs[0]}/skip_sum"
        first = f"{total}/input_skip" if bias else total
        new.append(helper.make_node("Add", [x, skip], [first], name=f"{node.name}/add"))
        if bias:
            new.append(helper.make_node("Add", [first, bias], [total], name=f"{node.name}/bias"))
        norm = [total, gamma] + ([beta] if beta else [])
        new.append(
            helper.make_node(
                "LayerNormalization", norm, [outs[0]], name=f"{node.name}/ln", axis=-1, epsilon=eps
            )
        )
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(new)
    return count


def cpu_graph(file: str | os.PathLike) -> str | bytes:
    """The graph ONNX Runtime's CPU provider runs fastest: ``file`` itself, or (when it has
    ``SkipLayerNormalization`` nodes and opset >= 17) its serialised in-memory rewrite by
    :func:`_split_skip_layer_norms`. The file is never modified; GPU sessions keep the fused
    nodes (their CUDA kernels are fast)."""
    import onnx

    if os.path.getsize(file) > _REWRITE_LIMIT:
        return str(file)
    proto = onnx.load(str(file))
    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < 17 or not _split_skip_layer_norms(proto.graph):
        return str(file)
    return proto.SerializeToString()


class OrtRunner:
    """The forward stage on ONNX Runtime: batch tensors in, ``fmhub_forward``-shaped outputs out.

    On CPU alone, the session runs :func:`cpu_graph`'s graph (no slow fused skip-LayerNorm)."""

    def __init__(
        self,
        file: str | os.PathLike,
        input_names: Sequence[str],
        pack: Callable[[list[Any]], Any] | None = None,
        device: Any = None,
    ):
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if getattr(device, "type", None) == "cuda" and (
            "CUDAExecutionProvider" in ort.get_available_providers()
        ):
            providers.insert(0, "CUDAExecutionProvider")
        graph = cpu_graph(file) if providers == ["CPUExecutionProvider"] else str(file)
        self.session = ort.InferenceSession(graph, session_options(), providers=providers)
        self.input_names = list(input_names)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.pack = pack
        self.file = str(file)

    def run(self, batch: Mapping[str, Any]) -> list[Any]:
        import numpy as np

        feed = {}
        for name in self.input_names:
            value = batch[name]
            arr = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
            if arr.dtype.kind == "f" and arr.dtype != np.float32:
                arr = arr.astype(np.float32)
            feed[name] = arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)
        return self.session.run(self.output_names, feed)

    def __call__(self, batch: Mapping[str, Any]) -> Any:
        import torch

        outs = [torch.from_numpy(o) for o in self.run(batch)]
        if self.pack is not None:
            return self.pack(outs)
        return outs[0] if len(outs) == 1 else tuple(outs)


def _flat(outputs: Any) -> list[Any]:
    if hasattr(outputs, "detach"):
        return [outputs]
    if isinstance(outputs, Mapping):
        return [v for v in outputs.values() if hasattr(v, "detach")]
    return [o for o in outputs if hasattr(o, "detach")]


def parity(work: Model, spec: ExportSpec, runner: OrtRunner) -> dict[str, Any]:
    """Torch vs ONNX Runtime on ``spec.check``: the largest difference, and whether it is within
    the task's tolerance."""
    import numpy as np
    import torch

    batch = work.preprocess(list(spec.check))
    with torch.inference_mode():
        expected = [t.float().cpu().numpy() for t in _flat(work.forward(batch))]
    got = [np.asarray(o, dtype=np.float32) for o in _flat(runner(batch))]
    shape = {n: list(batch[n].shape) for n in spec.input_names}
    report: dict[str, Any] = {"inputs": shape, "max_abs_diff": 0.0}
    for e, g in zip(expected, got):
        if e.shape != g.shape:
            raise ExportError(
                f"ONNX output shape {g.shape} differs from torch's {e.shape} on a "
                f"batch of shape {shape}; the dynamic axes are wrong."
            )
        report["max_abs_diff"] = max(report["max_abs_diff"], float(np.abs(e - g).max(initial=0)))
    main_e, main_g = (
        expected[-1] if work.task == "classification" else expected[0],
        (got[-1] if work.task == "classification" else got[0]),
    )
    if work.task == "embedding":
        e2, g2 = main_e.reshape(len(main_e), -1), main_g.reshape(len(main_g), -1)
        cos = (e2 * g2).sum(1) / np.maximum(
            np.linalg.norm(e2, axis=1) * np.linalg.norm(g2, axis=1), 1e-12
        )
        report["min_cosine"] = float(cos.min())
        report["ok"] = report["min_cosine"] >= TOLERANCE["cosine"]
        report["tolerance"] = f"cosine >= {TOLERANCE['cosine']}"
    else:
        report["ok"] = report["max_abs_diff"] <= TOLERANCE["logits"]
        report["tolerance"] = f"max |logit diff| <= {TOLERANCE['logits']}"
        if work.task == "classification":
            same = bool((main_e.argmax(-1) == main_g.argmax(-1)).all())
            report["same_top1"] = same
            report["ok"] = report["ok"] and same
            report["tolerance"] += ", same top-1"
    return report


def export(
    model: Model,
    path: str | os.PathLike,
    format: str = "onnx",
    *,
    opset: int | None = None,
    verbose: bool = True,
    overwrite: bool = False,
    fuse: bool = True,
) -> Path:
    """Export ``model``'s forward stage to ``path`` (see the module docstring); returns the folder.

    ``fuse``: rewrite the graph for ONNX Runtime's fused kernels (attention, skip-LayerNorm,
    bias-GELU; see :func:`_fuse`); the fused graph must pass the parity check, else the exporter's
    plain graph is kept.

    Raises :class:`fmhub.ExportError` when the exporter fails or parity is outside tolerance (the
    folder is then not written).
    """
    if format != "onnx":
        raise InputError(f"Unknown export format {format!r}; fmhub exports 'onnx'.")
    _require()
    from .manifest import as_destination, atomic_folder, model_manifest, seal

    as_destination(path, "export folder")

    work = _export_copy(model)
    spec = export_spec(work)
    report: dict[str, Any] = {}

    def write(tmp: Path) -> None:
        try:
            work._save_files(str(tmp))
        except FmhubError as exc:
            raise ExportError(
                f"{exc} Without its saved files, the model's preprocessing cannot "
                "travel with the ONNX file."
            ) from None
        _onnx_export(work, spec, tmp / ONNX_FILE, opset)
        fused = tmp / "model.fused.onnx"
        fusions = _fuse(tmp / ONNX_FILE, fused) if fuse else {}
        if fusions:
            report.update(parity(work, spec, OrtRunner(fused, spec.input_names, spec.pack)))
            if report["ok"]:
                os.replace(fused, tmp / ONNX_FILE)
            else:  # the fused graph drifted: keep the exporter's own, checked below
                fused.unlink()
                fusions, report["fusion_rejected"] = {}, report.pop("max_abs_diff")
        if not fusions:
            runner = OrtRunner(tmp / ONNX_FILE, spec.input_names, spec.pack)
            report.update(parity(work, spec, runner))
        report["fusions"] = fusions
        line = (
            f"fmhub export: {work.spec.id} -> {ONNX_FILE}; parity on inputs "
            f"{report['inputs']}: max abs diff {report['max_abs_diff']:.3g}"
            + (f", min cosine {report['min_cosine']:.7f}" if "min_cosine" in report else "")
            + (f", same top-1 {report['same_top1']}" if "same_top1" in report else "")
            + (f"; fused {report['fusions']}" if report["fusions"] else "")
        )
        if verbose:
            print(line, flush=True)
        if not report["ok"]:
            raise ExportError(
                f"{line}: outside the tolerance ({report['tolerance']}); the ONNX "
                "graph does not reproduce the torch model, nothing was written."
            )
        manifest = model_manifest(work)
        manifest.options = {**manifest.options, "runtime": "onnxruntime"}
        manifest.info = {
            **manifest.info,
            "export": {
                "format": "onnx",
                "file": ONNX_FILE,
                "inputs": list(spec.input_names),
                "outputs": list(spec.output_names),
                "dynamic_axes": {
                    k: {str(a): n for a, n in v.items()} for k, v in spec.dynamic_axes.items()
                },
                "parity": report,
            },
        }
        manifest.versions.update(_versions())
        seal(tmp, manifest)  # sizes and SHA-256 of every file, model.onnx included

    return atomic_folder(path, write, overwrite=overwrite)


def _versions() -> dict[str, str]:
    from .manifest import versions

    return versions("onnx", "onnxscript", "onnxruntime")


def cache_dir() -> Path:
    root = os.environ.get("FMHUB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fmhub"
    )
    return Path(root) / "onnx"


def cached_export(model: Model, source: str | None = None) -> Path:
    """The ONNX export of ``model`` in fmhub's cache, exported on first use (``source``: the
    adapter folder a fine-tuned model came from, part of the cache key with its manifest)."""
    adapter = None
    if model.adapter is not None:
        adapter = model.adapter.to_manifest()
        if source:
            adapter["source"] = source
            adapter["manifest"] = hashlib.sha256(
                (Path(source) / "fmhub.json").read_bytes()
            ).hexdigest()
            weights = sorted(Path(source).glob("*.safetensors"))
            adapter["weights"] = [hashlib.sha256(w.read_bytes()).hexdigest() for w in weights]
    key = json.dumps(
        {
            "spec": model.spec.model_dump(mode="json"),
            "adapter": adapter,
            # quantize: runtime="onnxruntime" exports the float graph either way (int8 is ONNX
            # Runtime's quantization of that export, cached apart), so one export serves both
            "options": model.options.model_dump(
                mode="json", exclude={"device", "dtype", "runtime", "quantize"}
            ),
            "info": model.info,
            "versions": _versions(),
        },
        sort_keys=True,
        default=str,
    )
    folder = cache_dir() / hashlib.sha256(key.encode()).hexdigest()[:24]
    if not (folder / ONNX_FILE).is_file():
        export(model, folder, verbose=False)
    return folder


def attach_onnx(
    model: Model,
    folder: str | os.PathLike | None = None,
    source: str | None = None,
    quantize: str | None = None,
) -> Model:
    """Run ``model``'s forward stage on ONNX Runtime: from ``folder`` (an export), else from the
    cache (exported on first use; an adapter is merged). Preprocess and postprocess stay the
    plugin's. ``quantize="int8"``: ONNX Runtime's dynamic int8 quantization of that graph
    (:func:`quantized_onnx`), CPU only."""
    _require()
    if quantize not in (None, "int8"):
        raise InvalidOptionError(
            f"runtime='onnxruntime' supports quantize='int8' (ONNX Runtime's "
            f"dynamic int8), not {quantize!r}; use the torch runtime for it."
        )
    if quantize and model.device.type != "cpu":
        raise DeviceError(
            f"int8 on ONNX Runtime targets CPU inference, but the model is on "
            f"{model.device}; load it with device='cpu'."
        )
    folder = Path(folder) if folder is not None else cached_export(model, source)
    if model.adapter is not None:
        model.merge()
    spec = export_spec(model)
    file = folder / ONNX_FILE
    if quantize:
        file = quantized_onnx(file)
    model.runtime = OrtRunner(file, spec.input_names, spec.pack, model.device)
    if quantize:
        model.quantized = "int8"
        model.info["quantized"] = "int8 (onnxruntime)"
    return model


#: ONNX Runtime int8: the op types whose weights are quantized (embedding tables stay float).
INT8_OPS = ("MatMul", "Attention")


def _unfuse_attention(graph: Any) -> int:
    """Rewrite each fused ``Attention`` (packed query/key/value projection + attention) as a
    ``MatMul`` with the packed weight, a ``Split`` and a ``MultiHeadAttention``; the number
    rewritten. The quantizer cannot quantize the fused node's projection (its ``QAttention`` takes
    neither ``qkv_hidden_sizes`` nor an additive attention bias, which the exported graph uses for
    the padding mask), and that projection is a quarter of a BERT layer's GEMM work; as a
    ``MatMul`` it runs on the int8 kernels. Only nodes whose weight is an initializer, with equal
    query/key/value sizes, no ``mask_index`` and no past state are rewritten."""
    import numpy as np
    from onnx import helper, numpy_helper

    inits = {i.name for i in graph.initializer}
    new, count = [], 0
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        ins = list(node.input) + [""] * (6 - len(node.input))
        sizes = attrs.get("qkv_hidden_sizes")
        hidden = sizes[0] if sizes else None
        if (
            node.op_type != "Attention"
            or node.domain != "com.microsoft"
            or ins[1] not in inits
            or not ins[2]
            or ins[3]
            or ins[4]
            or len(node.input) > 6
            or len(node.output) > 1
            or not sizes
            or len(set(sizes)) != 1
            or attrs.get("unidirectional", 0)
            or attrs.get("do_rotary", 0)
            or "past_present_share_buffer" in attrs
        ):
            new.append(node)
            continue
        p = node.name or f"attention_{count}"
        q, k, v = (f"{p}/unfused_{x}" for x in "qkv")
        split = f"{p}/unfused_split"
        graph.initializer.append(numpy_helper.from_array(np.array([hidden] * 3, np.int64), split))
        new.append(helper.make_node("MatMul", [ins[0], ins[1]], [f"{p}/unfused_qkv"], f"{p}_qkv"))
        new.append(
            helper.make_node("Split", [f"{p}/unfused_qkv", split], [q, k, v], f"{p}_split", axis=-1)
        )
        kw = {a: attrs[a] for a in ("num_heads", "scale", "mask_filter_value") if a in attrs}
        new.append(
            helper.make_node(
                "MultiHeadAttention",
                [q, k, v, ins[2], "", ins[5]],
                [node.output[0]],
                f"{p}_mha",
                domain="com.microsoft",
                **kw,
            )
        )
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(new)
    return count


def _keep_float(graph: Any) -> list[str]:
    """The nodes left in float by the int8 path, chosen by measurement (see
    docs/quantization.md): the feed-forward down-projections (the MatMuls fed by a GELU, whose
    input has the widest activation range and loses the most with per-tensor activation scales)
    of the **first half** of the blocks, where quantization error has the most layers left to
    grow through (on all-MiniLM-L6-v2 layer 0's costs 0.0029 of cosine alone, layers 3-5's
    0.0001-0.0005); and the output head, a MatMul whose result reaches a graph output through
    bias and shape ops only (a classifier's logits: quantizing it flipped top-1 on a timm
    resnet18 for no speed, it is a sliver of the compute)."""
    gelu = {"Gelu", "BiasGelu", "FastGelu", "QuickGelu"}
    passthrough = {"Add", "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Cast"}
    made_by = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}

    def reaches_output(name: str, depth: int = 0) -> bool:
        if name in outputs:
            return True
        return depth < 8 and any(
            n.op_type in passthrough and reaches_output(n.output[0], depth + 1)
            for n in consumers.get(name, [])
            if n.output
        )

    matmuls = [n for n in graph.node if n.op_type in ("MatMul", "Gemm")]
    downs = [
        n for n in matmuls if getattr(made_by.get(n.input[0]), "op_type", None) in gelu
    ]  # in graph order: block 0 first
    chosen = {id(n) for n in downs[: (len(downs) + 1) // 2]}
    keep = []
    for node in matmuls:
        if id(node) in chosen or reaches_output(node.output[0]):
            keep.append(node.name)
            if node.op_type == "Gemm":  # the quantizer first rewrites Gemm X as MatMul X_MatMul
                keep.append(f"{node.name}_MatMul")
    return keep


def _cpu_has_vnni(cpuinfo: str | None = None) -> bool:
    """Whether this x86 CPU has int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI or AMX),
    from ``/proc/cpuinfo`` (or the ``cpuinfo`` text given). Without them ONNX Runtime's u8s8
    kernels can saturate on full-range weights, so its docs recommend ``reduce_range`` (7-bit
    weights) there; with them the full 8 bits are exact."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False  # not Linux: take the safe 7-bit range
    return any(f in cpuinfo.split() for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


def quantized_onnx(file: str | os.PathLike) -> Path:
    """ONNX Runtime's dynamic int8 quantization of ``file`` (per-channel int8 weights, per-batch
    uint8 activations; :func:`_keep_float` nodes left in float), cached by the file's hash and
    written atomically; the source file is never modified."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    digest = hashlib.sha256(Path(file).read_bytes()).hexdigest()
    key = hashlib.sha256(
        json.dumps(
            [digest, _versions(), INT8_OPS, "qkv-int8-keep-first-half-downs-v3", _cpu_has_vnni()]
        ).encode()
    ).hexdigest()[:24]
    out = cache_dir() / "int8" / f"{key}.onnx"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    proto = onnx.load(str(file))
    _fold_constant_concats(proto.graph)  # exports made before the fold was part of _fuse
    _unfuse_attention(proto.graph)
    keep = _keep_float(proto.graph)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    source = out.with_name(f".{out.name}.{os.getpid()}.float.tmp")
    onnx.save(proto, str(source))
    del proto
    import logging

    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # "consider pre-processing" is advice, not news
    try:
        quantize_dynamic(
            str(source),
            str(tmp),
            per_channel=True,
            reduce_range=not _cpu_has_vnni(),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(INT8_OPS),
            nodes_to_exclude=keep,
        )
        os.replace(tmp, out)
    except Exception as exc:
        raise ExportError(
            f"ONNX Runtime could not quantize {str(file)!r} to int8: "
            f"{type(exc).__name__}: {str(exc)[:300]}"
        ) from exc
    finally:
        logging.getLogger().setLevel(quiet)
        tmp.unlink(missing_ok=True)
        source.unlink(missing_ok=True)
    return out


def exported_folder(path: str | None) -> Path | None:
    """``path`` when it is a folder written by :func:`export`."""
    if path and (Path(path) / ONNX_FILE).is_file():
        return Path(path)
    return None
