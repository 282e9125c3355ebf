"""Prediction over a data set: ``fmhub predict NAME --input FILE|DIR --output FILE``.

* Inputs are streamed: a JSON Lines, CSV/TSV or text-per-line file is read line by line, a folder
  of images or audio is listed (sorted, recursively); memory does not grow with the file.
* Inputs go in *chunks* of ``chunk`` inputs; results are written chunk by chunk, in input order,
  to JSON Lines (``{"input": ..., "result": ...}`` per line, as ``fmhub predict`` prints) or, for
  embedding models, to a ``.npy`` matrix (one float32 row per input).
* Resumable: the work goes to ``OUTPUT.partial/`` (one part file per rank and a ``meta.json``), and
  only whole chunks count as done. Rerunning the same command after an interruption skips the done
  chunks and ends with the same file; on success the parts are merged into ``OUTPUT`` atomically
  and the partial folder is removed.
* Distributed: under ``torchrun`` (or ``--nproc-per-node N``) chunk ``g`` goes to rank ``g % N``;
  rank 0 merges the parts in input order. Chunks are the same as in one process, so the merged
  file equals the single-process one.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import FmhubError, InputError

__all__ = ["count_inputs", "iter_inputs", "predict_file"]

#: Fields of a JSON Lines / CSV record that hold the input, in order of preference.
INPUT_FIELDS = ("text", "path", "input", "sentence")
PARTIAL = ".partial"
META = "meta.json"


class _Usage(FmhubError, ValueError):
    """Replaced by the CLI's UsageError (exit status 2) at the call site."""


def input_format(path: Path, fmt: str | None) -> str:
    """``folder``, ``jsonl``, ``csv``, ``tsv`` or ``lines`` (the ``--format`` wins)."""
    if path.is_dir():
        return "folder"
    if fmt:
        return fmt
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return suffix[1:]
    return "lines"


def _open(path: Path, encoding: str):
    enc = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    return path.open(encoding=enc, newline="")


