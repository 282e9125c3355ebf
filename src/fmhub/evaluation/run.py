"""``fmhub.evaluate``: run a model over labelled data batch by batch and feed streaming metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..errors import InputError, InvalidOptionError, did_you_mean
from ..spec import validate_model
from .base import EVAL_TASKS, EvalContext, Metric
from .data import class_folder, field, retrieval_set, rows_of
from .report import EvalReport

if TYPE_CHECKING:
    from ..model import Model

__all__ = ["EvalOptions", "evaluate", "pick_metrics"]

#: Inputs handed to ``model.predict`` at once: a few batches, so a plugin's batch order (sorting
#: by length) still saves padding, while memory stays bounded whatever the data set size.
CHUNK_BATCHES = 4


class EvalOptions(BaseModel):
    """Options of :func:`fmhub.evaluate` (keyword arguments; unknown ones are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str | None = Field(None, description="Evaluation task; default: from the model and data.")
    k: int = Field(5, ge=1, description="top-k accuracy cut-off (classification, fill-mask).")
    bins: int = Field(15, ge=1, description="Confidence bins of the calibration error.")
    ks: tuple[int, ...] = Field((1, 5, 10), min_length=1, description="Retrieval cut-offs.")
    normalize: bool | None = Field(
        None, description="Normalise text before WER/CER (default on) or exact match (default off)."
    )
    progress: bool | None = Field(None, description="Progress bar: None = on a terminal.")
    metric_options: dict[str, Any] = Field(
        default_factory=dict, description="Free options for third-party metrics."
    )


def score_batches(
    model: Model,
    task: str,
    batches: Iterable[dict[str, Any]],
    metrics: Sequence[str] | None = None,
    **options: Any,
) -> dict[str, float]:
    """The metric values of batches already in the task's batch form (what the task's runner
    yields): how fine-tuning under torchrun scores the predictions gathered from every rank with
    the same metric code as :func:`evaluate`."""
    opts: EvalOptions = validate_model(EvalOptions, options, "evaluation options")
    context = EvalContext(
        task=task,
        labels=tuple(model.labels) if model.labels else None,
        options=_TaskOptions(opts, task),
    )
    accumulators = [m.start(context) for m in pick_metrics(model.hub, task, metrics)]
    for batch in batches:
        for acc in accumulators:
            acc.update(batch)
    values: dict[str, float] = {}
    for acc in accumulators:
        values.update({k: float(v) for k, v in acc.result().values.items()})
    return values


def evaluate(
    model: Model,
    data: Any,
    metrics: Sequence[str] | None = None,
    batch_size: int | None = None,
    **options: Any,
) -> EvalReport:
    """Measure ``model`` on labelled ``data`` and return an :class:`EvalReport`.

    ``metrics`` picks metrics by name (default: every default metric of the task); ``options``
    are :class:`EvalOptions` fields (``k``, ``bins``, ``ks``, ``normalize``, ``task`` ...). Memory
    does not grow with the size of ``data``: batches are fed to streaming metrics and dropped.
    """
    opts: EvalOptions = validate_model(EvalOptions, options, "evaluation options")
    bs = model.default_batch_size if batch_size is None else batch_size
    if not isinstance(bs, int) or isinstance(bs, bool) or bs < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if not isinstance(data, (str, Path, dict)) and not hasattr(data, "__len__"):
        data = list(data)  # a generator: read once here, so the task can be told from its rows
    task = eval_task(model, data, opts.task)
    chosen = pick_metrics(model.hub, task, metrics)
    context = EvalContext(
        task=task,
        labels=tuple(model.labels) if model.labels else None,
        options=_TaskOptions(opts, task),
    )
    accumulators = {m.name: m.start(context) for m in chosen}
    description, total, batches = RUNNERS.get(task, _generic)(model, data, bs, opts)
    was_training = bool(getattr(model.module, "training", False))
    bar = _bar(total, opts.progress)
    started = time.perf_counter()
    n = 0
    try:
        for batch in batches:
            for acc in accumulators.values():
                acc.update(batch)
            n += batch["n"]
            if bar is not None:
                bar.update(batch["n"])
    finally:
        if bar is not None:
            bar.close()
        if was_training:
            from ..finetuning.adapter import train_mode

            train_mode(model.module)
    seconds = time.perf_counter() - started
    values: dict[str, float] = {}
    per_class: dict[str, dict[str, int | float]] = {}
    details: dict[str, Any] = {}
    for acc in accumulators.values():
        res = acc.result()
        values.update({k: float(v) for k, v in res.values.items()})
        for label, row in res.per_class.items():
            per_class.setdefault(label, {}).update(row)
        details.update(res.details)
    adapter = None
    if model.adapter is not None:
        adapter = {"method": model.adapter.method, "options": model.adapter.options}
    return EvalReport(
        model=model.spec.id,
        adapter=adapter,
        task=task,
        n_examples=n,
        metrics=values,
        per_class=per_class,
        details=details,
        labels=list(model.labels) if model.labels and task == "classification" else None,
        seconds=seconds,
        examples_per_second=n / seconds if seconds > 0 else 0.0,
        data=description,
        metric_names=[m.name for m in chosen],
        options=opts.model_dump(exclude={"progress", "task"}, exclude_defaults=True),
    )


class _TaskOptions:
    """EvalOptions with the per-task default of ``normalize`` filled in."""

    def __init__(self, opts: EvalOptions, task: str):
        self._opts = opts
        self.normalize = opts.normalize if opts.normalize is not None else task == "transcription"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._opts, name)


