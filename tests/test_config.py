"""Configuration validation: one clear message naming the key or path, before any job runs."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from optical_clir.config import load_schema, validate_config
from optical_clir.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(REPO / "workflow/schemas/config.schema.yaml")
MINI = yaml.safe_load((REPO / "tests/data/mini/config.yaml").read_text())


def check(cfg):
    validate_config(cfg, SCHEMA, REPO)


def test_shipped_configs_are_valid():
    check(MINI)
    for path in sorted((REPO / "config").glob("*.yaml")):
        cfg = yaml.safe_load(path.read_text())
        # Files of the paper config are the user's to provide; only its schema is checked here.
        if path.name == "config.yaml":
            check(cfg)


@pytest.mark.parametrize(
    "mutate, key, problem",
    [
        (lambda c: c.update(colour="blue"), "colour", "unknown key"),
        (lambda c: c["bm25"].update(k_1=1.2), "bm25.k_1", "unknown key"),
        (lambda c: c["bm25"].update(depth="many"), "bm25.depth", "expected integer"),
        (lambda c: c["bm25"].update(b=1.5), "bm25.b", "maximum"),
        (
            lambda c: c["evaluation"].update(correction="fdr"),
            "evaluation.correction",
            "is not one of",
        ),
        (lambda c: c.pop("seed"), "(top level)", "'seed' is a required property"),
        (
            lambda c: c["languages"]["sw"].update(collection="clef"),
            "languages.sw.collection",
            "'clef' is not a collection",
        ),
        (
            lambda c: c["evaluation"].update(systems=["bm25_en", "bm25_magic"]),
            "evaluation.systems.1",
            "unknown system 'bm25_magic'",
        ),
        (
            lambda c: c["evaluation"].update(relative_to="teacher_typo"),
            "evaluation.relative_to",
            "not in evaluation.systems",
        ),
        (
            lambda c: c["collections"]["mini"].update(qrels="tests/data/mini/missing.txt"),
            "collections.mini.qrels",
            "file 'tests/data/mini/missing.txt' does not exist",
        ),
        (
            lambda c: c["collections"]["mini"]["queries"].update(
                en={"path": "tests/data/mini/queries/en.tsv", "format": "xml"}
            ),
            "collections.mini.queries.en.format",
            "is not one of ['trec', 'tsv']",
        ),
        (
            lambda c: c["collections"]["mini"]["queries"].update(
                en={"path": "tests/data/mini/topics.txt", "format": "trec"}
            ),
            "collections.mini.queries.en.path",
            "file 'tests/data/mini/topics.txt' does not exist",
        ),
    ],
)
def test_bad_config_names_the_key(mutate, key, problem):
    cfg = copy.deepcopy(MINI)
    mutate(cfg)
    with pytest.raises(ConfigError) as info:
        check(cfg)
    assert info.value.key == key
    assert problem in str(info.value)


def test_snakemake_reports_bad_config_before_any_job(tmp_path):
    cfg = copy.deepcopy(MINI)
    cfg["bm25"]["k_1"] = 1.2
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "config key 'bm25.k_1': unknown key" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()
