"""``fmhub.evaluate`` end to end: every task on real models of the toy plugin or an in-test plugin,
every data form, bad data named by row, open metrics, plots, memory that stays flat, the CLI, and
fine-tuning's evaluation running the same code."""

from __future__ import annotations

import dataclasses
import gc
import json
import random
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

import fmhub
from fmhub import hookimpl
from fmhub.cli import main
from fmhub.evaluation import Accumulator, Metric, MetricResult
from fmhub.results import Entities, Entity, FillMask, Generation, TokenScore, Transcription


class _SklearnMetrics:
    """``sklearn.metrics``, the reference, imported by the first test that reads it (not at
    collection, which every pytest worker pays)."""

    def __getattr__(self, name: str):
        return getattr(pytest.importorskip("sklearn.metrics"), name)


sk = _SklearnMetrics()

LABELS = ("low", "mid", "high")


def toy_inputs(n: int, seed: int) -> list[list[float]]:
    rng = random.Random(seed)
    return [[rng.uniform(-1, 1) for _ in range(4)] for _ in range(n)]


def toy_data(n: int, seed: int = 0) -> list[tuple[list[float], str]]:
    rng = random.Random(seed + 1)
    return [(x, rng.choice(LABELS)) for x in toy_inputs(n, seed)]


def toy_probs(model, xs) -> np.ndarray:
    with torch.no_grad():
        p = model.module(torch.tensor(xs, dtype=torch.float32)).softmax(-1).double().numpy()
    return p / p.sum(1, keepdims=True)


@pytest.fixture
def classifier(toy_hub):
    return fmhub.load("toy:classify")


# -- classification --------------------------------------------------------------------------


def test_classification_report_equals_scikit_learn_on_the_models_own_probabilities(classifier):
    data = toy_data(300)
    report = fmhub.evaluate(classifier, data, batch_size=7, progress=False, k=2)
    xs, ys = [x for x, _ in data], np.array([LABELS.index(y) for _, y in data])
    probs = toy_probs(classifier, xs)
    pred = probs.argmax(1)
    m = report.metrics
    assert report.n_examples == 300 and report.task == "classification"
    assert report.model == "toy:classify" and report.adapter is None
    assert report.labels == list(LABELS)
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(ys, pred))
    assert m["macro_f1"] == pytest.approx(sk.f1_score(ys, pred, average="macro"))
    assert m["weighted_recall"] == pytest.approx(sk.recall_score(ys, pred, average="weighted"))
    assert m["log_loss"] == pytest.approx(
        sk.log_loss(ys, y_proba=probs, labels=[0, 1, 2]), rel=1e-5
    )
    assert m["top_2_accuracy"] == pytest.approx(
        sk.top_k_accuracy_score(ys, probs, k=2, labels=[0, 1, 2])
    )
    assert report.details["confusion_matrix"]["matrix"] == sk.confusion_matrix(ys, pred).tolist()
    assert set(report.per_class) == set(LABELS)
    assert report.per_class["mid"]["support"] == int((ys == 1).sum())
    assert report.seconds > 0 and report.examples_per_second > 0
    # the same through the model, and the report's outputs
    again = classifier.evaluate(data, metrics=["accuracy"], progress=False)
    assert again.metrics == {"accuracy": m["accuracy"]}
    assert json.loads(report.to_json())["metrics"] == m
    md = report.to_markdown()
    assert "| accuracy |" in md and "| gold \\ predicted |" in md
    text = str(report)
    assert "toy:classify" in text and "macro_f1" in text and "confusion matrix" in text


