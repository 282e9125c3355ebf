from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest

__all__ = ["ConformanceCase", "ConformanceSuite", "assert_results_close", "imported_after"]


@dataclass
class ConformanceCase:
    """One model to check, with a few small example inputs (at least two, of varied size)."""

    model: str
    inputs: list[Any]
    options: dict[str, Any] = field(default_factory=dict)
    #: The task the model should report after loading (None: not checked).
    task: str | None = None
    #: Modules that importing fmhub, listing models and resolving this name must not import.
    heavy_modules: tuple[str, ...] = ("torch",)
    #: Inputs that must be refused with fmhub.InputError.
    bad_inputs: list[Any] = field(default_factory=list)
    #: Tolerance for "the same outputs" (batched vs single, save -> load).
    atol: float = 1e-5
    #: Tolerance after a bfloat16 round trip back to float32.
    dtypes: tuple[str, ...] = ("bfloat16",)
    batch_size: int | None = None
    id: str | None = None
    #: Per-call options for every call (e.g. ``{"max_new_tokens": 8}`` for a generative model).
    call_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if len(self.inputs) < 2:
            raise ValueError("a ConformanceCase needs at least two example inputs")


def imported_after(code: str, modules: tuple[str, ...]) -> list[str]:
    """Run ``code`` in a fresh interpreter; return which of ``modules`` it imported."""
    probe = (
        f"{code}\nimport sys, json\n"
        f"print(json.dumps([m for m in {list(modules)!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env=dict(os.environ), timeout=300)
    if out.returncode != 0:
        raise AssertionError(f"probe failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def assert_results_close(a: Any, b: Any, atol: float = 1e-5, path: str = "result") -> None:
    """Assert two results (any task's type, or lists of them) are equal up to ``atol``."""
    import numpy as np

    from ..results import Classification, Entities, FeatureMaps, FillMask, Transcription

    if isinstance(a, (list, tuple)) and not hasattr(a, "_fields"):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{path}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_results_close(x, y, atol, f"{path}[{i}]")
        return
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.shape == b.shape, f"{path}: shapes differ"
        np.testing.assert_allclose(a, b, atol=atol, rtol=0, err_msg=path)
    elif isinstance(a, Classification):
        sa = {t.index: t.score for t in a.top_k}
        sb = {t.index: t.score for t in b.top_k}
        for idx in set(sa) & set(sb):
            assert abs(sa[idx] - sb[idx]) <= atol, f"{path}: score of class {idx} differs"
        assert abs(a.score - b.score) <= atol, f"{path}: top scores differ"
    elif isinstance(a, Transcription):
        assert a.text == b.text, f"{path}: {a.text!r} != {b.text!r}"
    elif isinstance(a, FillMask):
        assert [p.token_id for p in a.predictions][:1] == [p.token_id for p in b.predictions][:1]
        assert abs(a.predictions[0].score - b.predictions[0].score) <= atol
    elif isinstance(a, Entities):
        assert [(e.start, e.end) for e in a.entities] == [(e.start, e.end) for e in b.entities], path
    elif isinstance(a, FeatureMaps):
        assert_results_close(list(a.maps), list(b.maps), atol, path)
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


class ConformanceSuite:
    """Contract tests, generated for every case in ``cases``."""

    cases: ClassVar[list[ConformanceCase]] = []
    _loaded: ClassVar[dict[str, Any]]

    @pytest.fixture
    def fmhub_model(self, fmhub_case):
        import fmhub

        cache = type(self).__dict__.get("_loaded")
        if cache is None:
            cache = {}
            type(self)._loaded = cache
        key = fmhub_case.id or fmhub_case.model
        if key not in cache:
            cache[key] = fmhub.load(fmhub_case.model, **fmhub_case.options)
        return cache[key]

    def _predict(self, model, case, inputs=None, **options):
        return model.predict(case.inputs if inputs is None else inputs,
                             batch_size=case.batch_size, progress=False,
                             **{**case.call_options, **options})

    def test_registration_imports_nothing_heavy(self, fmhub_case):
        code = (
            "import fmhub; fmhub.list_models(); fmhub.plugins(); "
            f"fmhub.model_info({fmhub_case.model!r})"
        )
        heavy = imported_after(code, fmhub_case.heavy_modules)
        assert heavy == [], f"listing and resolving {fmhub_case.model!r} imported {heavy}"

    def test_info_names_owner(self, fmhub_case):
        import fmhub

        spec = fmhub.model_info(fmhub_case.model)
        assert spec.plugin, "the resolved spec must name the plugin that serves it"
        assert spec.id.startswith(spec.namespace + ":")

    def test_predict_end_to_end(self, fmhub_case, fmhub_model):
        from ..results import check_result

        if fmhub_case.task is not None:
            assert fmhub_model.task == fmhub_case.task
        results = self._predict(fmhub_model, fmhub_case)
        assert len(results) == len(fmhub_case.inputs)
        for r in results:
            check_result(fmhub_model.task, r)

    def test_model_object_and_stages_by_hand(self, fmhub_case, fmhub_model):
        import torch

        import fmhub

        assert isinstance(fmhub_model, fmhub.Model)
        assert fmhub_model.spec.id == fmhub.model_info(fmhub_case.model).id
        assert isinstance(fmhub_model.module, torch.nn.Module)
        assert not fmhub_model.module.training, "fmhub_load must return the module in eval mode"
        first = next(fmhub_model.module.parameters(), None)
        if first is not None:
            assert fmhub_model.device == first.device
        opts = fmhub_model.parse_options(**fmhub_case.call_options)
        batch = fmhub_model.preprocess(fmhub_case.inputs, opts)
        by_hand = fmhub_model.postprocess(fmhub_model.forward(batch, options=opts), batch, opts)
        predicted = fmhub_model.predict(fmhub_case.inputs, batch_size=len(fmhub_case.inputs),
                                        progress=False, **fmhub_case.call_options)
        assert_results_close(by_hand, predicted, fmhub_case.atol)

    def test_batched_equals_one_by_one(self, fmhub_case, fmhub_model):
        batched = fmhub_model.predict(fmhub_case.inputs, batch_size=len(fmhub_case.inputs),
                                      progress=False, **fmhub_case.call_options)
        single = [fmhub_model(x, **fmhub_case.call_options) for x in fmhub_case.inputs]
        assert_results_close(batched, single, fmhub_case.atol)
        reordered = self._predict(fmhub_model, fmhub_case, list(reversed(fmhub_case.inputs)))
        assert_results_close(list(reversed(reordered)), single, fmhub_case.atol)

    def test_device_and_dtype_moves(self, fmhub_case):
        import torch

        import fmhub

        from ..results import check_result

        model = fmhub.load(fmhub_case.model, **fmhub_case.options)
        reference = self._predict(model, fmhub_case)
        assert model.to(device="cpu") is model and model.device.type == "cpu"
        for name in fmhub_case.dtypes:
            model.to(dtype=name)
            assert model.dtype == getattr(torch, name)
            for r in self._predict(model, fmhub_case):
                check_result(model.task, r)
            model.to(dtype="float32")
            assert model.dtype == torch.float32
        with pytest.raises(fmhub.DeviceError):
            model.to(dtype="float16")  # refused on CPU
        if not fmhub_case.dtypes:
            return
        again = fmhub.load(fmhub_case.model, **fmhub_case.options)
        assert_results_close(self._predict(again, fmhub_case), reference, fmhub_case.atol)

    def test_save_load_round_trip(self, fmhub_case, fmhub_model, tmp_path):
        import fmhub

        before = self._predict(fmhub_model, fmhub_case)
        folder = fmhub_model.save(tmp_path / "saved")
        assert (folder / "fmhub.json").is_file()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp folder left"
        again = fmhub.load(str(folder))
        assert again.task == fmhub_model.task and again.labels == fmhub_model.labels
        assert_results_close(self._predict(again, fmhub_case), before, fmhub_case.atol)

    def test_bad_inputs_are_clear_errors(self, fmhub_case, fmhub_model):
        import fmhub

        for bad in fmhub_case.bad_inputs:
            with pytest.raises(fmhub.InputError):
                fmhub_model(bad, **fmhub_case.call_options)

    # -- generative models (models whose per-call options are GenerationOptions) ---------------

    @staticmethod
    def _generative(model) -> None:
        from ..generation import GenerationOptions

        cls = model.call_options
        if cls is None or not issubclass(cls, GenerationOptions):
            pytest.skip("not a generative model")

    def test_generation_greedy_is_deterministic(self, fmhub_case, fmhub_model):
        self._generative(fmhub_model)
        first = self._predict(fmhub_model, fmhub_case, do_sample=False)
        assert self._predict(fmhub_model, fmhub_case, do_sample=False) == first
        for r in first:
            assert isinstance(r.text, str) and r.completion_tokens >= 0

    def test_generation_stream_adds_up_to_the_text(self, fmhub_case, fmhub_model):
        import fmhub

        self._generative(fmhub_model)
        for x in fmhub_case.inputs:
            stream = fmhub_model.stream(x, **fmhub_case.call_options, do_sample=False)
            assert isinstance(stream, fmhub.TextStream)
            pieces = list(stream)
            assert all(isinstance(p, str) and p for p in pieces)
            assert "".join(pieces) == stream.result.text
            assert stream.result == fmhub_model(x, **fmhub_case.call_options, do_sample=False)

    def test_generation_max_new_tokens_and_stop_are_honoured(self, fmhub_case, fmhub_model):
        self._generative(fmhub_model)
        x = fmhub_case.inputs[0]
        for n in (1, 3):
            r = fmhub_model(x, **{**fmhub_case.call_options, "max_new_tokens": n,
                                  "min_new_tokens": 0}, do_sample=False)
            assert r.completion_tokens <= n
            assert r.finish_reason == "stop" or r.completion_tokens == n
        full = fmhub_model(x, **fmhub_case.call_options, do_sample=False).text
        cut = next((i for i in range(1, len(full)) if full[i:i + 1].strip()), None)
        if cut is None:
            pytest.skip(f"the model generated too little text ({full!r}) to place a stop string")
        stop = full[cut:cut + 2]
        r = fmhub_model(x, **fmhub_case.call_options, stop=[stop], do_sample=False)
        assert r.text == full[: full.find(stop)] and r.finish_reason == "stop"
        streamed = "".join(fmhub_model.stream(x, **fmhub_case.call_options, stop=[stop],
                                              do_sample=False))
        assert streamed == r.text
