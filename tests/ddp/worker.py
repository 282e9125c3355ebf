"""Run by tests/test_distributed.py on several processes (torchrun, or by hand with RANK/WORLD_SIZE):
``python worker.py SCENARIO[,SCENARIO...] OUT [MODEL_DIR]``: the scenarios in order, in one process
group. Each rank writes what it holds to OUT, and ``SCENARIO.done.rankR`` after each scenario."""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

import fmhub
from fmhub.finetuning.adapter import trainable_state

RANK = int(os.environ.get("RANK", "0"))


def toy_data(n: int, seed: int):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x = [rng.uniform(-1, 1) for _ in range(4)]
        out.append((x, "pos" if x[0] + x[1] > 0 else "neg"))
    return out


# One setting for the 1-process and the 2-process runs: plain SGD, constant rate, no dropout.
TOY = {
    "method": "lora",
    "optimizer": "sgd",
    "learning_rate": 0.05,
    "batch_size": 16,
    "epochs": 2,
    "scheduler": "constant",
    "warmup_ratio": 0.0,
    "weight_decay": 0.0,
    "progress": False,
    "labels": ["neg", "pos"],
}


class Faulty(torch.utils.data.Dataset):
    """``data`` whose ``after``-th access in this process does ``fault`` (raise, NaN, exit)."""

    def __init__(self, data, after: int, fault: str, rank: int | None = None):
        self.data, self.after, self.fault, self.rank, self.seen = data, after, fault, rank, 0

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        self.seen += 1
        if self.seen > self.after and (self.rank is None or self.rank == RANK):
            if self.fault == "interrupt":
                raise KeyboardInterrupt("interrupted on purpose")
            if self.fault == "exit":
                os._exit(17)
            if self.fault == "nan":
                return [float("nan")] * 4, self.data[i][1]
        return self.data[i]


def text_data(n: int, seed: int):
    rng = random.Random(seed)
    pools = {"ride": "a man is riding a horse in the woods", "music": "a woman plays the violin"}
    out = []
    for i in range(n):
        label = "ride" if i % 2 else "music"
        words = pools[label].split()
        rng.shuffle(words)
        out.append((" ".join(words), label))
    return out


def dump(out: Path, name: str, model, **extra) -> None:
    save_file(trainable_state(model.module), str(out / f"{name}.rank{RANK}.safetensors"))
    (out / f"{name}.rank{RANK}.json").write_text(json.dumps(extra))


def toy(out: Path) -> None:
    train, ev = toy_data(256, 0), toy_data(64, 1)
    model = fmhub.load("toy:embed")
    res = fmhub.finetune(
        model, train, eval=ev, output_dir=str(out / "a"), checkpoint_every=8, **TOY
    )
    dump(out, "a", model, history=res.history, steps=res.steps, train_loss=res.train_loss)
    # interrupted at step 11 (checkpoint at 8), then resumed: the same weights as run a
    model = fmhub.load("toy:embed")
    try:
        fmhub.finetune(
            model,
            Faulty(train, 10 * 8, "interrupt"),
            output_dir=str(out / "b"),
            checkpoint_every=8,
            **TOY,
        )
        raise AssertionError("the interruption did not happen")
    except KeyboardInterrupt:
        pass
    saved = json.loads((out / "b" / "checkpoint" / "state.json").read_text())["step"]
    model = fmhub.load("toy:embed")
    res = fmhub.finetune(
        model, train, output_dir=str(out / "b"), checkpoint_every=8, resume=True, **TOY
    )
    dump(out, "b", model, steps=res.steps, resumed_from=saved)
    # a NaN on rank 1 only, in step 3: every rank stops with the weights of step 2
    model = fmhub.load("toy:embed")
    try:
        fmhub.finetune(model, Faulty(train, 2 * 8, "nan", rank=1), **TOY)
        raise AssertionError("no NonFiniteLossError")
    except fmhub.NonFiniteLossError as exc:
        dump(out, "nan", model, error=str(exc))


def hf(out: Path, model_dir: str) -> None:
    model = fmhub.load(model_dir)
    fmhub.finetune(
        model,
        text_data(32, 0),
        method="lora",
        optimizer="sgd",
        learning_rate=0.05,
        batch_size=8,
        max_steps=6,
        scheduler="constant",
        warmup_ratio=0.0,
        weight_decay=0.0,
        progress=False,
        output_dir=str(out / "hf"),
    )
    dump(out, "hf", model)


def cli_args(train: Path, output: Path) -> list[str]:
    """``fmhub finetune`` of toy:embed with BitFit and the TOY settings (no PEFT to import)."""
    cfg = [f"-c{k}={json.dumps(v)}" for k, v in TOY.items() if k not in ("method", "progress")]
    return [
        "finetune",
        "toy:embed",
        "--train",
        str(train),
        "--output",
        str(output),
        "--method",
        "bitfit",
        "-q",
        *cfg,
    ]


def cli(out: Path) -> None:
    """``fmhub finetune`` through the real CLI on each rank, as the processes torchrun starts for
    ``--nproc-per-node`` run it (OUT/train.jsonl, written before the launch, to OUT/cli). Each
    rank's stdout and exit code go to cli.rankR.stdout and cli.rankR.rc."""
    import contextlib
    import io

    from fmhub.cli import main

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = main(cli_args(out / "train.jsonl", out / "cli"))
    (out / f"cli.rank{RANK}.stdout").write_text(printed.getvalue())
    (out / f"cli.rank{RANK}.rc").write_text(str(rc))


def die(out: Path) -> None:
    """Rank 1 exits (code 17) in step 4; the others write their error and how long they took to
    see it (died.rankR.txt, died.rankR.seconds), then raise it. The last scenario of a launch."""
    model = fmhub.load("toy:embed")
    started = time.monotonic()
    try:
        fmhub.finetune(model, Faulty(toy_data(256, 0), 3 * 8, "exit", rank=1), **TOY)
    except fmhub.DistributedError as exc:
        (out / f"died.rank{RANK}.seconds").write_text(str(time.monotonic() - started))
        (out / f"died.rank{RANK}.txt").write_text(str(exc))
        raise


if __name__ == "__main__":
    scenarios, out = sys.argv[1].split(","), Path(sys.argv[2])
    # one launch for every scenario: starting processes is the slow part
    for scenario in scenarios:
        if scenario == "toy":
            toy(out)
        elif scenario == "hf":
            hf(out, sys.argv[3])
        elif scenario == "cli":
            cli(out)
        elif scenario == "die":
            die(out)
        else:
            raise SystemExit(f"unknown scenario {scenario!r}")
        (out / f"{scenario}.done.rank{RANK}").touch()
