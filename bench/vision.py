"""Images per second at batch 32: fmhub (preprocess + forward + postprocess) vs the same work with timm.

The direct-timm side is what a timm user writes: ``create_transform(**resolve_data_config(model))``
per image, ``torch.stack``, ``model(x)`` under ``inference_mode`` in timm's default memory layout,
softmax and top-5 with ImageNet label names. fmhub runs ``model.predict(images, batch_size=32)``
with its defaults (batched tensor conversion; channels_last for convolutional nets). Both use the
same weights (random, ``pretrained=False``: no network here) and the same 32 PIL photos from
scikit-image. Runs are interleaved and repeated in one process so load on the machine hits both
sides alike; the best and the median of each are printed, plus the largest logit difference and
the preprocessing time alone (timm's per-image transform + stack vs fmhub's batched preprocess).

    python bench/vision.py                      # default model list
    python bench/vision.py --models resnet18 vit_small_patch16_224 --repeats 5

The Hugging Face rows (``--hf on|off|only``) run an ``hf:`` ViT (the vit-base config with random
weights; a 4-layer, 192-wide one under ``FMHUB_BENCH_QUICK=1``) through fmhub and through
transformers' own ``pipeline("image-classification")`` / ``pipeline("image-feature-extraction")``
with the same ``batch_size``, interleaved, checking both give the same labels / vectors, and print
``SUMMARY`` lines (images/s).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from PIL import Image

CONV = [
    "resnet18",
    "resnet50",
    "efficientnet_lite0",
    "efficientnet_b0",
    "mobilenetv3_large_100",
    "convnext_tiny",
]
OTHER = ["vit_small_patch16_224", "deit_small_patch16_224", "swin_tiny_patch4_window7_224"]


def photos(n: int) -> list[Image.Image]:
    from skimage import data

    base = [data.chelsea(), data.coffee(), data.astronaut(), data.camera(), data.logo()]
    imgs = [Image.fromarray(a).convert("RGB") for a in base]
    return [imgs[i % len(imgs)] for i in range(n)]


def timm_side(name: str, state_dict):
    import timm
    from timm.data import ImageNetInfo, create_transform, resolve_data_config

    model = timm.create_model(name, pretrained=False).eval()
    model.load_state_dict(state_dict)
    transform = create_transform(**resolve_data_config(model=model), is_training=False)
    info = ImageNetInfo()

    def run(images):
        x = torch.stack([transform(img) for img in images])
        with torch.inference_mode():
            logits = model(x)
        probs = logits.softmax(-1)
        top = probs.topk(5)
        out = [
            [(info.index_to_description(int(i)), float(s)) for i, s in zip(ii, ss)]
            for ii, ss in zip(top.indices, top.values)
        ]
        return out, logits

    run.transform = transform
    run.model = model
    return run


def _preprocess_times(fm, transform, images, repeats: int) -> tuple[float, float]:
    """Best time of the preprocessing alone: timm's per-image transform + stack vs fmhub's batch."""
    t_timm, t_fm = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.stack([transform(img) for img in images])
        t1 = time.perf_counter()
        fm.preprocess(images)
        t2 = time.perf_counter()
        t_timm.append(t1 - t0)
        t_fm.append(t2 - t1)
    return min(t_timm), min(t_fm)


def bench_model(name: str, images, repeats: int, threads: int) -> dict:
    import fmhub

    torch.manual_seed(0)
    fm = fmhub.load(f"timm:{name}", pretrained=False, device="cpu")
    direct = timm_side(name, fm.module.state_dict())
    fm.predict(images[:2], batch_size=32)  # warm-up both
    direct(images[:2])
    t_timm, t_fm = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _, ref_logits = direct(images)
        t1 = time.perf_counter()
        fm.predict(images, batch_size=32, progress=False)
        t2 = time.perf_counter()
        t_timm.append(t1 - t0)
        t_fm.append(t2 - t1)
    ours = fm.forward(fm.preprocess(images)).float()
    diff = float((ours - ref_logits).abs().max())
    n = len(images)
    pre_timm, pre_fm = _preprocess_times(fm, direct.transform, images, repeats)
    return {
        "pre_timm_ms": 1e3 * pre_timm / n,
        "pre_fmhub_ms": 1e3 * pre_fm / n,
        "model": name,
        "channels_last": fm.info["channels_last"],
        "timm_best": n / min(t_timm),
        "fmhub_best": n / min(t_fm),
        "timm_median": n / statistics.median(t_timm),
        "fmhub_median": n / statistics.median(t_fm),
        "max_logit_diff": diff,
    }


# -- Hugging Face image models: fmhub vs transformers' pipelines ----------------------------------

HF_FULL = dict(
    hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072
)
HF_QUICK = dict(hidden_size=192, num_hidden_layers=4, num_attention_heads=3, intermediate_size=768)


def hf_checkpoints(root: str, sizes: dict) -> dict[str, str]:
    """A random-weight ViT (224 pixels, patch 16, 1000 classes) as an image classifier and as an
    encoder with a pooler, each with the ViT image processor, saved as Transformers folders."""
    import transformers

    out = {}
    for task, auto in (("classification", "ViTForImageClassification"), ("embedding", "ViTModel")):
        config = transformers.ViTConfig(image_size=224, patch_size=16, num_labels=1000, **sizes)
        torch.manual_seed(0)
        model = getattr(transformers, auto)(config).eval()
        folder = f"{root}/vit-{task}"
        model.save_pretrained(folder)
        transformers.ViTImageProcessor().save_pretrained(folder)
        out[task] = folder
    return out


def _hf_sides(task: str, folder: str, batch: int):
    import numpy as np
    from transformers import pipeline

    import fmhub

    model = fmhub.load(folder, device="cpu")
    kind = "image-classification" if task == "classification" else "image-feature-extraction"
    pipe = pipeline(kind, model=folder, device="cpu")
    if task == "classification":

        def native(images):
            return [r[0]["label"] for r in pipe(images, batch_size=batch, top_k=5)]

        def ours(images):
            return [r.label for r in model.predict(images, batch_size=batch, progress=False)]

        return native, ours, lambda a, b: a == b

    def native(images):
        return np.stack(
            [np.asarray(r).reshape(-1) for r in pipe(images, batch_size=batch, pool=True)]
        )

    def ours(images):
        return np.stack(model.predict(images, batch_size=batch, progress=False))

    return native, ours, lambda a, b: bool(np.allclose(a, b, atol=1e-4))


def hf_rows(repeats: int, batch: int, quick: bool) -> None:
    """fmhub vs transformers' pipelines on the same random-weight ViT and photos, interleaved."""
    import tempfile

    from summary import summary

    sizes = HF_QUICK if quick else HF_FULL
    images = photos(batch)
    print(
        f"\nhf: ViT {sizes['num_hidden_layers']} layers x {sizes['hidden_size']} (random "
        f"weights, 224 px), batch {batch}, {repeats} interleaved rounds; images/s (best | median)"
    )
    with tempfile.TemporaryDirectory(prefix="fmhub-bench-hf-vit-") as root:
        for task, folder in hf_checkpoints(root, sizes).items():
            native, ours, same = _hf_sides(task, folder, batch)
            assert same(native(images), ours(images)), f"{task}: fmhub and the pipeline disagree"
            times: dict[str, list[float]] = {"pipeline": [], "fmhub": []}
            for r in range(repeats):
                order = [("pipeline", native), ("fmhub", ours)]
                for name, fn in order if r % 2 == 0 else order[::-1]:
                    t0 = time.perf_counter()
                    fn(images)
                    times[name].append(time.perf_counter() - t0)
            best = {k: len(images) / min(v) for k, v in times.items()}
            med = {k: len(images) / statistics.median(v) for k, v in times.items()}
            # each round times both back to back: the median of the per-round ratios is the
            # figure least moved by load that drifts during the run
            paired = statistics.median(p / f for p, f in zip(times["pipeline"], times["fmhub"]))
            print(
                f"{'hf vit ' + task:30} pipeline {best['pipeline']:6.1f} | {med['pipeline']:6.1f}"
                f"   fmhub {best['fmhub']:6.1f} | {med['fmhub']:6.1f}"
                f"   ratio {best['fmhub'] / best['pipeline']:4.2f} best, {paired:4.2f} paired",
                flush=True,
            )
            summary(f"vision_hf_vit_{task}", best["fmhub"], best["pipeline"], "images/s")


