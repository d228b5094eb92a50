"""Documentation stays true: every config key is described, every module named exists, the
catalog files are there, and docs/CLAIMS.md cites tests and scripts that exist."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
# The placeholder of a map's keys in config/README.md, by the map's own key.
PLACEHOLDERS = {
    "collections": "<collection>",
    "languages": "<lang>",
    "queries": "<lang>",
    "systems": "<nmt>",
}
SKIPPED_DIRS = {".venv", "results", ".snakemake", ".git", "node_modules"}


def key_requirements(schema: dict) -> list[set[str]]:
    """For every key the schema allows, the dotted paths that name it (maps' keys as
    :data:`PLACEHOLDERS`, list items as ``[]``). A key of a shared ``$defs`` entry may be
    named at any place that uses it (``teacher.train.seed`` or ``distill.train.seed``)."""
    defs = schema.get("$defs", {})
    sites: dict[tuple[str, str] | str, set[str]] = {}

    def walk(node: dict, prefix: str, scope: tuple[str, str] | None, stack: tuple = ()) -> None:
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            if name in stack:
                return
            node, scope, stack = defs[name], (name, ""), (*stack, name)

        def visit(sub: dict, key: str, sep: str = ".") -> None:
            path = f"{prefix}{sep}{key}" if prefix else key
            inner = (scope[0], f"{scope[1]}{sep}{key}") if scope else None
            if key != "[]":
                sites.setdefault(inner or path, set()).add(path)
            walk(sub, path, inner, stack)

        for key, sub in node.get("properties", {}).items():
            visit(sub, key)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and any(k in extra for k in ("properties", "oneOf", "$ref")):
            visit(extra, PLACEHOLDERS.get(prefix.rsplit(".", 1)[-1], "<name>"))
        for branch in node.get("oneOf", []) + node.get("anyOf", []):
            walk(branch, prefix, scope, stack)
        items = node.get("items")
        if isinstance(items, dict) and "properties" in items:
            visit(items, "[]", sep="")

    walk(schema, "", None)
    return list(sites.values())


def documented_keys(text: str) -> set[str]:
    """Every `code span` of a Markdown text."""
    return set(re.findall(r"`([^`\n]+)`", text))


def test_every_config_key_is_described_in_config_readme() -> None:
    requirements = key_requirements(yaml.safe_load(SCHEMA.read_text()))
    assert len(requirements) > 100  # the walk reaches the nested and shared sections
    documented = documented_keys((REPO / "config/README.md").read_text())
    missing = sorted(min(paths) for paths in requirements if not paths & documented)
    assert not missing, f"config keys missing from config/README.md: {missing}"


def test_the_key_walk_sees_maps_lists_and_shared_sections() -> None:
    schema = yaml.safe_load(SCHEMA.read_text())
    requirements = key_requirements(schema)
    flat = {path for paths in requirements for path in paths}
    for path in (
        "collections.<collection>.queries.<lang>.ir_datasets",
        "evaluation.baselines[].symbol",
        "evaluation.test",
        "nmt.systems.<nmt>.translate.dtype",
    ):
        assert path in flat
    shared = next(paths for paths in requirements if "teacher.train.seed" in paths)
    assert {"distill.train.seed", "distill.method_overrides.kd_mse.train.seed"} < shared
    assert {"distill.select.optical", "ablation.optical"} in requirements
    # a key added to the schema is a new requirement: README must describe it
    schema["properties"]["bm25"]["properties"]["new_key"] = {"type": "integer"}
    documented = documented_keys((REPO / "config/README.md").read_text())
    unmet = [p for p in key_requirements(schema) if not p & documented]
    assert unmet == [{"bm25.new_key"}]


def _markdown_files() -> list[Path]:
    return sorted(
        p for p in REPO.rglob("*.md") if not SKIPPED_DIRS & set(p.relative_to(REPO).parts)
    )


def _module_references() -> set[str]:
    names: set[str] = set()
    for path in _markdown_files():
        names.update(re.findall(r"\boptical_clir(?:\.[a-z_][a-z0-9_]*)+", path.read_text()))
    return names


def _resolves(name: str) -> bool:
    """``name`` is a module of the package, or a lower-case attribute of one."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_modules_named_in_the_docs_import() -> None:
    names = _module_references()
    assert "optical_clir.retrieval.lucene_env" in names  # README: the scan finds names
    broken = sorted(name for name in names if not _resolves(name))
    assert not broken, f"*.md files name modules that do not exist: {broken}"


def test_a_missing_module_is_reported() -> None:
    assert _resolves("optical_clir.train.launch")
    assert _resolves("optical_clir.models.encoder.resolve_backbone_path")
    assert not _resolves("optical_clir.train.cli")
    assert not _resolves("optical_clir.models.encoder.no_such_function")


