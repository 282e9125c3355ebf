"""The conformance kit fails broken plugins: variants of the toy plugin with one defect each
(``fmhub_toy.broken``), run through the kit's check functions and through the pytest suite
itself (pytester), must fail exactly the check that covers their defect, naming it; the intact
toy plugin passes every check."""

from __future__ import annotations

import textwrap

import pytest
from fmhub_toy import broken

import fmhub
from fmhub.testing import (
    ConformanceCase,
    check_different_inputs_differ,
    check_finetune,
    check_labels_match_outputs,
    check_low_precision,
    check_save_load,
)

pytest.importorskip("peft")

POINTS = [[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 2.0], [0.0, 0.0, 0.0, 0.0]]
EMBED = ConformanceCase(model="toy:embed", inputs=POINTS, task="embedding")
CLASSIFY = ConformanceCase(model="toy:classify", inputs=POINTS, task="classification")


def run_check(check, case, tmp_path):
    if check in (check_save_load, check_finetune):
        return check(case, tmp_path)
    if check is check_low_precision:
        return check(case)
    return check(case, fmhub.load(case.model, **case.options))


ALL_CHECKS = [
    check_different_inputs_differ,
    check_labels_match_outputs,
    check_low_precision,
    check_save_load,
    check_finetune,
]


@pytest.mark.parametrize("case", [EMBED, CLASSIFY], ids=["embed", "classify"])
def test_the_intact_toy_passes_every_check(use_hub, case, tmp_path):
    use_hub(broken.hub(broken.Toy))
    for i, check in enumerate(ALL_CHECKS):
        run_check(check, case, tmp_path / str(i))


DEFECTS = {
    "no-finetune-hooks": (
        EMBED,
        check_finetune,
        (
            r"does not implement fmhub_finetune_targets, fmhub_attach_head, "
            r"fmhub_training_loss.*implement fmhub_training_loss — "
            r"docs/hooks\.md#fmhub_training_loss"
        ),
    ),
    "no-training-loss": (
        EMBED,
        check_finetune,
        (
            r"does not implement fmhub_training_loss, which fine-tuning needs: "
            r"implement fmhub_training_loss — docs/hooks\.md#fmhub_training_loss"
        ),
    ),
    "ignores-saved-folder": (EMBED, check_save_load, r"does not have the saved weights"),
    "constant-output": (
        EMBED,
        check_different_inputs_differ,
        r"3 different inputs all gave the same output",
    ),
    "labels-mismatch": (
        CLASSIFY,
        check_labels_match_outputs,
        r"model\.labels has 2 labels but the classifier outputs 3 scores",
    ),
    "bad-low-precision": (
        EMBED,
        check_low_precision,
        r"in bfloat16 the forward outputs differ from float32's",
    ),
}


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_each_broken_toy_fails_the_check_for_its_defect(use_hub, defect, tmp_path):
    assert set(DEFECTS) == set(broken.BROKEN)
    use_hub(broken.hub(broken.BROKEN[defect]))
    case, check, message = DEFECTS[defect]
    with pytest.raises(AssertionError, match=message):
        run_check(check, case, tmp_path)


def test_finetuning_without_a_loss_hook_names_the_hook_to_implement(use_hub):
    """What a user (not the kit) sees: the core's error names the hook and its docs."""
    use_hub(broken.hub(broken.NoTrainingLoss))
    model = fmhub.load("toy:embed")
    with pytest.raises(
        fmhub.FineTuneError,
        match=r"plugin 'toy' cannot compute a training loss "
        r"for 'toy:embed': it does not implement fmhub_training_loss; implement "
        r"fmhub_training_loss — docs/hooks\.md#fmhub_training_loss",
    ):
        fmhub.finetune(model, [(p, str(i % 2)) for i, p in enumerate(POINTS)], progress=False)
    use_hub(broken.hub(broken.NoFineTuneHooks))
    with pytest.raises(fmhub.FineTuneError, match=r"does not implement fmhub_attach_head"):
        fmhub.finetune(
            fmhub.load("toy:embed"), [(POINTS[0], "a"), (POINTS[1], "b")], progress=False
        )


