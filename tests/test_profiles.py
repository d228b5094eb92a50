"""The SLURM profiles know every rule that asks for a GPU (they map those to GPU partitions)."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def gpu_rules() -> set[str]:
    rules = set()
    for smk in (REPO / "workflow/rules").glob("*.smk"):
        for block in re.split(r"\n(?=rule )", smk.read_text()):
            name = re.match(r"rule (\w+):", block)
            if name and re.search(r"^\s+gpu=", block, re.M):
                rules.add(name.group(1))
    return rules


def test_workflow_has_gpu_rules():
    assert {"train_teacher", "distill_student", "encode_documents"} <= gpu_rules()


@pytest.mark.parametrize("profile", ["slurm", "slurm-ci"])
def test_profile_lists_every_gpu_rule(profile):
    text = (REPO / "profiles" / profile / "config.yaml").read_text()
    listed = set(re.findall(r'"(\w+)"', text.split("gpu_rules = [", 1)[1].split("]", 1)[0]))
    assert listed == gpu_rules()


def test_bare_profile_name_resolves_from_the_repository_root():
    link = REPO / "slurm"
    assert link.is_symlink() and (link / "config.yaml").is_file()