def test_classification_data_forms_agree(classifier, tmp_path):
    data = toy_data(40, 3)
    expected = fmhub.evaluate(classifier, data, progress=False).metrics
    dicts = [{"text": x, "label": y} for x, y in data]
    as_strings = [(",".join(map(str, x)), y) for x, y in data]
    ids = [(x, LABELS.index(y)) for x, y in data]
    jsonl = tmp_path / "eval.jsonl"
    jsonl.write_text(
        "".join(json.dumps({"text": ",".join(map(str, x)), "label": y}) + "\n" for x, y in data)
    )
    csv = tmp_path / "eval.csv"
    csv.write_text(
        "sentence,class\n" + "".join(f'"{",".join(map(str, x))}",{y}\n' for x, y in data)
    )

    class Dataset(torch.utils.data.Dataset):
        def __len__(self):
            return len(data)

        def __getitem__(self, i):
            return data[i]

    for form in (dicts, as_strings, ids, jsonl, str(csv), Dataset(), iter(data)):
        got = fmhub.evaluate(classifier, form, progress=False).metrics
        assert got == pytest.approx(expected, rel=1e-6), form


def test_class_per_folder(use_hub, tmp_path):
    hub = use_hub(fmhub.Hub(entry_points=False, plugins={"oracle": Oracle()}))
    for label, files in (("a", ["1", "2", "3"]), ("b", ["4", "5"])):
        (tmp_path / label).mkdir()
        for f in files:
            (tmp_path / label / f"{f}.txt").write_text("a" if f in ("1", "2", "4") else "b")
    model = hub.load("oracle:files")
    report = fmhub.evaluate(model, tmp_path, progress=False)
    # the model reads each file and predicts its content: a a b | a b
    assert report.details["confusion_matrix"]["matrix"] == [[2, 1], [1, 1]]
    assert report.metrics["accuracy"] == pytest.approx(3 / 5)


def test_bad_classification_data_is_an_input_error_naming_the_row(classifier, tmp_path):
    data = toy_data(5)
    data[3] = (data[3][0], "medium")
    with pytest.raises(
        fmhub.InputError,
        match=r"example 3: label 'medium' is not one the model "
        r"knows.*'low', 'mid', 'high'",
    ):
        fmhub.evaluate(classifier, data, progress=False)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(fmhub.InputError, match="empty"):
        fmhub.evaluate(classifier, empty, progress=False)
    blank = tmp_path / "blank.csv"
    blank.write_text("text,label\n")
    with pytest.raises(fmhub.InputError, match="empty"):
        fmhub.evaluate(classifier, blank, progress=False)
    with pytest.raises(fmhub.InputError, match="empty"):
        fmhub.evaluate(classifier, [], progress=False)
    nolabel = tmp_path / "nolabel.jsonl"
    nolabel.write_text('{"text": "1,2,3,4", "label": "low"}\n{"text": "1,2,3,4", "y": "low"}\n')
    with pytest.raises(
        fmhub.InputError,
        match=r"nolabel.jsonl line 2 has no label column "
        r"\(label/labels/class\); it has \['text', 'y'\]",
    ):
        fmhub.evaluate(classifier, nolabel, progress=False)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text('text,label\n"1,2,3,4",low\n"1,2,3,4",low,extra\n')
    with pytest.raises(fmhub.InputError, match="ragged.csv line 3 has 3 fields"):
        fmhub.evaluate(classifier, ragged, progress=False)
    with pytest.raises(fmhub.InputError, match="example 1 is tuple"):
        fmhub.evaluate(classifier, [([1, 2, 3, 4], "low"), ([1, 2, 3, 4],)], progress=False)
    with pytest.raises(fmhub.InputError, match="does not exist"):
        fmhub.evaluate(classifier, tmp_path / "nope.jsonl", progress=False)
    with pytest.raises(fmhub.InvalidOptionError, match="unknown option 'bin'.*'bins'"):
        fmhub.evaluate(classifier, data[:2], bin=3)


def test_an_embedding_model_without_labels_is_not_evaluated_as_a_classifier(toy_hub):
    model = fmhub.load("toy:embed")
    with pytest.raises(fmhub.InputError, match="no class labels"):
        fmhub.evaluate(model, toy_data(4), task="classification", progress=False)
    with pytest.raises(fmhub.InputError, match="cannot evaluate task 'feature-maps'"):
        fmhub.evaluate(model, toy_data(4), task="feature-maps", progress=False)


