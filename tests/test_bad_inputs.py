"""Every bad input is a typed fmhub error naming what was received, the caller's position and the
way out; a hook returning the wrong thing is blamed on its own stage; a plugin calling sys.exit()
is isolated; predict is thread-safe (see docs/inputs.md and docs/hooks.md)."""

from __future__ import annotations

import random
import threading
import warnings

import numpy as np
import pytest
import torch

import fmhub
from fmhub import hookimpl
from fmhub.results import Classification, LabelScore

POINTS = [[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 2.0], [0.0, 0.0, 0.0, 0.0], [3.0, 1.0, -2.0, 0.5]]


# -- what predict takes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad,message",
    [
        (None, "predict takes a list of inputs, got NoneType (None)"),
        (42, "got int (42)"),
        ("0.1,0.2,0.3,0.4", "got one str"),
        ({"x": 1}, "got a dict"),
        (np.zeros((2, 4), np.float32), "got a ndarray of shape (2, 4)"),
        (torch.zeros(4), "got a Tensor of shape (4,)"),
    ],
)
def test_predict_refuses_what_is_not_a_list(toy_hub, bad, message):
    model = fmhub.load("toy:embed")
    with pytest.raises(fmhub.InputError) as err:
        model.predict(bad)
    assert message in str(err.value)


def test_predict_takes_tuples_and_generators(toy_hub):
    model = fmhub.load("toy:embed")
    a = model.predict(tuple(POINTS))
    b = model.predict(p for p in POINTS)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


class Reversing:
    """A text family that orders each predict call in reverse and checks texts with fmhub.inputs."""

    def __init__(self, ns="rev", nan_for=None):
        self.ns, self.nan_for = ns, nan_for

    @hookimpl
    def fmhub_register_namespaces(self, register):
        register(fmhub.Namespace(name=self.ns, distribution=f"fmhub-{self.ns}"))

    @hookimpl
    def fmhub_register_models(self, register):
        register(fmhub.ModelSpec(id=f"{self.ns}:len", task="embedding", modality="text"))

    @hookimpl
    def fmhub_load(self, spec, options):
        return fmhub.Loaded(module=torch.nn.Linear(1, 3), task="embedding")

    @hookimpl
    def fmhub_batch_order(self, model, inputs):
        return list(reversed(range(len(inputs))))

    @hookimpl
    def fmhub_preprocess(self, model, inputs):
        texts = fmhub.inputs.texts(inputs)
        return {"x": torch.tensor([[float(len(t))] for t in texts]), "texts": texts}

    @hookimpl
    def fmhub_forward(self, model, batch):
        out = model.module(batch["x"])
        for row, text in enumerate(batch["texts"]):
            if text == self.nan_for:
                out[row, 1] = float("nan")
        return out

    @hookimpl
    def fmhub_postprocess(self, model, outputs, batch):
        return list(outputs.float().cpu().numpy())


@pytest.fixture
def rev(bare_hub):
    bare_hub.register(Reversing(nan_for="bad"), name="reversing")
    return bare_hub.load("rev:len")


def test_error_names_the_position_in_the_callers_list(rev):
    # batch order is reversed: None is item 1 of the batch, item 0 of the caller's list
    with pytest.raises(fmhub.InputError) as err:
        rev.predict([None, "hello there"])
    assert str(err.value).startswith("Input 0: got NoneType (None), not text")
    assert err.value.index == 0 and (err.value.plugin, err.value.stage) == (
        "reversing",
        "preprocess",
    )
    with pytest.raises(fmhub.InputError, match="^Input 4: got bytes") as err:
        rev.predict(["a", "b", "c", "d", b"e", "f", "g"], batch_size=3)
    assert err.value.index == 4


def test_plugin_that_counts_in_its_message_gets_a_note_with_the_batch(toy_hub, family):
    toy_hub.register(family(ns="fam", order="by-sum"), name="fam")
    model = fmhub.load("fam:lin")
    with pytest.raises(fmhub.InputError, match="input 0 must be 4 numbers") as err:
        model.predict([[9, 9, 9, 9], [-1.0, 2.0]])  # sorted by sum: the bad one comes first
    assert err.value.index is None
    assert "(the batch held inputs 1, 0 of the list passed to predict, in that order)" in (
        err.value.__notes__
    )


