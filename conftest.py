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


#: Test files that take the most time (CPU and waits on the processes they start), run first and
#: longest first: xdist hands whole files (``--dist loadfile``) to whichever worker is free, so a
#: long file handed out last keeps one worker busy while the others idle. Longest-first leaves
#: only short files for the end. The order is the collection order itself, so a one-process run
#: runs the files in this order too.
HEAVY_FIRST = (
    "tests/test_export.py",
    "tests/test_distributed.py",
    "tests/test_serve.py",
    "plugins/fmhub-transformers/tests/test_transformers_offline_quiet.py",
    "plugins/fmhub-transformers/tests/test_transformers_audio.py",
    "plugins/fmhub-transformers/tests/test_transformers_vision.py",
    "tests/test_plugin_cache.py",
    "plugins/fmhub-transformers/tests/test_transformers_conformance.py",
    "plugins/fmhub-transformers/tests/test_transformers_clip.py",
    "plugins/fmhub-timm/tests/test_timm_conformance.py",
    "plugins/fmhub-transformers/tests/test_transformers_generate_cli.py",
    "tests/test_evaluation.py",
)


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    root = config.rootpath
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}

    def key(item: pytest.Item) -> int:
        try:
            rel = item.path.relative_to(root).as_posix()
        except ValueError:
            return len(rank)
        return rank.get(rel, len(rank))

    items.sort(key=key)  # stable: within a file and among the rest, collection order
