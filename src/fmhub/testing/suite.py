"""The conformance kit: :class:`ConformanceSuite` generates the contract tests of every
:class:`ConformanceCase`; each check is also a plain function (``check_*``) that raises
``AssertionError`` naming what is wrong, so the kit can be run on a plugin programmatically."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

if TYPE_CHECKING:
    from ..model import Model

__all__ = [
    "FINETUNE_HOOKS",
    "ConformanceCase",
    "ConformanceSuite",
    "assert_results_close",
    "check_different_inputs_differ",
    "check_finetune",
    "check_labels_match_outputs",
    "check_low_precision",
    "check_save_load",
    "imported_after",
    "imported_after_each",
]

#: The hooks fine-tuning needs from a model's plugin.
FINETUNE_HOOKS = ("fmhub_finetune_targets", "fmhub_attach_head", "fmhub_training_loss")


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
    #: Lower precisions to run in (on CPU): results must stay close to float32's.
    dtypes: tuple[str, ...] = ("bfloat16",)
    #: Relative error allowed between a lower precision's outputs and float32's (norm of the
    #: difference over the norm of float32's, for raw outputs and numeric results).
    low_precision_rtol: float = 0.1
    #: Check fine-tuning (head for two labels, default PEFT targets, LoRA steps, adapter round
    #: trip). Set False only for a model that cannot be fine-tuned, with the reason as a comment.
    finetune: bool = True
    #: The PEFT methods whose default targets must match modules of this model.
    peft_methods: tuple[str, ...] = ("lora", "ia3")
    batch_size: int | None = None
    id: str | None = None
    #: Per-call options for every call (e.g. ``{"max_new_tokens": 8}`` for a generative model).
    call_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if len(self.inputs) < 2:
            raise ValueError("a ConformanceCase needs at least two example inputs")


def _probe(source: str) -> Any:
    """Run ``source`` in a fresh interpreter; the JSON of its last line of output."""
    out = subprocess.run(
        [sys.executable, "-c", source],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
    )
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        raise AssertionError(f"probe failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def imported_after(code: str, modules: tuple[str, ...]) -> list[str]:
    """Run ``code`` in a fresh interpreter; return which of ``modules`` it imported."""
    return _probe(
        f"{code}\nimport sys, json\n"
        f"print(json.dumps([m for m in {list(modules)!r} if m in sys.modules]))"
    )


#: What the child of :func:`imported_after_each` runs, after the shared ``prefix``.
_PROBE_EACH = """\
import json, os, sys, traceback
MODULES, CODES = {modules!r}, {codes!r}
scope = {{"__name__": "__main__"}}
try:
    exec(compile({prefix!r}, "<prefix>", "exec"), scope)
except BaseException:
    print(json.dumps({{"error": traceback.format_exc()}}))
    sys.exit(0)
def found():
    return [m for m in MODULES if m in sys.modules]
each = []
for code in CODES:
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            exec(compile(code, "<code>", "exec"), scope)
            out = {{"imported": found()}}
        except BaseException:
            out = {{"error": traceback.format_exc()}}
        with os.fdopen(w, "w") as fh:
            fh.write(json.dumps(out))
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as fh:
        data = fh.read()
    os.waitpid(pid, 0)
    each.append(json.loads(data) if data else {{"error": "the probe's child died"}})