# -- metrics are open --------------------------------------------------------------------------


class _Count(Accumulator):
    def __init__(self, context):
        self.n = 0
        self.labels = context.labels

    def update(self, batch):
        self.n += len(batch["targets"])

    def result(self):
        return MetricResult({"counted": float(self.n)}, details={"labels_seen": list(self.labels)})


class MetricPlugin:
    @hookimpl
    def fmhub_register_metrics(self, register):
        register(Metric("count", ("classification",), _Count, "examples seen", default=False))


def test_a_plugin_registers_a_metric_and_metrics_picks_it(classifier, toy_hub):
    with pytest.raises(
        fmhub.InvalidOptionError,
        match="unknown metric 'count'.*Known metrics for "
        "classification: accuracy, confusion_matrix",
    ):
        fmhub.evaluate(classifier, toy_data(3), metrics=["accuracy", "count"], progress=False)
    toy_hub.register(MetricPlugin(), name="counting")
    assert "count" in toy_hub.metrics("classification")
    report = fmhub.evaluate(classifier, toy_data(9), metrics=["accuracy", "count"], progress=False)
    assert report.metrics["counted"] == 9.0 and "accuracy" in report.metrics
    assert report.details["labels_seen"] == list(LABELS)
    assert report.metric_names == ["accuracy", "count"]
    default = fmhub.evaluate(classifier, toy_data(9), progress=False)
    assert "counted" not in default.metrics  # default=False: only when asked for
    with pytest.raises(fmhub.InvalidOptionError, match="Did you mean 'count'"):
        fmhub.evaluate(classifier, toy_data(3), metrics=["cont"], progress=False)


def test_registering_something_that_is_not_a_metric_fails_loudly(bare_hub):
    class Junk:
        @hookimpl
        def fmhub_register_metrics(self, register):
            register("accuracy")

    with pytest.raises(fmhub.PluginError, match="not an fmhub.evaluation.Metric"):
        bare_hub.register(Junk(), name="junk")


def test_builtin_metrics_register_through_the_hook(bare_hub):
    impls = [i.plugin_name for i in bare_hub.pm.hook.fmhub_register_metrics.get_hookimpls()]
    assert impls == ["fmhub"]
    assert {"accuracy", "f1", "log_loss", "ece"} <= set(bare_hub.metrics("classification"))
    assert set(bare_hub.metrics("retrieval")) == {"recall", "mrr", "ndcg"}


# -- memory stays flat --------------------------------------------------------------------------