# -- the fast path against naive timm: the SUMMARY rows ------------------------------------------

#: (model, SUMMARY name); ViT-S is information only (fast=None leaves transformers on the eager path).
FAST_ROWS = [
    ("resnet18", "vision-resnet18"),
    ("convnext_tiny", "vision-convnext_tiny"),
    ("vit_small_patch16_224", "vision-vit_small-info"),
]


def fast_vs_naive(name: str, images, repeats: int) -> dict:
    """fmhub's default path (``fast`` on for convnets) against naive timm, interleaved round by
    round: end to end, and split into preprocessing and forward. Top-1 must be identical."""
    import fmhub

    torch.manual_seed(0)
    fm = fmhub.load(f"timm:{name}", pretrained=False, device="cpu")
    direct = timm_side(name, fm.module.state_dict())
    fm.predict(images, batch_size=len(images), progress=False)  # builds the fast graph
    direct(images)
    ends = {"fmhub": [], "timm": []}
    pre = {"fmhub": [], "timm": []}
    fwd = {"fmhub": [], "timm": []}
    model = direct.model
    for _ in range(repeats):  # one round: both sides end to end, then both split in two
        t0 = time.perf_counter()
        _, ref_logits = direct(images)
        t1 = time.perf_counter()
        ours = fm.predict(images, batch_size=len(images), progress=False)
        t2 = time.perf_counter()
        x = torch.stack([direct.transform(img) for img in images])
        t3 = time.perf_counter()
        with torch.inference_mode():
            model(x)
        t4 = time.perf_counter()
        batch = fm.preprocess(images)
        t5 = time.perf_counter()
        logits = fm.forward(batch)
        t6 = time.perf_counter()
        ends["timm"].append(t1 - t0)
        ends["fmhub"].append(t2 - t1)
        pre["timm"].append(t3 - t2)
        fwd["timm"].append(t4 - t3)
        pre["fmhub"].append(t5 - t4)
        fwd["fmhub"].append(t6 - t5)
    n = len(images)
    same_top1 = [r.label for r in ours] == [row[0][0] for row in direct(images)[0]]
    same_argmax = bool(torch.equal(logits.argmax(-1), ref_logits.argmax(-1)))
    med = statistics.median
    return {
        "fast": fm.info.get("fast"),
        "fmhub": n / med(ends["fmhub"]),
        "timm": n / med(ends["timm"]),
        "pre_ms": {k: 1e3 * med(v) / n for k, v in pre.items()},
        "fwd_ms": {k: 1e3 * med(v) / n for k, v in fwd.items()},
        "same_top1": same_top1 and same_argmax,
        "max_logit_diff": float((logits.float() - ref_logits).abs().max()),
    }


