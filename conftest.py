"""Settings for the whole suite (core, plugins, integration), read before any test module.

``make test`` runs pytest on several processes (pytest-xdist, ``-n``); each worker gets one
intra-op thread, so two workers on two cores do not fight over them (oversubscribed OpenMP pools
make torch several times slower). The subprocesses a test starts (servers, torchrun, the CLI)
inherit the setting through ``OMP_NUM_THREADS``. A plain ``pytest`` run keeps torch's default.
"""

from __future__ import annotations

import os
import sys

_WORKER = os.environ.get("PYTEST_XDIST_WORKER")

if _WORKER:
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"
    if "torch" in sys.modules:  # normally not yet: torch reads OMP_NUM_THREADS when imported
        sys.modules["torch"].set_num_threads(1)
