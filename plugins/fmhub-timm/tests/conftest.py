"""Shared fixtures: tiny timm models written once into an offline Hugging Face cache."""

from __future__ import annotations

import pytest

from fmhub_timm.testing import TINY_MODELS, offline_hub, photos, write_hub_model


@pytest.fixture(scope="session")
def timm_cache(tmp_path_factory):
    """A Hugging Face cache holding every tiny model of ``TINY_MODELS`` (seed 0)."""
    cache = tmp_path_factory.mktemp("hf-cache")
    for name in TINY_MODELS:
        write_hub_model(cache, name)
    return cache


@pytest.fixture(autouse=True, scope="module")
def _offline(timm_cache):
    """Every test of this plugin sees only that cache, offline (restored after each module)."""
    with offline_hub(timm_cache):
        yield timm_cache


@pytest.fixture(scope="session")
def skimage_photos():
    return photos()
