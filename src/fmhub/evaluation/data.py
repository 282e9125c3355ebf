"""Labelled evaluation data in the forms people have it, read lazily row by row.

Every reader yields ``(where, record)``: ``where`` names the row in errors (``"example 12"`` or
``"data.jsonl line 13"``), ``record`` is a dict or a tuple as the source holds it. Files are
streamed, never read whole, so evaluating a big file keeps memory flat.

Accepted everywhere: a list (or any sequence, e.g. a ``torch.utils.data.Dataset``) of tuples or
dicts; a ``.jsonl``, ``.csv`` or ``.tsv`` file with a header. Classification also takes a folder
with one sub-folder per class; retrieval a BEIR-style folder (``corpus.jsonl``, ``queries.jsonl``,
``qrels.tsv``) or a dict with ``corpus``, ``queries`` and ``qrels``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["COLUMNS", "LabelNames", "Rows", "field", "rows_of"]

#: For each field a task reads: the column names (or dict keys) accepted, first match wins.
COLUMNS: dict[str, tuple[str, ...]] = {
    "input": ("text", "sentence", "input", "image", "audio", "path", "file"),
    "label": ("label", "labels", "class"),
    "tokens": ("tokens", "words"),
    "tags": ("tags", "ner_tags", "labels"),
    "entities": ("entities", "spans"),
    "answer": ("answer", "target", "label", "token"),
    "query": ("query", "question", "anchor"),
    "relevant": ("relevant", "positive", "document", "passage"),
    "a": ("sentence1", "text_a", "a", "text1"),
    "b": ("sentence2", "text_b", "b", "text2"),
    "score": ("score", "label", "similarity"),
    "audio": ("audio", "path", "file", "input"),
    "transcript": ("text", "transcript", "transcription", "sentence", "reference"),
    "prompt": ("prompt", "input", "source", "question", "text"),
    "reference": ("reference", "target", "output", "answer", "completion"),
}


class LabelNames(Sequence):
    """A view of ``(input, class id)`` pairs as ``(input, class name)`` pairs (no copy)."""

    def __init__(self, pairs: Sequence, labels: Sequence[str]):
        self.pairs, self.labels = pairs, list(labels)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[Any, str]:
        x, y = self.pairs[i]
        return x, self.labels[y]


class Rows:
    """An iterable of ``(where, record)`` with a length when it is cheap to know."""

    def __init__(self, source: Any, description: str):
        self.source = source
        self.description = description
        self._len: int | None = None

    def __len__(self) -> int:
        if self._len is None:
            if isinstance(self.source, Path):
                self._len = sum(1 for _ in self._iter_file())
            else:
                self._len = len(self.source)
        return self._len

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        if isinstance(self.source, Path):
            yield from self._iter_file()
        else:
            for i in range(len(self.source)):
                yield f"example {i}", self.source[i]

    def _iter_file(self) -> Iterator[tuple[str, Any]]:
        path = self.source
        name = path.name
        with path.open(newline="" if path.suffix != ".jsonl" else None, encoding="utf-8") as f:
            if path.suffix == ".jsonl":
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise InputError(f"{name} line {n} is not valid JSON: {exc.msg}.") from None
                    if not isinstance(record, dict):
                        raise InputError(
                            f"{name} line {n} must be a JSON object, got {line.strip()[:60]!r}."
                        )
                    yield f"{name} line {n}", record
            else:
                reader = csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ",")
                for record in reader:
                    if None in record or None in record.values():
                        got = sum(1 for k, v in record.items() if k is not None and v is not None)
                        got += len(record.get(None) or ())
                        raise InputError(
                            f"{name} line {reader.line_num} has {got} fields where the header "
                            f"{reader.fieldnames} has {len(reader.fieldnames or [])}."
                        )
                    yield f"{name} line {reader.line_num}", record


def rows_of(data: Any) -> Rows:
    """Wrap in-memory data or a file path as :class:`Rows` (folders are handled per task)."""
    if isinstance(data, (str, Path)):
        path = Path(data).expanduser()
        if not path.exists():
            raise InputError(f"evaluation data {str(path)!r} does not exist.")
        if path.is_dir():
            raise InputError(
                f"{str(path)!r} is a folder; this task takes a .jsonl, .csv or .tsv file."
            )
        if path.suffix not in (".jsonl", ".csv", ".tsv"):
            raise InputError(f"{str(path)!r}: evaluation files must be .jsonl, .csv or .tsv.")
        rows = Rows(path, str(path))
        if path.stat().st_size == 0 or not any(True for _ in rows):
            raise InputError(f"{str(path)!r} is empty: it holds no examples.")
        return rows
    if isinstance(data, dict):
        raise InputError(
            "evaluation data is a dict; pass a list of examples (or, for retrieval, "
            "a dict with 'corpus', 'queries' and 'qrels')."
        )
    if not (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        data = list(data)
    if len(data) == 0:
        raise InputError("the evaluation data is empty.")
    return Rows(data, f"{type(data).__name__} of {len(data)} examples")


def field(
    record: Any,
    where: str,
    name: str,
    position: int | None,
    arity: int | None = None,
    what: str = "",
) -> Any:
    """Field ``name`` of a record: by column (see :data:`COLUMNS`) for a dict, by ``position`` for
    a tuple or list of length ``arity``. A missing field is an :class:`InputError` naming the
    row."""
    if isinstance(record, dict):
        for col in COLUMNS[name]:
            if col in record and record[col] is not None and record[col] != "":
                return record[col]
        raise InputError(
            f"{where} has no {name} column ({'/'.join(COLUMNS[name])}); it has "
            f"{sorted(record)}. {what}".rstrip()
        )
    if (
        isinstance(record, (tuple, list))
        and position is not None
        and (arity is None or len(record) == arity)
    ):
        return record[position]
    shape = f"a {arity}-tuple" if arity else "a tuple"
    raise InputError(
        f"{where} is {type(record).__name__} {_short(record)}; each example must be "
        f"{shape} or a dict. {what}".rstrip()
    )


def _short(x: Any) -> str:
    s = repr(x)
    return s if len(s) <= 60 else s[:57] + "..."


# -- classification folders ---------------------------------------------------------------------


def class_folder(path: Path) -> Rows:
    """A folder with one sub-folder per class: ``(file path, class name)`` rows."""
    return Rows(class_pairs(path), str(path))


def class_pairs(path: Path) -> list[tuple[str, str]]:
    """The ``(file path, class name)`` pairs of a folder with one sub-folder per class, in sorted
    order (hidden files and folders skipped); :class:`InputError` when there are none."""
    classes = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise InputError(f"{str(path)!r} has no class sub-folders (one folder per label).")
    pairs = []
    for c in classes:
        files = sorted(f for f in c.rglob("*") if f.is_file() and not f.name.startswith("."))
        pairs += [(str(f), c.name) for f in files]
    if not pairs:
        raise InputError(f"the class folders under {str(path)!r} hold no files.")
    return pairs


# -- retrieval: corpus, queries, qrels ----------------------------------------------------------


def _id_text(rows: Rows, kind: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for where, rec in rows:
        if not isinstance(rec, dict) or not any(k in rec for k in ("_id", "id")):
            raise InputError(f"{kind} {where} needs an '_id' (or 'id') and a 'text'.")
        key = str(rec.get("_id", rec.get("id")))
        text = rec.get("text")
        if not isinstance(text, str) or not text:
            raise InputError(f"{kind} {where} (id {key!r}) has no 'text'.")
        title = rec.get("title")
        out[key] = f"{title}. {text}" if title else text
    return out


def _qrels_file(path: Path) -> list[tuple[str, str, str, Any]]:
    out = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t") if "\t" in line else line.split()
            if n == 1 and parts and parts[0].lower() in ("query-id", "query_id", "qid", "query"):
                continue  # header
            where = f"{path.name} line {n}"
            if len(parts) == 4:  # TREC: qid 0 docid grade
                parts = [parts[0], parts[2], parts[3]]
            if len(parts) != 3:
                raise InputError(
                    f"{where} has {len(parts)} fields; a qrels row is 'query-id<TAB>corpus-id<TAB>"
                    f"score' (or TREC's 'qid 0 docid grade'): {line.strip()[:60]!r}."
                )
            out.append((where, parts[0], parts[1], parts[2]))
    return out


def retrieval_set(
    data: Any,
) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, float]], str]:
    """``(corpus, queries, qrels, description)`` from a BEIR folder, a dict, or (query, relevant)
    pairs. ``qrels`` maps query id -> document id -> grade (> 0 is relevant)."""
    if isinstance(data, (str, Path)) and Path(data).expanduser().is_dir():
        folder = Path(data).expanduser()
        need = {"corpus": folder / "corpus.jsonl", "queries": folder / "queries.jsonl"}
        qrels_path = next(
            (p for p in (folder / "qrels.tsv", folder / "qrels" / "test.tsv") if p.is_file()), None
        )
        missing = [str(p.name) for p in need.values() if not p.is_file()]
        if missing or qrels_path is None:
            raise InputError(
                f"{str(folder)!r} is not a retrieval folder: it needs corpus.jsonl, queries.jsonl "
                f"and qrels.tsv (missing: "
                f"{', '.join(missing + ([] if qrels_path else ['qrels.tsv']))})."
            )
        corpus = _id_text(rows_of(need["corpus"]), "corpus")
        queries = _id_text(rows_of(need["queries"]), "queries")
        raw = _qrels_file(qrels_path)
        description = str(folder)
    elif isinstance(data, dict) and {"corpus", "queries", "qrels"} <= set(data):
        corpus = {str(k): str(v) for k, v in data["corpus"].items()}
        queries = {str(k): str(v) for k, v in data["queries"].items()}
        raw = []
        for q, docs in data["qrels"].items():
            if not isinstance(docs, dict):
                docs = {d: 1 for d in docs}
            raw += [(f"qrels[{q!r}]", str(q), str(d), g) for d, g in docs.items()]
        description = f"corpus of {len(corpus)}, {len(queries)} queries"
    else:
        corpus, queries, qrels = {}, {}, {}
        doc_ids: dict[str, str] = {}
        query_ids: dict[str, str] = {}
        for where, rec in rows_of(data):
            q = field(rec, where, "query", 0, 2, "Retrieval pairs are (query, relevant text).")
            d = field(rec, where, "relevant", 1, 2, "Retrieval pairs are (query, relevant text).")
            if not isinstance(q, str) or not isinstance(d, str):
                raise InputError(f"{where}: a retrieval pair is two strings, got {_short(rec)}.")
            qid = query_ids.setdefault(q, f"q{len(query_ids)}")
            did = doc_ids.setdefault(d, f"d{len(doc_ids)}")
            queries[qid], corpus[did] = q, d
            qrels.setdefault(qid, {})[did] = 1.0
        return corpus, queries, qrels, f"{len(qrels)} queries, corpus of {len(corpus)} texts"
    if not corpus:
        raise InputError("the retrieval corpus is empty.")
    qrels: dict[str, dict[str, float]] = {}
    for where, q, d, g in raw:
        if q not in queries:
            raise InputError(f"qrels {where} names query {q!r}, which queries do not have.")
        if d not in corpus:
            raise InputError(f"qrels {where} names document {d!r}, which the corpus does not have.")
        try:
            grade = float(g)
        except (TypeError, ValueError):
            raise InputError(f"qrels {where}: the score {g!r} is not a number.") from None
        if grade > 0:
            qrels.setdefault(q, {})[d] = grade
    if not qrels:
        raise InputError("the qrels give no query a relevant document (score > 0).")
    return corpus, {q: queries[q] for q in qrels}, qrels, description
