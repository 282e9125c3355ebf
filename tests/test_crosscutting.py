"""Owner dispatch and cross-cutting plugins: a plugin that serves no namespace wraps every model."""

from __future__ import annotations

import numpy as np
import pytest

import fmhub
from fmhub import hookimpl

X = [1.0, 2.0, 3.0, 4.0]


class Doubler:
    """Cross-cutting: serves no namespace, doubles the raw outputs of every model's forward."""

    def __init__(self):
        self.seen: list[str] = []

    @hookimpl(wrapper=True)
    def fmhub_forward(self, model, batch):
        self.seen.append(model.spec.id)
        outputs = yield
        return outputs * 2


class Failing:
    @hookimpl(wrapper=True)
    def fmhub_postprocess(self, model, outputs, batch):
        yield
        raise ValueError("wrapper broke")


def test_a_cross_cutting_wrapper_wraps_a_stage_of_every_model(toy_hub, family):
    fam = family(ns="fam")
    toy_hub.register(fam, name="fam")
    toy, lin = fmhub.load("toy:embed"), fmhub.load("fam:lin")
    plain_toy, plain_lin = toy(X), lin(X)
    doubler = Doubler()
    toy_hub.register(doubler, name="doubler")
    np.testing.assert_allclose(toy(X), 2 * plain_toy, rtol=1e-6)
    np.testing.assert_allclose(lin(X), 2 * plain_lin, rtol=1e-6)
    assert doubler.seen == ["toy:embed", "fam:lin"]
    assert {r.name: r.namespaces for r in toy_hub.plugins()}["doubler"] == ()
    toy_hub.unregister("doubler")
    np.testing.assert_allclose(toy(X), plain_toy)


def test_stage_hooks_go_to_the_owner_only(toy_hub, family):
    """The family plugin implements every stage with no "is this mine?" check; running a toy model
    never calls it, and running its model never calls the toy plugin."""
    fam = family(ns="fam")
    toy_hub.register(fam, name="fam")
    fmhub.load("toy:embed").predict([X, X])
    assert fam.calls == []
    fmhub.load("fam:lin").predict([X, X])
    assert [c[0] for c in fam.calls] == [
        "load",
        "batch_order",
        "preprocess",
        "forward",
        "postprocess",
    ]


def test_error_in_a_wrapper_names_the_wrapper_plugin(toy_hub):
    toy_hub.register(Failing(), name="failing")
    with pytest.raises(fmhub.PluginError) as err:
        fmhub.load("toy:embed")(X)
    assert str(err.value).startswith("plugin 'failing', stage 'postprocess', model 'toy:embed'")
    assert "ValueError: wrapper broke" in str(err.value)


def test_registration_order_does_not_matter_for_dispatch(bare_hub, family):
    doubler = Doubler()
    bare_hub.register(doubler, name="doubler")  # before any model plugin
    bare_hub.register(family(ns="fam"), name="fam")
    model = bare_hub.load("fam:lin")
    assert model(X).shape == (2,) and doubler.seen == ["fam:lin"]


def test_a_third_party_finetune_method_is_registered_like_a_builtin(bare_hub):
    class Frozen(fmhub.FineTuneMethod):
        name = "frozen-all"
        description = "train nothing"

    class Methods:
        @hookimpl
        def fmhub_register_finetune_methods(self, register):
            register(Frozen())

    bare_hub.register(Methods(), name="methods")
    assert isinstance(bare_hub.finetune_methods()["frozen-all"], Frozen)
    assert "lora" in bare_hub.finetune_methods()


def test_explicitly_registered_plugin_failing_to_register_raises_and_is_not_kept(bare_hub):
    class Broken:
        @hookimpl
        def fmhub_register_models(self, register):
            raise OSError("cannot read models.json")

    with pytest.raises(fmhub.PluginError, match=r"'broken' failed while registering.*models.json"):
        bare_hub.register(Broken(), name="broken")
    assert [r.name for r in bare_hub.plugins()] == ["fmhub"]
    assert bare_hub.list_models() == []