class LazyToyData(Sequence):
    """n examples made on demand: the data set itself takes no memory."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        x = [(i * 7919 + j * 104729) % 2003 / 1001.5 - 1.0 for j in range(4)]  # in [-1, 1]
        return x, LABELS[i % 3]


def peak_bytes(model, n: int) -> tuple[int, int]:
    data = LazyToyData(n)
    fmhub.evaluate(model, LazyToyData(600), batch_size=200, progress=False)  # warm caches
    # garbage of earlier runs freed while tracing would lower the peak by a varying amount
    # (100-250 kB): collected first, the peak is the same to a kilobyte from 5,000 examples on
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        report = fmhub.evaluate(model, data, batch_size=200, progress=False)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert report.n_examples == n
    return peak, report.n_examples


def test_memory_stays_flat_from_4000_to_10000_examples(classifier):
    """Python allocations at the peak of an evaluation grow by less than 50 kB from 4,000 to
    10,000 examples (keeping every probability would add 6,000 x 3 float64 = 144 kB as numpy,
    several times that as result objects) and stay under 3 MB in all. The peak is the same to a
    kilobyte from 4,000 examples on (3,000: 80 kB lower), so 4,000 is the smallest first size."""
    small, _ = peak_bytes(classifier, 4_000)
    big, _ = peak_bytes(classifier, 10_000)
    assert big < 3_000_000, big
    assert big - small < 50_000, (small, big)


# -- an in-test plugin for the other tasks ------------------------------------------------------


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))


class Oracle:
    """Models whose predictions are fixed functions of the input, so expected metrics are known:

    * ``oracle:files`` classification over ("a", "b"): reads a text file, predicts its content;
    * ``oracle:ner`` token classification: every capitalised word is a PER entity (B-/I- labels);
    * ``oracle:mask`` fill-mask: the candidates are the words after the mask, best first;
    * ``oracle:asr`` transcription: the input string with "uh " removed;
    * ``oracle:gen`` text generation: the prompt reversed word by word, with a token NLL.
    """

    @hookimpl
    def fmhub_register_namespaces(self, register):
        register(fmhub.Namespace(name="oracle", distribution="fmhub-oracle"))

    @hookimpl
    def fmhub_register_models(self, register):
        for name, task in (
            ("files", "classification"),
            ("ner", "token-classification"),
            ("mask", "fill-mask"),
            ("asr", "transcription"),
            ("gen", "text-generation"),
        ):
            register(fmhub.ModelSpec(id=f"oracle:{name}", task=task))

    @hookimpl
    def fmhub_load(self, spec):
        labels = ("a", "b") if spec.task == "classification" else None
        return fmhub.Loaded(module=_Net(), task=spec.task, labels=labels)

    @hookimpl
    def fmhub_preprocess(self, model, inputs):
        # a batch holds a tensor or array (docs/hooks.md): the oracle's is a placeholder
        return {"inputs": list(inputs), "rows": np.arange(len(inputs))}

    @hookimpl
    def fmhub_forward(self, model, batch):
        return batch

    @hookimpl
    def fmhub_postprocess(self, model, outputs, batch):
        from fmhub.results import top_k_classification

        xs, task = batch["inputs"], model.task
        if task == "classification":
            content = [Path(x).read_text().strip() for x in xs]
            probs = np.array([[0.8, 0.2] if c == "a" else [0.3, 0.7] for c in content])
            return top_k_classification(probs, model.labels, k=1)
        if task == "token-classification":
            out = []
            for text in xs:
                ents, pos = [], 0
                for word in text.split(" "):
                    if word[:1].isupper():
                        ents.append(Entity("B-PER", 0.9, pos, pos + len(word), word))
                    pos += len(word) + 1
                out.append(Entities(tuple(ents)))
            return out
        if task == "fill-mask":
            return [
                FillMask(
                    tuple(
                        TokenScore(w, i, 1.0 / (i + 1), x)
                        for i, w in enumerate(x.split("[MASK]")[1].split())
                    )
                )
                for x in xs
            ]
        if task == "transcription":
            return [Transcription(x.replace("uh ", "")) for x in xs]
        return [
            _Generated(
                " ".join(reversed(x.split())),
                "stop",
                1,
                1,
                nll=float(len(x.split())),
                tokens=len(x.split()),
            )
            for x in xs
        ]


@dataclasses.dataclass(frozen=True)
class _Generated(Generation):
    """A generation result that carries its reference's token log-likelihood (a plugin may)."""

    nll: float = 0.0
    tokens: int = 0


@pytest.fixture
def oracle(use_hub):
    return use_hub(fmhub.Hub(entry_points=False, plugins={"oracle": Oracle()}))


