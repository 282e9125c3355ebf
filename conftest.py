"""Settings for the whole suite (core, plugins, integration), read before any test module.

``make test`` runs pytest on several processes (pytest-xdist, ``-n``); each worker gets one
intra-op thread, so two workers on two cores do not fight over them (oversubscribed OpenMP pools
make torch several times slower). The subprocesses a test starts (servers, torchrun, the CLI)
inherit the setting through ``OMP_NUM_THREADS``. A plain ``pytest`` run keeps torch's default.
"""

from __future__ import annotations

import os
import sys

import pytest

_WORKER = os.environ.get("PYTEST_XDIST_WORKER")

if _WORKER:
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"
    if "torch" in sys.modules:  # normally not yet: torch reads OMP_NUM_THREADS when imported
        sys.modules["torch"].set_num_threads(1)

#: The files that take longest (about a third of the suite's time), slowest first. Under xdist
#: (``--dist loadfile --no-loadscope-reorder``) a worker takes the next file when it is free, so
#: starting with these lets the two workers finish together instead of one running a minute-long
#: file alone at the end. Order only: every collected test runs either way.
HEAVY_FIRST = (
    "tests/test_export.py",
    "tests/test_serve.py",
    "tests/test_distributed.py",
    "plugins/fmhub-transformers/tests/test_transformers_offline_quiet.py",
    "plugins/fmhub-transformers/tests/test_transformers_vision.py",
    "plugins/fmhub-transformers/tests/test_transformers_audio.py",
    "plugins/fmhub-transformers/tests/test_transformers_clip.py",
    "plugins/fmhub-transformers/tests/test_transformers_generate_cli.py",
    "plugins/fmhub-transformers/tests/test_transformers_conformance.py",
    "plugins/fmhub-transformers/tests/test_transformers_whisper.py",
    "plugins/fmhub-transformers/tests/test_transformers_group_by_length.py",
    "tests/test_reliability.py",
    "tests/test_docs.py",
    "plugins/fmhub-torchaudio/tests/test_torchaudio_conformance.py",
    "tests/test_evaluation.py",
    "plugins/fmhub-torchaudio/tests/test_torchaudio_fidelity.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In an xdist worker, put the files of :data:`HEAVY_FIRST` first (every worker collects, and
    reorders, the same way; a plain run keeps pytest's order)."""
    if not _WORKER:
        return
    rank = {path: i for i, path in enumerate(HEAVY_FIRST)}
    root = str(config.rootpath) + "/"

    def key(item: pytest.Item) -> int:
        return rank.get(str(item.path).removeprefix(root), len(rank))

    items.sort(key=key)  # stable: the other files, and the tests within a file, keep their order
