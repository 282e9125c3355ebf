"""The ``fmhub`` pytest plugin (entry point ``pytest11``): conformance-case parametrization and a
fresh-hub fixture. Importing it imports neither torch nor any plugin."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from fmhub import Hub


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "fmhub_case" not in metafunc.fixturenames or metafunc.cls is None:
        return
    cases = getattr(metafunc.cls, "cases", None) or []
    metafunc.parametrize("fmhub_case", cases, ids=[c.id or c.model for c in cases])


@pytest.fixture
def fmhub_hub() -> Iterator[Hub]:
    """A fresh :class:`fmhub.Hub` from the installed entry points, made the default for the test."""
    import fmhub

    hub = fmhub.Hub()
    previous = fmhub.set_hub(hub)
    try:
        yield hub
    finally:
        fmhub.set_hub(previous)