def iter_inputs(
    path: str | os.PathLike,
    fmt: str | None = None,
    encoding: str = "utf-8",
    column: str | None = None,
) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Stream ``(input, fields to echo)`` from a file or folder, in order (blank lines skipped).

    An ``id`` field of a JSON Lines or CSV record is echoed in the output.
    """
    p = Path(path)
    kind = input_format(p, fmt)
    if kind == "folder":
        files = sorted(
            f
            for f in p.rglob("*")
            if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
        )
        for f in files:
            yield str(f), {}
        return
    fields = (column,) if column else INPUT_FIELDS
    try:
        with _open(p, encoding) as f:
            if kind in ("csv", "tsv"):
                reader = csv.DictReader(f, delimiter="\t" if kind == "tsv" else ",")
                names = reader.fieldnames or []
                key = next((c for c in fields if c in names), None)
                if key is None:
                    key = names[0] if len(names) == 1 and not column else None
                if key is None:
                    raise InputError(
                        f"{str(p)!r} has no {'/'.join(fields)} column; its columns "
                        f"are {names}. Name the input column with --column."
                    )
                for row in reader:
                    if row.get(key):
                        yield row[key], ({"id": row["id"]} if "id" in row else {})
                return
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                line = line.rstrip("\r\n")
                if kind == "lines":
                    yield line, {}
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{str(p)!r} line {lineno} is not JSON ({exc.msg}).") from None
                if not isinstance(obj, dict):
                    yield obj, {}
                    continue
                key = next((c for c in fields if c in obj), None)
                if key is None:
                    raise InputError(
                        f"{str(p)!r} line {lineno} has no {'/'.join(fields)} field: "
                        f"{line[:80]!r}. Name the input field with --column."
                    )
                yield obj[key], ({"id": obj["id"]} if "id" in obj else {})
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{str(p)!r} is not {encoding} text (offset {exc.start}); pass its "
            "encoding, e.g. --encoding latin-1."
        ) from None


def count_inputs(
    path: str | os.PathLike,
    fmt: str | None = None,
    encoding: str = "utf-8",
    column: str | None = None,
) -> int:
    """How many inputs :func:`iter_inputs` yields (one streaming pass)."""
    return sum(1 for _ in iter_inputs(path, fmt, encoding, column))


# -- the partial folder --------------------------------------------------------------------------


def partial_dir(output: Path) -> Path:
    return output.with_name(output.name + PARTIAL)


def _part(folder: Path, rank: int, world: int, npy: bool) -> Path:
    return folder / f"rank{rank}-of-{world}.{'f32' if npy else 'jsonl'}"


def check_output(output: Path, meta: dict[str, Any], overwrite: bool) -> bool:
    """Before any model loads: may we write ``output``? True when a matching partial run exists
    (it will be resumed). Raises for an existing output or a partial run of other arguments."""
    folder = partial_dir(output)
    if output.exists() and not overwrite:
        raise _Usage(
            f"--output {str(output)!r} exists; pass --overwrite to replace it, or choose "
            "another file."
        )
    if folder.exists():
        if not (folder / META).is_file():
            raise _Usage(f"{str(folder)!r} exists and was not written by fmhub; move it away.")
        if overwrite:
            return False
        saved = json.loads((folder / META).read_text())
        diff = sorted(k for k in set(saved) | set(meta) if saved.get(k) != meta.get(k))
        if diff:
            raise _Usage(
                f"{str(folder)!r} holds an interrupted run with other arguments ({', '.join(diff)}: "
                f"{[saved.get(k) for k in diff]} then, {[meta.get(k) for k in diff]} now); rerun "
                "it the same way to resume, or pass --overwrite to start over."
            )
        return True
    return False


def _done_jsonl(part: Path, chunk: int) -> int:
    """Whole chunks already in a JSON Lines part; a torn tail is cut off. Returns inputs done."""
    if not part.exists():
        return 0
    lines, offset, keep = 0, 0, 0
    with part.open("rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            lines += 1
            offset += len(line)
            if lines % chunk == 0:
                keep = offset
    done = (lines // chunk) * chunk
    with part.open("r+b") as f:
        f.truncate(keep)
    return done


def _done_npy(part: Path, chunk: int) -> int:
    if not part.exists() or part.stat().st_size < 8:
        return 0
    with part.open("r+b") as f:
        (dim,) = struct.unpack("<q", f.read(8))
        rows = (part.stat().st_size - 8) // (4 * dim)
        done = (rows // chunk) * chunk
        f.truncate(8 + done * 4 * dim)
    return done


# -- the work --------------------------------------------------------------------------------


def predict_file(
    model: Any,
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    meta: dict[str, Any],
    fmt: str | None = None,
    encoding: str = "utf-8",
    column: str | None = None,
    batch_size: int | None = None,
    chunk: int = 512,
    overwrite: bool = False,
    progress: bool | None = None,
    total: int | None = None,
) -> dict[str, Any]:
    """Predict every input of ``source`` into ``output`` (see the module doc). Returns counts.

    ``meta`` describes the run (model, options, input, chunk...); a partial run is resumed only if
    it was started with the same ``meta``. Every rank calls this; rank 0 merges.
    """
    from ._progress import progress_bar
    from .finetuning.distributed import current
    from .results import to_jsonable

    output = Path(output)
    npy = output.suffix.lower() == ".npy"
    if npy and model.task != "embedding":
        raise InputError(
            f"--output {str(output)!r}: a .npy file holds embedding vectors, and "
            f"{model.spec.id!r} is a {model.task} model; write .jsonl instead."
        )
    dist = current(model.device)
    if dist:
        dist.place(model)
    rank, world = (dist.rank, dist.world) if dist else (0, 1)
    meta = {**meta, "world_size": world, "chunk": chunk}
    folder = partial_dir(output)
    if rank == 0:
        resuming = check_output(output, meta, overwrite)
        if folder.exists() and not resuming:
            shutil.rmtree(folder)  # ours (meta.json checked), and --overwrite was given
        folder.mkdir(parents=True, exist_ok=True)
        (folder / META).write_text(json.dumps(meta, indent=1))
    if dist:
        dist.barrier("preparing the output")
    part = _part(folder, rank, world, npy)
    done = (_done_npy if npy else _done_jsonl)(part, chunk)
    if total is None:
        total = count_inputs(source, fmt, encoding, column)
    n_chunks = -(-total // chunk)
    mine = [g for g in range(rank, n_chunks, world)]
    my_total = sum(min(chunk, total - g * chunk) for g in mine)
    bs = batch_size or model.default_batch_size
    bar = progress_bar(
        my_total,
        desc=f"predict (rank 0 of {world})" if world > 1 else "predict",
        unit="input",
        enabled=progress if rank == 0 else False,
        initial=done,
    )
    todo = {g for g in mine[done // chunk :]}
    try:
        with part.open("ab") as out:
            for g, items in _chunks(iter_inputs(source, fmt, encoding, column), chunk):
                if g not in todo:
                    continue
                results = model.predict([x for x, _ in items], batch_size=bs, progress=False)
                if npy:
                    out.write(_rows(results, out.tell() == 0))
                else:
                    out.write(
                        "".join(
                            json.dumps(
                                {**extra, "input": x, "result": to_jsonable(r)},
                                default=_json_default,
                            )
                            + "\n"
                            for (x, extra), r in zip(items, results)
                        ).encode()
                    )
                out.flush()
                if bar is not None:
                    bar.update(len(items))
    finally:
        if bar is not None:
            bar.close()
    if dist:
        dist.barrier("waiting for every rank to finish its share")
    if rank == 0:
        _merge(folder, output, world, chunk, total, npy)
    return {"inputs": total, "resumed_from": done, "output": str(output)}


def _chunks(items: Iterator[tuple[Any, dict]], chunk: int):
    buf: list[tuple[Any, dict]] = []
    g = 0
    for item in items:
        buf.append(item)
        if len(buf) == chunk:
            yield g, buf
            g, buf = g + 1, []
    if buf:
        yield g, buf


def _rows(results: list[Any], header: bool) -> bytes:
    import numpy as np

    arr = np.stack([np.asarray(r, dtype=np.float32).reshape(-1) for r in results])
    head = struct.pack("<q", arr.shape[1]) if header else b""
    return head + arr.astype("<f4", copy=False).tobytes()


def _json_default(obj: Any) -> Any:
    from ._clikit import json_default

    return json_default(obj)


def _merge(folder: Path, output: Path, world: int, chunk: int, total: int, npy: bool) -> None:
    """Interleave the ranks' parts chunk by chunk into ``output`` (temp file, then rename)."""
    missing = [r for r in range(world) if not _part(folder, r, world, npy).exists()]
    if missing and total:
        raise FmhubError(
            f"{str(folder)!r} lacks the parts of rank(s) {missing}: on several machines, --output "
            "must be on storage every machine shares."
        )
    parts = [
        _part(folder, r, world, npy).open("rb") if r not in missing else None for r in range(world)
    ]
    tmp = output.with_name(f".{output.name}.fmhub-tmp-{os.getpid()}")
    try:
        with tmp.open("wb") as out:
            dim = 0
            if npy:
                import numpy as np

                dims = {struct.unpack("<q", p.read(8))[0] for p in parts if p and p.peek(1)}
                dim = dims.pop() if len(dims) == 1 else 0
                header = {"descr": "<f4", "fortran_order": False, "shape": (total, dim)}
                np.lib.format.write_array_header_1_0(out, header)
            for g in range(-(-total // chunk)):
                n = min(chunk, total - g * chunk)
                src = parts[g % world]
                if npy:
                    data = src.read(n * 4 * dim)
                    if len(data) != n * 4 * dim:
                        raise FmhubError(f"{str(folder)!r}: a part ended early; rerun to redo it.")
                    out.write(data)
                else:
                    for _ in range(n):
                        line = src.readline()
                        if not line.endswith(b"\n"):
                            raise FmhubError(
                                f"{str(folder)!r}: a part ended early; rerun to redo it."
                            )
                        out.write(line)
        os.replace(tmp, output)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        for p in parts:
            if p:
                p.close()
    shutil.rmtree(folder)


# -- the command ---------------------------------------------------------------------------------


def cmd_predict_file(args: Any) -> int:
    """``fmhub predict NAME --input FILE|DIR --output FILE [--nproc-per-node N]``: everything is
    checked before a model loads (or torchrun starts); rank 0 prints a JSON summary."""
    from ._clikit import UsageError, check_input_file, check_model_name, load_options, verbosity
    from .finetuning.distributed import launch, under_launcher

    if args.inputs:
        raise UsageError("with --output, give the inputs with --input FILE|DIR, not as arguments.")
    if args.input is None or args.input == "-":
        raise UsageError(
            "--output needs --input FILE or DIR (stdin cannot be resumed); without "
            "--output, results go to stdout."
        )
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}.")
    launching = bool(args.nproc_per_node) and not under_launcher()
    if launching and (args.nproc_per_node < 1 or args.nnodes < 1):
        raise UsageError("--nproc-per-node and --nnodes must be at least 1.")
    options = load_options(args)
    check_model_name(args.name)
    src = check_input_file(args.input, "--input").resolve()
    fmt = input_format(src, args.format)
    try:
        total = count_inputs(src, fmt, args.encoding, args.column)
    except InputError as exc:
        raise UsageError(str(exc)) from None
    except LookupError:
        raise UsageError(f"--encoding {args.encoding!r} is not an encoding Python knows.") from None
    output = Path(args.output)
    if not output.parent.is_dir():
        raise UsageError(f"--output {args.output!r}: folder {str(output.parent)!r} does not exist.")
    st = src.stat()
    meta = {
        "model": args.name,
        "options": options,
        "input": str(src),
        "input_bytes": st.st_size,
        "input_mtime_ns": st.st_mtime_ns,
        "format": fmt,
        "column": args.column,
        "encoding": args.encoding,
        "batch_size": args.batch_size,
        "inputs": total,
    }
    world = (
        args.nproc_per_node * args.nnodes if launching else int(os.environ.get("WORLD_SIZE", "1"))
    )
    if int(os.environ.get("RANK", "0")) == 0:
        try:
            check_output(
                output, {**meta, "world_size": world, "chunk": args.chunk_size}, args.overwrite
            )
        except _Usage as exc:
            raise UsageError(str(exc)) from None
    if launching:
        return launch(
            args.argv, args.nproc_per_node, args.nnodes, args.rdzv_endpoint, args.node_rank
        )
    from . import load

    model = load(args.name, **options)
    try:
        summary = predict_file(
            model,
            src,
            output,
            meta=meta,
            fmt=fmt,
            encoding=args.encoding,
            column=args.column,
            batch_size=args.batch_size,
            chunk=args.chunk_size,
            overwrite=args.overwrite,
            progress=verbosity(args) >= 0,
            total=total,
        )
    except _Usage as exc:
        raise UsageError(str(exc)) from None
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary))
    return 0