print(json.dumps({{"each": each}}))
"""


def imported_after_each(
    prefix: str, codes: list[str], modules: tuple[str, ...]
) -> list[list[str] | AssertionError]:
    """For each of ``codes``: which of ``modules`` a fresh interpreter has imported after running
    ``prefix`` then that code (an :class:`AssertionError` with the traceback where it raised).

    One interpreter runs ``prefix`` once, then forks a child per code: each child starts from
    exactly the state any fresh interpreter reaches after ``prefix``, so the answers are those of
    one interpreter per code, without paying for ``prefix`` (``import fmhub`` and loading every
    plugin) again. Where ``os.fork`` is missing, one interpreter per code."""
    if not hasattr(os, "fork"):
        try:  # a prefix that fails is raised, as below
            imported_after(prefix, modules)
        except AssertionError as exc:
            raise AssertionError(f"probe failed in {prefix!r}:\n{exc}") from None
        answers: list[list[str] | AssertionError] = []
        for code in codes:
            try:
                answers.append(imported_after(f"{prefix}\n{code}", modules))
            except AssertionError as exc:
                answers.append(exc)
        return answers
    answer = _probe(_PROBE_EACH.format(prefix=prefix, codes=list(codes), modules=list(modules)))
    if "error" in answer:
        raise AssertionError(f"probe failed in {prefix!r}:\n{answer['error'][-3000:]}")
    return [
        e["imported"] if "imported" in e else AssertionError(f"probe failed:\n{e['error'][-3000:]}")
        for e in answer["each"]
    ]


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
        assert [(e.start, e.end) for e in a.entities] == [(e.start, e.end) for e in b.entities], (
            path
        )
    elif isinstance(a, FeatureMaps):
        assert_results_close(list(a.maps), list(b.maps), atol, path)
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


# ---------------------------------------------------------------------------------------------
# The checks, as plain functions
# ---------------------------------------------------------------------------------------------


def load_case(case: ConformanceCase) -> Any:
    """A fresh model of ``case`` from the default hub."""
    import fmhub

    return fmhub.load(case.model, **case.options)


def predict(
    model: Any, case: ConformanceCase, inputs: list[Any] | None = None, **options: Any
) -> list[Any]:
    """``model.predict`` of the case's inputs with its batch size and per-call options."""
    return model.predict(
        case.inputs if inputs is None else inputs,
        batch_size=case.batch_size,
        progress=False,
        **{**case.call_options, **options},
    )


def primary_tensor(outputs: Any) -> Any:
    """The main floating tensor of a forward's outputs: the tensor itself, ``logits`` (attribute
    or key), else the first floating tensor found in a mapping, a tuple or a list."""
    import torch

    if isinstance(outputs, torch.Tensor):
        return outputs if outputs.is_floating_point() else None
    logits = (
        outputs.get("logits") if isinstance(outputs, Mapping) else getattr(outputs, "logits", None)
    )
    if isinstance(logits, torch.Tensor):
        return logits
    items = (
        outputs.values()
        if isinstance(outputs, Mapping)
        else (outputs if isinstance(outputs, (list, tuple)) else ())
    )
    for item in items:
        found = primary_tensor(item)
        if found is not None:
            return found
    return None


def raw_outputs(model: Any, inputs: list[Any], call_options: dict[str, Any] | None = None) -> Any:
    """The primary tensor of ``forward`` on ``inputs`` (with the case's per-call options, which
    preprocess may need: a zero-shot model's labels), as float32 on the CPU (or None)."""
    opts = model.parse_options(**(call_options or {}))
    batch = model.preprocess(inputs, opts)
    out = primary_tensor(model.forward(batch, options=opts))
    return None if out is None else out.detach().float().cpu()


def _numbers(result: Any) -> Any:
    """A result as a flat float vector when it is numeric (embeddings, class scores, feature
    maps); None for text-like results."""
    import numpy as np

    from ..results import Classification, FeatureMaps

    if isinstance(result, np.ndarray):
        return result.astype(np.float64).ravel()
    if isinstance(result, Classification):
        scores = sorted((t.index, t.score) for t in result.top_k) or [(0, result.score)]
        return np.array([s for _, s in scores], dtype=np.float64)
    if isinstance(result, FeatureMaps):
        return np.concatenate([np.asarray(m, dtype=np.float64).ravel() for m in result.maps])
    return None


def _rel_error(a: Any, b: Any) -> float:
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.linalg.norm(a - b) / (np.linalg.norm(b) + 1e-12))


def check_different_inputs_differ(case: ConformanceCase, model: Any) -> None:
    """Different inputs must not all give the same output (an input that is ignored)."""
    import numpy as np

    results = predict(model, case)
    if results and all(hasattr(r, "token_ids") for r in results):  # generations: their tokens
        ids = {(tuple(r.token_ids), r.prompt_tokens) for r in results}
        assert len(ids) > 1 or len(results) < 2, (
            f"{case.model}: {len(results)} different prompts all generated the same tokens from "
            "prompts of the same length; the preprocess or forward stage ignores its input"
        )
        return
    vectors = [_numbers(r) for r in results]
    if any(v is None for v in vectors):  # text-like results: compare the raw outputs
        raws = [raw_outputs(model, [x], case.call_options) for x in case.inputs]
        vectors = [None if r is None else r.numpy().ravel() for r in raws]
    vectors = [v for v in vectors if v is not None]
    if len(vectors) < 2:
        raise AssertionError(
            f"{case.model}: neither the results nor the raw forward outputs "
            "are numeric; the kit cannot tell whether inputs are used"
        )
    first = vectors[0]
    differ = [
        not (v.shape == first.shape and np.allclose(v, first, atol=case.atol, rtol=0))
        for v in vectors[1:]
    ]
    assert any(differ), (
        f"{case.model}: {len(case.inputs)} different inputs all gave the same output; the "
        "preprocess or forward stage ignores its input"
    )


