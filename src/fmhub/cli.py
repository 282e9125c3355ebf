"""The ``fmhub`` command. ``--help``, ``list``, ``info`` and ``plugins`` never import torch."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Any

from .errors import FmhubError


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _options(pairs: list[str]) -> dict[str, Any]:
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise FmhubError(f"--option takes KEY=VALUE, got {pair!r}")
        out[key.replace("-", "_")] = _parse_value(value)
    return out


def cmd_list(args) -> int:
    from . import list_models

    specs = list_models(args.pattern)
    if args.json:
        print(json.dumps([s.model_dump(mode="json", exclude_none=True) for s in specs], indent=2))
        return 0
    if not specs:
        print(f"No registered model matches {args.pattern!r}." if args.pattern else "No models.")
        return 0
    width = max(len(s.id) for s in specs)
    for s in specs:
        aliases = f"  (aliases: {', '.join(s.aliases)})" if s.aliases else ""
        print(f"{s.id:<{width}}  {s.task or '-':<22} {s.modality or '-':<6}{aliases}")
    return 0


def cmd_info(args) -> int:
    from . import model_info

    print(json.dumps(model_info(args.name).model_dump(mode="json", exclude_none=True), indent=2))
    return 0


def cmd_plugins(args) -> int:
    from . import plugins

    recs = plugins()
    if args.json:
        print(json.dumps([
            {"name": r.name, "distribution": r.distribution, "version": r.version,
             "status": r.status, "namespaces": list(r.namespaces), "error": r.error}
            for r in recs], indent=2))
        return 0
    width = max(14, *(len(r.name) + 1 for r in recs))
    for r in recs:
        dist = f"{r.distribution or '-'} {r.version or ''}".rstrip()
        serves = ", ".join(n + ":" for n in r.namespaces) if r.status == "ok" else ""
        line = f"{r.name:<{width}} {r.status:<9} {dist:<28} {serves}".rstrip()
        print(line + (f"\n{'':{width}} error: {r.error}" if r.error else ""))
    return 0


def cmd_predict(args) -> int:
    from . import load
    from .results import to_jsonable

    model = load(args.name, **_options(args.option))
    results = model.predict(args.inputs, batch_size=args.batch_size)
    out = [{"input": i, "result": to_jsonable(r)} for i, r in zip(args.inputs, results)]
    print(json.dumps(out, indent=2))
    return 0


def cmd_finetune(args) -> int:
    from . import load
    from .finetuning.cli import run

    model = load(args.name, **_options(args.option))
    return run(model, args)


def cmd_serve(args) -> int:
    from .serve import serve

    settings = {k: getattr(args, k) for k in ("host", "port", "max_batch", "max_wait_ms",
                                              "max_queue", "max_body_mb", "timeout_s")}
    if args.api_key:
        settings["api_key"] = args.api_key
    serve(args.models, options=_options(args.option), batching=not args.no_batching, **settings)
    return 0


def cmd_export(args) -> int:
    from . import load

    model = load(args.name, **_options(args.option))
    out = model.export(args.output, format=args.format)
    print(f"fmhub export: wrote {out}")
    return 0


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="export a model's forward stage to ONNX, parity-checked "
                       "(needs fmhub[export])")
    p.add_argument("name", metavar="NAME|FOLDER", help="model id, alias, saved or adapter folder")
    p.add_argument("--format", default="onnx", choices=["onnx"])
    p.add_argument("--output", "-O", required=True, help="folder to write (fmhub.load reads it)")
    p.add_argument("--option", "-o", action="append", metavar="KEY=VALUE", help="load option")
    p.set_defaults(func=cmd_export)


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="serve models over HTTP with dynamic batching "
                       "(needs fmhub[serve])")
    p.add_argument("models", nargs="+", metavar="NAME|FOLDER",
                   help="models to serve (SERVED_NAME=SOURCE names one)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-batch", type=int, default=32, help="most items per model call")
    p.add_argument("--max-wait-ms", type=float, default=5.0,
                   help="longest wait for a batch to fill (ms)")
    p.add_argument("--no-batching", action="store_true", help="one model call per request")
    p.add_argument("--max-queue", type=int, default=256,
                   help="requests waiting per model before 503")
    p.add_argument("--max-body-mb", type=float, default=16.0, help="largest body before 413")
    p.add_argument("--timeout-s", type=float, default=60.0, help="per-request timeout (504)")
    p.add_argument("--api-key", default=None,
                   help="require 'Authorization: Bearer KEY' on /v1 (or env FMHUB_API_KEY)")
    p.add_argument("--option", "-o", action="append", metavar="KEY=VALUE",
                   help="load option for every model, repeatable")
    p.set_defaults(func=cmd_serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fmhub", description="Pretrained models of every family behind one contract."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("list", help="list registered models (wildcards: 'hf:*bert*')")
    p.add_argument("pattern", nargs="?", help="shell wildcards over ids and aliases; no wildcard: "
                   "a substring (any case)")
    p.add_argument("--json", action="store_true", help="print the full specs as JSON")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("info", help="show what a name resolves to")
    p.add_argument("name", help="model id, alias or local folder")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("plugins", help="list plugins with their status and errors")
    p.add_argument("--json", action="store_true", help="print the records as JSON")
    p.set_defaults(func=cmd_plugins)
    p = sub.add_parser("predict", help="run a model on inputs, print JSON")
    p.add_argument("name", help="model id, alias or local folder")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="text, or a path to an image/audio file")
    p.add_argument("--option", "-o", action="append", metavar="KEY=VALUE",
                   help="load option, repeatable (device=cpu, dtype=bfloat16, ...); VALUE is "
                   "read as JSON when it parses, else as a string")
    p.add_argument("--batch-size", type=int, default=None, help="inputs per batch (default 32)")
    p.set_defaults(func=cmd_predict)
    p = sub.add_parser("finetune", help="fine-tune a model (or --plan: show what would train)")
    p.add_argument("name")
    p.add_argument("--plan", action="store_true", help="list matched modules and parameter counts")
    p.add_argument("--method", default="lora")
    p.add_argument("--train", help="training data: CSV/JSONL file or class-per-folder directory")
    p.add_argument("--eval", help="evaluation data, same forms as --train")
    p.add_argument("--output", help="adapter output folder")
    p.add_argument("--config", "-c", action="append", metavar="KEY=VALUE", help="FineTuneConfig field")
    p.add_argument("--option", "-o", action="append", metavar="KEY=VALUE", help="load option")
    p.set_defaults(func=cmd_finetune)
    _add_serve(sub)
    _add_export(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command; an fmhub error is printed as one message (with the plugin and stage it came
    from) and exit status 2, not a traceback."""
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return args.func(args)
        except FmhubError as exc:
            notes = "".join(f" {n}" for n in getattr(exc, "__notes__", ()))
            print(f"fmhub: error: {exc}{notes}", file=sys.stderr)
            return 2


_original_showwarning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A skipped plugin is one line on stderr, not a source location and a code excerpt."""
    from ._hub import FmhubPluginWarning

    if issubclass(category, FmhubPluginWarning):
        print(f"fmhub: warning: {message}", file=sys.stderr)
    else:
        _original_showwarning(message, category, filename, lineno, file, line)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
