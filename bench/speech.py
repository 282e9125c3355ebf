"""Real-time factor of speech recognition on 10 s clips: fmhub vs the torchaudio bundle itself.

The direct side is what a torchaudio user writes: ``bundle.get_model()``, the waveform as a tensor
(``torch.stack`` for a batch), ``model(x)`` under ``inference_mode``, then greedy CTC decoding with
``bundle.get_labels()``. fmhub runs ``model.predict(clips, batch_size=B)`` with its defaults (input
checks, mono mix-down, padding and lengths, chunking plan, decoding). Both sides use the same
bundle, ``wav2vec2_asr_base_960h`` at full size, loaded through ``get_model()`` from a scratch
TORCH_HOME holding random weights (no network here), on the same 10 s clips (the spoken-word
fixtures tiled, 16 kHz). Runs are interleaved and repeated in one process so load on the machine
hits both sides alike; the best and the median real-time factor (compute seconds per audio second,
lower is faster) of each are printed, with fmhub's speed as a fraction of the direct one (from the
best times, the medians, and the median of the per-round ratios).

The Hugging Face rows compare fmhub with ``transformers.pipeline("automatic-speech-recognition")``
on one random-weight wav2vec 2.0 CTC model of base size (95M params, group-norm front end, built
locally with ``build_tiny_audio``), the same clips, the pipeline called on the batch with
``batch_size=B``; both must give the same transcripts.

    python bench/speech.py                 # batch 1 and 4, 5 rounds
    python bench/speech.py --repeats 9 --batches 1 4 8
    python bench/speech.py --only hf       # only the Hugging Face rows
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

RATE = 16000
SECONDS = 10.0
BUNDLE = "wav2vec2_asr_base_960h"
DATA = Path(__file__).resolve().parents[1] / "plugins" / "fmhub-torchaudio" / "tests" / "data"


def clips(n: int) -> list[np.ndarray]:
    """``n`` different 10 s clips: the fixture words resampled to 16 kHz, tiled in turn."""
    import torchaudio.functional as AF

    words = []
    for f in sorted(DATA.glob("*.*")):
        if f.suffix in (".flac", ".ogg", ".wav"):
            data, rate = sf.read(f, dtype="float32", always_2d=True)
            words.append(AF.resample(torch.from_numpy(data.mean(1)), rate, RATE).numpy())
    out = []
    for k in range(n):
        order = itertools.cycle(words[k % len(words) :] + words[: k % len(words)])
        buf = np.concatenate([next(order) for _ in range(40)])
        out.append(np.ascontiguousarray(buf[: int(SECONDS * RATE)]))
    return out


def direct_side():
    import torchaudio

    bundle = getattr(torchaudio.pipelines, BUNDLE.upper())
    model = bundle.get_model()
    labels = bundle.get_labels()

    def decode(emission):
        ids = torch.unique_consecutive(emission.argmax(-1)).tolist()
        text = "".join(labels[i] for i in ids if i != 0).replace("|", " ")
        return " ".join(text.split())

    def run(batch):
        x = torch.stack([torch.from_numpy(c) for c in batch])
        with torch.inference_mode():
            emissions, _ = model(x)
        return [decode(e) for e in emissions]

    return run


def fmhub_side():
    import fmhub

    model = fmhub.load(f"torchaudio:{BUNDLE}")

    def run(batch):
        return [
            r.text
            for r in model.predict(
                [(c, RATE) for c in batch], batch_size=len(batch), progress=False
            )
        ]

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--only", choices=["all", "torchaudio", "hf"], default="all")
    args = parser.parse_args()
    from summary import quick

    if quick():  # make bench
        args.repeats, args.batches = 2, [1]
    if args.only in ("all", "torchaudio"):
        home = tempfile.mkdtemp(prefix="fmhub-bench-torch-home-")
        os.environ["TORCH_HOME"] = home
        try:
            run(args)
        finally:
            shutil.rmtree(home, ignore_errors=True)  # 380 MB of random weights
    if args.only in ("all", "hf"):
        folder = tempfile.mkdtemp(prefix="fmhub-bench-hf-w2v-")
        try:
            run_hf(args, Path(folder))
        finally:
            shutil.rmtree(folder, ignore_errors=True)


#: wav2vec 2.0 base (facebook/wav2vec2-base-960h's architecture).
W2V_BASE = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "conv_dim": (512,) * 7,
    "conv_kernel": (10, 3, 3, 3, 3, 2, 2),
    "conv_stride": (5, 2, 2, 2, 2, 2, 2),
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
}


def interleave(sides: dict, batch, repeats: int) -> dict[str, list[float]]:
    """Seconds per audio second of each side, rounds interleaved (alternating order)."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(repeats):
        for name in list(sides) if r % 2 == 0 else list(sides)[::-1]:
            start = time.perf_counter()
            sides[name](batch)
            times[name].append((time.perf_counter() - start) / (len(batch) * SECONDS))
    return times


