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
            if name and re.search(r"^\s+(gpu=|\*\*gpu_request\()", block, re.M):
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


def _render(monkeypatch, **env: str) -> dict:
    import yte

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return yte.process_yaml((REPO / "profiles/slurm/config.yaml").read_text())


def test_slurm_profile_sends_sigterm_before_the_limit(monkeypatch):
    from snakemake_executor_plugin_slurm.validation import validate_slurm_extra

    monkeypatch.delenv("OPTICAL_SLURM_SIGNAL_S", raising=False)
    extra = _render(monkeypatch)["default-resources"]["slurm_extra"]
    assert eval(extra) == "--signal=TERM@300"  # a string resource, evaluated by Snakemake

    class Job:
        resources = type("R", (), {"slurm_extra": eval(extra)})()

    validate_slurm_extra(Job())  # the plugin accepts it
    assert (
        "slurm_extra" not in _render(monkeypatch, OPTICAL_SLURM_SIGNAL_S="0")["default-resources"]
    )


def test_gres_replaces_the_gpu_model(monkeypatch):
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    cfg = _render(
        monkeypatch,
        OPTICAL_SLURM_GPU_PARTITION="gpu",
        OPTICAL_SLURM_GPU_MODEL="a100",
        OPTICAL_SLURM_GRES="gpu:a100",
    )
    assert all("gpu_model" not in v for v in cfg["set-resources"].values())

    class Resources(dict):
        __getattr__ = dict.get

    class Job:
        resources = Resources(gpu=0, gres="gpu:a100:2")  # what gpu_request(2) asks for

    assert set_gres_string(Job()).strip() == "--gres=gpu:a100:2"


def _dry_run_resources(tmp_path, rule: str, env: dict, **resources) -> str:
    """The `resources:` line of ``rule``'s job in a dry run of the demo DAG."""
    import os
    import subprocess
    import sys

    import yaml

    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg["resources"].update(resources)
    tmp_path.mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(tmp_path), "--cores", "1", "results/indexes/dense/demo",
           "--configfile", str(config)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
    assert done.returncode == 0, done.stderr[-3000:]
    block = done.stdout.split(f"rule {rule}:", 1)[1]
    return next(line for line in block.splitlines() if "resources:" in line)


def test_rules_ask_for_gres_and_capped_runtimes(tmp_path, monkeypatch):
    monkeypatch.delenv("OPTICAL_SLURM_GRES", raising=False)
    plain = _dry_run_resources(tmp_path / "a", "encode_documents", {})
    assert "gpu=1" in plain and "gres" not in plain and "runtime=600" in plain
    gres = _dry_run_resources(
        tmp_path / "b", "encode_documents", {"OPTICAL_SLURM_GRES": "gpu:a100"}, max_runtime=45
    )
    assert "gpu=0" in gres and "gres=gpu:a100:1" in gres and "runtime=45" in gres
