"""Training data in the forms people have it, turned into ``(input, label)`` examples.

Accepted: a list of ``(input, label)`` pairs; a ``torch.utils.data.Dataset`` yielding such pairs;
a folder with one sub-folder per class (images or audio files); a ``.csv`` or ``.jsonl`` file with
``text`` and ``label`` columns (other names: ``text_column`` / ``label_column``; an encoding other
than UTF-8: ``encoding``). String labels are mapped to ids in sorted order unless the caller
gives ``labels``; integer labels are class ids. A label is a non-empty ``str`` or a non-negative
``int``, one type for the whole data set: ``None`` (a JSON ``null``), an empty CSV cell, a float, a
bool or a mix of ``str`` and ``int`` labels is an :class:`fmhub.InputError` naming the example.
"""

from __future__ import annotations

import csv
import json
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["Examples", "GenerationExamples", "as_examples", "as_generation_examples"]

TEXT_COLUMNS = ("text", "sentence", "input")
LABEL_COLUMNS = ("label", "labels", "class")


class Examples(Sequence):
    """An indexable view of ``(input, label)`` pairs with labels as ids."""

    def __init__(self, source: Any, labels: list[str]):
        self.source = source
        self.labels = labels
        self._index = {name: i for i, name in enumerate(labels)}

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        x, y = _pair(self.source[i], i)
        return x, self.label_id(_check_label(y, i), i)

    def label_id(self, y: Any, i: int | None = None) -> int:
        key = str(y)
        if key in self._index:
            return self._index[key]
        if isinstance(y, int) and 0 <= y < len(self.labels):
            return y
        where = f"training example {i} has the label" if i is not None else "label"
        raise InputError(f"{where} {y!r}, which is not one of the labels {self.labels}.")


def _check_label(y: Any, i: int) -> Any:
    """A label must be a non-empty str or a non-negative int (not a bool, a float or None)."""
    if isinstance(y, str) and y.strip():
        return str(y)
    if isinstance(y, numbers.Integral) and not isinstance(y, bool) and y >= 0:
        return int(y)  # numpy / torch integer ids too
    what = "an empty label" if isinstance(y, str) else f"the label {y!r} ({type(y).__name__})"
    raise InputError(
        f"training example {i} has {what}; a label is a class name (a non-empty str) or a class "
        "id (an int >= 0). Fill in or drop that example."
    )


def _pair(item: Any, i: int):
    if isinstance(item, dict):
        x = next((item[c] for c in TEXT_COLUMNS if c in item), None)
        y = next((item[c] for c in LABEL_COLUMNS if c in item), None)
        if x is not None and y is not None:
            return x, y
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return item[0], item[1]
    raise InputError(
        f"training example {i} is {type(item).__name__}; each must be an (input, label) pair "
        "or a dict with 'text' and 'label'."
    )


def _codec(encoding: str | None) -> str:
    """UTF-8 (the default) also reads a file that starts with a byte-order mark."""
    enc = encoding or "utf-8"
    return "utf-8-sig" if enc.lower().replace("_", "-") in ("utf-8", "utf8") else enc


def _read_rows(path: Path, encoding: str | None) -> list[dict]:
    enc = encoding or "utf-8"
    try:
        if path.suffix == ".jsonl":
            rows = []
            with path.open(encoding=_codec(enc)) as f:
                for lineno, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise InputError(
                            f"{str(path)!r} line {lineno} is not JSON ({exc.msg}); "
                            "a .jsonl file holds one JSON object per line."
                        ) from None
                    if not isinstance(row, dict):
                        raise InputError(
                            f"{str(path)!r} line {lineno} is a "
                            f"{type(row).__name__}, not a JSON object."
                        )
                    rows.append(row)
            return rows
        if path.suffix in (".csv", ".tsv"):
            with path.open(newline="", encoding=_codec(enc)) as f:
                return list(csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ","))
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{str(path)!r} is not {enc} text (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}); pass its encoding: encoding='cp1252' or 'latin-1' "
            "(fmhub finetune: --encoding cp1252)."
        ) from None
    except LookupError:
        raise InputError(
            f"encoding={enc!r} is not an encoding Python knows (utf-8, latin-1, "
            "cp1252, utf-16, ...)."
        ) from None
    except csv.Error as exc:
        raise InputError(f"{str(path)!r} is not a readable CSV file: {exc}.") from None
    raise InputError(f"{str(path)!r}: training files must be .csv, .tsv or .jsonl.")


def _read_table(
    path: Path,
    text_column: str | None = None,
    label_column: str | None = None,
    encoding: str | None = None,
) -> list[tuple[Any, Any]]:
    rows = _read_rows(path, encoding)
    if not rows:
        raise InputError(f"{str(path)!r} holds no examples.")
    cols = set(rows[0])
    tc = text_column or next((c for c in TEXT_COLUMNS if c in cols), None)
    lc = label_column or next((c for c in LABEL_COLUMNS if c in cols), None)
    for given, col in (("text_column", text_column), ("label_column", label_column)):
        if col is not None and col not in cols:
            raise InputError(
                f"{str(path)!r} has no column {col!r} ({given}); its columns are {sorted(cols)}."
            )
    if tc is None or lc is None:
        raise InputError(
            f"{str(path)!r} needs a text column ({'/'.join(TEXT_COLUMNS)}) and a label column "
            f"({'/'.join(LABEL_COLUMNS)}); it has {sorted(cols)}. Name others with text_column "
            "and label_column (fmhub finetune: --text-column, --label-column)."
        )
    for i, r in enumerate(rows):
        if r.get(tc) is None or r.get(lc) is None:
            raise InputError(
                f"{str(path)!r} row {i + 1} has no {tc if r.get(tc) is None else lc!r} value."
            )
    return [(r[tc], r[lc]) for r in rows]