def fast_summary(images, repeats: int, models: list[str] | None = None) -> None:
    """One SUMMARY line per FAST_ROWS model (images/s, medians of interleaved rounds)."""
    from summary import summary

    for name, row in FAST_ROWS:
        if models is not None and name not in models:
            continue
        r = fast_vs_naive(name, images, repeats)
        print(
            f"{name}: fast={r['fast']} same top-1 {r['same_top1']} max|dlogit| "
            f"{r['max_logit_diff']:.1e}; ms/img preprocess timm {r['pre_ms']['timm']:.1f} fmhub "
            f"{r['pre_ms']['fmhub']:.1f}, forward timm {r['fwd_ms']['timm']:.1f} fmhub "
            f"{r['fwd_ms']['fmhub']:.1f}",
            flush=True,
        )
        if not r["same_top1"]:
            print(f"WARNING: {name}: fmhub's top-1 differs from timm's", flush=True)
        summary(row, r["fmhub"], r["timm"], "img/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=CONV + OTHER)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--hf", choices=["on", "off", "only"], default="on", help="the hf: ViT rows")
    ap.add_argument(
        "--summary-only",
        action="store_true",
        help="only the fast-path SUMMARY rows (resnet18, convnext_tiny, vit_small); the "
        "default under FMHUB_BENCH_QUICK=1",
    )
    args = ap.parse_args()
    if args.hf == "only":
        return hf_main(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    from summary import quick

    images = photos(args.batch)
    if args.summary_only or quick():
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}")
        picked = None if args.models == CONV + OTHER else args.models
        fast_summary(images, 3 if quick() else args.repeats, picked)
        if args.hf == "on":
            hf_main(args)
        return
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
        f"{args.repeats} interleaved repeats; images/s (best | median)"
    )
    header = (
        f"{'model':30} {'layout':6} {'timm':>15} {'fmhub':>15} {'ratio':>11} {'max|dlogit|':>11}"
        f" {'preprocess ms/img timm|fmhub':>29}"
    )
    print(header)
    print("-" * len(header))
    for name in args.models:
        r = bench_model(name, images, args.repeats, args.threads)
        layout = "NHWC" if r["channels_last"] else "NCHW"
        print(
            f"{name:30} {layout:6} {r['timm_best']:6.1f} | {r['timm_median']:6.1f} "
            f"{r['fmhub_best']:6.1f} | {r['fmhub_median']:6.1f} "
            f"{r['fmhub_best'] / r['timm_best']:4.2f} | {r['fmhub_median'] / r['timm_median']:4.2f} "
            f"{r['max_logit_diff']:11.1e} {r['pre_timm_ms']:17.1f} | {r['pre_fmhub_ms']:5.1f}",
            flush=True,
        )
    fast_summary(images, args.repeats, args.models)

    if args.hf == "on":
        hf_main(args)


def hf_main(args) -> None:
    from summary import quick

    if args.threads:
        torch.set_num_threads(args.threads)
    fast = quick()
    hf_rows(repeats=8 if fast else args.repeats, batch=16 if fast else args.batch, quick=fast)


if __name__ == "__main__":
    main()
