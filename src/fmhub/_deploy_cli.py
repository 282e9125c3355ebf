"""``fmhub serve`` and ``fmhub export`` (registered with the CLI when :mod:`fmhub.cli` loads)."""

from __future__ import annotations

import argparse
from typing import Any

from ._clikit import UsageError, add_command, add_load_options, load_options, subcommand
from .errors import FmhubError


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve, served_names

    try:
        models = served_names(args.models)
    except FmhubError as exc:
        raise UsageError(str(exc)) from None
    settings = {
        k: getattr(args, k)
        for k in (
            "host",
            "port",
            "max_batch",
            "max_wait_ms",
            "workers",
            "max_queue",
            "max_body_mb",
            "timeout_s",
        )
    }
    if args.api_key:
        settings["api_key"] = args.api_key
    serve(models, options=load_options(args), batching=not args.no_batching, **settings)
    return 0


@subcommand
def _serve_command(sub: Any) -> None:
    p = add_command(
        sub,
        "serve",
        cmd_serve,
        help="serve models over HTTP with dynamic batching "
        "and OpenAI-compatible endpoints (needs fmhub[serve])",
    )
    p.add_argument(
        "models",
        nargs="+",
        metavar="NAME|FOLDER",
        help="models to serve (SERVED_NAME=SOURCE names one)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-batch", type=int, default=32, help="most items per model call")
    p.add_argument(
        "--max-wait-ms", type=float, default=5.0, help="longest wait for a batch to fill (ms)"
    )
    p.add_argument("--no-batching", action="store_true", help="one model call per request")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="model calls run at once per model, each on its own thread (default 1)",
    )
    p.add_argument(
        "--max-queue", type=int, default=256, help="requests waiting per model before 503"
    )
    p.add_argument("--max-body-mb", type=float, default=16.0, help="largest body before 413")
    p.add_argument("--timeout-s", type=float, default=60.0, help="per-request timeout (504)")
    p.add_argument(
        "--api-key",
        default=None,
        help="require 'Authorization: Bearer KEY' on /v1 (or env FMHUB_API_KEY)",
    )
    add_load_options(p)


def cmd_export(args: argparse.Namespace) -> int:
    from . import load

    model = load(args.name, **load_options(args))
    out = model.export(args.output, format=args.format)
    print(f"fmhub export: wrote {out}")
    return 0


@subcommand
def _export_command(sub: Any) -> None:
    p = add_command(
        sub,
        "export",
        cmd_export,
        help="export a model's forward stage to ONNX, parity-checked (needs fmhub[export])",
    )
    p.add_argument("name", metavar="NAME|FOLDER", help="model id, alias, saved or adapter folder")
    p.add_argument("--format", default="onnx", choices=["onnx"])
    p.add_argument("--output", required=True, help="folder to write (fmhub.load reads it)")
    add_load_options(p)
