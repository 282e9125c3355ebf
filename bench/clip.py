"""CLIP zero-shot image classification, images per second: fmhub vs transformers' pipeline.

Both sides run the same random-weight CLIP (the ViT-B/32 layout of ``openai/clip-vit-base-patch32``
with fewer layers in quick mode; no network here) on the same scikit-image photos and candidate
labels. The native side is ``pipeline("zero-shot-image-classification")`` called as a user calls
it, on the list of images with ``batch_size``; fmhub is ``model.predict(images, labels=...,
batch_size=...)``. fmhub keeps the label embeddings of a label set (the pipeline runs the text
tower again for every batch) and preprocesses a batch of images at once. Runs are interleaved and
repeated in one process; the best and the median of each are printed, the largest probability
difference between the two, and a SUMMARY line (bench/summary.py).

    python bench/clip.py                 # ViT-B/32 layout, 32 images, 10 labels
    FMHUB_BENCH_QUICK=1 python bench/clip.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from summary import quick, summary  # noqa: E402

LABELS = [
    "cat",
    "dog",
    "car",
    "bird",
    "house",
    "tree",
    "cup of coffee",
    "astronaut",
    "rocket",
    "logo",
]


def photos(n: int):
    from PIL import Image
    from skimage import data

    base = [data.chelsea(), data.coffee(), data.astronaut(), data.camera(), data.logo()]
    imgs = [Image.fromarray(a).convert("RGB") for a in base]
    return [imgs[i % len(imgs)] for i in range(n)]


def build(folder: Path, small: bool) -> Path:
    from fmhub_transformers.testing import build_tiny_image_text

    # ViT-B/32 and its 12-layer, 512-wide text tower; quick mode keeps the widths, cuts layers
    layers = 2 if small else 12
    path = build_tiny_image_text(
        folder / "clip",
        "clip",
        image_size=224,
        patch_size=32,
        sizes={
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_attention_heads": 12,
            "num_hidden_layers": layers,
        },
    )
    return path


def main() -> None:
    q = quick()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8 if q else 32)
    ap.add_argument("--batch", type=int, default=8 if q else 32)
    ap.add_argument("--repeats", type=int, default=2 if q else 5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers

    import fmhub

    images = photos(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        path = build(Path(tmp), small=q)
        fm = fmhub.load(str(path), device="cpu", dtype="float32")
        pipe = transformers.pipeline(
            "zero-shot-image-classification",
            model=fm.module,
            tokenizer=fm.processor.tokenizer,
            image_processor=fm.processor.image_processor,
            device="cpu",
        )
        fm.predict(images[:2], labels=LABELS)  # warm-up both
        pipe(images[:2], candidate_labels=LABELS)
        t_pipe, t_fm = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            ref = pipe(images, candidate_labels=LABELS, batch_size=args.batch)
            t1 = time.perf_counter()
            got = fm.predict(images, labels=LABELS, batch_size=args.batch, progress=False)
            t2 = time.perf_counter()
            t_pipe.append(t1 - t0)
            t_fm.append(t2 - t1)
    diff = max(
        abs(t.score - {r["label"]: r["score"] for r in rs}[t.label])
        for g, rs in zip(got, ref)
        for t in g.top_k
    )
    n = len(images)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {n} images, "
        f"{len(LABELS)} labels, batch {args.batch}, {args.repeats} interleaved repeats"
    )
    print(f"{'side':10} {'best img/s':>10} {'median img/s':>12}")
    print(f"{'pipeline':10} {n / min(t_pipe):10.2f} {n / statistics.median(t_pipe):12.2f}")
    print(f"{'fmhub':10} {n / min(t_fm):10.2f} {n / statistics.median(t_fm):12.2f}")
    print(f"max |probability difference| {diff:.1e}")
    summary("clip_zero_shot", n / statistics.median(t_fm), n / statistics.median(t_pipe), "img/s")


if __name__ == "__main__":
    main()
