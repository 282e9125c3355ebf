"""Start-up: ``fmhub list`` / ``info`` and ``import fmhub`` in fresh processes, beside the
interpreter doing nothing and a bare entry-point scan, interleaved.

Contenders (each round runs every one once, order alternating; medians reported):

* ``python -c pass`` — the interpreter alone, the floor of any command;
* ``entry-point scan`` — ``python -c "import importlib.metadata as md; md.entry_points(group='fmhub')"``,
  what any entry-point plugin system pays before it does anything;
* ``import fmhub``;
* ``fmhub list`` (the console script), ``python -m fmhub list``, ``fmhub info ALIAS`` — answered
  from the start-up snapshot (docs/architecture.md, "The start-up snapshot");
* ``fmhub list, snapshot stale`` — the snapshot deleted first (as after installing any
  distribution): the full command on the registration cache, which rewrites the snapshot;
* ``fmhub list, no cache`` — ``FMHUB_PLUGIN_CACHE=0``: every plugin imported;
* the same two ways with a plugin installed that sleeps 1 s at import.

A warm-up run of each fills a private cache folder first. Besides wall-clock time each row shows
the process's CPU time (user + system), which load on a shared machine inflates less.

    python bench/startup.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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

SCAN = "import importlib.metadata as md; md.entry_points(group='fmhub')"


def slow_site(root: Path) -> Path:
    """A fake installed distribution whose plugin module sleeps 1 s when imported."""
    site = root / "site"
    info = site / "fmhub_slowbench-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "fmhub_slowbench.py").write_text(textwrap.dedent(SLOW))
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fmhub-slowbench\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[fmhub]\nslowbench = fmhub_slowbench\n")
    return site


def drop_snapshots(env: dict[str, str]) -> None:
    for path in Path(env["FMHUB_CACHE"], "plugins").glob("snapshot-*.json"):
        path.unlink()


def run(argv: list[str], env: dict[str, str], drop: bool = False) -> tuple[float, float]:
    """Wall-clock and CPU (user + system) seconds of one fresh process."""
    if drop:
        drop_snapshots(env)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    if quick():
        args.rounds = 5
    py = sys.executable
    script = Path(py).with_name("fmhub")
    fmhub = [str(script)] if script.exists() else [py, "-m", "fmhub"]
    with tempfile.TemporaryDirectory() as tmp:
        base = dict(os.environ, FMHUB_CACHE=str(Path(tmp) / "cache"))
        for var in ("FMHUB_LOAD_PLUGINS", "FMHUB_DISABLE_PLUGINS", "FMHUB_PLUGIN_CACHE"):
            base.pop(var, None)
        slow = dict(
            base,
            PYTHONPATH=os.pathsep.join([str(slow_site(Path(tmp))), base.get("PYTHONPATH", "")]),
        )
        listed = subprocess.run(
            [*fmhub, "list", "--json"], env=base, check=True, capture_output=True, text=True
        )
        specs = json.loads(listed.stdout)
        alias = next((a for s in specs for a in s.get("aliases", ())), specs[0]["id"])
        nocache = dict(base, FMHUB_PLUGIN_CACHE="0")
        stale = dict(base, FMHUB_CACHE=str(Path(tmp) / "stale-cache"))  # its snapshots dropped
        sides = {
            "python -c pass": ([py, "-c", "pass"], base, False),
            "entry-point scan": ([py, "-c", SCAN], base, False),
            "import fmhub": ([py, "-c", "import fmhub"], base, False),
            "fmhub list": ([*fmhub, "list"], base, False),
            "python -m fmhub list": ([py, "-m", "fmhub", "list"], base, False),
            f"fmhub info {alias}": ([*fmhub, "info", alias], base, False),
            "fmhub list, snapshot stale": ([*fmhub, "list"], stale, True),
            "fmhub list, no cache": ([*fmhub, "list"], nocache, False),
            "+slow plugin: fmhub list": ([*fmhub, "list"], slow, False),
            "+slow plugin: no cache": ([*fmhub, "list"], dict(slow, FMHUB_PLUGIN_CACHE="0"), False),
        }
        for argv, env, _ in sides.values():
            run(argv, env)  # fills the caches, warms the OS file cache
        before = loadavg()
        times: dict[str, list[float]] = {n: [] for n in sides}
        cpu: dict[str, list[float]] = {n: [] for n in sides}
        for r in range(args.rounds):
            for name in list(sides) if r % 2 == 0 else list(sides)[::-1]:
                argv, env, drop = sides[name]
                wall, used = run(argv, env, drop)
                times[name].append(wall)
                cpu[name].append(used)
    print(
        f"Fresh processes, {args.rounds} interleaved rounds, {len(specs)} models listed, "
        f"load average {before} before, {loadavg()} after; fmhub = {' '.join(fmhub)}"
    )
    med = {n: statistics.median(t) for n, t in times.items()}
    for name, t in times.items():
        print(
            f"  {name:<30} median {med[name] * 1000:7.1f} ms, best {min(t) * 1000:7.1f} ms, "
            f"CPU median {statistics.median(cpu[name]) * 1000:7.1f} ms"
        )
    summary("fmhub_list_vs_entry_point_scan", med["fmhub list"], med["entry-point scan"], "s")
    summary("fmhub_import_vs_bare_python", med["import fmhub"], med["python -c pass"], "s")
    summary(
        "fmhub_list_startup_cache_vs_no_cache", med["fmhub list"], med["fmhub list, no cache"], "s"
    )
    summary(
        "fmhub_list_with_1s_slow_plugin",
        med["+slow plugin: fmhub list"],
        med["+slow plugin: no cache"],
        "s",
    )


if __name__ == "__main__":
    main()