def test_non_finite_outputs_raise_naming_the_callers_position(rev):
    with pytest.raises(fmhub.NonFiniteOutputError) as err:
        rev.predict(["fine", "also fine", "bad", "ok"], batch_size=2)
    assert err.value.index == 2 and str(err.value).startswith(
        "Input 2: model 'rev:len' produced an embedding with 1 NaN"
    )
    assert (err.value.plugin, err.value.stage) == ("reversing", "postprocess")
    assert "dtype='float32'" in str(err.value) and isinstance(err.value, ArithmeticError)
    with pytest.raises(fmhub.NonFiniteOutputError, match="^Input 0: "):
        rev("bad")


# -- a hook returning the wrong thing is blamed on its own stage ----------------------------------


class Garbage(Reversing):
    """Returns ``value`` from ``stage``; the other stages work."""

    def __init__(self, stage, value, task="embedding"):
        super().__init__(ns="junk")
        self.stage, self.value, self.task = stage, value, task

    def _maybe(self, stage, real):
        return self.value if self.stage == stage else real()

    @hookimpl
    def fmhub_load(self, spec, options):
        return self._maybe(
            "load",
            lambda: fmhub.Loaded(
                module=torch.nn.Linear(1, 3), task=self.task, labels=("a", "b", "c")
            ),
        )

    @hookimpl
    def fmhub_batch_order(self, model, inputs):
        return self._maybe("batch_order", lambda: list(range(len(inputs))))

    @hookimpl
    def fmhub_preprocess(self, model, inputs):
        return self._maybe("preprocess", lambda: Reversing.fmhub_preprocess(self, model, inputs))

    @hookimpl
    def fmhub_forward(self, model, batch):
        return self._maybe("forward", lambda: model.module(batch["x"]))

    @hookimpl
    def fmhub_postprocess(self, model, outputs, batch):
        value = self.value
        if callable(value):
            value = value(outputs)
        return value if self.stage == "postprocess" else list(outputs.float().numpy())


GOOD = Classification("a", 0.7, (LabelScore("a", 0.7, 0), LabelScore("b", 0.3, 1)))

WRONG = {
    "load returns a str": ("load", "a string", "returned str 'a string', not an fmhub.Loaded"),
    "load returns None": ("load", None, "returned None, not an fmhub.Loaded"),
    "load returns a Loaded without a module": (
        "load",
        fmhub.Loaded(module="weights", task="embedding"),
        "not a torch.nn.Module",
    ),
    "load returns int labels": (
        "load",
        fmhub.Loaded(module=torch.nn.Linear(1, 3), task="embedding", labels=[0, 1]),
        "labels are list [0, 1], not a sequence of str",
    ),
    "batch order with a repeat": ("batch_order", [0, 0], "not a permutation of range(2)"),
    "batch order of strings": ("batch_order", ["a", "b"], "not a permutation"),
    "preprocess returns None": ("preprocess", None, "returned None, which holds no tensor"),
    "preprocess returns the texts": ("preprocess", ["a", "b"], "holds no tensor or array"),
    "forward returns None": ("forward", None, "returned None instead of the module's outputs"),
    "forward returns text": ("forward", "logits", "returned str 'logits' instead of the module's"),
    "postprocess returns None": ("postprocess", None, "returned None, not a list"),
    "postprocess returns a str": ("postprocess", "ab", "returned str 'ab', not a list"),
    "postprocess returns one result too few": (
        "postprocess",
        lambda out: list(out.numpy())[:1],
        "returned 1 results for 2 inputs",
    ),
    "strings as embeddings": ("postprocess", ["x", "y"], "a str ('x') as an embedding"),
    "float64 embeddings": (
        "postprocess",
        lambda out: list(out.double().numpy()),
        "dtype float64, not 1-D float32",
    ),
    "2-D embeddings": ("postprocess", lambda out: [r[None] for r in out.numpy()], "shape (1, 3)"),
}


@pytest.mark.parametrize("stage,value,message", WRONG.values(), ids=WRONG.keys())
def test_wrong_return_is_a_plugin_error_naming_plugin_and_stage(bare_hub, stage, value, message):
    bare_hub.register(Garbage(stage, value), name="junky")
    with pytest.raises(fmhub.PluginError) as err:
        bare_hub.load("junk:len").predict(["a", "bb"])
    assert (err.value.plugin, err.value.stage) == ("junky", stage)
    text = str(err.value)
    assert text.startswith("plugin 'junky' ") and message in text
    assert f"(stage '{stage}', model 'junk:len')" in text
    assert f"see docs/hooks.md#fmhub_{stage} for" in text


