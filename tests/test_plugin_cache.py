"""The registration cache: listing and resolving names reuse what each installed plugin registered
last time (keyed by distribution version and source files), so a slow-importing plugin does not
delay ``fmhub list``; the plugin is imported when one of its hooks must run."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

import fmhub

SLOW = """
import os, time
from pathlib import Path
import fmhub
from fmhub import hookimpl

Path(os.environ["SLOW_MARKER"]).write_text("imported")
time.sleep(float(os.environ.get("SLOW_SLEEP", "0")))


class SlowOptions(fmhub.LoadOptions):
    size: int = 3


@hookimpl
def fmhub_register_namespaces(register):
    register(fmhub.Namespace(name="slow", distribution="fmhub-slow", options=SlowOptions))


@hookimpl
def fmhub_register_models(register):
    register(fmhub.ModelSpec(id="slow:one", aliases=("slow-one",), task="embedding"))


@hookimpl
def fmhub_load(spec, options):
    import torch
    return fmhub.Loaded(module=torch.nn.Linear(options.size, 2), task="embedding")
"""


def fmhub_list(site: Path, marker: Path, *args: str, version_env: dict | None = None):
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        SLOW_MARKER=str(marker),
        SLOW_SLEEP="1",
        FMHUB_LOAD_PLUGINS="slow",
        **(version_env or {}),
    )
    env.pop("FMHUB_DISABLE_PLUGINS", None)
    return subprocess.run(
        [sys.executable, "-m", "fmhub", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def set_version(site: Path, version: str) -> None:
    (meta,) = site.glob("*.dist-info/METADATA")
    meta.write_text(f"Metadata-Version: 2.1\nName: fmhub-slow\nVersion: {version}\n")


def test_a_slow_plugin_is_imported_once_then_listed_and_resolved_from_the_cache(
    install_plugin, tmp_path
):
    site, _ = install_plugin("slow", SLOW, dist="fmhub-slow")
    marker = tmp_path / "marker"
    first = fmhub_list(site, marker, "list")
    assert first.returncode == 0, first.stderr
    assert "slow:one" in first.stdout and marker.exists()
    marker.unlink()
    out = {}
    for args in (("list",), ("info", "slow-one"), ("plugins",)):
        again = fmhub_list(site, marker, *args)
        assert again.returncode == 0, again.stderr
        assert not marker.exists(), f"fmhub {' '.join(args)} imported the plugin"
        out[args] = again.stdout
    assert "slow:one" in out[("list",)]
    assert json.loads(out[("info", "slow-one")])["id"] == "slow:one"

    set_version(site, "0.4")  # an upgrade: the cache entry no longer matches
    upgraded = fmhub_list(site, marker, "list")
    assert upgraded.returncode == 0 and "slow:one" in upgraded.stdout and marker.exists()
    marker.unlink()
    fmhub_list(site, marker, "list")
    assert not marker.exists(), "the new version was cached in turn"


def test_editing_the_plugin_source_invalidates_the_cache(install_plugin, tmp_path, monkeypatch):
    site, module = install_plugin("slow", SLOW, dist="fmhub-slow")
    marker = tmp_path / "marker"
    monkeypatch.setenv("SLOW_MARKER", str(marker))
    monkeypatch.setenv("FMHUB_LOAD_PLUGINS", "slow")
    _ = fmhub.Hub().registry
    assert marker.exists()
    marker.unlink()
    sys.modules.pop(module, None)
    _ = fmhub.Hub().registry
    assert not marker.exists()
    source = site / f"{module}.py"
    source.write_text(source.read_text().replace('"slow-one"', '"slow-uno"'))
    os.utime(source, ns=(source.stat().st_mtime_ns + 10**9,) * 2)
    hub = fmhub.Hub()
    assert marker.exists(), "an edited plugin (editable install) is imported again"
    assert hub.resolve("slow-uno").id == "slow:one"


def test_a_cached_plugin_is_imported_when_a_model_of_it_is_loaded(
    install_plugin, tmp_path, monkeypatch, use_hub
):
    _, module = install_plugin("slow", SLOW, dist="fmhub-slow")
    marker = tmp_path / "marker"
    monkeypatch.setenv("SLOW_MARKER", str(marker))
    monkeypatch.setenv("FMHUB_LOAD_PLUGINS", "toy,slow")
    _ = fmhub.Hub().registry
    marker.unlink()
    sys.modules.pop(module, None)
    hub = use_hub(fmhub.Hub())
    assert {s.id for s in hub.list_models("slow:*")} == {"slow:one"}
    assert hub.resolve("slow-one").plugin == "slow"
    assert {r.name: r.status for r in hub.plugins()}["slow"] == "ok"
    assert not marker.exists()
    model = fmhub.load("slow-one", size=5)  # options validated by the plugin's own class
    assert marker.exists() and model.options.size == 5
    assert model.module.in_features == 5
    assert hub.records["slow"].plugin is not None
    toy = fmhub.load("toy:embed")
    assert len(toy.predict([[1, 2, 3, 4]], progress=False)) == 1


def test_a_corrupt_cache_is_ignored_and_rewritten(install_plugin, tmp_path, monkeypatch):
    _, module = install_plugin("slow", SLOW, dist="fmhub-slow")
    marker = tmp_path / "marker"
    cache = tmp_path / "cache"
    monkeypatch.setenv("FMHUB_CACHE", str(cache))
    monkeypatch.setenv("SLOW_MARKER", str(marker))
    monkeypatch.setenv("FMHUB_LOAD_PLUGINS", "slow")
    _ = fmhub.Hub().registry
    (entry,) = (cache / "plugins").glob("fmhub-slow*.json")
    good = entry.read_text()
    for junk in (
        "{not json",
        json.dumps(
            {
                "key": json.loads(good)["key"],
                "items": {"namespaces": [{"name": "BAD NAME"}], "models": []},
            }
        ),
        "[]",
    ):
        entry.write_text(junk)
        marker.unlink(missing_ok=True)
        sys.modules.pop(module, None)
        hub = fmhub.Hub()
        assert hub.resolve("slow-one").id == "slow:one" and marker.exists()
        assert entry.read_text() == good, "rewritten"


def test_broken_and_disabled_plugins_behave_as_without_cache(install_plugin, monkeypatch):
    install_plugin("broken", 'raise ImportError("no module named somelib")')
    monkeypatch.setenv("FMHUB_LOAD_PLUGINS", "toy,broken")
    for _ in range(2):  # a failing plugin is never cached: it fails, and warns, every time
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            hub = fmhub.Hub()
            recs = {r.name: r for r in hub.plugins()}
        assert recs["broken"].status == "failed" and "somelib" in recs["broken"].error
        assert any("somelib" in str(w.message) for w in record)
        assert recs["toy"].status == "ok"
    monkeypatch.setenv("FMHUB_DISABLE_PLUGINS", "toy")
    hub = fmhub.Hub()
    assert hub.records["toy"].status == "disabled"
    with pytest.raises(fmhub.UnknownNamespaceError, match="disabled"):
        hub.resolve("toy:embed")


CLASH = """
import fmhub
from fmhub import hookimpl

