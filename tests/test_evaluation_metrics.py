"""Every built-in metric equals a reference implementation (scikit-learn, scipy, seqeval, sacreBLEU,
hand-checked tables) on random and edge-case data, fed in uneven batches as evaluation feeds it."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from fmhub.evaluation import EvalContext
from fmhub.evaluation.builtin import BUILTIN_METRICS
from fmhub.evaluation.metrics import perplexity
from fmhub.evaluation.run import EvalOptions, _TaskOptions, iob2_spans
from fmhub.evaluation.text import (
    cer,
    chrf,
    edit_distance,
    exact_match,
    normalize_transcript,
    wer,
)

sk = pytest.importorskip("sklearn.metrics")


def metric(task: str, name: str):
    return next(m for m in BUILTIN_METRICS if m.name == name and task in m.tasks)


def run(task: str, name: str, batches, labels=None, **options):
    ctx = EvalContext(task=task, labels=labels, options=_TaskOptions(EvalOptions(**options), task))
    acc = metric(task, name).start(ctx)
    for b in batches:
        acc.update(b)
    return acc.result()


def split(n: int, rng) -> list[slice]:
    """Uneven batches, including a batch of one."""
    cuts = sorted(set(rng.integers(1, n, size=min(6, n - 1)).tolist())) if n > 1 else []
    edges = [0, *cuts, n]
    return [slice(a, b) for a, b in itertools.pairwise(edges) if b > a]


# -- classification ---------------------------------------------------------------------------


def random_classification(n: int, c: int, seed: int, skew: bool = False):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)) * 2
    if skew:  # some classes never predicted, some never gold
        logits[:, -1] -= 100
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    targets = rng.integers(0, c - 1 if skew else c, size=n)
    return probs, targets, rng


def class_batches(probs, targets, rng):
    return [{"probs": probs[s], "targets": targets[s]} for s in split(len(targets), rng)]


CASES = [
    (500, 5, 0, False),
    (300, 4, 1, True),
    (1, 3, 2, False),
    (40, 2, 3, False),
    (200, 12, 4, True),
]


@pytest.mark.parametrize("n,c,seed,skew", CASES)
def test_classification_metrics_equal_scikit_learn(n, c, seed, skew):
    probs, targets, rng = random_classification(n, c, seed, skew)
    batches = class_batches(probs, targets, rng)
    labels = tuple(f"c{i}" for i in range(c))
    pred = probs.argmax(1)
    assert run("classification", "accuracy", batches, labels).values["accuracy"] == pytest.approx(
        sk.accuracy_score(targets, pred)
    )
    # the confusion matrix
    cm = run("classification", "confusion_matrix", batches, labels).details["confusion_matrix"]
    assert cm["labels"] == list(labels)
    assert cm["matrix"] == sk.confusion_matrix(targets, pred, labels=range(c)).tolist()
    # precision / recall / F1 per class and averaged (over classes seen in gold or predictions)
    res = run("classification", "f1", batches, labels)
    ref = sk.classification_report(targets, pred, output_dict=True, zero_division=0)
    present = sorted(set(targets) | set(pred))
    for i in range(c):
        row = res.per_class[f"c{i}"]
        if i in present:
            want = ref[str(i)]
            for col in ("precision", "recall", "f1-score"):
                assert row[col.removesuffix("-score")] == pytest.approx(want[col]), (i, col)
            assert row["support"] == want["support"]
        else:
            assert row == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    for avg in ("macro", "weighted"):
        for col in ("precision", "recall", "f1"):
            want = sk.precision_recall_fscore_support(targets, pred, average=avg, zero_division=0)
            assert res.values[f"{avg}_{col}"] == pytest.approx(
                want[("precision", "recall", "f1")[0:3].index(col)]
            ), (avg, col)
    micro = sk.f1_score(targets, pred, average="micro")
    assert res.values["micro_f1"] == pytest.approx(micro)
    assert res.values["micro_precision"] == pytest.approx(micro)
    # log loss
    ll = run("classification", "log_loss", batches, labels).values["log_loss"]
    assert ll == pytest.approx(sk.log_loss(targets, y_proba=probs, labels=range(c)), rel=1e-9)
    # top-k accuracy
    if c > 2:
        k = 2
        got = run("classification", "top_k_accuracy", batches, labels, k=k).values
        assert got[f"top_{k}_accuracy"] == pytest.approx(
            sk.top_k_accuracy_score(targets, probs, k=k, labels=range(c))
        )


def ece_reference(probs, targets, bins):
    conf, pred = probs.max(1), probs.argmax(1)
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = (conf > lo) & (conf <= hi) if b else (conf >= lo) & (conf <= hi)
        if inside.any():
            total += (
                inside.sum()
                / len(conf)
                * abs((pred[inside] == targets[inside]).mean() - conf[inside].mean())
            )
    return total


@pytest.mark.parametrize("n,c,seed,skew", CASES)
@pytest.mark.parametrize("bins", [1, 10, 15])
def test_expected_calibration_error_equals_the_textbook_formula(n, c, seed, skew, bins):
    probs, targets, rng = random_classification(n, c, seed, skew)
    res = run("classification", "ece", class_batches(probs, targets, rng), bins=bins)
    assert res.values["ece"] == pytest.approx(ece_reference(probs, targets, bins), abs=1e-12)
    rel = res.details["reliability"]
    assert sum(rel["count"]) == n and len(rel["edges"]) == bins + 1


def test_ece_hand_checked():
    # confidences 0.9 (right), 0.9 (wrong), 0.6 (right). 4 bins: (0.75, 1] holds the two 0.9s
    # (accuracy 0.5), (0.5, 0.75] the 0.6 (accuracy 1) -> |0.5-0.9|*2/3 + |1-0.6|/3 = 0.4;
    # 2 bins: one bin (0.5, 1], accuracy 2/3, confidence 0.8 -> 0.1333
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6]])
    targets = np.array([0, 1, 1])
    res = run("classification", "ece", [{"probs": probs, "targets": targets}], bins=4)
    assert res.values["ece"] == pytest.approx(0.4 * 2 / 3 + 0.4 / 3)
    res = run("classification", "ece", [{"probs": probs, "targets": targets}], bins=2)
    assert res.values["ece"] == pytest.approx(abs(2 / 3 - 0.8))


def test_perfect_and_hopeless_classifiers():
    probs = np.eye(3)[[0, 1, 2, 2]]
    targets = np.array([0, 1, 2, 2])
    labels = ("a", "b", "c")
    f1 = run("classification", "f1", [{"probs": probs, "targets": targets}], labels).values
    assert f1["macro_f1"] == f1["micro_f1"] == f1["weighted_f1"] == 1.0
    assert run("classification", "log_loss", [{"probs": probs, "targets": targets}], labels).values[
        "log_loss"
    ] == pytest.approx(0.0, abs=1e-12)
    wrong = np.eye(3)[[1, 2, 0, 0]]
    ll = run("classification", "log_loss", [{"probs": wrong, "targets": targets}]).values
    assert ll["log_loss"] == pytest.approx(sk.log_loss(targets, y_proba=wrong, labels=range(3)))


# -- token classification: seqeval ----------------------------------------------------------------

seqeval = pytest.importorskip("seqeval.metrics")
from seqeval.scheme import IOB2  # noqa: E402


def entity_batches(y_true, y_pred, rng):
    gold = [{(k, a, b) for k, a, b in iob2_spans(t)} for t in y_true]
    pred = [{(k, a, b) for k, a, b in iob2_spans(p)} for p in y_pred]
    return [{"gold": gold[s], "pred": pred[s]} for s in split(len(gold), rng)]


def check_against_seqeval(y_true, y_pred, rng):
    res = run("token-classification", "entity_f1", entity_batches(y_true, y_pred, rng))
    kw = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
    ref = seqeval.classification_report(y_true, y_pred, output_dict=True, **kw)
    assert res.values["precision"] == pytest.approx(seqeval.precision_score(y_true, y_pred, **kw))
    assert res.values["recall"] == pytest.approx(seqeval.recall_score(y_true, y_pred, **kw))
    assert res.values["f1"] == pytest.approx(seqeval.f1_score(y_true, y_pred, **kw))
    for avg in ("macro", "weighted"):
        for col in ("precision", "recall", "f1-score"):
            assert res.values[f"{avg}_{col.removesuffix('-score')}"] == pytest.approx(
                ref[f"{avg} avg"][col]
            ), (avg, col)
    types = {k for k in ref if not k.endswith(" avg")}
    assert set(res.per_class) == types
    for t in types:
        for col in ("precision", "recall", "f1-score", "support"):
            assert res.per_class[t][col.removesuffix("-score")] == pytest.approx(ref[t][col])


def test_entity_f1_equals_seqeval_on_its_documented_example():
    y_true = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    y_pred = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    res = run(
        "token-classification",
        "entity_f1",
        entity_batches(y_true, y_pred, np.random.default_rng(0)),
    )
    assert res.values["f1"] == pytest.approx(0.5)
    check_against_seqeval(y_true, y_pred, np.random.default_rng(0))


def test_strict_iob2_ignores_an_entity_that_starts_with_i():
    assert iob2_spans(["I-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-PER"]) == [("LOC", 3, 5)]
    y_true = [["B-PER", "I-PER", "O"]]
    y_pred = [["I-PER", "I-PER", "O"]]  # lenient matching would count it; strict does not
    check_against_seqeval(y_true, y_pred, np.random.default_rng(0))


@pytest.mark.parametrize("seed", range(5))
def test_entity_f1_equals_seqeval_on_random_tags(seed):
    rng = np.random.default_rng(seed)
    tags = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]

    def seq(n):
        return [tags[i] for i in rng.integers(0, len(tags), size=n)]

    y_true = [seq(int(rng.integers(1, 20))) for _ in range(60)]
    y_pred = [t[:] for t in y_true]
    for p in y_pred:  # corrupt some predictions
        for j in range(len(p)):
            if rng.random() < 0.3:
                p[j] = tags[int(rng.integers(0, len(tags)))]
    check_against_seqeval(y_true, y_pred, rng)


# -- fill-mask ----------------------------------------------------------------------------------


def test_fill_mask_top_k():
    batch = {
        "candidates": [["paris", "lyon"], ["##ing", "ed"], [" Rome", "Milan"], ["x", "y"]],
        "gold": ["paris", "ed", "rome", "z"],
    }
    res = run("fill-mask", "top_k_accuracy", [batch], k=2).values
    # sub-word markers and outer spaces are ignored; case is not
    assert res == {"top_1_accuracy": 0.25, "top_2_accuracy": 0.5}


# -- retrieval: scikit-learn's ndcg_score -------------------------------------------------------


def ranking_batches(scores, rel, rng, depth):
    order = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
    ranked = [[f"d{j}" for j in row] for row in order]
    relevant = [{f"d{j}": float(g) for j, g in enumerate(row) if g > 0} for row in rel]
    return [{"ranked": ranked[s], "relevant": relevant[s]} for s in split(len(ranked), rng)]


@pytest.mark.parametrize("seed", range(4))
def test_retrieval_metrics_equal_references(seed):
    rng = np.random.default_rng(seed)
    q, d = 37, 60
    scores = rng.normal(size=(q, d))
    rel = rng.integers(0, 4, size=(q, d)) * (rng.random((q, d)) < 0.08)
    rel[np.arange(q), rng.integers(0, d, size=q)] = rng.integers(1, 4, size=q)  # one at least
    ks = (1, 3, 10, 60)
    batches = ranking_batches(scores, rel, rng, max(ks))
    ndcg = run("retrieval", "ndcg", batches, ks=ks).values
    recall = run("retrieval", "recall", batches, ks=ks).values
    mrr = run("retrieval", "mrr", batches, ks=ks).values
    order = np.argsort(-scores, axis=1, kind="stable")
    for k in ks:
        assert ndcg[f"ndcg@{k}"] == pytest.approx(sk.ndcg_score(rel, scores, k=k)), k
        top = order[:, :k]
        hits = np.take_along_axis(rel, top, 1) > 0
        assert recall[f"recall@{k}"] == pytest.approx(np.mean(hits.sum(1) / (rel > 0).sum(1)))
        first = np.where(hits.any(1), 1.0 / (hits.argmax(1) + 1), 0.0)
        assert mrr[f"mrr@{k}"] == pytest.approx(first.mean())


def test_retrieval_hand_checked():
    batch = {
        "ranked": [["a", "b", "c"], ["c", "a", "b"]],
        "relevant": [{"b": 1.0}, {"a": 1.0, "b": 1.0}],
    }
    assert run("retrieval", "mrr", [batch], ks=(1, 3)).values == {
        "mrr@1": 0.0,
        "mrr@3": (0.5 + 0.5) / 2,
    }
    assert run("retrieval", "recall", [batch], ks=(1, 2)).values == {
        "recall@1": 0.0,
        "recall@2": (1 + 0.5) / 2,
    }
    ndcg = run("retrieval", "ndcg", [batch], ks=(3,)).values["ndcg@3"]
    q1 = (1 / math.log2(3)) / 1
    q2 = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert ndcg == pytest.approx((q1 + q2) / 2)


# -- semantic similarity: scipy -------------------------------------------------------------------

stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, True)])
def test_sts_correlations_equal_scipy(seed, ties):
    rng = np.random.default_rng(seed)
    n = 257
    gold = rng.uniform(0, 5, size=n)
    cos = 0.1 * gold + rng.normal(scale=0.3, size=n)
    if ties:
        gold, cos = np.round(gold), np.round(cos, 1)
    batches = [{"cosine": cos[s], "gold": gold[s]} for s in split(n, rng)]
    assert run("sts", "spearman", batches).values["spearman"] == pytest.approx(
        stats.spearmanr(cos, gold).statistic, abs=1e-12
    )
    assert run("sts", "pearson", batches).values["pearson"] == pytest.approx(
        stats.pearsonr(cos, gold).statistic, abs=1e-12
    )


def test_pearson_is_stable_far_from_zero():
    rng = np.random.default_rng(0)
    x = 1e6 + rng.normal(size=1000)
    y = x + rng.normal(size=1000)
    batches = [{"cosine": x[s], "gold": y[s]} for s in split(1000, rng)]
    assert run("sts", "pearson", batches).values["pearson"] == pytest.approx(
        stats.pearsonr(x, y).statistic, rel=1e-9
    )


# -- transcription: a hand-checked WER / CER table ------------------------------------------------

WER_TABLE = [
    # reference, hypothesis, word edits, reference words, char edits, reference chars
    ("the cat sat", "the cat sat", 0, 3, 0, 11),
    ("the cat sat", "the bat sat", 1, 3, 1, 11),  # one substitution
    ("the cat sat", "the cat", 1, 3, 4, 11),  # one deletion (" sat")
    ("the cat sat", "the cat sat down", 1, 3, 5, 11),  # one insertion (" down")
    ("The Cat, sat!", "the cat sat", 0, 3, 0, 11),  # case and punctuation normalised
    ("don't stop", "dont stop", 1, 2, 1, 10),  # inner apostrophe kept
    ("'quoted' word", "quoted word", 0, 2, 0, 11),  # outer quotes dropped
    ("a b c d", "x", 4, 4, 7, 7),  # 3 deletions + 1 substitution
    ("ｆｕｌｌ width", "full width", 0, 2, 0, 10),  # NFKC
]


@pytest.mark.parametrize("ref,hyp,we,wn,ce,cn", WER_TABLE)
def test_wer_and_cer_hand_checked(ref, hyp, we, wn, ce, cn):
    assert wer([ref], [hyp]) == pytest.approx(we / wn)
    assert cer([ref], [hyp]) == pytest.approx(ce / cn)
    res = run("transcription", "wer", [{"ref": [ref], "hyp": [hyp]}]).values["wer"]
    assert res == pytest.approx(we / wn)


def test_wer_is_corpus_level_and_normalisation_can_be_turned_off():
    refs = [r for r, *_ in WER_TABLE]
    hyps = [h for _, h, *_ in WER_TABLE]
    total = sum(row[2] for row in WER_TABLE) / sum(row[3] for row in WER_TABLE)
    assert wer(refs, hyps) == pytest.approx(total)
    batches = [{"ref": refs[:4], "hyp": hyps[:4]}, {"ref": refs[4:], "hyp": hyps[4:]}]
    assert run("transcription", "wer", batches).values["wer"] == pytest.approx(total)
    raw = run(
        "transcription", "wer", [{"ref": ["The cat."], "hyp": ["the cat"]}], normalize=False
    ).values["wer"]
    assert raw == 1.0  # "The" != "the", "cat." != "cat"
    assert normalize_transcript("  Hello,   WORLD!  ") == "hello world"
    assert edit_distance("kitten", "sitting") == 3


def test_wer_with_an_empty_reference():
    assert wer(["", "a b"], ["x", "a b"]) == pytest.approx(1 / 2)
    assert wer([""], [""]) == 0.0 and wer([""], ["x"]) == 1.0


# -- generation ---------------------------------------------------------------------------------


def test_exact_match_and_chrf_equal_sacrebleu():
    sacrebleu = pytest.importorskip("sacrebleu")
    refs = [
        "The cat sat on the mat.",
        "Hello world",
        "a",
        "completely different",
        "",
        "Ünïcödé text here",
    ]
    hyps = [
        "The cat sat on a mat.",
        "Hello world ",
        "b",
        "nothing alike at all",
        "x",
        "Unicode text here",
    ]
    want = sacrebleu.corpus_chrf(hyps, [refs]).score
    assert chrf(refs, hyps) == pytest.approx(want, abs=1e-9)
    batches = [{"ref": refs[:2], "hyp": hyps[:2]}, {"ref": refs[2:], "hyp": hyps[2:]}]
    assert run("text-generation", "chrf", batches).values["chrf"] == pytest.approx(want, abs=1e-9)
    rng = np.random.default_rng(0)
    letters = list("abcde ")
    for _ in range(20):
        r = ["".join(rng.choice(letters, size=int(rng.integers(1, 30)))) for _ in range(5)]
        h = ["".join(rng.choice(letters, size=int(rng.integers(1, 30)))) for _ in range(5)]
        assert chrf(r, h) == pytest.approx(sacrebleu.corpus_chrf(h, [r]).score, abs=1e-9)
    em = run("text2text", "exact_match", batches).values["exact_match"]
    assert em == pytest.approx(1 / 6)  # only "Hello world" (outer space stripped)
    assert exact_match("A b", "a B", normalize=True) and not exact_match("A b", "a B")


def test_perplexity_from_summed_token_nll():
    nll = np.array([2.0, 4.0])
    tokens = np.array([2, 3])
    res = run("text-generation", "perplexity", [{"nll": nll, "tokens": tokens}]).values
    assert res["perplexity"] == pytest.approx(math.exp(6 / 5)) == perplexity(6.0, 5)
    with pytest.raises(ValueError, match="log-likelihoods"):
        run("text-generation", "perplexity", [{"nll": None, "tokens": None}])