@pytest.mark.parametrize(
    "result,message",
    [
        ("label", "str ('label'), not a Classification"),
        (Classification("a", 1.5, (LabelScore("a", 1.5, 0),)), "not a probability"),
        (Classification("b", 0.7, GOOD.top_k), "does not start with its label"),
        (
            Classification("a", 0.3, (LabelScore("a", 0.3, 0), LabelScore("b", 0.7, 1))),
            "not best first",
        ),
    ],
)
def test_classification_results_are_checked(bare_hub, result, message):
    bare_hub.register(Garbage("postprocess", [GOOD, result], task="classification"), name="junky")
    with pytest.raises(fmhub.PluginError, match="stage 'postprocess'") as err:
        bare_hub.load("junk:len").predict(["a", "bb"])
    assert "for input 1, " in str(err.value) and message in str(err.value)


def test_nan_classification_score_is_non_finite(bare_hub):
    nan = Classification("a", float("nan"), (LabelScore("a", float("nan"), 0),))
    bare_hub.register(Garbage("postprocess", [GOOD, nan], task="classification"), name="junky")
    with pytest.raises(fmhub.NonFiniteOutputError, match="^Input 1: .*classification score"):
        bare_hub.load("junk:len").predict(["a", "bb"])


def test_resolution_hooks_returning_garbage_name_the_plugin(bare_hub, tmp_path):
    class Resolver(Reversing):
        @hookimpl
        def fmhub_register_namespaces(self, register):
            register(fmhub.Namespace(name=self.ns, distribution="fmhub-rev", open=True))

        @hookimpl
        def fmhub_resolve_model(self, namespace, name):
            return f"{namespace}:{name}"

        @hookimpl
        def fmhub_claim_path(self, path):
            return {"id": "rev:local", "path": path}

    bare_hub.register(Resolver(), name="resolver")
    with pytest.raises(
        fmhub.PluginError,
        match=r"^plugin 'resolver' returned str 'rev:any', not "
        r"an fmhub.ModelSpec or None \(stage 'resolve_model'",
    ):
        bare_hub.model_info("rev:any")
    with pytest.raises(
        fmhub.PluginError,
        match=r"^plugin 'resolver' returned dict .*stage "
        r"'claim_path'",
    ) as err:
        bare_hub.model_info(str(tmp_path))
    assert (err.value.plugin, err.value.stage) == ("resolver", "claim_path")


def test_a_wrapper_that_returns_garbage_is_named(bare_hub):
    class Wrapper:
        @hookimpl(wrapper=True)
        def fmhub_postprocess(self, model, outputs, batch):
            yield
            return ["not embeddings"]

    bare_hub.register(Reversing(), name="reversing")
    bare_hub.register(Wrapper(), name="meddler")
    with pytest.raises(
        fmhub.PluginError,
        match=r"^plugin 'reversing' \(wrapped by plugin "
        r"'meddler'\) returned, for input 0, a str",
    ):
        bare_hub.load("rev:len")("x")


# -- a plugin calling sys.exit() ------------------------------------------------------------------


EXIT_AT_IMPORT = """
import sys
sys.exit(3)
"""

EXIT_WHILE_REGISTERING = """
import sys
import fmhub
from fmhub import hookimpl

@hookimpl
def fmhub_register_namespaces(register):
    register(fmhub.Namespace(name="quit", distribution="fmhub-quitreg"))

@hookimpl
def fmhub_register_models(register):
    sys.exit("bye")
"""


def test_plugin_calling_sys_exit_is_isolated_like_one_that_raises(
    install_plugin, monkeypatch, use_hub
):
    install_plugin("quitter", EXIT_AT_IMPORT)
    install_plugin("quitreg", EXIT_WHILE_REGISTERING)
    monkeypatch.setenv("FMHUB_LOAD_PLUGINS", "toy,quitter,quitreg")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        hub = use_hub(fmhub.Hub())
        recs = {r.name: r for r in hub.plugins()}
        assert fmhub.load("toy:embed")(POINTS[0]).shape == (8,)
    assert recs["quitter"].status == "failed" and "called sys.exit(3)" in recs["quitter"].error
    assert recs["quitreg"].status == "failed"
    assert "fmhub_register_models raised it called sys.exit('bye')" in recs["quitreg"].error
    messages = [str(w.message) for w in record if issubclass(w.category, fmhub.FmhubPluginWarning)]
    assert len(messages) == 2 and all("was skipped" in m for m in messages)