@hookimpl
def fmhub_register_namespaces(register):
    register(fmhub.Namespace(name="clash"))

@hookimpl
def fmhub_register_models(register):
    register(fmhub.ModelSpec(id="clash:x", aliases=("toy-embed",)))
"""


def test_conflicts_are_reported_from_the_cache_too(install_plugin, monkeypatch):
    install_plugin("clash", CLASH)
    monkeypatch.setenv("FMHUB_LOAD_PLUGINS", "toy,clash")
    messages = []
    for _ in range(2):
        hub = fmhub.Hub()
        with pytest.raises(fmhub.AmbiguousModelError, match="'clash'.*'toy'") as err:
            hub.resolve("toy-embed")
        messages.append(str(err.value))
        assert hub.resolve("clash:x").plugin == "clash"
    assert "clash" in hub._lazy, "the second hub came from the cache"
    assert messages[0] == messages[1]


def test_the_cache_can_be_turned_off(install_plugin, tmp_path, monkeypatch):
    _, module = install_plugin("slow", SLOW, dist="fmhub-slow")
    marker = tmp_path / "marker"
    monkeypatch.setenv("SLOW_MARKER", str(marker))
    monkeypatch.setenv("FMHUB_LOAD_PLUGINS", "slow")
    monkeypatch.setenv("FMHUB_PLUGIN_CACHE", "0")
    _ = fmhub.Hub().registry
    marker.unlink()
    sys.modules.pop(module, None)
    hub = fmhub.Hub()
    assert marker.exists() and not hub._lazy


# ---------------------------------------------------------------------------------------------
# The start-up snapshot (fmhub._snapshot): `fmhub list` / `info` / `plugins` from one JSON file,
# without pydantic or any plugin, invalidated by installs, upgrades, removals and edits.
# ---------------------------------------------------------------------------------------------

OTHER = """
import fmhub
from fmhub import hookimpl