def compare(sides: dict, native: str, audio, args, key: str) -> None:
    """For each batch size: both sides' transcripts must agree, then best / median RTF and the
    fmhub speed-up (best, median, and the median of per-round ratios: each round times both sides
    back to back, the figure least moved by load that drifts during the run); a SUMMARY line."""
    from summary import summary

    print(f"{'batch':>5}  {'side':<10} {'best RTF':>9} {'median RTF':>11}  {'fmhub speed':>12}")
    for bs in args.batches:
        batch = audio[:bs]
        texts = {name: side(batch) for name, side in sides.items()}  # warm-up, and same output
        assert texts["fmhub"] == texts[native], f"fmhub and {native} transcripts differ"
        times = interleave(sides, batch, args.repeats)
        best = {n: min(t) for n, t in times.items()}
        median = {n: statistics.median(t) for n, t in times.items()}
        paired = statistics.median(d / f for d, f in zip(times[native], times["fmhub"]))
        for name in sides:
            ratio = ""
            if name == "fmhub":
                ratio = (
                    f"{best[native] / best['fmhub']:.3f}x best, "
                    f"{median[native] / median['fmhub']:.3f}x median, {paired:.3f}x paired"
                )
            print(f"{bs:>5}  {name:<10} {best[name]:>9.4f} {median[name]:>11.4f}  {ratio}")
        summary(key.format(bs=bs), median["fmhub"], median[native], "s_per_audio_s")


def run_hf(args, folder: Path) -> None:
    """fmhub vs transformers' ASR pipeline on one base-size random-weight wav2vec 2.0 CTC model."""
    import transformers

    import fmhub
    from fmhub_transformers.testing import build_tiny_audio

    build_tiny_audio(folder, "wav2vec2", "transcription", sizes=W2V_BASE)
    model = fmhub.load(str(folder))
    pipe = transformers.pipeline("automatic-speech-recognition", model=str(folder), device="cpu")
    params = sum(p.numel() for p in model.module.parameters()) / 1e6

    def hf_side(batch):
        inputs = [{"raw": c, "sampling_rate": RATE} for c in batch]
        return [o["text"] for o in pipe(inputs, batch_size=len(batch))]

    def fmhub_hf(batch):
        return [
            r.text
            for r in model.predict(
                [(c, RATE) for c in batch], batch_size=len(batch), progress=False
            )
        ]

    sides = {"pipeline": hf_side, "fmhub": fmhub_hf}
    audio = clips(max(args.batches))
    print(
        f"\nHF wav2vec2 base CTC ({params:.0f}M params, random weights) vs "
        f"transformers.pipeline('automatic-speech-recognition'), {SECONDS:.0f} s clips, "
        f"{args.repeats} interleaved rounds"
    )
    compare(sides, "pipeline", audio, args, "speech_hf_ctc_rtf_batch{bs}_vs_pipeline")


def run(args) -> None:
    from fmhub_torchaudio.testing import place_bundle_checkpoint

    place_bundle_checkpoint(BUNDLE)
    sides = {"torchaudio": direct_side(), "fmhub": fmhub_side()}
    audio = clips(max(args.batches))
    print(
        f"{BUNDLE} (95M params, random weights), {SECONDS:.0f} s clips at {RATE} Hz, "
        f"torch threads={torch.get_num_threads()}, {args.repeats} interleaved rounds"
    )
    compare(sides, "torchaudio", audio, args, "speech_rtf_batch{bs}_vs_torchaudio")


if __name__ == "__main__":
    main()
