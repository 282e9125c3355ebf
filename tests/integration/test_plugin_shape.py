"""The three first-party plugins are built one way (docs/writing-a-plugin.md, "Module layout"):
the same module roles under the same names, keyword rows in every model table, the same fmhub
error for the same condition, the same option where the meaning is the same, and ``py.typed``."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.resources
import re
import types
from pathlib import Path

import pytest
import tomllib

import fmhub

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = {
    "fmhub_transformers": "fmhub-transformers",
    "fmhub_timm": "fmhub-timm",
    "fmhub_torchaudio": "fmhub-torchaudio",
}
#: Every plugin has these modules (docs/writing-a-plugin.md#module-layout).
ROLES = {"__init__", "_catalog", "_config", "_load", "_stages", "_finetune", "testing"}
#: The fields every catalog row carries, whatever else a plugin adds.
ROW_FIELDS = {"id", "aliases", "architecture", "task", "description", "license"}
STAGE_FUNCTIONS = {"preprocess", "forward", "postprocess", "export_spec"}


def _package_dir(package: str) -> Path:
    return Path(importlib.import_module(package).__file__).parent


def _modules(package: str) -> dict[str, Path]:
    return {p.stem: p for p in _package_dir(package).glob("*.py")}


@pytest.mark.parametrize("package", sorted(PLUGINS))
def test_every_plugin_has_the_same_module_roles(package):
    modules = _modules(package)
    assert ROLES <= set(modules), f"{package} lacks {sorted(ROLES - set(modules))}"
    for name in modules:
        assert name in ROLES or name.startswith("_"), f"{package}.{name}: helpers are private"


@pytest.mark.parametrize("package", sorted(PLUGINS))
def test_stage_functions_live_in_stage_modules(package):
    for name, path in _modules(package).items():
        tree = ast.parse(path.read_text())
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        if defined & STAGE_FUNCTIONS and name != "__init__":
            assert re.fullmatch(r"_stages(_[a-z]+)?", name), (
                f"{package}.{name} defines {sorted(defined & STAGE_FUNCTIONS)}: stage functions "
                "belong in _stages.py (or _stages_<family>.py)"
            )


@pytest.mark.parametrize("package", sorted(PLUGINS))
def test_registration_imports_only_the_catalog_and_config_of_the_plugin(package):
    tree = ast.parse((_package_dir(package) / "__init__.py").read_text())
    top = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.level == 1]
    assert {n.module for n in top} <= {"_catalog", "_config"}
    for node in tree.body:  # every other plugin module is imported inside a hook, when it runs
        if isinstance(node, ast.Import) or (isinstance(node, ast.ImportFrom) and not node.level):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            assert not any(
                n.split(".")[0] in ("torch", "transformers", "timm", "torchaudio") for n in names
            ), names


@pytest.mark.parametrize("package", sorted(PLUGINS))
def test_every_catalog_row_is_a_keyword_row(package):
    catalog = importlib.import_module(f"{package}._catalog")
    row_type = catalog.Row
    fields = {f.name for f in dataclasses.fields(row_type)}
    assert ROW_FIELDS <= fields, f"{package} rows lack {sorted(ROW_FIELDS - fields)}"
    assert row_type.__dataclass_params__.frozen
    with pytest.raises(TypeError):  # keyword-only: a positional row cannot even be built
        row_type(*[None] * len(fields))
    tree = ast.parse(Path(catalog.__file__).read_text())
    calls = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "Row"
    ]
    assert len(calls) == len(catalog.ROWS) and all(not c.args for c in calls)
    for row in catalog.ROWS:
        assert isinstance(row, row_type) and row.aliases and isinstance(row.aliases, tuple)
        spec = fmhub.model_info(row.aliases[0])
        assert spec.name == row.id and spec.aliases == row.aliases
        assert (spec.architecture, spec.task, spec.license, spec.description) == (
            row.architecture,
            row.task,
            row.license,
            row.description,
        )


def test_all_mpnet_base_v2_is_an_mpnet():
    assert fmhub.model_info("all-mpnet-base-v2").architecture == "mpnet"


def test_transformers_architectures_are_model_types_transformers_knows():
    from transformers import CONFIG_MAPPING

    from fmhub_transformers._catalog import ROWS

    for row in ROWS:
        assert row.architecture in CONFIG_MAPPING, row


@pytest.mark.parametrize("package", sorted(PLUGINS))
def test_a_head_without_labels_is_the_same_error_everywhere(package):
    finetune = importlib.import_module(f"{package}._finetune")
    model = types.SimpleNamespace(spec=fmhub.ModelSpec(id="x:y"), module=None)
    with pytest.raises(fmhub.FineTuneError, match="at least one label"):
        finetune.attach_head(model, [])


def test_an_unreadable_checkpoint_option_is_the_same_error_everywhere(tmp_path):
    from fmhub_timm._load import read_checkpoint
    from fmhub_torchaudio._load import _read_state_dict

    with pytest.raises(fmhub.InvalidOptionError, match="checkpoint="):
        read_checkpoint(str(tmp_path / "missing.pth"))
    with pytest.raises(fmhub.InvalidOptionError, match="checkpoint="):
        _read_state_dict(str(tmp_path / "missing.pth"), "checkpoint='missing.pth'")


def test_options_of_the_same_meaning_have_the_same_name():
    from fmhub_timm import TimmOptions
    from fmhub_torchaudio import TorchaudioOptions
    from fmhub_transformers import TransformersOptions

    classes = [TransformersOptions, TimmOptions, TorchaudioOptions]
    for cls in classes:  # how many labels a Classification lists
        field = cls.model_fields["top_k"]
        assert field.default == 5 and any(getattr(m, "ge", None) == 1 for m in field.metadata)
    for cls in classes[1:]:  # a local weights file loaded instead of the cached ones
        assert cls.model_fields["checkpoint"].default is None


@pytest.mark.parametrize("package", ["fmhub", *sorted(PLUGINS)])
def test_py_typed_ships(package):
    assert (importlib.resources.files(package) / "py.typed").is_file()
    project = (
        ROOT / (f"plugins/{PLUGINS[package]}" if package in PLUGINS else "") / "pyproject.toml"
    )
    data = tomllib.loads(project.read_text())
    assert "py.typed" in data["tool"]["setuptools"]["package-data"][package]
