"""Pure text metrics on strings: edit distance, WER and CER with a documented normalisation,
exact match and chrF. numpy-free and torch-free; usable on their own.

Transcript normalisation (``normalize_transcript``), applied to hypothesis and reference alike
before WER/CER when ``normalize=True`` (the default):

1. Unicode NFKC (full-width letters, ligatures and compatibility forms become plain ones);
2. lower case (``str.casefold``);
3. every character that is not a letter, a digit, an apostrophe or white space becomes a space
   (punctuation and symbols are dropped; ``don't`` keeps its apostrophe, a quote around a word
   does not: apostrophes not between two letters or digits are dropped too);
4. runs of white space become one space; leading and trailing space is removed.

WER = (substitutions + deletions + insertions) / reference words, summed over the whole set
(corpus-level, like jiwer's ``wer`` on a list). CER is the same on characters of the normalised
text, spaces included. A reference that is empty after normalisation adds its hypothesis' length
as insertions and nothing to the denominator.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

__all__ = [
    "ChrfStats",
    "cer",
    "chrf",
    "chrf_stats",
    "edit_distance",
    "exact_match",
    "normalize_transcript",
    "wer",
]

_NOT_KEPT = re.compile(r"[^\w\s']|_", re.UNICODE)
_LONE_APOSTROPHE = re.compile(r"(?<![^\W_])'|'(?![^\W_])", re.UNICODE)
_SPACES = re.compile(r"\s+", re.UNICODE)


def normalize_transcript(text: str) -> str:
    """NFKC, casefold, punctuation to spaces (inner apostrophes kept), one space between words."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _NOT_KEPT.sub(" ", text)
    text = _LONE_APOSTROPHE.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance (substitution, deletion, insertion each cost 1) between sequences."""
    if len(ref) < len(hyp):
        ref, hyp = hyp, ref
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def _prep(text: str, normalize: bool) -> str:
    return normalize_transcript(text) if normalize else _SPACES.sub(" ", text).strip()


def wer_counts(ref: str, hyp: str, normalize: bool = True) -> tuple[int, int]:
    """``(word edits, reference words)`` of one pair."""
    r, h = _prep(ref, normalize).split(), _prep(hyp, normalize).split()
    return edit_distance(r, h), len(r)


def cer_counts(ref: str, hyp: str, normalize: bool = True) -> tuple[int, int]:
    """``(character edits, reference characters)`` of one pair."""
    r, h = _prep(ref, normalize), _prep(hyp, normalize)
    return edit_distance(r, h), len(r)


def wer(refs: Sequence[str], hyps: Sequence[str], normalize: bool = True) -> float:
    """Corpus word error rate: total word edits / total reference words."""
    edits = words = 0
    for r, h in zip(refs, hyps, strict=True):
        e, n = wer_counts(r, h, normalize)
        edits, words = edits + e, words + n
    return edits / words if words else float(edits > 0)


def cer(refs: Sequence[str], hyps: Sequence[str], normalize: bool = True) -> float:
    """Corpus character error rate: total character edits / total reference characters."""
    edits = chars = 0
    for r, h in zip(refs, hyps, strict=True):
        e, n = cer_counts(r, h, normalize)
        edits, chars = edits + e, chars + n
    return edits / chars if chars else float(edits > 0)


def exact_match(ref: str, hyp: str, normalize: bool = False) -> bool:
    """Whether the strings are equal after stripping outer white space (and, with
    ``normalize=True``, after :func:`normalize_transcript`)."""
    if normalize:
        return normalize_transcript(ref) == normalize_transcript(hyp)
    return ref.strip() == hyp.strip()


# -- chrF ---------------------------------------------------------------------------------------

#: chrF's defaults (Popović 2015, sacreBLEU): character n-grams up to 6, recall weighted beta=2.
CHAR_ORDER, BETA = 6, 2.0


class ChrfStats:
    """Summed chrF statistics: for each n-gram order, hypothesis, reference and matched counts.

    ``add`` one pair at a time; ``score`` is corpus chrF in [0, 100] as sacreBLEU computes it
    (statistics summed over the set; precision and recall averaged over the n-gram orders, then
    one F-beta).
    """

    def __init__(self, order: int = CHAR_ORDER, beta: float = BETA):
        self.order, self.beta = order, beta
        self.counts = [[0, 0, 0] for _ in range(order)]  # hyp, ref, match per order

    def add(self, ref: str, hyp: str) -> None:
        r, h = "".join(ref.split()), "".join(hyp.split())  # chrF ignores white space
        for n in range(1, self.order + 1):
            hg = Counter(h[i : i + n] for i in range(len(h) - n + 1))
            rg = Counter(r[i : i + n] for i in range(len(r) - n + 1))
            c = self.counts[n - 1]
            c[0] += sum(hg.values()) if rg else 0  # no reference n-gram: hits not counted
            c[1] += sum(rg.values())
            c[2] += sum((hg & rg).values())

    def score(self) -> float:
        """Precision and recall averaged over the orders both sides have, then F-beta."""
        factor = self.beta**2
        prec = rec = 0.0
        effective = 0
        for n_hyp, n_ref, n_match in self.counts:
            if n_hyp > 0 and n_ref > 0:
                prec, rec = prec + n_match / n_hyp, rec + n_match / n_ref
                effective += 1
        if not effective:
            return 0.0
        prec, rec = prec / effective, rec / effective
        if prec + rec == 0:
            return 0.0
        return 100.0 * (1 + factor) * prec * rec / (factor * prec + rec)


def chrf_stats(refs: Sequence[str], hyps: Sequence[str]) -> ChrfStats:
    stats = ChrfStats()
    for r, h in zip(refs, hyps, strict=True):
        stats.add(r, h)
    return stats


def chrf(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus chrF (character 6-grams, beta 2, white space ignored), 0..100."""
    return chrf_stats(refs, hyps).score()