def test_token_classification_from_tags_and_from_character_spans(oracle):
    model = oracle.load("oracle:ner")
    tagged = [
        (["Ada", "Lovelace", "met", "Babbage"], ["B-PER", "I-PER", "O", "B-PER"]),
        (["in", "London", "today"], ["O", "B-LOC", "O"]),
    ]
    # predicted: "Ada", "Lovelace", "Babbage" (PER, one word each), "London" (PER)
    # gold: PER "Ada Lovelace", PER "Babbage", LOC "London" -> 1 of 4 predictions right
    report = fmhub.evaluate(model, tagged, progress=False)
    m = report.metrics
    assert report.task == "token-classification" and report.n_examples == 2
    assert m["precision"] == pytest.approx(1 / 4) and m["recall"] == pytest.approx(1 / 3)
    assert report.per_class["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    spans = [
        (
            "Ada Lovelace met Babbage",
            [{"label": "PER", "start": 0, "end": 12}, {"label": "PER", "start": 17, "end": 24}],
        ),
        {"text": "in London today", "entities": [["LOC", 3, 9]]},
    ]
    assert fmhub.evaluate(model, spans, progress=False).metrics == m
    dicts = [{"tokens": t, "ner_tags": g} for t, g in tagged]
    assert fmhub.evaluate(model, dicts, progress=False).metrics == m
    with pytest.raises(fmhub.InputError, match="example 0 has 2 tokens but 1 tags"):
        fmhub.evaluate(model, [(["a", "b"], ["O"])], progress=False)
    with pytest.raises(fmhub.InputError, match="example 0: tag 'PER' is not IOB2"):
        fmhub.evaluate(model, [(["a"], ["PER"])], progress=False)


def test_fill_mask(oracle):
    model = oracle.load("oracle:mask")
    data = [
        ("Paris is the [MASK] capital city", "capital"),
        ("the [MASK] sky blue", "blue"),
        {"text": "x [MASK] y z", "answer": "q"},
    ]
    report = fmhub.evaluate(model, data, progress=False, k=3)
    assert report.metrics == {
        "top_1_accuracy": pytest.approx(1 / 3),
        "top_3_accuracy": pytest.approx(2 / 3),
    }


def test_transcription_wer_and_cer(oracle, tmp_path):
    model = oracle.load("oracle:asr")
    data = [("uh the cat sat", "The cat sat."), ("a dog uh ran", "a dog ran far")]
    report = fmhub.evaluate(model, data, progress=False)
    # hypotheses "the cat sat", "a dog ran": 0 + 1 word edits over 3 + 4 words
    assert report.metrics["wer"] == pytest.approx(1 / 7)
    assert report.metrics["cer"] == pytest.approx(4 / (11 + 13))
    raw = fmhub.evaluate(model, data, progress=False, normalize=False).metrics["wer"]
    assert raw == pytest.approx(3 / 7)  # "The" and "sat." now count
    path = tmp_path / "asr.jsonl"
    path.write_text("".join(json.dumps({"audio": a, "text": t}) + "\n" for a, t in data))
    assert fmhub.evaluate(model, path, progress=False).metrics == report.metrics


def test_generation_exact_match_chrf_and_perplexity(oracle):
    model = oracle.load("oracle:gen")
    data = [("b a", "a b"), ("one two three", "three two one"), ("x y", "nope")]
    report = fmhub.evaluate(
        model, data, metrics=["exact_match", "chrf", "perplexity"], progress=False
    )
    assert report.metrics["exact_match"] == pytest.approx(2 / 3)
    assert 0 < report.metrics["chrf"] < 100
    assert report.metrics["perplexity"] == pytest.approx(np.exp((2 + 3 + 2) / 7))
    assert set(fmhub.evaluate(model, data, progress=False).metrics) == {"exact_match", "chrf"}


# -- embeddings: retrieval and similarity --------------------------------------------------------


def embed(model, texts) -> np.ndarray:
    e = np.stack(model.predict(texts, progress=False)).astype(np.float64)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def vec(seed: int) -> str:
    return ",".join(f"{v:.3f}" for v in toy_inputs(1, seed)[0])