def eval_task(model: Model, data: Any, explicit: str | None) -> str:
    """The evaluation task: explicit, else the model's, with embedding models split into
    retrieval (pairs, corpus + qrels) and sts (triples with a score) by the shape of ``data``."""
    if explicit is not None:
        task = explicit
    elif model.task == "embedding":
        task = "sts" if _looks_like_sts(data) else "retrieval"
    else:
        task = model.task
    if task not in RUNNERS and not model.hub.metrics(task):
        known = ", ".join(sorted(RUNNERS))
        raise InputError(
            f"fmhub cannot evaluate task {task!r} (model {model.spec.id!r}); evaluation tasks: "
            f"{known}, or a task a plugin registers metrics for. Pass task=... to choose one."
        )
    return task


def _looks_like_sts(data: Any) -> bool:
    if isinstance(data, dict):
        return False
    if isinstance(data, (str, Path)) and Path(data).expanduser().is_dir():
        return False
    for _, rec in rows_of(data):
        if isinstance(rec, dict):
            return any(c in rec for c in ("sentence1", "text_a", "text1")) or (
                "score" in rec and "query" not in rec
            )
        return isinstance(rec, (tuple, list)) and len(rec) == 3
    return False


def pick_metrics(hub: Any, task: str, names: Sequence[str] | None) -> list[Metric]:
    """The metrics registered for ``task``: the default ones, or those named (in that order)."""
    known = hub.metrics(task)
    if names is None:
        chosen = [m for m in known.values() if m.default]
        if not chosen:
            raise InvalidOptionError(f"no metric is registered for task {task!r}.")
        return chosen
    if isinstance(names, str):
        names = [names]
    out = []
    for name in names:
        if name not in known:
            raise InvalidOptionError(
                f"unknown metric {name!r} for task {task!r}.{did_you_mean(name, known)} "
                f"Known metrics for {task}: {', '.join(sorted(known)) or 'none'}."
            )
        if known[name] not in out:
            out.append(known[name])
    if not out:
        raise InvalidOptionError(f"metrics=[] picks nothing; known: {', '.join(sorted(known))}.")
    return out


def _bar(total: int | None, progress: bool | None):
    if progress is False:
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        unit="ex",
        desc="eval",
        delay=0 if progress else 2.0,
        disable=None if progress is None else False,
        leave=False,
    )


def _chunks(rows: Iterable[tuple[str, Any]], size: int) -> Iterator[list[tuple[str, Any]]]:
    chunk: list[tuple[str, Any]] = []
    for item in rows:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _predict(model: Model, xs: list[Any], bs: int) -> list[Any]:
    return model.predict(xs, batch_size=bs, progress=False)


# -- classification ---------------------------------------------------------------------------