def as_examples(
    data: Any,
    labels: list[str] | None = None,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    encoding: str | None = None,
) -> Examples:
    """Normalise ``data`` and work out the label list (sorted names unless given).

    ``text_column``, ``label_column`` and ``encoding`` apply to a CSV/TSV/JSONL file."""
    if isinstance(data, (str, Path)):
        path = Path(data)
        if path.is_dir():
            from ..evaluation.data import class_pairs

            data = class_pairs(path)
        elif path.is_file():
            data = _read_table(path, text_column, label_column, encoding)
        else:
            raise InputError(f"training data {str(path)!r} does not exist.")
    if not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
        data = list(data)
    if len(data) == 0:
        raise InputError("the training data is empty.")
    if labels is None:
        first: dict[type, int] = {}  # label type -> the first example with it
        seen = set()
        for i in range(len(data)):
            y = _check_label(_pair(data[i], i)[1], i)
            first.setdefault(type(y), i)
            seen.add(y)
        if len(first) > 1:
            (ta, ia), (tb, ib) = sorted(first.items(), key=lambda kv: kv[1])[:2]
            raise InputError(
                f"the training labels mix types: example {ia} has a label of type {ta.__name__}, "
                f"example {ib} one of type {tb.__name__}. Use class names (str) or class ids (int) "
                "throughout."
            )
        if all(isinstance(y, int) and not isinstance(y, bool) for y in seen):
            labels = [str(i) for i in range(max(seen) + 1)]
        else:
            labels = sorted(str(y) for y in seen)
    if len(labels) < 2:
        raise InputError(f"fine-tuning a classifier needs at least two labels, got {labels}.")
    return Examples(data, list(labels))


# -- generative models -----------------------------------------------------------------------------

#: Column pairs read as (prompt, completion) / (source, target), in order of preference.
PAIR_COLUMNS = (
    ("prompt", "completion"),
    ("source", "target"),
    ("input", "output"),
    ("instruction", "response"),
)


class GenerationExamples(Sequence):
    """Training examples of a generative model: ``("pair", prompt, completion)`` or
    ``("chat", messages)`` tuples, checked on the way in. ``labels`` is empty (no classes)."""

    def __init__(self, items: list[tuple]):
        self.items = items
        self.labels = []

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple:
        return self.items[i]


def _chat_item(messages: Any, i: int) -> tuple:
    if not isinstance(messages, (list, tuple)) or not messages:
        raise InputError(f"training example {i}: a chat is a non-empty list of messages.")
    for j, m in enumerate(messages):
        if (
            not isinstance(m, dict)
            or not isinstance(m.get("role"), str)
            or not isinstance(m.get("content"), str)
        ):
            raise InputError(
                f"training example {i}, message {j} is {m!r:.80}; a message is "
                "{'role': ..., 'content': '...'}."
            )
    if not any(m["role"] == "assistant" for m in messages):
        raise InputError(f"training example {i} has no assistant message to learn from.")
    return ("chat", [{"role": m["role"], "content": m["content"]} for m in messages])


def _generation_item(item: Any, i: int) -> tuple:
    if isinstance(item, dict):
        if "messages" in item:
            return _chat_item(item["messages"], i)
        for a, b in PAIR_COLUMNS:
            if a in item and b in item:
                item = (item[a], item[b])
                break
        else:
            raise InputError(
                f"training example {i} has keys {sorted(item)}; use 'prompt'/'completion' (or "
                "'source'/'target') for pairs, or 'messages' for a chat."
            )
    if isinstance(item, (list, tuple)) and item and all(isinstance(m, dict) for m in item):
        return _chat_item(item, i)
    if isinstance(item, (list, tuple)) and len(item) == 2:
        prompt, completion = item
        if (
            not isinstance(prompt, str)
            or not isinstance(completion, str)
            or not prompt
            or not completion
        ):
            raise InputError(
                f"training example {i}: prompt and completion must be non-empty "
                f"strings, got {prompt!r:.40} and {completion!r:.40}."
            )
        return ("pair", prompt, completion)
    raise InputError(
        f"training example {i} is {type(item).__name__} ({item!r:.60}); a generative model trains "
        "on (prompt, completion) pairs, chats (lists of {'role', 'content'} messages), or dicts "
        "with 'prompt'/'completion' or 'messages'."
    )


def as_generation_examples(data: Any) -> GenerationExamples:
    """Normalise a generative model's training data: pairs, chats, dicts, or a ``.jsonl`` file
    of ``{"prompt", "completion"}`` / ``{"source", "target"}`` / ``{"messages": [...]}`` rows."""
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.is_file():
            raise InputError(f"training data {str(path)!r} does not exist.")
        if path.suffix != ".jsonl":
            raise InputError(f"{str(path)!r}: generative training data must be a .jsonl file.")
        data = []
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        data.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise InputError(f"{str(path)!r} line {n} is not JSON: {exc}") from None
    if not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
        data = list(data)
    if len(data) == 0:
        raise InputError("the training data is empty.")
    return GenerationExamples([_generation_item(data[i], i) for i in range(len(data))])