def test_retrieval_from_pairs_equals_a_direct_computation(toy_hub):
    model = fmhub.load("toy:embed")
    queries = [vec(i) for i in range(12)]
    docs = [vec(100 + i) for i in range(30)]
    rng = random.Random(0)
    pairs = [(q, docs[j]) for i, q in enumerate(queries) for j in rng.sample(range(30), 1 + i % 3)]
    report = fmhub.evaluate(model, pairs, progress=False, ks=[1, 5, 30], batch_size=4)
    assert report.task == "retrieval" and report.n_examples == 12
    used = list(dict.fromkeys(d for _, d in pairs))
    rel = np.array([[1.0 if (q, d) in set(pairs) else 0.0 for d in used] for q in queries])
    scores = embed(model, queries) @ embed(model, used).T
    for k in (1, 5, 30):
        assert report.metrics[f"ndcg@{k}"] == pytest.approx(
            sk.ndcg_score(rel, scores, k=k), rel=1e-5
        )
    assert report.metrics["recall@30"] == pytest.approx(1.0)
    assert report.details["recall_at_k"]["k"] == [1, 5, 30]


def write_beir(folder: Path, qrels: str) -> Path:
    folder.mkdir()
    (folder / "corpus.jsonl").write_text(
        "".join(
            json.dumps({"_id": f"d{i}", "title": "", "text": vec(200 + i)}) + "\n" for i in range(8)
        )
    )
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": f"q{i}", "text": vec(300 + i)}) + "\n" for i in range(3))
    )
    (folder / "qrels.tsv").write_text(qrels)
    return folder


def test_retrieval_from_a_corpus_and_qrels(toy_hub, tmp_path):
    model = fmhub.load("toy:embed")
    folder = write_beir(
        tmp_path / "beir",
        "query-id\tcorpus-id\tscore\nq0\td1\t1\nq0\td2\t2\nq1\td5\t1\nq2\td0\t0\n",
    )
    report = fmhub.evaluate(model, folder, progress=False, ks=[1, 8])
    assert report.n_examples == 2  # q2 has no relevant document (score 0)
    assert report.metrics["recall@8"] == 1.0
    as_dict = {
        "corpus": {f"d{i}": vec(200 + i) for i in range(8)},
        "queries": {f"q{i}": vec(300 + i) for i in range(3)},
        "qrels": {"q0": {"d1": 1, "d2": 2}, "q1": {"d5": 1}},
    }
    assert fmhub.evaluate(model, as_dict, progress=False, ks=[1, 8]).metrics == pytest.approx(
        report.metrics
    )
    ragged = write_beir(tmp_path / "ragged", "q0\td1\t1\nq1\td5\n")
    with pytest.raises(fmhub.InputError, match=r"qrels.tsv line 2 has 2 fields"):
        fmhub.evaluate(model, ragged, progress=False)
    unknown = write_beir(tmp_path / "unknown", "q0\td1\t1\nq1\td99\t1\n")
    with pytest.raises(fmhub.InputError, match=r"qrels.tsv line 2 names document 'd99'"):
        fmhub.evaluate(model, unknown, progress=False)
    (tmp_path / "half").mkdir()
    with pytest.raises(fmhub.InputError, match="missing: corpus.jsonl, queries.jsonl, qrels.tsv"):
        fmhub.evaluate(model, tmp_path / "half", progress=False)


def test_sts_correlations_equal_scipy(toy_hub, tmp_path):
    stats = pytest.importorskip("scipy.stats")
    model = fmhub.load("toy:embed")
    rng = random.Random(1)
    triples = [(vec(i), vec(500 + i), rng.uniform(0, 5)) for i in range(40)]
    report = fmhub.evaluate(model, triples, progress=False, batch_size=8)
    assert report.task == "sts"
    a, b = embed(model, [t[0] for t in triples]), embed(model, [t[1] for t in triples])
    cos, gold = (a * b).sum(1), [t[2] for t in triples]
    assert report.metrics["spearman"] == pytest.approx(
        stats.spearmanr(cos, gold).statistic, abs=1e-6
    )
    assert report.metrics["pearson"] == pytest.approx(stats.pearsonr(cos, gold).statistic, abs=1e-6)
    path = tmp_path / "sts.csv"
    path.write_text(
        "sentence1\tsentence2\tscore\n".replace("\t", ",")
        + "".join(f'"{x}","{y}",{s}\n' for x, y, s in triples)
    )
    assert fmhub.evaluate(model, path, progress=False).metrics == pytest.approx(report.metrics)
    with pytest.raises(fmhub.InputError, match="example 1: the score 'high' is not a number"):
        fmhub.evaluate(model, [triples[0], (vec(1), vec(2), "high")], progress=False)