def check_labels_match_outputs(
    case: ConformanceCase, model: Any, results: list[Any] | None = None
) -> None:
    """A classifier's ``len(model.labels)`` equals the size of its output (one logit per label),
    and every result names one of its labels. ``results``: what ``model`` just predicted for
    ``case.inputs``, when the caller has them (else they are predicted here)."""
    if model.task != "classification":
        return
    if results is None:
        results = predict(model, case)
    raw = raw_outputs(model, list(case.inputs[:2]), case.call_options)
    size = None if raw is None else raw.shape[-1]
    indices = {t.index for r in results for t in r.top_k}
    if model.labels is None:
        assert size is None or not indices or max(indices) < size, (
            f"{case.model}: a result names class {max(indices)} of {size} outputs"
        )
        return
    n = len(model.labels)
    assert size is None or size == n, (
        f"{case.model}: model.labels has {n} labels but the classifier outputs {size} scores; "
        "fmhub_load (or fmhub_attach_head) must give one label per output"
    )
    assert not indices or max(indices) < n, f"{case.model}: a result names class {max(indices)}"
    assert {r.label for r in results} <= set(model.labels), (
        f"{case.model}: results name labels that are not in model.labels"
    )


def check_low_precision(
    case: ConformanceCase, model: Any | None = None, reference: list[Any] | None = None
) -> None:
    """Each of ``case.dtypes`` gives results close to float32's (not only of the right shape).
    ``reference``: the results ``model`` just predicted for ``case.inputs`` in float32 on the CPU,
    when the caller has them (else they are predicted here)."""
    import torch

    from ..results import check_result

    model = model or load_case(case)
    model.to(device="cpu", dtype="float32")
    if reference is None:
        reference = predict(model, case)
    ref_raw = raw_outputs(model, list(case.inputs), case.call_options)
    for name in case.dtypes:
        model.to(dtype=name)
        assert model.dtype == getattr(torch, name)
        try:
            results = predict(model, case)
            for r in results:
                check_result(model.task, r)
            raw = raw_outputs(model, list(case.inputs), case.call_options)
        finally:
            model.to(dtype="float32")
        tol = case.low_precision_rtol
        if ref_raw is not None and raw is not None:
            err = _rel_error(raw.numpy(), ref_raw.numpy())
            assert err <= tol, (
                f"{case.model}: in {name} the forward outputs differ from float32's by {err:.3g} "
                f"(relative; allowed {tol}); the plugin computes garbage in {name}"
            )
        for i, (r, ref) in enumerate(zip(results, reference)):
            a, b = _numbers(r), _numbers(ref)
            if a is not None and b is not None:
                err = _rel_error(a, b)
                assert err <= tol, (
                    f"{case.model}: in {name} result {i} differs from float32's by {err:.3g} "
                    f"(relative; allowed {tol})"
                )