def test_license_and_catalog_files() -> None:
    license_text = (REPO / "LICENSE").read_text()
    assert license_text.startswith("MIT License")
    assert "the optical-clir authors" in license_text
    catalog = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())
    usage = catalog["usage"]
    assert "--configfile" in usage["mandatory-flags"]["desc"]
    assert usage["software-stack-deployment"]["conda"] is True
    assert usage["report"] is True
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]


@pytest.mark.parametrize("path", ["README.md", "config/README.md", "profiles/README.md"])
def test_docs_exist(path: str) -> None:
    assert (REPO / path).read_text().strip()


def test_readme_says_what_the_make_targets_run() -> None:
    """The quick start's "plain wrappers" sentence quotes the Makefile's recipes."""
    makefile = (REPO / "Makefile").read_text()
    recipes = {}
    for target in ("demo", "test"):
        block = re.search(rf"^{target}: install\n\t(.+)$", makefile, re.M)
        assert block, f"no recipe for make {target}"
        recipes[target] = block.group(1).replace("$(BIN)", ".venv/bin").replace("$(CORES)", "all")
    readme = " ".join((REPO / "README.md").read_text().split())
    assert f"`make demo` is `{recipes['demo']}`" in readme
    assert f"`make test` is `{recipes['test']}`" in readme


def _defined_functions(path: Path) -> set[str]:
    """Names of the functions ``path`` defines at module level or in a class."""
    tree = ast.parse(path.read_text(), filename=str(path))
    bodies = [tree.body] + [node.body for node in tree.body if isinstance(node, ast.ClassDef)]
    return {
        node.name
        for body in bodies
        for node in body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def test_claims_cite_tests_and_scripts_that_exist() -> None:
    """Every ``tests/<file>.py::<name>`` in docs/CLAIMS.md names a file that defines
    ``<name>``, and every ``benchmarks/<script>`` it cites exists."""
    text = (REPO / "docs/CLAIMS.md").read_text()
    tests = set(re.findall(r"\btests/(\w+\.py)::(\w+)", text))
    scripts = set(re.findall(r"(?<![\w/])benchmarks/([\w.-]+)", text))
    assert len(tests) > 100 and "ot_sinkhorn.py" in scripts  # the patterns find the citations
    defined: dict[str, set[str]] = {}
    missing = []
    for name, func in sorted(tests):
        path = REPO / "tests" / name
        if name not in defined:
            defined[name] = _defined_functions(path) if path.is_file() else set()
        if func not in defined[name]:
            missing.append(f"tests/{name}::{func}")
    missing += [
        f"benchmarks/{s}" for s in sorted(scripts) if not (REPO / "benchmarks" / s).is_file()
    ]
    assert not missing, f"docs/CLAIMS.md cites what does not exist: {missing}"


def test_readme_says_what_make_lint_and_ci_run() -> None:
    """`make lint` runs the four linters the README lists; `.ci/run` runs the linters, the
    README's test command and the demo's checks."""
    makefile = (REPO / "Makefile").read_text()
    lint = re.search(r"^lint: install\n((?:\t.+\n)+)", makefile, re.M)
    assert lint, "no recipe for make lint"
    for command in (
        "ruff check .",
        "ruff format --check .",
        "snakefmt --check .",
        "snakemake --lint",
    ):
        assert f"$(BIN)/{command}" in lint.group(1), command
    assert "make lint   # ruff, ruff format --check, snakefmt --check, snakemake --lint" in (
        (REPO / "README.md").read_text()
    )
    ci = (REPO / ".ci/run").read_text().splitlines()
    assert "make test" in ci and "make test-demo" in ci


def test_workflow_scripts_only_adapt_the_snakemake_object() -> None:
    """README: the logic lives in the package; a rule's script defines no function or class
    and stays short (it reads ``snakemake`` and calls the package)."""
    scripts = sorted((REPO / "workflow/scripts").glob("*.py"))
    assert scripts
    for path in scripts:
        tree = ast.parse(path.read_text())
        defined = [
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        ]
        assert not defined, f"{path.name} defines {defined}: move it into src/optical_clir"
        assert len(path.read_text().splitlines()) <= 40, f"{path.name} is over 40 lines"
        assert "optical_clir" in path.read_text(), f"{path.name} does not call the package"


def test_not_slow_leaves_out_every_end_to_end_workflow_run() -> None:
    """README: ``pytest -m "not slow"`` skips the end-to-end runs, i.e. every test module
    that runs the repository's Snakefile (``run_snakemake`` or the mini and demo runs)."""
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "not slow",
         "-p", "no:cacheprovider"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    collected = {line.split("::")[0] for line in out.stdout.splitlines() if "::" in line}
    assert len(collected) > 20, out.stdout[-2000:] + out.stderr[-2000:]
    runs_workflow = {
        f"tests/{path.name}"
        for path in (REPO / "tests").glob("test_*.py")
        if path.name != Path(__file__).name  # this test names them, it runs none
        and re.search(r"\b(run_snakemake|mini_run|demo_run)\b", path.read_text())
    }
    assert runs_workflow, "no test module runs the workflow"
    assert not collected & runs_workflow, sorted(collected & runs_workflow)