@hookimpl
def fmhub_register_namespaces(register):
    register(fmhub.Namespace(name="other"))

@hookimpl
def fmhub_register_models(register):
    register(fmhub.ModelSpec(id="other:m", aliases=("other-m",), task="embedding"))
"""

COMMANDS = [
    ("list",),
    ("list", "slow"),
    ("list", "SLOW:*", "--json"),
    ("list", "--json", "nothing-matches"),
    ("list", "nothing-matches"),
    ("info", "slow-one"),
    ("info", "slow:one"),
    ("plugins",),
    ("plugins", "--json"),
]


def cli(
    site: Path, marker: Path, *args: str, **env: str
) -> tuple[subprocess.CompletedProcess, set]:
    """``python -X importtime -m fmhub ARGS`` with the slow plugin's site: (result, modules)."""
    full = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        SLOW_MARKER=str(marker),
        FMHUB_LOAD_PLUGINS="slow",
    )
    full.pop("FMHUB_DISABLE_PLUGINS", None)
    full.update(env)
    if full["FMHUB_LOAD_PLUGINS"] == "*":  # every installed plugin
        del full["FMHUB_LOAD_PLUGINS"]
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "fmhub", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=240,
    )
    modules = {ln.rsplit("|", 1)[1].strip() for ln in proc.stderr.splitlines() if "|" in ln}
    proc.stderr = "\n".join(ln for ln in proc.stderr.splitlines() if not ln.startswith("import "))
    return proc, modules


def age(*paths: Path) -> None:
    """Date ``paths`` and everything under them a minute back: a snapshot is not written from
    files modified just before (or while) the command ran."""
    past = time.time_ns() - 60 * 10**9
    for top in paths:
        for path in [top, *(top.rglob("*") if top.is_dir() else ())]:
            os.utime(path, ns=(past, past))


def snapshots() -> list[Path]:
    return sorted(Path(os.environ["FMHUB_CACHE"], "plugins").glob("snapshot-*.json"))


def test_list_info_plugins_from_the_snapshot_print_what_the_full_command_prints(
    install_plugin, tmp_path
):
    site, _ = install_plugin("slow", SLOW, dist="fmhub-slow")
    age(site)
    marker = tmp_path / "marker"
    full = {}
    for args in COMMANDS:  # the full command: every plugin imported, no cache of any kind
        proc, modules = cli(site, marker, *args, FMHUB_PLUGIN_CACHE="0")
        full[args] = (proc.returncode, proc.stdout, proc.stderr)
        assert "pydantic" in modules
    assert full[("list",)][0] == 0 and "slow:one" in full[("list",)][1]
    cli(site, marker, "list")  # writes the snapshot
    marker.unlink()
    for args in COMMANDS:
        proc, modules = cli(site, marker, *args)
        assert (proc.returncode, proc.stdout, proc.stderr) == full[args], args
        assert not marker.exists(), f"fmhub {' '.join(args)} imported the plugin"
        heavy = sorted(m for m in modules if m.split(".")[0] in ("pydantic", "pluggy"))
        assert heavy == [] and "importlib.metadata" not in modules, (args, heavy)
        assert "fmhub.cli" in modules  # the probe works
    # what the snapshot cannot answer runs the full command (an unregistered name of an open
    # namespace, a usage error, another option) and still prints the same
    for args in (("info", "slow:two"), ("list", "-q"), ("info",), ("list", "a", "b")):
        proc, modules = cli(site, marker, *args)
        again, _ = cli(site, marker, *args, FMHUB_PLUGIN_CACHE="0")
        assert (proc.returncode, proc.stdout, proc.stderr) == (
            again.returncode,
            again.stdout,
            again.stderr,
        )
        assert "pydantic" in modules