def _perturb(module: Any, seed: int = 1234) -> None:
    """Change every floating parameter a little, deterministically."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.is_floating_point() and p.numel():
                noise = torch.randn(p.shape, generator=gen).to(p.device, p.dtype)
                p.add_(noise * (0.05 * p.detach().float().abs().mean().item() + 1e-3))


def check_save_load(case: ConformanceCase, tmp_path: Path) -> None:
    """Save -> load gives back the saved model: the weights are perturbed before saving, so a
    loader that ignores the folder (or a load option replayed over it) gives other weights."""
    import fmhub

    model = load_case(case)
    _perturb(model.module)
    saved = {n: p.detach().float().cpu().clone() for n, p in model.module.named_parameters()}
    before = predict(model, case)
    folder = model.save(Path(tmp_path) / "saved")
    assert (folder / "fmhub.json").is_file()
    assert not [p for p in Path(tmp_path).iterdir() if p.name.startswith(".")], "temp folder left"
    again = fmhub.load(str(folder))
    assert again.task == model.task and again.labels == model.labels
    loaded = dict(again.module.named_parameters())
    common = [n for n in saved if n in loaded and tuple(loaded[n].shape) == tuple(saved[n].shape)]
    wrong = [
        n
        for n in common
        if not fmhub_allclose(loaded[n].detach().float().cpu(), saved[n], case.atol)
    ]
    assert not wrong, (
        f"{case.model}: the model loaded from the saved folder does not have the saved weights "
        f"({len(wrong)} of {len(common)} parameters differ, e.g. {wrong[:3]}); fmhub_load must "
        "read the folder at spec.path, and no replayed load option (checkpoint=...) may override it"
    )
    try:
        assert_results_close(predict(again, case), before, case.atol)
    except AssertionError as exc:
        raise AssertionError(
            f"{case.model}: outputs after save -> load differ from the saved model's ({exc}); "
            "fmhub_load must read the folder at spec.path"
        ) from None


def fmhub_allclose(a: Any, b: Any, atol: float) -> bool:
    import torch

    return bool(torch.allclose(a, b, atol=atol, rtol=1e-5))


def check_finetune_hooks(model: Any) -> None:
    """The model's plugin implements every fine-tuning hook; names the missing ones."""
    owner = model.spec.plugin
    missing = [h for h in FINETUNE_HOOKS if not model.hub.caller(h, owner).get_hookimpls()]
    assert not missing, (
        f"plugin {owner!r} does not implement {', '.join(missing)}, which fine-tuning needs: "
        + "; ".join(f"implement {h} — docs/hooks.md#{h}" for h in missing)
        + " (or set finetune=False on the ConformanceCase of a model that cannot be fine-tuned)"
    )


def check_finetune(case: ConformanceCase, tmp_path: Path) -> None:
    """A head for two labels, the default targets of each PEFT method, a few LoRA steps that
    change the outputs and train the adapted modules, adapter save -> load equal predictions."""
    import fmhub

    from ..generation import GENERATION_TASKS

    model = load_case(case)
    if model.task in GENERATION_TASKS:
        check_finetune_generative(case, model, tmp_path)
        return
    check_finetune_hooks(model)
    labels = ["first", "second"]
    for method in case.peft_methods:
        defaults = model.finetune_targets(method)
        assert defaults is None or all(isinstance(t, str) and t for t in defaults), (
            f"fmhub_finetune_targets gave {defaults!r} for {method}: a list of module-name "
            "suffixes, or None"
        )
        plan = fmhub.finetune_plan(model, method, labels=labels)
        assert plan.modules, f"{case.model}: {method}'s default targets match no module"
        inside = [
            m for m in plan.modules if any(m == h or m.startswith(h + ".") for h in plan.head)
        ]
        assert not inside, f"{case.model}: {method}'s default targets wrap the head: {inside}"
    assert model.adapter is None and model.labels != tuple(labels), "a plan changed the model"
    train = [(x, labels[i % 2]) for i, x in enumerate(case.inputs)]
    result = _three_lora_steps(model, train, tmp_path)
    assert model.task == "classification" and model.labels == tuple(labels)
    assert isinstance(model.adapter, fmhub.Adapter) and model.adapter.method == "lora"
    after = predict(model, case)
    check_labels_match_outputs(case, model, after)
    before = _before_training(case, model, labels)
    moved = [
        n
        for n, p in model.module.named_parameters()
        if "lora_B" in n and p.detach().abs().sum().item() > 0
    ]
    assert moved, (
        f"{case.model}: after {result.steps} LoRA steps no adapted module was trained (every "
        "lora_B is still zero): the default targets are not on the forward path"
    )
    changed = any(_rel_error(_numbers(a), _numbers(b)) > 1e-6 for a, b in zip(after, before))
    assert changed, f"{case.model}: {result.steps} LoRA steps did not change the outputs"
    # the case's own load options (a checkpoint=..., say) are the caller's: fmhub never replays
    # those that need consent from a manifest
    again = fmhub.load(str(result.adapter_path), **case.options)
    assert again.labels == tuple(labels) and again.adapter is not None
    assert_results_close(predict(again, case), after, max(case.atol, 1e-5))


