"""Plugin discovery through the ``fmhub`` entry-point group, and what a broken plugin does."""

from __future__ import annotations

import importlib.metadata as md
import warnings

import pytest

import fmhub
from fmhub import hookimpl

BROKEN_IMPORT = """
raise ImportError("no module named 'somelib'")
"""

BROKEN_REGISTER = """
import fmhub
from fmhub import hookimpl

@hookimpl
def fmhub_register_namespaces(register):
    register(fmhub.Namespace(name="bad", distribution="fmhub-bad"))

@hookimpl
def fmhub_register_models(register):
    register(fmhub.ModelSpec(id="bad:one"))
    raise KeyError("config.yaml")
"""

JUNK_REGISTER = """
from fmhub import hookimpl

@hookimpl
def fmhub_register_models(register):
    register({"id": "junk:one"})
"""

MISSPELLED = """
import fmhub
from fmhub import hookimpl

@hookimpl
def fmhub_register_namespaces(register):
    register(fmhub.Namespace(name="typo"))

@hookimpl
def fmhub_preproces(model, inputs):
    return inputs
"""

GOOD = """
import fmhub
from fmhub import hookimpl

@hookimpl
def fmhub_register_models(register):
    register(fmhub.ModelSpec(id="toy:extra", task="embedding"))
"""


def plugin_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, fmhub.FmhubPluginWarning)]


def test_toy_plugin_is_found_through_its_real_entry_point(toy_hub):
    (ep,) = [e for e in md.entry_points(group="fmhub") if e.name == "toy"]
    assert ep.value == "fmhub_toy" and ep.dist.name == "fmhub-toy"
    rec = {r.name: r for r in toy_hub.plugins()}["toy"]
    assert (rec.status, rec.distribution, rec.version, rec.error) == (
        "ok",
        "fmhub-toy",
        "0.1.0",
        None,
    )
    assert rec.namespaces == ("toy",)
    assert {s.id for s in toy_hub.list_models("toy:*")} == {"toy:embed", "toy:classify"}


def test_builtin_plugin_is_registered_like_a_third_party(bare_hub):
    names = [r.name for r in bare_hub.plugins()]
    assert names == ["fmhub"]
    assert {"lora", "full"} <= set(bare_hub.finetune_methods())


def test_plugin_failing_to_import_is_recorded_warned_once_and_others_work(
    install_plugin, monkeypatch, use_hub
):
    install_plugin("broken", BROKEN_IMPORT)
    monkeypatch.setenv("FMHUB_LOAD_PLUGINS", "toy,broken")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        hub = use_hub(fmhub.Hub())
        hub.list_models()
        hub.plugins()
        model = fmhub.load("toy:embed")
        model([1, 2, 3, 4])
        fmhub.list_models()
    (message,) = plugin_warnings(record)
    assert "'broken'" in message and "fmhub-broken" in message and "fmhub plugins" in message
    rec = {r.name: r for r in hub.plugins()}["broken"]
    assert rec.status == "failed" and rec.distribution == "fmhub-broken" and rec.version == "0.3"
    assert "ImportError" in rec.error and "somelib" in rec.error


def test_plugin_raising_while_registering_is_dropped_whole(install_plugin, monkeypatch, use_hub):
    install_plugin("bad", BROKEN_REGISTER)
    monkeypatch.setenv("FMHUB_LOAD_PLUGINS", "toy,bad")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        hub = use_hub(fmhub.Hub())
        assert [s.id for s in hub.list_models("bad:*")] == []
        hub.list_models()
        recs = {r.name: r for r in hub.plugins()}
    (message,) = plugin_warnings(record)
    assert "'bad'" in message and "KeyError" in message
    assert recs["bad"].status == "failed"
    assert "fmhub_register_models raised KeyError" in recs["bad"].error
    assert recs["toy"].status == "ok"
    # the namespace it registered before failing is not left behind, pointing at nothing
    assert "bad" not in hub.registry.namespaces
    with pytest.raises(fmhub.UnknownNamespaceError, match="fmhub-bad is installed but failed"):
        hub.model_info("bad:one")
    assert fmhub.load("toy-embed").spec.id == "toy:embed"