def test_the_snapshot_follows_installs_upgrades_removals_and_edits(install_plugin, tmp_path):
    others = ",".join(sorted({ep.name for ep in md.entry_points(group="fmhub")}))
    site, module = install_plugin("slow", SLOW, dist="fmhub-slow")
    marker = tmp_path / "marker"
    # every installed plugin but those installed before the test: "slow" and the one it installs
    select = {"FMHUB_LOAD_PLUGINS": "*", **({"FMHUB_DISABLE_PLUGINS": others} if others else {})}

    def listed(*args: str, snapshot: bool, **env: str) -> str:
        """The output of ``fmhub ARGS``; ``snapshot``: whether it must come from the snapshot
        (no pydantic imported) or from the full command."""
        proc, modules = cli(site, marker, *args, **{**select, **env})
        assert proc.returncode == 0, proc.stderr
        assert "warning" not in proc.stderr, proc.stderr
        assert ("pydantic" not in modules) is snapshot, (args, snapshot)
        return proc.stdout

    def changed(*args: str, aged: tuple[Path, ...] = (), **env: str) -> str:
        """After a change: the full command runs (the snapshot is stale), then the snapshot
        it rewrote answers with the same output. ``aged``: the paths just written, dated back
        (else they are not trusted, see RACY_NS) but to a new time all the same."""
        age(*aged)
        out = listed(*args, snapshot=False, **env)
        assert listed(*args, snapshot=True, **env) == out
        return out

    assert "slow:one" in changed("list", aged=(site,))
    marker.unlink()
    assert "slow:one" in listed("list", snapshot=True) and not marker.exists()

    # a distribution installed next to it
    info = site / "fmhub_other-1.0.dist-info"
    info.mkdir()
    (site / "fmhub_fake_other_mod.py").write_text(OTHER)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fmhub-other\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[fmhub]\nother = fmhub_fake_other_mod\n")
    assert "other:m" in changed("list", aged=(info, site / "fmhub_fake_other_mod.py"))
    assert json.loads(listed("info", "other-m", snapshot=True))["id"] == "other:m"

    # upgraded in place (a new version in METADATA)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fmhub-other\nVersion: 2.0\n")
    assert "fmhub-other 2.0" in changed("plugins", aged=(info / "METADATA",))

    # a file written next to the distributions (`fmhub list > out.txt`) changes nothing
    (site / "out.txt").write_text("")
    assert "other:m" in listed("list", snapshot=True)

    # an editable plugin's source edited: the new alias lists, the old one is gone
    source = site / f"{module}.py"
    source.write_text(source.read_text().replace('"slow-one"', '"slow-uno"'))
    assert "slow-uno" in changed("list", aged=(source,)) and marker.exists()
    marker.unlink()
    assert json.loads(listed("info", "slow-uno", snapshot=True))["id"] == "slow:one"
    assert not marker.exists()
    proc, _ = cli(site, marker, "info", "slow-one", **select)
    assert proc.returncode == 2 and "slow-one" in proc.stderr

    # removed
    shutil.rmtree(info)
    (site / "fmhub_fake_other_mod.py").unlink()
    assert "other:m" not in changed("list")

    # another selection of plugins has a snapshot of its own
    disable = f"{others},slow".lstrip(",")
    assert "slow:one" not in changed("list", FMHUB_DISABLE_PLUGINS=disable)
    assert "slow:one" in listed("list", snapshot=True)


UNINSTALLER = """
import os, shutil
import fmhub
from fmhub import hookimpl

shutil.rmtree(os.environ["GONE_INFO"], ignore_errors=True)  # uninstalls 'gone' while fmhub runs

@hookimpl
def fmhub_register_models(register):
    register(fmhub.ModelSpec(id="toy:remover"))
"""

GONE = """
import fmhub
from fmhub import hookimpl

@hookimpl
def fmhub_register_models(register):
    register(fmhub.ModelSpec(id="toy:gone"))
"""


