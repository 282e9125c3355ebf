"""Docs stay honest: every hook is documented (signature, tier, firstresult) in docs/hooks.md, every
hookspec docstring follows the template, and relative links in the docs point at real files."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from fmhub import hookspecs

ROOT = Path(__file__).resolve().parents[1]
HOOKS_MD = ROOT / "docs" / "hooks.md"

SPECS = {
    name: getattr(hookspecs, name)
    for name in dir(hookspecs)
    if name.startswith("fmhub_") and hasattr(getattr(hookspecs, name), "fmhub_spec")
}


def tier(name: str) -> str:
    tiers = [
        t
        for t, hooks in (
            ("registration", hookspecs.REGISTRATION),
            ("owner-dispatched", hookspecs.OWNER_DISPATCHED),
            ("broadcast", hookspecs.BROADCAST),
        )
        if name in hooks
    ]
    assert len(tiers) == 1, f"{name} must be in exactly one tier tuple of hookspecs, is in {tiers}"
    return tiers[0]


def sections() -> dict[str, str]:
    """``### `fmhub_x(args)``` heading -> its section text, from docs/hooks.md."""
    text = HOOKS_MD.read_text()
    parts = re.split(r"^### `(fmhub_\w+)\(([^)]*)\)`\s*$", text, flags=re.M)
    out = {}
    for i in range(1, len(parts), 3):
        out[parts[i]] = (parts[i + 1], parts[i + 2])
    return out


def test_the_hook_tuples_name_only_real_hooks():
    listed = (
        set(hookspecs.REGISTRATION) | set(hookspecs.OWNER_DISPATCHED) | set(hookspecs.BROADCAST)
    )
    assert listed == set(SPECS)
    assert len(SPECS) >= 14


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_hook_is_documented_with_its_signature_tier_and_firstresult(name):
    docs = sections()
    assert name in docs, f"{name} is not documented in docs/hooks.md (add a '### `{name}(...)`')"
    args, body = docs[name]
    expected = ", ".join(inspect.signature(SPECS[name]).parameters)
    assert args == expected, f"docs/hooks.md shows {name}({args}); the spec is {name}({expected})"
    firstresult = SPECS[name].fmhub_spec["firstresult"]
    header = body.strip().splitlines()[0]
    assert f"**Tier:** {tier(name)}" in header, header
    assert f"**firstresult:** {'yes' if firstresult else 'no'}" in header, header
    assert "Return value:" in body


def test_every_hook_has_the_anchor_errors_link_to():
    """Errors say "implement fmhub_x — docs/hooks.md#fmhub_x": that anchor must exist."""
    text = HOOKS_MD.read_text()
    for name in SPECS:
        assert f'<a id="{name}"></a>' in text, f"docs/hooks.md lacks the anchor #{name}"


def test_docs_document_no_hook_that_does_not_exist():
    assert set(sections()) <= set(SPECS), set(sections()) - set(SPECS)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hookspec_docstrings_follow_the_template(name):
    spec = SPECS[name]
    doc = inspect.getdoc(spec) or ""
    assert "Return value:" in doc, f"{name}: say what the return value means"
    for arg in inspect.signature(spec).parameters:
        assert f":param {arg}:" in doc, f"{name}: document :param {arg}:"
    stops = "Stops at first non-None result." in doc
    assert stops == spec.fmhub_spec["firstresult"], f"{name}: firstresult sentence is wrong"
    assert ".. versionadded::" in doc
    if name in hookspecs.OWNER_DISPATCHED:
        assert "Owner-dispatched" in doc, f"{name}: say it is owner-dispatched"


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_files(path):
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (path.parent / target).exists(), (
            f"{path.relative_to(ROOT)} links to missing {target}"
        )


def test_index_links_every_page():
    index = (ROOT / "docs" / "index.md").read_text()
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.name != "index.md":
            assert f"({page.name})" in index, f"docs/index.md does not link {page.name}"


# ---------------------------------------------------------------------------------------------
# The examples in the docs run.
# ---------------------------------------------------------------------------------------------


def doc_files(page: Path) -> dict[str, str]:
    """Code blocks whose first line is ``# file: <path>``, by path."""
    blocks = re.findall(r"```\w*\n# file: (\S+)\n(.*?)```", page.read_text(), flags=re.S)
    return {path: body for path, body in blocks}


def test_the_plugin_package_in_writing_a_plugin_works(tmp_path, monkeypatch, use_hub):
    """Write the page's package to disk, declare its entry point the way installing it would
    (a dist-info on the path), and run the package's own tests, conformance kit included: in this
    process (a fresh default hub discovers the package through its entry point; the kit's import
    probe is a fresh interpreter of its own), then ``fmhub list`` as a real command."""
    import subprocess
    import sys

    import tomllib

    files = doc_files(ROOT / "docs" / "writing-a-plugin.md")
    assert set(files) == {
        "pyproject.toml",
        "src/fmhub_mini/__init__.py",
        "src/fmhub_mini/_impl.py",
        "tests/test_mini.py",
    }
    pkg = tmp_path / "fmhub-mini"
    for rel, body in files.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(body)
    meta = tomllib.loads(files["pyproject.toml"])["project"]
    info = pkg / "src" / "fmhub_mini-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n"
    )
    eps = "".join(f"{k} = {v}\n" for k, v in meta["entry-points"]["fmhub"].items())
    (info / "entry_points.txt").write_text("[fmhub]\n" + eps)
    os = __import__("os")
    path = os.pathsep.join(filter(None, [str(pkg / "src"), os.environ.get("PYTHONPATH")]))
    monkeypatch.setenv("PYTHONPATH", path)  # for the subprocesses
    monkeypatch.setenv("FMHUB_LOAD_PLUGINS", "mini")
    monkeypatch.delenv("FMHUB_DISABLE_PLUGINS", raising=False)
    monkeypatch.syspath_prepend(str(pkg / "src"))
    monkeypatch.chdir(pkg)

    class Outcomes:
        def __init__(self):
            self.seen: dict[str, int] = {}

        def pytest_runtest_logreport(self, report):
            if report.when == "call" or report.outcome != "passed":
                self.seen[report.outcome] = self.seen.get(report.outcome, 0) + 1

    outcomes, before = Outcomes(), set(sys.modules)
    try:
        rc = pytest.main(
            ["-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-p", "no:xdist", "tests"],
            plugins=[outcomes],
        )
    finally:  # the package's modules go; what they imported (torch, peft...) stays loaded
        for name in set(sys.modules) - before:
            if name.split(".")[0] in ("fmhub_mini", "test_mini"):
                del sys.modules[name]
    assert rc == 0 and outcomes.seen.get("passed", 0) >= 10, (rc, outcomes.seen)
    assert "failed" not in outcomes.seen, outcomes.seen
    listed = subprocess.run(
        [sys.executable, "-m", "fmhub", "list", "mini:*"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.stdout.split()[:3] == ["mini:chars-16", "embedding", "text"]


def test_the_examples_in_results_md_run(toy_hub):
    import doctest

    failures, tried = doctest.testfile(
        str(ROOT / "docs" / "results.md"), module_relative=False, optionflags=doctest.ELLIPSIS
    )
    assert tried >= 5 and failures == 0