def _classification(model: Model, data: Any, bs: int, opts: EvalOptions):
    from ..results import full_distribution

    labels = list(model.labels or ())
    if len(labels) < 2:
        raise InputError(
            f"model {model.spec.id!r} has no class labels to evaluate against; fine-tune it into a "
            "classifier first, or evaluate its embeddings (task='retrieval' or 'sts')."
        )
    index = {name: i for i, name in enumerate(labels)}
    if isinstance(data, (str, Path)) and Path(data).expanduser().is_dir():
        rows = class_folder(Path(data).expanduser())
    else:
        rows = rows_of(data)

    def label_id(y: Any, where: str) -> int:
        if str(y) in index:
            return index[str(y)]
        if isinstance(y, (int, np.integer)) and not isinstance(y, bool) and 0 <= y < len(labels):
            return int(y)
        raise InputError(
            f"{where}: label {y!r} is not one the model knows; its labels are {labels}"
            f"{did_you_mean(str(y), labels)}"
        )

    def batches():
        n_classes = len(labels)
        for chunk in _chunks(rows, bs * CHUNK_BATCHES):
            xs, ys = [], []
            for where, rec in chunk:
                xs.append(
                    field(
                        rec,
                        where,
                        "input",
                        0,
                        2,
                        "Classification examples are (input, label) pairs.",
                    )
                )
                ys.append(
                    label_id(
                        field(
                            rec,
                            where,
                            "label",
                            1,
                            2,
                            "Classification examples are (input, label) pairs.",
                        ),
                        where,
                    )
                )
            with full_distribution():
                results = _predict(model, xs, bs)
            probs = np.full((len(xs), n_classes), np.nan)
            for i, r in enumerate(results):
                for ls in r.top_k:
                    if 0 <= ls.index < n_classes:
                        probs[i, ls.index] = ls.score
            yield {
                "n": len(xs),
                "probs": probs,
                "targets": np.asarray(ys, dtype=np.int64),
                "inputs": xs,
                "results": results,
            }

    return rows.description, len(rows), batches()


# -- token classification ----------------------------------------------------------------------


def iob2_spans(tags: Sequence[str], where: str = "") -> list[tuple[str, int, int]]:
    """Entities of an IOB2 tag sequence as ``(type, first token, end token)``, seqeval's strict
    rules: an entity starts at ``B-X`` and runs over the ``I-X`` that follow; an ``I-X`` that does
    not continue a ``B-X``/``I-X`` starts nothing."""
    spans, i, n = [], 0, len(tags)
    for t in tags:
        if not isinstance(t, str) or not (t == "O" or (t[:2] in ("B-", "I-") and len(t) > 2)):
            raise InputError(f"{where}: tag {t!r} is not IOB2 ('O', 'B-TYPE' or 'I-TYPE').")
    while i < n:
        if tags[i].startswith("B-"):
            kind, j = tags[i][2:], i + 1
            while j < n and tags[j] == f"I-{kind}":
                j += 1
            spans.append((kind, i, j))
            i = j
        else:
            i += 1
    return spans


def _entity_type(label: str) -> str:
    return label[2:] if label[:2] in ("B-", "I-", "E-", "S-") else label


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _token_example(rec: Any, where: str) -> tuple[str, set[tuple[str, int, int]]]:
    """``(text, gold entity spans)`` from tokens + IOB2 tags, or text + character entities."""
    if isinstance(rec, dict) and any(c in rec for c in ("tokens", "words")):
        tokens, tags = field(rec, where, "tokens", None), field(rec, where, "tags", None)
    elif isinstance(rec, dict):
        text, ents = field(rec, where, "input", None), rec.get("entities", rec.get("spans"))
        if ents is None:
            raise InputError(
                f"{where} needs 'tokens' and 'tags', or 'text' and 'entities'; it "
                f"has {sorted(rec)}."
            )
        return text, _char_entities(text, ents, where)
    elif isinstance(rec, (tuple, list)) and len(rec) == 2 and isinstance(rec[0], str):
        return rec[0], _char_entities(rec[0], rec[1], where)
    elif isinstance(rec, (tuple, list)) and len(rec) == 2:
        tokens, tags = rec
    else:
        raise InputError(
            f"{where}: a token-classification example is (tokens, tags) or "
            "(text, entities), or a dict with those keys."
        )
    if not isinstance(tokens, (list, tuple)) or not isinstance(tags, (list, tuple)):
        raise InputError(f"{where}: tokens and tags must be lists.")
    if len(tokens) != len(tags):
        raise InputError(f"{where} has {len(tokens)} tokens but {len(tags)} tags.")
    starts, pos = [], 0
    for tok in tokens:
        starts.append(pos)
        pos += len(str(tok)) + 1
    text = " ".join(str(t) for t in tokens)
    gold = {
        (k, starts[a], starts[b - 1] + len(str(tokens[b - 1])))
        for k, a, b in iob2_spans(list(tags), where)
    }
    return text, gold


