"""The core's conformance kit on tiny models of several architectures, every task, loaded by repo
id from an offline hub cache and from local folders."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from fmhub.testing import ConformanceCase, ConformanceSuite
from fmhub_transformers.testing import CORPUS

ROOT = Path(tempfile.gettempdir()) / f"fmhub-tf-tests-{os.getpid()}"  # as in conftest.py
HEAVY = ("torch", "transformers", "tokenizers", "huggingface_hub")
TEXTS = [CORPUS[0], CORPUS[6], CORPUS[15], "", CORPUS[11]]
NOT_TEXT = [None, 3, b"bytes", ["a", "list"]]


class TestTransformersConformance(ConformanceSuite):
    cases = [
        ConformanceCase(
            model="hf:tiny-org/bert-st",
            inputs=TEXTS,
            task="embedding",
            heavy_modules=HEAVY,
            bad_inputs=NOT_TEXT,
            id="bert-embedding-hub",
        ),
        ConformanceCase(
            model="hf:tiny-org/distilbert-mlm",
            task="fill-mask",
            heavy_modules=HEAVY,
            inputs=["Paris is the [MASK] of France.", "A [MASK] is eating food.", "[MASK]"],
            bad_inputs=["no mask here", "two [MASK] [MASK]", None],
            id="distilbert-fill-mask-hub",
        ),
        ConformanceCase(
            model="hf:tiny-org/deberta-cls",
            inputs=TEXTS,
            task="classification",
            heavy_modules=HEAVY,
            bad_inputs=NOT_TEXT,
            id="deberta-v2-classification-hub",
        ),
        ConformanceCase(
            model=str(ROOT / "roberta-cls"),
            inputs=TEXTS,
            task="classification",
            heavy_modules=HEAVY,
            bad_inputs=[None],
            id="roberta-classification-local",
        ),
        ConformanceCase(
            model=str(ROOT / "electra-ner"),
            inputs=TEXTS,
            task="token-classification",
            heavy_modules=HEAVY,
            bad_inputs=[42],
            id="electra-token-classification-local",
        ),
        ConformanceCase(
            model=str(ROOT / "mpnet-emb"),
            inputs=TEXTS,
            task="embedding",
            heavy_modules=HEAVY,
            bad_inputs=[None],
            id="mpnet-embedding-local",
        ),
        ConformanceCase(
            model="hf:" + str(ROOT / "xlmr-mlm"),
            task="fill-mask",
            heavy_modules=HEAVY,
            inputs=["Paris is the <mask> of France.", "<mask> man is riding a horse."],
            bad_inputs=["no mask"],
            id="xlm-roberta-fill-mask-prefixed-local",
        ),
        ConformanceCase(
            model="hf:tiny-org/llama-lm",
            task="text-generation",
            heavy_modules=HEAVY,
            inputs=[CORPUS[0], CORPUS[9], [{"role": "user", "content": CORPUS[16]}]],
            call_options={"max_new_tokens": 8, "min_new_tokens": 4},
            bad_inputs=["", None, [{"role": "robot", "content": "hi"}]],
            id="llama-text-generation-hub",
        ),
        ConformanceCase(
            model="hf:tiny-org/t5-s2s",
            task="text2text",
            heavy_modules=HEAVY,
            inputs=[CORPUS[10], CORPUS[15], CORPUS[3]],
            call_options={"max_new_tokens": 8, "min_new_tokens": 4},
            bad_inputs=["", None, 3],
            id="t5-text2text-hub",
        ),
        ConformanceCase(
            model=str(ROOT / "gpt2-lm"),
            task="text-generation",
            heavy_modules=HEAVY,
            inputs=[CORPUS[1], CORPUS[12]],
            call_options={"max_new_tokens": 6},
            bad_inputs=["", b"bytes"],
            id="gpt2-text-generation-local",
        ),
    ]

    @pytest.fixture(autouse=True)
    def _offline(self, offline_hub):
        yield
