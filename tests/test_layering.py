"""The core's import layering, read from the sources with ``ast``:

    errors, results, spec, _device, inputs, chunking  ->  model, manifest, quantize  ->  hookspecs  ->  _hub
    ->  finetuning (and the core's own plugin, _builtin)  ->  cli, testing, the fmhub package

A module imports only from its own layer or lower ones, at import time and inside functions alike,
except for the few lazy upward imports listed in ``UPWARD`` with the reason for each; and no two
modules import each other, directly or through others (``TYPE_CHECKING`` imports do not count:
they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "fmhub"

LAYERS = [
    {
        "errors",
        "results",
        "spec",
        "_device",
        "generation",
        "_quiet",
        "_progress",
        "inputs",
        "chunking",
        "_plugincache",
    },
    {"model", "manifest", "quantize", "export"},
    {"hookspecs"},
    {"_hub"},
    {"finetuning", "evaluation", "_builtin"},
    {
        "cli",
        "_clikit",
        "_snapshot",
        "_generate_cli",
        "_deploy_cli",
        "serve",
        "batch",
        "finetuning.cli",
        "evaluation.cli",
        "testing",
        "",
        "__main__",
    },  # "" is the fmhub package itself
]

#: Lazy (inside a function) imports of a higher layer, each a deliberate entry point upward.
UPWARD = {
    ("model", "finetuning"): "Model.finetune is fmhub.finetune as a method",
    ("model", "evaluation"): "Model.evaluate is fmhub.evaluate as a method",
    ("model", "finetuning.adapter"): "Model.save / Model.merge of a fine-tuned model",
    ("_hub", "finetuning.adapter"): "Hub.load of an adapter folder",
    ("_hub", "finetuning.methods"): "the registry checks registered methods' type",
    ("_hub", "evaluation.base"): "the registry checks registered metrics' type",
    ("_hub", "_builtin"): "every Hub registers the core's own plugin",
}


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def layer(module: str) -> int:
    best, found = -1, None
    for i, names in enumerate(LAYERS):
        for name in names:
            matches = module == name or (name and module.startswith(name + "."))
            if matches and len(name) > best:
                best, found = len(name), i
    assert found is not None, f"fmhub.{module} is in no layer of LAYERS; add it"
    return found


def _in_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _in_function(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return True
    return False


def imports(module: str) -> list[tuple[str, bool]]:
    """``(imported fmhub module, lazy)`` for every import in ``module`` that runs."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or _in_type_checking(node, parents):
            continue
        lazy = _in_function(node, parents)
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
            found = [t.partition(".")[2] for t in targets if t == "fmhub" or t.startswith("fmhub.")]
        else:
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                stem = ".".join(base + ([node.module] if node.module else []))
            elif node.module == "fmhub" or (node.module or "").startswith("fmhub."):
                stem = node.module.partition(".")[2]
            else:
                continue
            found = []
            for alias in node.names:  # ``from . import x`` may import the submodule x
                sub = f"{stem}.{alias.name}" if stem else alias.name
                found.append(sub if sub in MODULES else stem)
        out += [(t, lazy) for t in found]
    return out


class _Edges(dict):
    """``module -> imports(module)``, parsed on first use (not at collection, which every pytest
    worker pays)."""

    def __missing__(self, module: str) -> list[tuple[str, bool]]:
        self[module] = imports(module)
        return self[module]


EDGES = _Edges()


def test_every_module_is_in_a_layer():
    for m in MODULES:
        layer(m)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module):
    for target, lazy in EDGES[module]:
        if layer(target) <= layer(module):
            continue
        if lazy and (module, target) in UPWARD:
            continue
        how = "inside a function" if lazy else "at import time"
        pytest.fail(
            f"fmhub.{module} (layer {layer(module)}) imports fmhub.{target} (layer "
            f"{layer(target)}) {how}; move the code down or invert the dependency"
        )


def test_the_upward_exceptions_are_all_still_needed():
    used = {(m, t) for m in MODULES for t, lazy in EDGES[m] if lazy}
    assert set(UPWARD) <= used, f"no longer imported, drop from UPWARD: {set(UPWARD) - used}"


def test_no_import_cycles():
    graph = {m: {t for t, _ in EDGES[m] if t != m and (m, t) not in UPWARD} for m in MODULES}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                cycle = stack[stack.index(t) :] + [t]
                pytest.fail("import cycle: " + " -> ".join(f"fmhub.{c}".rstrip(".") for c in cycle))
            if t in graph and not state.get(t):
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if not state.get(m):
            visit(m)


def test_the_parser_sees_known_imports():
    """Guard the guard: edges this file must find, lazy and not."""
    assert ("errors", False) in EDGES["model"]
    assert ("finetuning.adapter", True) in EDGES["model"]
    assert ("_builtin", True) in EDGES["_hub"]
    assert ("finetuning.builtin", True) in EDGES["_builtin"]
    assert all(t != "finetuning" for t, _ in EDGES["manifest"])