# -- plots -----------------------------------------------------------------------------------


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5_000


def test_plots_are_written_as_png(classifier, toy_hub, tmp_path):
    pytest.importorskip("matplotlib")
    report = fmhub.evaluate(classifier, toy_data(100), progress=False)
    paths = report.plot(tmp_path / "plots")
    assert sorted(p.name for p in paths) == [
        "confusion_matrix.png",
        "per_class_f1.png",
        "reliability.png",
    ]
    assert all(is_png(p) for p in paths)
    pairs = [(vec(i), vec(100 + i)) for i in range(10)]
    retrieval = fmhub.evaluate(fmhub.load("toy:embed"), pairs, progress=False)
    (path,) = retrieval.plot(tmp_path / "r")
    assert path.name == "recall_at_k.png" and is_png(path)
    assert not list((tmp_path / "plots").glob(".*tmp*"))


# -- the command line -----------------------------------------------------------------------------


def write_jsonl(path: Path, data) -> Path:
    path.write_text(
        "".join(json.dumps({"text": ",".join(map(str, x)), "label": y}) + "\n" for x, y in data)
    )
    return path


def test_fmhub_eval_prints_a_table_json_and_writes_plots(toy_hub, tmp_path, capsys):
    data = write_jsonl(tmp_path / "eval.jsonl", toy_data(30))
    assert main(["eval", "toy:classify", "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "Evaluation of toy:classify" in out and "macro_f1" in out and "confusion" in out
    assert (
        main(
            [
                "eval",
                "toy:classify",
                "--data",
                str(data),
                "--json",
                "--metrics",
                "accuracy",
                "f1",
                "confusion_matrix",
                "--plots",
                str(tmp_path / "p"),
                "-s",
                "k=2",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["n_examples"] == 30 and report["options"] == {"k": 2}
    assert report["metric_names"] == ["accuracy", "f1", "confusion_matrix"]
    assert "plot:" in captured.err and (tmp_path / "p" / "confusion_matrix.png").is_file()
    assert not (tmp_path / "p" / "reliability.png").exists()  # ece was not asked for
    assert main(["eval", "toy:classify", "--data", str(data), "--metrics", "acc"]) == 2
    err = capsys.readouterr().err
    assert "unknown metric 'acc'" in err and "Known metrics: accuracy, cer" in err  # before loading
    assert main(["eval", "toy:classify", "--data", str(tmp_path / "missing.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_fmhub_eval_on_an_adapter_folder_and_finetune_eval(toy_hub, tmp_path, capsys):
    train = [(x, "pos" if x[0] + x[1] > 0 else "neg") for x in toy_inputs(128, 5)]
    held = [(x, "pos" if x[0] + x[1] > 0 else "neg") for x in toy_inputs(64, 6)]
    write_jsonl(tmp_path / "train.jsonl", train)
    write_jsonl(tmp_path / "held.jsonl", held)
    assert (
        main(
            [
                "finetune",
                "toy:embed",
                "--train",
                str(tmp_path / "train.jsonl"),
                "--eval",
                str(tmp_path / "held.jsonl"),
                "--output",
                str(tmp_path / "run"),
                "-c",
                "epochs=4",
                "-c",
                "learning_rate=0.02",
                "-c",
                "progress=false",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert "Evaluation of toy:embed + lora adapter" in captured.err
    evaluation = summary["evaluation"]
    assert evaluation["adapter"]["method"] == "lora"
    assert evaluation["metrics"]["accuracy"] == pytest.approx(summary["metrics"]["accuracy"])
    assert evaluation["metrics"]["macro_f1"] == pytest.approx(summary["metrics"]["macro_f1"])
    assert evaluation["metrics"]["log_loss"] == pytest.approx(summary["metrics"]["loss"])
    assert main(["eval", summary["adapter"], "--data", str(tmp_path / "held.jsonl"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["metrics"] == pytest.approx(evaluation["metrics"], rel=1e-6)
    assert report["labels"] == ["neg", "pos"]


def test_finetuning_history_is_computed_by_the_evaluation_code(toy_hub):
    train = [(x, "pos" if x[0] + x[1] > 0 else "neg") for x in toy_inputs(96, 7)]
    held = [(x, "pos" if x[0] + x[1] > 0 else "neg") for x in toy_inputs(40, 8)]
    model = fmhub.load("toy:embed")
    result = fmhub.finetune(model, train, eval=held, epochs=2, learning_rate=0.02, progress=False)
    report = fmhub.evaluate(model, held, progress=False)
    last = result.history[-1]
    assert last["accuracy"] == report.metrics["accuracy"]
    assert last["macro_f1"] == report.metrics["macro_f1"]
    assert last["loss"] == pytest.approx(report.metrics["log_loss"], rel=1e-9)
    from fmhub.finetuning import loop

    assert not hasattr(loop, "classification_metrics")  # one implementation of the metrics


def test_the_metric_example_in_the_docs_runs(classifier, toy_hub):
    page = (Path(__file__).resolve().parents[1] / "docs" / "evaluation.md").read_text()
    section = page.split("## Adding a metric", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, "docs/evaluation.md", "exec"), namespace)  # noqa: S102 - the docs example

    class DocPlugin:
        fmhub_register_metrics = staticmethod(namespace["fmhub_register_metrics"])

    toy_hub.register(DocPlugin(), name="doc-metric")
    data = toy_data(60)
    report = fmhub.evaluate(classifier, data, metrics=["accuracy", "worst_class"], progress=False)
    matrix = np.array(
        fmhub.evaluate(classifier, data, metrics=["confusion_matrix"], progress=False).details[
            "confusion_matrix"
        ]["matrix"]
    )
    wrong = matrix.sum(1) - np.diag(matrix)
    assert report.metrics["worst_class_errors"] == float(wrong.max())


class _Agree(Accumulator):
    def __init__(self, context):
        self.hits = self.n = 0

    def update(self, batch):
        for result, expected in zip(batch["results"], batch["expected"]):
            self.hits += int(float(result.sum()) > 0) == int(expected)
            self.n += 1

    def result(self):
        return MetricResult({"agreement": self.hits / self.n})


class SignTask:
    @hookimpl
    def fmhub_register_metrics(self, register):
        register(Metric("agreement", ("sign",), _Agree, "sign of the embedding sum is right"))


def test_a_third_party_task_is_evaluated_with_its_plugins_metrics(toy_hub):
    model = fmhub.load("toy:embed")
    data = [(x, 1) for x in toy_inputs(10, 1)]
    with pytest.raises(fmhub.InputError, match="cannot evaluate task 'sign'"):
        fmhub.evaluate(model, data, task="sign", progress=False)
    toy_hub.register(SignTask(), name="sign")
    report = fmhub.evaluate(model, iter(data), task="sign", progress=False)
    sums = [float(e.sum()) for e in model.predict([x for x, _ in data], progress=False)]
    assert report.metrics == {"agreement": pytest.approx(sum(s > 0 for s in sums) / 10)}
    assert report.n_examples == 10 and report.task == "sign"
    assert fmhub.evaluation.Metric is Metric  # reachable from `import fmhub`


def test_an_embedding_model_takes_generators_of_triples(toy_hub):
    model = fmhub.load("toy:embed")
    triples = [(vec(i), vec(50 + i), float(i)) for i in range(6)]
    as_list = fmhub.evaluate(model, triples, progress=False)
    as_gen = fmhub.evaluate(model, (t for t in triples), progress=False)
    assert as_gen.task == "sts" and as_gen.metrics == as_list.metrics
