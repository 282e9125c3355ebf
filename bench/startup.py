"""Start-up: ``fmhub list`` with the registration cache against without it (every plugin imported),
and the same with a plugin that sleeps 1 s at import, in fresh processes, interleaved.

The cache (docs/architecture.md, "The registration cache") lets ``fmhub list`` / ``info`` /
``plugins`` run on what each installed plugin registered last time, without importing it. Each
round runs every contender once (order alternating); medians are reported. A warm-up run fills a
private cache folder first.

    python bench/startup.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from summary import quick, summary

SLOW = """
import time
import fmhub
from fmhub import hookimpl

time.sleep(1.0)


@hookimpl
def fmhub_register_models(register):
    register(fmhub.ModelSpec(id="toy:slow-bench", task="embedding"))
"""


def slow_site(root: Path) -> Path:
    """A fake installed distribution whose plugin module sleeps 1 s when imported."""
    site = root / "site"
    info = site / "fmhub_slowbench-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "fmhub_slowbench.py").write_text(textwrap.dedent(SLOW))
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fmhub-slowbench\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[fmhub]\nslowbench = fmhub_slowbench\n")
    return site


def run(env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "fmhub", "list"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    if quick():
        args.rounds = 5
    with tempfile.TemporaryDirectory() as tmp:
        base = dict(os.environ, FMHUB_CACHE=str(Path(tmp) / "cache"))
        base.pop("FMHUB_LOAD_PLUGINS", None)
        base.pop("FMHUB_DISABLE_PLUGINS", None)
        slow = dict(
            base,
            PYTHONPATH=os.pathsep.join([str(slow_site(Path(tmp))), base.get("PYTHONPATH", "")]),
        )
        sides = {
            "cached": base,
            "uncached": dict(base, FMHUB_PLUGIN_CACHE="0"),
            "cached+slow plugin": slow,
            "uncached+slow plugin": dict(slow, FMHUB_PLUGIN_CACHE="0"),
        }
        for env in sides.values():
            run(env)  # fills the cache, warms the OS file cache
        times: dict[str, list[float]] = {n: [] for n in sides}
        for r in range(args.rounds):
            for name in list(sides) if r % 2 == 0 else list(sides)[::-1]:
                times[name].append(run(sides[name]))
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"fmhub list in a fresh process, {args.rounds} interleaved rounds, load average {load}")
    med = {n: statistics.median(t) for n, t in times.items()}
    for name, t in times.items():
        print(f"  {name:<22} median {med[name]:.3f} s, best {min(t):.3f} s")
    summary("fmhub_list_startup_cache_vs_no_cache", med["cached"], med["uncached"], "s")
    summary(
        "fmhub_list_with_1s_slow_plugin",
        med["cached+slow plugin"],
        med["uncached+slow plugin"],
        "s",
    )


if __name__ == "__main__":
    main()