def test_plugin_registering_something_else_than_a_spec_is_dropped(
    install_plugin, monkeypatch, use_hub
):
    install_plugin("junk", JUNK_REGISTER)
    monkeypatch.setenv("FMHUB_LOAD_PLUGINS", "toy,junk")
    with pytest.warns(fmhub.FmhubPluginWarning, match="not an fmhub.ModelSpec"):
        hub = use_hub(fmhub.Hub())
        recs = {r.name: r for r in hub.plugins()}
    assert recs["junk"].status == "failed" and recs["toy"].status == "ok"


def test_misspelled_hook_in_an_installed_plugin_is_an_error_naming_it(
    install_plugin, monkeypatch, use_hub
):
    install_plugin("typo", MISSPELLED)
    monkeypatch.setenv("FMHUB_LOAD_PLUGINS", "toy,typo")
    with pytest.warns(fmhub.FmhubPluginWarning, match="fmhub_preproces"):
        hub = use_hub(fmhub.Hub())
    rec = {r.name: r for r in hub.plugins()}["typo"]
    assert rec.status == "failed"
    assert "'fmhub_preproces'" in rec.error and "Did you mean 'fmhub_preprocess'" in rec.error
    assert "typo" not in hub.registry.namespaces  # never registered
    assert hub.model_info("toy:embed").plugin == "toy"


def test_misspelled_hook_registered_explicitly_raises(bare_hub):
    class Typo:
        @hookimpl
        def fmhub_forwrd(self, model, batch):
            return None

    with pytest.raises(fmhub.PluginError, match=r"'fmhub_forwrd'.*Did you mean 'fmhub_forward'"):
        bare_hub.register(Typo(), name="typo")
    assert "typo" not in {r.name for r in bare_hub.plugins()}


def test_misspelled_hook_argument_is_an_error_naming_plugin_and_argument(bare_hub):
    class BadArgs:
        @hookimpl
        def fmhub_load(self, spec, opts):
            return None

    with pytest.raises(fmhub.PluginError, match=r"plugin 'badargs' is invalid.*opts"):
        bare_hub.register(BadArgs(), name="badargs")
    assert not bare_hub.pm.has_plugin("badargs")


def test_hook_function_without_the_decorator_is_an_error(bare_hub):
    class Undecorated:
        def fmhub_forward(self, model, batch):
            return None

    with pytest.raises(fmhub.PluginError, match=r"'fmhub_forward' without the @fmhub.hookimpl"):
        bare_hub.register(Undecorated(), name="undecorated")


def test_hook_accepting_a_subset_of_arguments_is_fine(bare_hub, family):
    seen = []

    class Subset:
        @hookimpl
        def fmhub_postprocess(self, outputs):  # spec: (model, outputs, batch)
            seen.append(tuple(outputs.shape))
            return None  # not an answer: the owner's postprocess runs next

    bare_hub.register(family(ns="fam"), name="fam")
    bare_hub.register(Subset(), name="subset")
    assert bare_hub.load("fam:lin")([1, 2, 3, 4]).shape == (2,)
    assert seen == [(1, 2)]


