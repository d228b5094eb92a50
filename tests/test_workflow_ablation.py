"""`snakemake ablation` and `distill.select` on the mini configuration, after the mini run."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import run_snakemake

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ablation_run(mini_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the mini run, then the ablation and a selection over one variant."""
    workdir = tmp_path_factory.mktemp("ablation") / "run"
    shutil.copytree(mini_run, workdir, symlinks=True)
    cfg = yaml.safe_load((mini_run / "mini.yaml").read_text())
    # One variant: KD-MSE's variants take the same path through the rules as OPTICAL's.
    cfg["ablation"] = {"optical": {"epsilon": [0.05]}}
    cfg["distill"]["select"] = {"optical": {"epsilon": [0.05]}}
    path = workdir / "ablation.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    run_snakemake(workdir, "all", "ablation", "--configfile", str(path))
    return workdir


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_ablation_table_has_every_variant_and_paired_tests(ablation_run: Path) -> None:
    rows = _rows(ablation_run / "results/tables/ablation.csv")
    assert sorted((r["language"], r["student"]) for r in rows) == sorted(
        (lang, s) for lang in ("sw", "pseudo") for s in ("optical", "optical+epsilon-0.05")
    )
    for r in rows:
        assert 0 <= float(r["dev_p_at_1"]) <= 1 and 0 < float(r["dev_mrr"]) <= 1
        assert int(r["seeds"]) == 2
        if r["change"] == "default":
            assert r["p"] == "" and r["difference"] == ""
        else:  # one variant per method and language: Holm leaves its p as is
            assert 0 <= float(r["p"]) <= 1 and r["p_adjusted"] == r["p"]
    pseudo = [r for r in rows if r["language"] == "pseudo"]
    assert all(0 <= float(r["alignment"]) <= 1 for r in pseudo)
    optical = [r for r in rows if r["method"] == "optical"]
    assert all(float(r["plan_row_max_ratio"]) > 1 for r in optical)
    md = (ablation_run / "results/tables/ablation.md").read_text()
    assert "teacher (zero-shot)" in md and "epsilon-0.05" in md
    assert (ablation_run / "results/figures/ablation.png").read_bytes()[:4] == b"\x89PNG"


def test_selection_chooses_on_the_dev_criterion_and_feeds_the_table(ablation_run: Path) -> None:
    for lang in ("sw", "pseudo"):
        record = json.loads((ablation_run / f"results/selection/optical/{lang}.json").read_text())
        scores = {c["student"]: (c["p_at_1"], c["mrr"]) for c in record["candidates"]}
        assert record["chosen"] == max(scores, key=lambda s: (scores[s], s == "optical"))
        chosen = ablation_run / "results/models/student" / record["chosen"] / lang / "pairs-all"
        published = ablation_run / "results/models/student/optical+selected" / lang / "pairs-all"
        for seed in ("seed-13", "seed-14"):
            a, b = chosen / seed / "optical_encoder.json", published / seed / "optical_encoder.json"
            assert a.stat().st_ino == b.stat().st_ino  # hard links: the same files
        # the learning curve's subsets are trained with the chosen settings
        subset = ablation_run / f"results/models/student/optical+selected/{lang}/pairs-16/seed-13"
        trained = json.loads((subset / "train_config.json").read_text())
        chosen_cfg = json.loads((chosen / "seed-13" / "train_config.json").read_text())
        assert trained["loss"] == chosen_cfg["loss"]
    table = (ablation_run / "results/tables/selection.csv").read_text().splitlines()
    assert table[0].startswith("method,language,student,seeds,p_at_1,mrr,chosen")
    assert len(table) == 1 + 2 * 2
    assert (
        "chosen per language on the dev bitext criterion"
        in (ablation_run / "results/tables/main.md").read_text()
    )
