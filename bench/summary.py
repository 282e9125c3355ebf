"""One table of every benchmark: each fmhub figure beside its native counterpart.

Every bench prints machine-readable lines (through :func:`summary` here)::

    SUMMARY <name> fmhub=<x> native=<y> ratio=<fmhub/native> unit=<unit>

``python bench/summary.py LOG...`` (or standard input) collects them into a Markdown table, with the
machine described (cores, CPU model and flags, load, torch / ONNX Runtime versions). The "fmhub
advantage" column is the speed-up: native/fmhub for a time, fmhub/native for a rate (a unit
ending in ``/s``). ``make bench`` runs every bench with ``FMHUB_BENCH_QUICK=1`` (fewer rounds) and
ends with this table.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from importlib import metadata

__all__ = ["machine", "quick", "summary", "table"]

LINE = re.compile(r"^SUMMARY (\S+) fmhub=(\S+) native=(\S+) ratio=(\S+) unit=(\S+)\s*$")
#: the x86 SIMD flags that matter for torch/ORT kernels
FLAGS = (
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "sse4_2",
    "f16c",
)


def quick() -> bool:
    """True under ``FMHUB_BENCH_QUICK=1`` (``make bench``): benches run fewer rounds."""
    return os.environ.get("FMHUB_BENCH_QUICK", "").strip() not in {"", "0"}


def summary(name: str, fmhub: float, native: float, unit: str) -> str:
    """Print (and return) one SUMMARY line; ``name`` and ``unit`` must not hold spaces."""
    line = (
        f"SUMMARY {name.replace(' ', '_')} fmhub={fmhub:.6g} native={native:.6g} "
        f"ratio={fmhub / native:.4f} unit={unit.replace(' ', '_')}"
    )
    print(line, flush=True)
    return line


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> list[str]:
    """The machine, one fact per line."""
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for row in f:
                key, _, value = row.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
    except OSError:
        pass
    try:
        with open("/proc/loadavg") as f:
            load = " ".join(f.read().split()[:3])
    except OSError:
        load = "unknown"
    versions = (
        f"Python {platform.python_version()}, torch {_version('torch')}, "
        f"onnxruntime {_version('onnxruntime')}, transformers {_version('transformers')}"
    )
    return [
        f"CPU: {model}, {os.cpu_count()} cores visible",
        f"SIMD flags: {' '.join(f for f in FLAGS if f in flags) or 'unknown'}",
        f"load average (1/5/15 min) when the table was made: {load}",
        versions,
    ]


def table(lines: list[str]) -> str:
    rows = []
    for line in lines:
        m = LINE.match(line.strip())
        if not m:
            continue
        name, fm, nat, ratio, unit = m.groups()
        fm_f, nat_f = float(fm), float(nat)
        rate = unit.endswith("/s")
        adv = (fm_f / nat_f if rate else nat_f / fm_f) if fm_f and nat_f else float("nan")
        rows.append(f"| {name} | {fm} | {nat} | {unit} | {float(ratio):.3f} | {adv:.2f}x |")
    head = [
        "| benchmark | fmhub | native | unit | fmhub/native | fmhub advantage |",
        "|---|---|---|---|---|---|",
    ]
    return "\n".join([*(f"- {m}" for m in machine()), "", *head, *rows])


def main() -> None:
    texts: list[str] = []
    for path in sys.argv[1:] or ["-"]:
        if path == "-":
            texts += sys.stdin.read().splitlines()
        else:
            with open(path, encoding="utf-8") as f:
                texts += f.read().splitlines()
    print(table(texts))


if __name__ == "__main__":
    main()