def test_sys_exit_inside_a_stage_is_a_plugin_error(bare_hub):
    class Quitting(Reversing):
        @hookimpl
        def fmhub_forward(self, model, batch):
            raise SystemExit(1)

    bare_hub.register(Quitting(), name="quitting")
    with pytest.raises(fmhub.PluginError, match=r"stage 'forward'.* called sys.exit\(1\)"):
        bare_hub.load("rev:len")("x")


# -- names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,message",
    [
        ("a" * 10_000, "A model name of 10,000 characters"),
        ("b" * 300, "Unknown model 'bbbbb"),
        ("./" + "c" * 300, "Unknown model './ccc"),
        ("toy:" + "d" * 300, "Unknown model"),
        ("bad\x00name", "control characters"),
        ("two\nlines", "control characters"),
        ("", "must be a non-empty string"),
        ("   ", "must be a non-empty string"),
        (None, "must be a non-empty string, got None"),
        (7, "got 7"),
    ],
)
def test_malformed_names_are_unknown_model_errors(toy_hub, name, message):
    for call in (fmhub.load, fmhub.model_info):
        with pytest.raises(fmhub.UnknownModelError) as err:
            call(name)
        assert message in str(err.value) and len(str(err.value)) < 400


def test_adapter_whose_base_is_its_own_folder_is_refused(toy_hub, tmp_path):
    import json

    model = fmhub.load("toy:embed")
    model.finetune([(p, i % 2) for i, p in enumerate(POINTS * 2)], epochs=1, batch_size=4)
    folder = model.save(tmp_path / "adapter")
    manifest = json.loads((folder / "fmhub.json").read_text())
    manifest["spec"]["path"] = str(folder)
    (folder / "fmhub.json").write_text(json.dumps(manifest))
    with pytest.raises(fmhub.ManifestError, match="was edited after fmhub wrote it"):
        fmhub.load(folder)  # the verified load notices the edit first
    with pytest.raises(fmhub.ManifestError, match="names its own folder as its base model"):
        fmhub.load(folder, verify=False)  # and without verification, no endless recursion


# -- fine-tuning labels ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "labels,message",
    [
        (["a", None, "b", "a"], "training example 1 has the label None"),
        (["a", "", "b", "a"], "training example 1 has an empty label"),
        ([0, 1.0, 1, 0], "training example 1 has the label 1.0 (float)"),
        ([True, False, True, False], "training example 0 has the label True (bool)"),
        ([0, -1, 1, 0], "the label -1"),
        (["pos", "neg", 1, "pos"], "example 0 has a label of type str, example 2 one of type int"),
    ],
)
def test_bad_training_labels_are_errors(toy_hub, labels, message):
    model = fmhub.load("toy:embed")
    with pytest.raises(fmhub.InputError) as err:
        model.finetune(list(zip(POINTS, labels)), epochs=1)
    assert message in str(err.value)


def test_bad_label_under_explicit_labels_is_an_error():
    from fmhub.finetuning.data import as_examples

    ex = as_examples([("x", "a"), ("y", None)], labels=["a", "b"])
    assert ex[0] == ("x", 0)
    with pytest.raises(fmhub.InputError, match="example 1 has the label None"):
        ex[1]
    with pytest.raises(fmhub.InputError, match="example 0 has the label 'c', which is not one of"):
        as_examples([("x", "c")], labels=["a", "b"])[0]
    assert as_examples([("x", np.int64(1)), ("y", 0)]).labels == ["0", "1"]


# -- threads --------------------------------------------------------------------------------------


def hammer(model, pool: list, threads: int = 8, calls: int = 25, seed: int = 0) -> list:
    """Call ``model.predict`` from many threads at once with mixed batch sizes; return every
    ``(inputs, results)`` and raise the first error any thread hit."""
    done, errors = [], []
    start = threading.Barrier(threads)

    def work(k: int) -> None:
        rng = random.Random(seed + k)
        start.wait()
        for _ in range(calls):
            items = rng.sample(pool, rng.choice([1, 2, 3, 5, len(pool)]))
            try:
                done.append((items, model.predict(items, batch_size=rng.choice([1, 2, 4]))))
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    if errors:
        raise errors[0]
    assert len(done) == threads * calls
    return done


def test_toy_predict_is_thread_safe(toy_hub):
    model = fmhub.load("toy:classify")
    pool = [[float(i), -1.0, i / 3, 2.0] for i in range(12)]
    serial = {tuple(x): model(x) for x in pool}
    for items, results in hammer(model, pool):
        for x, r in zip(items, results):
            assert r.label == serial[tuple(x)].label
            assert r.score == pytest.approx(serial[tuple(x)].score, abs=1e-5)
