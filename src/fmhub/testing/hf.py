"""Point the Hugging Face hub client at a local cache, for plugins whose loaders read through it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["hf_hub_cache"]


@contextlib.contextmanager
def hf_hub_cache(cache_dir: str | os.PathLike, offline: bool = True) -> Iterator[Path]:
    """Use ``cache_dir`` as ``HF_HUB_CACHE`` (created if missing) and, by default, turn on
    ``HF_HUB_OFFLINE=1`` inside the ``with`` block, both for the environment (subprocesses) and
    for an already-imported ``huggingface_hub`` (which reads both once, at import). Everything is
    restored on exit. Tests lay models out in that cache the way the real loaders look for them."""
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1" if offline else "0"}
    saved_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        from huggingface_hub import constants
    except ImportError:  # not installed: the environment is all there is to set
        constants = None
    saved = (constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE) if constants else None
    if constants:
        constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE = str(cache), offline
    try:
        yield cache
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if constants and saved:
            constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE = saved