@pytest.mark.parametrize(
    ("load", "disable", "ok"),
    [
        ("toy", None, {"toy"}),
        ("fmhub-toy", None, {"toy"}),  # a distribution name works too
        ("", None, set()),
        (None, "toy", set()),
        ("toy,good", "good", {"toy"}),
        ("toy,good", None, {"toy", "good"}),
    ],
)
def test_load_and_disable_environment_variables(
    install_plugin, monkeypatch, use_hub, load, disable, ok
):
    install_plugin("good", GOOD)
    for var, value in (("FMHUB_LOAD_PLUGINS", load), ("FMHUB_DISABLE_PLUGINS", disable)):
        if value is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, value)
    hub = use_hub(fmhub.Hub())
    recs = {r.name: r for r in hub.plugins()}
    active = {n for n, r in recs.items() if r.status == "ok"} - {"fmhub"}
    if load is None:  # everything installed but the disabled ones
        assert "toy" not in active and recs["toy"].status == "disabled"
        assert recs["good"].status == "ok"
    else:
        assert active == ok
        assert {n for n, r in recs.items() if r.status == "disabled"} >= {"toy", "good"} - ok
    assert ("toy:embed" in {s.id for s in hub.list_models()}) == ("toy" in active)
    assert ("toy:extra" in {s.id for s in hub.list_models()}) == ("good" in active)
    if "good" in active and "toy" not in active:  # listed, but its namespace's owner is missing
        with pytest.raises(fmhub.UnknownNamespaceError, match="install fmhub-toy"):
            hub.model_info("toy:extra")


def test_disabled_plugin_namespace_error_says_so(monkeypatch, use_hub):
    monkeypatch.delenv("FMHUB_LOAD_PLUGINS", raising=False)
    monkeypatch.setenv("FMHUB_DISABLE_PLUGINS", "toy")
    hub = use_hub(fmhub.Hub())
    with pytest.raises(fmhub.UnknownNamespaceError) as err:
        fmhub.load("toy:embed")
    assert "install fmhub-toy" in str(err.value) and "installed but disabled" in str(err.value)
    assert hub is fmhub.get_hub()


def test_each_hub_has_its_own_plugin_manager(family):
    a, b = fmhub.Hub(entry_points=False), fmhub.Hub(entry_points=False)
    a.register(family(), name="fam")
    assert a.pm is not b.pm
    assert [s.id for s in a.list_models("fam:*")] == ["fam:lin"]
    assert b.list_models("fam:*") == []
    a.unregister("fam")
    assert a.list_models("fam:*") == []


def test_hub_takes_plugins_at_construction(family):
    hub = fmhub.Hub(entry_points=False, plugins={"fam": family()})
    assert hub.model_info("fam:lin").plugin == "fam"


def test_default_hub_is_made_lazily_and_can_be_replaced(use_hub):
    from fmhub import _hub

    assert _hub._default is None  # use_hub cleared it; nothing made one yet
    hub = fmhub.get_hub()
    assert isinstance(hub, fmhub.Hub) and fmhub.get_hub() is hub
    mine = fmhub.Hub(entry_points=False)
    assert fmhub.set_hub(mine) is hub and fmhub.get_hub() is mine


def test_import_makes_no_hub():
    from fmhub.testing import imported_after

    code = "import fmhub, fmhub._hub as h; assert h._default is None, 'hub made at import'"
    assert imported_after(code, ("torch", "fmhub_toy")) == []


def test_misspelled_plugin_name_in_the_environment_is_warned_about(monkeypatch, use_hub):
    monkeypatch.setenv("FMHUB_LOAD_PLUGINS", "tyo")
    monkeypatch.delenv("FMHUB_DISABLE_PLUGINS", raising=False)
    with pytest.warns(
        fmhub.FmhubPluginWarning,
        match=r"FMHUB_LOAD_PLUGINS names 'tyo'.*Did you mean 'toy'\?.*Installed: .*toy",
    ):
        hub = use_hub(fmhub.Hub())
    assert hub.list_models("toy:*") == []


def test_the_pytest_plugin_gives_a_fresh_default_hub(fmhub_hub):
    """``fmhub_hub`` comes from fmhub's own pytest plugin (entry point ``pytest11``)."""
    assert fmhub.get_hub() is fmhub_hub
    assert fmhub_hub.records["toy"].distribution == "fmhub-toy"