def test_a_distribution_removed_while_the_command_runs_is_not_snapshotted(install_plugin, tmp_path):
    site, _ = install_plugin("gone", GONE, dist="fmhub-gone")
    (gone_info,) = site.glob("fmhub_gone-*.dist-info")
    other, _ = install_plugin("uninstaller", UNINSTALLER, dist="fmhub-uninstaller")
    age(site, other)
    env = {
        "PYTHONPATH": os.pathsep.join([str(site), str(other), os.environ.get("PYTHONPATH", "")]),
        "FMHUB_LOAD_PLUGINS": "toy,gone,uninstaller",
        "GONE_INFO": str(gone_info),
    }
    first, _ = cli(site, tmp_path / "marker", "list", **env)
    assert first.returncode == 0 and "toy:gone" in first.stdout  # imported before it went
    again, _ = cli(site, tmp_path / "marker", "list", **env)
    assert "toy:gone" not in again.stdout and "toy:remover" in again.stdout


def test_a_broken_plugin_warns_every_time_and_is_never_snapshotted(install_plugin, tmp_path):
    site, _ = install_plugin(
        "slow", 'raise ImportError("no module named somelib")', dist="fmhub-slow"
    )
    before = snapshots()
    for _ in range(2):
        proc, modules = cli(site, tmp_path / "marker", "list")
        assert proc.returncode == 0 and "somelib" in proc.stderr and "pydantic" in modules
    assert snapshots() == before


def test_bytecode_written_during_the_run_does_not_make_the_snapshot_stale(install_plugin, tmp_path):
    """Python writes ``__pycache__`` into the plugin's folder (a ``sys.path`` entry here) the first
    time it imports the plugin: that run still writes the snapshot, and the next run reads it."""
    site, _ = install_plugin("slow", SLOW, dist="fmhub-slow")
    age(site)
    marker = tmp_path / "marker"
    before = set(snapshots())
    proc, modules = cli(site, marker, "list", PYTHONDONTWRITEBYTECODE="")  # "" is unset
    assert proc.returncode == 0 and "pydantic" in modules and marker.exists()
    assert (site / "__pycache__").is_dir(), "the run wrote bytecode"
    assert set(snapshots()) - before, "and a snapshot"
    marker.unlink()
    proc, modules = cli(site, marker, "list", PYTHONDONTWRITEBYTECODE="")
    assert proc.returncode == 0 and "slow:one" in proc.stdout
    assert "pydantic" not in modules and not marker.exists(), "printed from the snapshot"


def test_a_corrupt_snapshot_is_ignored_and_rewritten(install_plugin, tmp_path):
    site, _ = install_plugin("slow", SLOW, dist="fmhub-slow")
    age(site)
    marker = tmp_path / "marker"
    before = set(snapshots())
    cli(site, marker, "list")
    (snap,) = set(snapshots()) - before
    good = json.loads(snap.read_text())
    assert any(p.endswith(os.path.join("fmhub", "spec.py")) for p, _ in good["stats"])
    for junk in ("{not json", "[]", json.dumps({**good, "specs": "x"})):
        snap.write_text(junk)
        proc, modules = cli(site, marker, "info", "slow-one")
        assert proc.returncode == 0 and json.loads(proc.stdout)["id"] == "slow:one"
        assert "pydantic" in modules, "the full command ran"
        assert json.loads(snap.read_text())["specs"] == good["specs"], "rewritten"


def test_a_hub_made_in_process_is_listed_not_the_snapshot(toy_hub, use_hub, capsys):
    from fmhub.cli import main

    assert main(["list"]) == 0  # the full command: may write a snapshot
    fmhub.set_hub(None)
    assert main(["list"]) == 0  # from the snapshot, when one was written
    first = capsys.readouterr().out
    assert "toy:embed" in first and first.count("toy:embed") == 2

    class Extra:
        @fmhub.hookimpl
        def fmhub_register_models(self, register):
            register(fmhub.ModelSpec(id="toy:extra"))

    use_hub(fmhub.Hub(plugins={"extra": Extra()}))
    assert main(["list"]) == 0
    assert "toy:extra" in capsys.readouterr().out