def _char_entities(text: str, ents: Any, where: str) -> set[tuple[str, int, int]]:
    out = set()
    for e in ents or ():
        try:
            label = e["label"] if isinstance(e, dict) else e[0]
            start = int(e["start"] if isinstance(e, dict) else e[1])
            end = int(e["end"] if isinstance(e, dict) else e[2])
        except (KeyError, IndexError, TypeError, ValueError):
            raise InputError(f"{where}: entity {e!r} needs a label, start and end.") from None
        if not 0 <= start < end <= len(text):
            raise InputError(f"{where}: entity {e!r} lies outside the text ({len(text)} chars).")
        out.add((_entity_type(str(label)), *_trim(text, start, end)))
    return out


def _token_classification(model: Model, data: Any, bs: int, opts: EvalOptions):
    rows = rows_of(data)

    def batches():
        for chunk in _chunks(rows, bs * CHUNK_BATCHES):
            texts, gold = [], []
            for where, rec in chunk:
                text, spans = _token_example(rec, where)
                texts.append(text)
                gold.append(spans)
            results = _predict(model, texts, bs)
            pred = [
                {(_entity_type(e.label), *_trim(t, e.start, e.end)) for e in r.entities}
                for t, r in zip(texts, results)
            ]
            yield {"n": len(texts), "gold": gold, "pred": pred, "inputs": texts, "results": results}

    return rows.description, len(rows), batches()


# -- fill-mask, transcription, generation: (input, expected text) pairs ------------------------


def _text_pairs(
    in_field: str,
    out_field: str,
    hint: str,
    result_text: Callable[[list[Any], list[str]], dict[str, Any]],
    extra: Callable[..., dict[str, Any]] | None = None,
):
    def runner(model: Model, data: Any, bs: int, opts: EvalOptions):
        rows = rows_of(data)

        def batches():
            for chunk in _chunks(rows, bs * CHUNK_BATCHES):
                xs, refs = [], []
                for where, rec in chunk:
                    xs.append(field(rec, where, in_field, 0, 2, hint))
                    ref = field(rec, where, out_field, 1, 2, hint)
                    if not isinstance(ref, str):
                        raise InputError(
                            f"{where}: the expected {out_field} must be a string, "
                            f"got {type(ref).__name__}."
                        )
                    refs.append(ref)
                results = _predict(model, xs, bs)
                batch = {"n": len(xs), "inputs": xs, "results": results}
                batch.update(result_text(results, refs))
                if extra is not None:
                    batch.update(extra(results, model=model, inputs=xs, references=refs))
                yield batch

        return rows.description, len(rows), batches()

    return runner


def _fill_mask_fields(results: list[Any], refs: list[str]):
    return {"candidates": [[p.token for p in r.predictions] for r in results], "gold": refs}


def _hyp_ref(results: list[Any], refs: list[str]):
    return {"hyp": [r if isinstance(r, str) else r.text for r in results], "ref": refs}


def _nll(
    results: list[Any],
    model: Model | None = None,
    inputs: Sequence[Any] = (),
    references: Sequence[str] = (),
):
    """Token negative log-likelihoods of the references: carried by the results (``nll`` and
    ``tokens``), or, for a model that trains as a generative model (``fmhub_training_batch``),
    computed teacher-forced on (prompt, reference) -- the loss fine-tuning minimises, so
    perplexity here equals fine-tuning's. Otherwise none (asking for perplexity is then an error)."""
    nll = [getattr(r, "nll", None) for r in results]
    tokens = [getattr(r, "tokens", None) for r in results]
    if not any(v is None for v in nll) and all(isinstance(t, (int, np.integer)) for t in tokens):
        return {"nll": np.asarray(nll, np.float64), "tokens": np.asarray(tokens, np.int64)}
    if model is None or not all(isinstance(x, str) for x in inputs):
        return {"nll": None, "tokens": None}
    return _teacher_forced_nll(model, inputs, references)


def _teacher_forced_nll(
    model: Model, inputs: Sequence[str], references: Sequence[str]
) -> dict[str, Any]:
    import torch

    if not model.hub.caller("fmhub_training_batch", model._owner).get_hookimpls():
        return {"nll": None, "tokens": None}
    batch = model.training_batch([("pair", x, ref) for x, ref in zip(inputs, references)])
    targets = batch["labels"].to(model.device)
    with torch.no_grad():
        outputs = model.forward(batch, grad=True)  # grad=True: the training forward, no cache
        loss = model.training_loss(outputs, targets)
    n = int((targets != -100).sum())
    return {"nll": np.asarray([float(loss) * n], np.float64), "tokens": np.asarray([n], np.int64)}


