"""Shared fixtures: private TORCH_HOMEs holding random bundle weights (full size or shrunk)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

#: The one full-size bundle the suite builds (random weights, ~380 MB, written once a session).
ASR_BUNDLE = "wav2vec2_asr_base_960h"


@pytest.fixture(scope="session")
def torchaudio_home(tmp_path_factory):
    """A TORCH_HOME whose hub checkpoint folder holds random weights for :data:`ASR_BUNDLE`."""
    from fmhub_torchaudio.testing import place_bundle_checkpoint

    home = tmp_path_factory.mktemp("torch_home")
    with _torch_home(home):
        place_bundle_checkpoint(ASR_BUNDLE)
    yield home
    shutil.rmtree(home, ignore_errors=True)  # 380 MB: not worth keeping in pytest's last runs


class _torch_home:
    """Point TORCH_HOME at ``home`` for a while (torch.hub reads it on every call)."""

    def __init__(self, home: Path):
        self.home = home

    def __enter__(self):
        self.previous = os.environ.get("TORCH_HOME")
        os.environ["TORCH_HOME"] = str(self.home)

    def __exit__(self, *exc):
        if self.previous is None:
            os.environ.pop("TORCH_HOME", None)
        else:
            os.environ["TORCH_HOME"] = self.previous


@pytest.fixture(scope="class")
def use_torchaudio_home(torchaudio_home):
    """TORCH_HOME set to :func:`torchaudio_home` for the tests of one class, then restored."""
    with _torch_home(torchaudio_home):
        yield torchaudio_home


@pytest.fixture(scope="class")
def tiny_bundle_home(request, tmp_path_factory):
    """For one class: a scratch TORCH_HOME and the bundles named in the class's ``bundles``
    shrunk to tiny random models under their real checkpoint file names."""
    from fmhub_torchaudio.testing import tiny_bundles

    home = tmp_path_factory.mktemp("tiny_torch_home")
    with _torch_home(home), tiny_bundles(*getattr(request.cls, "bundles", ())):
        yield home