#: The generated test each broken variant must fail, and only that one.
SUITE_FAILS = {
    "no-finetune-hooks": ("embed", {"test_finetune"}),
    "no-training-loss": ("embed", {"test_finetune"}),
    "ignores-saved-folder": ("embed", {"test_save_load_round_trip"}),
    "constant-output": ("embed", {"test_different_inputs_give_different_outputs"}),
    "labels-mismatch": ("classify", {"test_labels_match_the_output_size"}),
    "bad-low-precision": ("embed", {"test_device_and_dtype_moves"}),
    None: ("embed", set()),
}


@pytest.mark.parametrize(
    "defect", [d for d in SUITE_FAILS if d] + [None], ids=[d for d in SUITE_FAILS if d] + ["intact"]
)
def test_the_generated_suite_fails_exactly_the_test_for_the_defect(pytester, defect):
    case, expected = SUITE_FAILS[defect]
    variant = f"broken.BROKEN[{defect!r}]" if defect else "broken.Toy"
    pytester.makepyfile(
        test_kit=textwrap.dedent(f"""
        import pytest
        import fmhub
        from fmhub.testing import ConformanceCase, ConformanceSuite
        from fmhub_toy import broken

        POINTS = {POINTS!r}

        @pytest.fixture(autouse=True)
        def _hub():
            previous = fmhub.set_hub(broken.hub({variant}))
            yield
            fmhub.set_hub(previous)

        class TestKit(ConformanceSuite):
            cases = [ConformanceCase(model="toy:{case}", inputs=POINTS, id="{case}")]
    """)
    )
    result = pytester.runpytest_inprocess(
        "-q", "-p", "no:cacheprovider", "-k", "not registration_imports"
    )
    failed = {
        r.nodeid.split("::")[2].split("[")[0]
        for r in result.reprec.getreports("pytest_runtest_logreport")
        if r.failed
    }
    assert failed == expected, result.stdout.str()[-3000:]
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 8, outcomes


@pytest.mark.parametrize("fork", [True, False], ids=["forked-children", "no-fork"])
def test_imported_after_each_answers_as_one_fresh_interpreter_per_code(fork, monkeypatch):
    """One interpreter runs the prefix, a forked child per code (or, without os.fork, one
    interpreter per code): each answer is what a fresh interpreter running prefix + that code
    imports, never what an earlier code imported; a failing code fails alone, a failing prefix
    raises."""
    import os

    from fmhub.testing import imported_after_each

    if not fork:
        monkeypatch.delattr(os, "fork")
    modules = ("wave", "colorsys", "json", "torch")
    codes = ["import wave", "import colorsys", "raise ValueError('boom')", "pass"]
    answers = imported_after_each("import json", codes, modules)
    assert answers[0] == ["wave", "json"] and answers[1] == ["colorsys", "json"]
    assert isinstance(answers[2], AssertionError) and "ValueError: boom" in str(answers[2])
    assert answers[3] == ["json"]
    with pytest.raises(AssertionError, match="probe failed in 'import no_such_module_x'"):
        imported_after_each("import no_such_module_x", ["pass"], modules)


def test_the_registration_test_fails_the_case_that_imports_a_heavy_module(pytester):
    """The registration probe, shared by the cases of a class, still answers per case: a case
    whose heavy_modules are imported fails naming them, one whose model does not resolve fails
    with the traceback, and the intact case passes."""
    pytester.makepyfile(
        test_kit=textwrap.dedent(f"""
        from fmhub.testing import ConformanceCase, ConformanceSuite

        POINTS = {POINTS!r}

        class TestKit(ConformanceSuite):
            cases = [
                ConformanceCase(model="toy:embed", inputs=POINTS, id="intact"),
                ConformanceCase(model="toy:embed", inputs=POINTS, id="heavy",
                                heavy_modules=("torch", "fmhub")),
                ConformanceCase(model="toy:no-such-model", inputs=POINTS, id="unknown"),
            ]
    """)
    )
    result = pytester.runpytest_inprocess(
        "-q", "-p", "no:cacheprovider", "-k", "registration_imports"
    )
    result.assert_outcomes(passed=1, failed=2)
    out = result.stdout.str()
    assert "listing and resolving 'toy:embed' imported ['fmhub']" in out
    assert "UnknownModelError" in out or "no-such-model" in out
    failed = {
        r.nodeid.split("[")[1].rstrip("]")
        for r in result.reprec.getreports("pytest_runtest_logreport")
        if r.failed
    }
    assert failed == {"heavy", "unknown"}