def _before_training(case: ConformanceCase, model: Any, labels: list[str]) -> list[Any]:
    """The predictions ``model`` made before its LoRA steps: the base model with the fresh head
    ``fmhub.finetune`` attached (seed 0). PEFT keeps both (LoRA's B starts at zero, the trained
    head is a copy of the fresh one), so they are the predictions with the adapter switched off;
    without PEFT, those of a fresh model given the same seeded head."""
    peft = model.adapter.peft
    if peft is not None:
        with peft.disable_adapter():
            return predict(model, case)
    import torch

    reference = load_case(case)
    torch.manual_seed(0)  # the seed fmhub.finetune attaches its head with: the same fresh head
    reference.attach_head(labels)
    return predict(reference, case)


def _three_lora_steps(model: Any, train: list, tmp_path: Path) -> Any:
    """Three LoRA steps over ``train`` in one batch, seeded, the adapter written under
    ``tmp_path``: the fine-tuning every conformance check runs."""
    import fmhub

    return fmhub.finetune(
        model,
        train,
        method="lora",
        max_steps=3,
        learning_rate=5e-2,
        warmup_ratio=0.0,
        batch_size=len(train),
        seed=0,
        progress=False,
        output_dir=str(Path(tmp_path) / "run"),
    )


def check_finetune_generative(case: ConformanceCase, model: Any, tmp_path: Path) -> None:
    """A generative model: LoRA on (prompt, completion) pairs trains the adapted modules and lowers
    the loss of those completions (teacher-forced perplexity), and the adapter folder loads back
    generating the same tokens."""
    import fmhub

    for hook in ("fmhub_finetune_targets", "fmhub_training_loss", "fmhub_training_batch"):
        if not model.hub.caller(hook, model.spec.plugin).get_hookimpls():
            raise AssertionError(f"{case.model}: implement {hook} — docs/hooks.md#{hook}")
    plan = fmhub.finetune_plan(model, "lora")
    assert plan.modules, f"{case.model}: lora's default targets match no module"
    train = [(x, " the end.") for x in case.inputs if isinstance(x, str)] or None
    assert train, f"{case.model}: a generative case needs text prompts as inputs"
    before = fmhub.evaluate(model, train, metrics=["perplexity"]).metrics["perplexity"]
    result = _three_lora_steps(model, train, tmp_path)
    moved = [
        n
        for n, p in model.module.named_parameters()
        if "lora_B" in n and p.detach().abs().sum().item() > 0
    ]
    assert moved, f"{case.model}: after {result.steps} LoRA steps every lora_B is still zero"
    after = fmhub.evaluate(model, train, metrics=["perplexity"]).metrics["perplexity"]
    assert after < before, (
        f"{case.model}: {result.steps} LoRA steps did not lower the completions' perplexity "
        f"({before:.4g} -> {after:.4g})"
    )
    again = fmhub.load(str(result.adapter_path), **case.options)
    assert again.adapter is not None
    want = [r.token_ids for r in predict(model, case)]
    assert [r.token_ids for r in predict(again, case)] == want, (
        f"{case.model}: the reloaded adapter generates other tokens than the trained model"
    )


# ---------------------------------------------------------------------------------------------
# The suite
# ---------------------------------------------------------------------------------------------


#: What every case's registration probe runs before resolving its model.
_REGISTRATION_PREFIX = "import fmhub; fmhub.list_models(); fmhub.plugins()"


