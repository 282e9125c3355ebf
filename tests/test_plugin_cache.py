"""The registration cache: listing and resolving names reuse what each installed plugin registered
last time (keyed by distribution version and source files), so a slow-importing plugin does not
delay ``fmhub list``; the plugin is imported when one of its hooks must run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
    for args in (("list",), ("info", "slow-one"), ("plugins",)):
        again = fmhub_list(site, marker, *args)
        assert again.returncode == 0, again.stderr
        assert not marker.exists(), f"fmhub {' '.join(args)} imported the plugin"
    assert "slow:one" in fmhub_list(site, marker, "list").stdout
    assert json.loads(fmhub_list(site, marker, "info", "slow-one").stdout)["id"] == "slow:one"
    assert not marker.exists()

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
