"""Fixtures of the core's tests: fresh hubs, in-test plugins, and fake installed distributions.

Every test that touches plugins gets its own :class:`fmhub.Hub` (made the default for the test), so
no test sees another's plugins. ``toy_hub`` discovers plugins through the real ``fmhub`` entry-point
group, limited to the toy plugin (``FMHUB_LOAD_PLUGINS=toy``) so that plugins being developed next to
the core cannot change the core's results.
"""

from __future__ import annotations

import itertools
import sys
import textwrap
from pathlib import Path

import pytest

import fmhub
from fmhub import hookimpl

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True, scope="session")
def _own_cache(tmp_path_factory):
    """fmhub's cache (plugin registrations, exports) in a folder of this test session."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FMHUB_CACHE", str(tmp_path_factory.mktemp("fmhub-cache")))
    yield
    mp.undo()


@pytest.fixture
def use_hub():
    """Make a hub the default for one test: ``use_hub(hub)`` returns it; the old one comes back."""
    previous = fmhub.set_hub(None)

    def use(hub: fmhub.Hub) -> fmhub.Hub:
        fmhub.set_hub(hub)
        return hub

    yield use
    fmhub.set_hub(previous)


@pytest.fixture
def toy_hub(monkeypatch, use_hub):
    """A fresh hub from the installed entry points, with only the toy plugin enabled."""
    monkeypatch.setenv("FMHUB_LOAD_PLUGINS", "toy")
    monkeypatch.delenv("FMHUB_DISABLE_PLUGINS", raising=False)
    return use_hub(fmhub.Hub())


@pytest.fixture
def bare_hub(use_hub):
    """A fresh hub with the built-in plugin only (no entry points)."""
    return use_hub(fmhub.Hub(entry_points=False))


# ---------------------------------------------------------------------------------------------
# A second model family, written in the test: a seeded linear map from 4 numbers to 2.
# ---------------------------------------------------------------------------------------------


class Family:
    """A complete model plugin serving ``ns:`` whose plugin name may differ from the namespace.

    ``calls`` records ``(hook, model id, detail)`` for every stage hook it runs, so tests can tell
    which plugin ran what. ``fail`` names a hook that raises ``RuntimeError("boom")``.
    """

    def __init__(
        self,
        ns="fam",
        models=("lin",),
        aliases=None,
        open=False,
        placed=False,
        fail=None,
        order=None,
        claim=None,
    ):
        self.ns, self.models, self.open, self.placed = ns, models, open, placed
        self.aliases = aliases or {}
        self.fail, self.order, self.claim = fail, order, claim
        self.calls: list[tuple[str, str, object]] = []

    def _hit(self, hook, model_id, detail=None):
        self.calls.append((hook, model_id, detail))
        if self.fail == hook:
            raise RuntimeError("boom")

    @hookimpl
    def fmhub_register_namespaces(self, register):
        register(fmhub.Namespace(name=self.ns, distribution=f"fmhub-{self.ns}", open=self.open))

    @hookimpl
    def fmhub_register_models(self, register):
        for m in self.models:
            register(
                fmhub.ModelSpec(
                    id=f"{self.ns}:{m}",
                    aliases=tuple(self.aliases.get(m, ())),
                    task="embedding",
                    modality="vector",
                )
            )

    @hookimpl
    def fmhub_resolve_model(self, namespace, name):
        self._hit("resolve_model", f"{namespace}:{name}")
        if name.startswith("any-"):
            return fmhub.ModelSpec(id=f"{namespace}:{name}", task="embedding")
        return None

    @hookimpl
    def fmhub_claim_path(self, path):
        if self.fail == "claim_path":
            raise RuntimeError("boom")
        if self.claim and Path(path, self.claim).is_file():
            return fmhub.ModelSpec(id=f"{self.ns}:local", path=path, task="embedding")
        return None

    @hookimpl
    def fmhub_load(self, spec, options):
        import torch

        self._hit("load", spec.id, options)

        class Spread(torch.nn.Sequential):  # hands activations over, as accelerate's hooks do
            def forward(self, x):
                return self[1](self[0](x).to(self[1].weight.device))

        torch.manual_seed(sum(map(ord, spec.id)))
        net = Spread(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
        if self.placed:  # "spread over two devices", as an accelerate device_map would
            net[1].to("meta")
        return fmhub.Loaded(
            module=net.eval(), task="embedding", placed=self.placed, info={"family": self.ns}
        )

    @hookimpl
    def fmhub_batch_order(self, model, inputs):
        self._hit("batch_order", model.spec.id, len(inputs))
        if self.order == "by-sum":
            return sorted(range(len(inputs)), key=lambda i: sum(inputs[i]))
        return None

    @hookimpl
    def fmhub_preprocess(self, model, inputs):
        import torch

        self._hit("preprocess", model.spec.id, [list(x) for x in inputs])
        for i, x in enumerate(inputs):
            if not isinstance(x, (list, tuple)) or len(x) != 4:
                raise fmhub.InputError(f"input {i} must be 4 numbers, got {x!r}")
        return {"x": torch.tensor(inputs, dtype=torch.float32), "n": len(inputs)}

    @hookimpl
    def fmhub_forward(self, model, batch):
        self._hit("forward", model.spec.id, batch["x"].device)
        return model.module(batch["x"])

    @hookimpl
    def fmhub_postprocess(self, model, outputs, batch):
        self._hit("postprocess", model.spec.id)
        return list(outputs.float().cpu().numpy())

    @hookimpl
    def fmhub_save(self, model, path):
        self._hit("save", model.spec.id, path)
        return None


@pytest.fixture
def family():
    """The :class:`Family` plugin class (tests build the variant they need)."""
    return Family


# ---------------------------------------------------------------------------------------------
# Fake installed distributions: a dist-info with an ``fmhub`` entry point, on sys.path.
# ---------------------------------------------------------------------------------------------

_counter = itertools.count()


@pytest.fixture
def install_plugin(tmp_path, monkeypatch):
    """``install_plugin(entry_point_name, source, dist=...)`` writes a module and a dist-info that
    declares it in the ``fmhub`` entry-point group, then puts the folder on ``sys.path``.

    Returns ``(site_folder, module_name)``. The module is dropped from ``sys.modules`` afterwards.
    """
    made: list[str] = []

    def install(name: str, source: str, dist: str | None = None) -> tuple[Path, str]:
        dist = dist or f"fmhub-{name}"
        module = f"fmhub_fake_{name.replace('-', '_')}_{next(_counter)}"
        site = tmp_path / f"site-{module}"
        info = site / f"{dist.replace('-', '_')}-0.3.dist-info"
        info.mkdir(parents=True)
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3\n")
        (info / "entry_points.txt").write_text(f"[fmhub]\n{name} = {module}\n")
        monkeypatch.syspath_prepend(str(site))
        made.append(module)
        return site, module

    yield install
    for module in made:
        sys.modules.pop(module, None)