# -- embeddings ---------------------------------------------------------------------------------


def _unit(emb: list[Any]) -> np.ndarray:
    m = np.asarray(np.stack(emb), dtype=np.float32)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.where(norms > 0, norms, 1.0)


def _sts(model: Model, data: Any, bs: int, opts: EvalOptions):
    rows = rows_of(data)
    hint = "Similarity examples are (text a, text b, score) triples."

    def batches():
        for chunk in _chunks(rows, bs * CHUNK_BATCHES):
            a, b, gold = [], [], []
            for where, rec in chunk:
                a.append(field(rec, where, "a", 0, 3, hint))
                b.append(field(rec, where, "b", 1, 3, hint))
                score = field(rec, where, "score", 2, 3, hint)
                try:
                    gold.append(float(score))
                except (TypeError, ValueError):
                    raise InputError(f"{where}: the score {score!r} is not a number.") from None
            emb = _unit(_predict(model, a + b, bs))
            cos = (emb[: len(a)] * emb[len(a) :]).sum(1).astype(np.float64)
            yield {
                "n": len(a),
                "cosine": cos,
                "gold": np.asarray(gold),
                "inputs": list(zip(a, b)),
                "results": None,
            }

    return rows.description, len(rows), batches()


def _retrieval(model: Model, data: Any, bs: int, opts: EvalOptions):
    corpus, queries, qrels, description = retrieval_set(data)
    depth = max(opts.ks)
    qids = list(queries)

    def batches():
        doc_ids = list(corpus)
        # the corpus embeddings are what retrieval searches: kept (float32, unit length), never
        # the queries' scores beyond their top `depth`
        parts = []
        for start in range(0, len(doc_ids), bs * CHUNK_BATCHES):
            part = doc_ids[start : start + bs * CHUNK_BATCHES]
            parts.append(_unit(_predict(model, [corpus[d] for d in part], bs)))
        docs = np.concatenate(parts)
        k = min(depth, len(doc_ids))
        for start in range(0, len(qids), bs * CHUNK_BATCHES):
            part = qids[start : start + bs * CHUNK_BATCHES]
            q = _unit(_predict(model, [queries[i] for i in part], bs))
            scores = q @ docs.T
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            order = np.take_along_axis(scores, top, 1).argsort(1, kind="stable")[:, ::-1]
            top = np.take_along_axis(top, order, 1)
            yield {
                "n": len(part),
                "ranked": [[doc_ids[j] for j in row] for row in top],
                "relevant": [qrels[i] for i in part],
                "inputs": part,
                "results": None,
            }

    return description, len(qids), batches()


def _generic(model: Model, data: Any, bs: int, opts: EvalOptions):
    """A task fmhub does not know, with metrics a plugin registered for it: ``(input, expected)``
    pairs; batches hold ``inputs``, ``expected`` and the model's ``results``."""
    rows = rows_of(data)

    def batches():
        for chunk in _chunks(rows, bs * CHUNK_BATCHES):
            hint = "Examples are (input, expected) pairs."
            xs = [field(rec, where, "input", 0, 2, hint) for where, rec in chunk]
            expected = [field(rec, where, "answer", 1, 2, hint) for where, rec in chunk]
            yield {
                "n": len(xs),
                "inputs": xs,
                "expected": expected,
                "results": _predict(model, xs, bs),
            }

    return rows.description, len(rows), batches()


RUNNERS = {
    "classification": _classification,
    "token-classification": _token_classification,
    "fill-mask": _text_pairs(
        "input",
        "answer",
        "Fill-mask examples are (text with the mask token, answer).",
        _fill_mask_fields,
    ),
    "retrieval": _retrieval,
    "sts": _sts,
    "transcription": _text_pairs(
        "audio", "transcript", "Transcription examples are (audio, transcript) pairs.", _hyp_ref
    ),
    "text-generation": _text_pairs(
        "prompt", "reference", "Generation examples are (prompt, reference) pairs.", _hyp_ref, _nll
    ),
    "text2text": _text_pairs(
        "prompt", "reference", "Generation examples are (input, reference) pairs.", _hyp_ref, _nll
    ),
}
assert set(RUNNERS) == set(EVAL_TASKS)
