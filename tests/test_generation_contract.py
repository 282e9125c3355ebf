"""The generation contract in the core: per-call options reach every stage hook, validated with
the checkpoint's defaults; ``model.stream`` yields pieces that add up to the result; cross-cutting
wrappers still wrap every stage; plugins written before options existed keep working."""

from __future__ import annotations

import threading

import pytest

import fmhub
from fmhub import hookimpl
from fmhub.results import Generation, check_result


class Echo:
    """A generative family: ``echo:rev`` 'generates' the prompt reversed, one character a token."""

    def __init__(self, defaults=None):
        self.defaults = defaults or {}
        self.seen: list[tuple[str, object]] = []
        self.started = threading.Event()

    @hookimpl
    def fmhub_register_namespaces(self, register):
        register(fmhub.Namespace(name="echo"))

    @hookimpl
    def fmhub_register_models(self, register):
        register(fmhub.ModelSpec(id="echo:rev", task="text-generation"))

    @hookimpl
    def fmhub_load(self, spec, options):
        import torch

        return fmhub.Loaded(
            module=torch.nn.Linear(1, 1).eval(),
            task="text-generation",
            call_defaults={**self.defaults, "eos_token_id": 0},
        )

    @hookimpl
    def fmhub_preprocess(self, model, inputs, options):
        self.seen.append(("preprocess", options))
        for i, x in enumerate(inputs):
            if not isinstance(x, str) or not x:
                raise fmhub.InputError(f"input {i} must be a non-empty str")
        import torch

        return {"texts": list(inputs), "lengths": torch.tensor([len(x) for x in inputs])}

    @hookimpl
    def fmhub_forward(self, model, batch, options, stream):
        self.seen.append(("forward", options))
        out = []
        for i, text in enumerate(batch["texts"]):
            gen, reason = "", "length"
            for ch in text[::-1][: options.max_new_tokens]:
                gen += ch
                if stream is not None:
                    self.started.set()
                    stream(i, ch)
                if any(s in gen for s in options.stop):
                    reason = "stop"
                    break
            else:
                reason = "stop" if len(text) <= options.max_new_tokens else "length"
            for s in options.stop:
                gen = gen.split(s)[0]
            out.append((gen, reason, len(text)))
        return {"out": out, "n": batch["lengths"]}

    @hookimpl
    def fmhub_postprocess(self, model, outputs, batch, options):
        self.seen.append(("postprocess", options))
        return [Generation(text, reason, n, len(text)) for text, reason, n in outputs["out"]]


class Upper:
    """Cross-cutting: upper-cases every generation's text, wrapping postprocess; counts forwards."""

    def __init__(self):
        self.forwards = 0

    @hookimpl(wrapper=True)
    def fmhub_forward(self, model, batch):
        self.forwards += 1
        return (yield)


@pytest.fixture
def echo(bare_hub):
    plugin = Echo(defaults={"max_new_tokens": 6, "temperature": 0.9})
    bare_hub.register(plugin, name="echo")
    return plugin


def test_options_reach_every_stage_validated_with_checkpoint_defaults(echo):
    model = fmhub.load("echo:rev")
    assert model.call_options is fmhub.GenerationOptions
    out = model("abcdefghij")
    check_result("text-generation", out)
    assert out == Generation("jihgfe", "length", 10, 6)
    assert [s for s, _ in echo.seen] == ["preprocess", "forward", "postprocess"]
    opts = echo.seen[0][1]
    assert all(o is opts for _, o in echo.seen), "one validated object for the whole call"
    assert opts.max_new_tokens == 6 and opts.temperature == 0.9 and not opts.do_sample
    assert model("abcdefghij", max_new_tokens=3).text == "jih"
    got = model.predict(["abc", "xyz"], max_new_tokens=2, temperature=0.7, seed=1)
    assert [g.text for g in got] == ["cb", "zy"]
    opts = echo.seen[-1][1]
    assert opts.do_sample and opts.seed == 1 and opts.temperature == 0.7
    assert model("abc", temperature=0).text == "cba" and not echo.seen[-1][1].do_sample


def test_bad_options_are_input_errors_naming_the_valid_ones(echo):
    model = fmhub.load("echo:rev")
    with pytest.raises(fmhub.InputError, match="max_new_tokens.*Valid options: do_sample"):
        model("abc", max_new_token=3)
    with pytest.raises(fmhub.InputError, match="max_new_tokens"):
        model("abc", max_new_tokens=0)
    with pytest.raises(fmhub.InvalidOptionError, match="stop"):
        model.predict(["abc"], stop=[""])
    assert model("abcd", stop="b").text == "dc"


def test_stream_yields_pieces_that_add_up_to_the_result(echo):
    model = fmhub.load("echo:rev")
    stream = model.stream("hello world", max_new_tokens=20, stop=" ")
    assert isinstance(stream, fmhub.TextStream)
    pieces = list(stream)
    assert "".join(pieces) == stream.result.text == "dlrow"
    assert stream.result.finish_reason == "stop"
    with pytest.raises(fmhub.InputError):
        model.stream("")  # bad input raises before any piece


def test_stream_of_a_plugin_that_does_not_stream_comes_as_one_piece(bare_hub):
    class Quiet(Echo):
        @hookimpl
        def fmhub_forward(self, model, batch, options):  # no ``stream`` argument
            return {
                "out": [(t[::-1], "stop", len(t)) for t in batch["texts"]],
                "n": batch["lengths"],
            }

    bare_hub.register(Quiet(), name="quiet")
    stream = fmhub.load("echo:rev").stream("abc")
    assert list(stream) == ["cba"] and stream.result.text == "cba"


def test_closing_a_stream_stops_the_generation(echo):
    model = fmhub.load("echo:rev")
    stream = model.stream("x" * 100, max_new_tokens=100)
    assert next(stream) == "x"
    stream.close()
    assert list(stream) == [] and stream.result is None


def test_cross_cutting_wrappers_wrap_the_stages_of_a_stream(echo, bare_hub):
    upper = Upper()
    bare_hub.register(upper, name="upper")
    model = fmhub.load("echo:rev")
    assert "".join(model.stream("abc")) == "cba"
    model("abc")
    assert upper.forwards == 2


def test_errors_in_the_worker_reach_the_consumer(bare_hub):
    class Broken(Echo):
        @hookimpl
        def fmhub_forward(self, model, batch, options, stream):
            stream(0, "a")
            raise RuntimeError("boom")

    bare_hub.register(Broken(), name="broken")
    stream = fmhub.load("echo:rev").stream("abc")
    assert next(stream) == "a"
    with pytest.raises(fmhub.PluginError, match="stage 'forward'.*boom"):
        next(stream)


def test_models_without_per_call_options_refuse_them_and_old_plugins_still_work(toy_hub):
    model = fmhub.load("toy:embed")  # its hooks take no ``options`` / ``stream`` arguments
    assert model.call_options is None and model.parse_options() is None
    assert model([1.0, 2.0, 3.0, 4.0]).shape == (8,)
    with pytest.raises(fmhub.InputError, match="takes no per-call options"):
        model([1.0, 2.0, 3.0, 4.0], max_new_tokens=3)


def test_importing_fmhub_still_imports_no_torch():
    from fmhub.testing import imported_after

    assert (
        imported_after("import fmhub; fmhub.GenerationOptions(max_new_tokens=3)", ("torch",)) == []
    )