class ConformanceSuite:
    """Contract tests, generated for every case in ``cases``."""

    cases: ClassVar[list[ConformanceCase]] = []
    _loaded: ClassVar[dict[str, Any]]

    @pytest.fixture
    def fmhub_model(self, fmhub_case: ConformanceCase) -> Model:
        cache = type(self).__dict__.get("_loaded")
        if cache is None:
            cache = {}
            type(self)._loaded = cache
        key = fmhub_case.id or fmhub_case.model
        if key not in cache:
            cache[key] = load_case(fmhub_case)
        return cache[key]

    def _predict(
        self, model: Model, case: ConformanceCase, inputs: list[Any] | None = None, **options: Any
    ) -> Any:
        return predict(model, case, inputs, **options)

    def _registration_imports(self, case: ConformanceCase) -> list[str]:
        """Which of ``case.heavy_modules`` a fresh interpreter imports listing the models and
        resolving ``case.model``. Probed for every case of the class at once
        (:func:`imported_after_each`: one interpreter lists, a forked child per case resolves),
        again whenever the environment differs from the one the answers were probed in."""
        cls = type(self)
        cases = list(getattr(cls, "cases", None) or [])
        index = next((i for i, c in enumerate(cases) if c is case), None)
        if index is None:
            cases, index = [case], 0
        env = sorted(kv for kv in os.environ.items() if kv[0] != "PYTEST_CURRENT_TEST")
        key = (os.getcwd(), env, [id(c) for c in cases])
        cached = cls.__dict__.get("_registration_probe")
        if cached is None or cached[0] != key:
            modules = tuple(dict.fromkeys(m for c in cases for m in c.heavy_modules))
            answers = imported_after_each(
                _REGISTRATION_PREFIX, [f"fmhub.model_info({c.model!r})" for c in cases], modules
            )
            cached = (key, answers)
            cls._registration_probe = cached
        answer = cached[1][index]
        if isinstance(answer, AssertionError):
            raise answer
        return [m for m in answer if m in case.heavy_modules]

    def test_registration_imports_nothing_heavy(self, fmhub_case: ConformanceCase) -> None:
        heavy = self._registration_imports(fmhub_case)
        assert heavy == [], f"listing and resolving {fmhub_case.model!r} imported {heavy}"

    def test_info_names_owner(self, fmhub_case: ConformanceCase) -> None:
        import fmhub

        spec = fmhub.model_info(fmhub_case.model)
        assert spec.plugin, "the resolved spec must name the plugin that serves it"
        assert spec.id.startswith(spec.namespace + ":")

    def test_predict_end_to_end(self, fmhub_case: ConformanceCase, fmhub_model: Model) -> None:
        from ..results import check_result

        if fmhub_case.task is not None:
            assert fmhub_model.task == fmhub_case.task
        results = self._predict(fmhub_model, fmhub_case)
        assert len(results) == len(fmhub_case.inputs)
        for r in results:
            check_result(fmhub_model.task, r)

    def test_model_object_and_stages_by_hand(
        self, fmhub_case: ConformanceCase, fmhub_model: Model
    ) -> None:
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
        predicted = fmhub_model.predict(
            fmhub_case.inputs,
            batch_size=len(fmhub_case.inputs),
            progress=False,
            **fmhub_case.call_options,
        )
        assert_results_close(by_hand, predicted, fmhub_case.atol)

    def test_batched_equals_one_by_one(
        self, fmhub_case: ConformanceCase, fmhub_model: Model
    ) -> None:
        batched = fmhub_model.predict(
            fmhub_case.inputs,
            batch_size=len(fmhub_case.inputs),
            progress=False,
            **fmhub_case.call_options,
        )
        single = [fmhub_model(x, **fmhub_case.call_options) for x in fmhub_case.inputs]
        assert_results_close(batched, single, fmhub_case.atol)
        reordered = self._predict(fmhub_model, fmhub_case, list(reversed(fmhub_case.inputs)))
        assert_results_close(list(reversed(reordered)), single, fmhub_case.atol)

    def test_different_inputs_give_different_outputs(
        self, fmhub_case: ConformanceCase, fmhub_model: Model
    ) -> None:
        check_different_inputs_differ(fmhub_case, fmhub_model)

    def test_labels_match_the_output_size(
        self, fmhub_case: ConformanceCase, fmhub_model: Model
    ) -> None:
        check_labels_match_outputs(fmhub_case, fmhub_model)

    def test_device_and_dtype_moves(self, fmhub_case: ConformanceCase, fmhub_model: Model) -> None:
        import torch

        import fmhub

        model = load_case(fmhub_case)
        reference = self._predict(model, fmhub_case)
        assert model.to(device="cpu") is model and model.device.type == "cpu"
        # ``reference`` is what check_low_precision compares with when it is float32's already
        float32 = reference if model.dtype == torch.float32 else None
        check_low_precision(fmhub_case, model, float32)
        with pytest.raises(fmhub.DeviceError):
            model.to(dtype="float16")  # refused on CPU
        # The round trip through bfloat16 rounded this model's weights; another model of the same
        # name, loaded before it (the class's), must be untouched by it and predict as this one
        # did before its moves (a plugin handing out one shared module fails here).
        assert fmhub_model is not model
        assert_results_close(self._predict(fmhub_model, fmhub_case), reference, fmhub_case.atol)

    def test_save_load_round_trip(self, fmhub_case: ConformanceCase, tmp_path: Path) -> None:
        check_save_load(fmhub_case, tmp_path)

    def test_finetune(self, fmhub_case: ConformanceCase, tmp_path: Path) -> None:
        if not fmhub_case.finetune:
            pytest.skip("finetune=False: this model is not fine-tuned")
        pytest.importorskip("peft")
        check_finetune(fmhub_case, tmp_path)

    def test_saved_files_are_verified_on_load(
        self, fmhub_case: ConformanceCase, fmhub_model: Model, tmp_path: Path
    ) -> None:
        """The manifest lists every file the plugin wrote; one flipped byte in the largest is a
        ManifestError naming it (docs/reliability.md)."""
        import fmhub
        from fmhub.manifest import read_manifest

        folder = fmhub_model.save(tmp_path / "saved")
        listed = read_manifest(folder).files
        assert listed, "the manifest lists no file: fmhub_save wrote nothing?"
        name = max(listed, key=lambda n: listed[n].size)
        data = bytearray((folder / name).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (folder / name).write_bytes(bytes(data))
        with pytest.raises(fmhub.ManifestError, match=name.split("/")[-1]):
            fmhub.load(str(folder))

    def test_bad_inputs_are_clear_errors(
        self, fmhub_case: ConformanceCase, fmhub_model: Model
    ) -> None:
        import fmhub

        for bad in fmhub_case.bad_inputs:
            with pytest.raises(fmhub.InputError):
                fmhub_model(bad, **fmhub_case.call_options)

    # -- generative models (models whose per-call options are GenerationOptions) ---------------

    @staticmethod
    def _generative(model: Model) -> None:
        from ..generation import GenerationOptions
        from ..results import TASKS

        cls = model.call_options
        if cls is None or not issubclass(cls, GenerationOptions):
            pytest.skip("not a generative model")
        if TASKS.get(model.task) != "Generation":
            pytest.skip(f"{model.task} results are not Generation results")

    def test_generation_greedy_is_deterministic(
        self, fmhub_case: ConformanceCase, fmhub_model: Model
    ) -> None:
        self._generative(fmhub_model)
        first = self._predict(fmhub_model, fmhub_case, do_sample=False)
        assert self._predict(fmhub_model, fmhub_case, do_sample=False) == first
        for r in first:
            assert isinstance(r.text, str) and r.completion_tokens >= 0

    def test_generation_stream_adds_up_to_the_text(
        self, fmhub_case: ConformanceCase, fmhub_model: Model
    ) -> None:
        import fmhub

        self._generative(fmhub_model)
        for x in fmhub_case.inputs:
            stream = fmhub_model.stream(x, **fmhub_case.call_options, do_sample=False)
            assert isinstance(stream, fmhub.TextStream)
            pieces = list(stream)
            assert all(isinstance(p, str) and p for p in pieces)
            assert "".join(pieces) == stream.result.text
            assert stream.result == fmhub_model(x, **fmhub_case.call_options, do_sample=False)

    def test_generation_max_new_tokens_and_stop_are_honoured(
        self, fmhub_case: ConformanceCase, fmhub_model: Model
    ) -> None:
        self._generative(fmhub_model)
        x = fmhub_case.inputs[0]
        for n in (1, 3):
            r = fmhub_model(
                x,
                **{**fmhub_case.call_options, "max_new_tokens": n, "min_new_tokens": 0},
                do_sample=False,
            )
            assert r.completion_tokens <= n
            assert r.finish_reason == "stop" or r.completion_tokens == n
        full = fmhub_model(x, **fmhub_case.call_options, do_sample=False).text
        cut = next((i for i in range(1, len(full)) if full[i : i + 1].strip()), None)
        if cut is None:
            pytest.skip(f"the model generated too little text ({full!r}) to place a stop string")
        stop = full[cut : cut + 2]
        r = fmhub_model(x, **fmhub_case.call_options, stop=[stop], do_sample=False)
        assert r.text == full[: full.find(stop)] and r.finish_reason == "stop"
        streamed = "".join(
            fmhub_model.stream(x, **fmhub_case.call_options, stop=[stop], do_sample=False)
        )
        assert streamed == r.text
