"""Teacher training end to end on a tiny model: loss decreases, save/reload is exact."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from optical_clir.models.encoder import TokenEncoder
from optical_clir.models.scoring import get_scorer
from optical_clir.models.tiny import save_tiny_backbone, write_toy_triples
from optical_clir.train.teacher import train_teacher

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("teacher")
    return save_tiny_backbone(root / "bb", seed=0), write_toy_triples(root / "t.tsv", 400)


@pytest.mark.parametrize(("scoring", "steps"), [("maxsim", 30), ("dot", 4)])
def test_train_teacher_learns_and_saves(
    setup: tuple[Path, Path], tmp_path: Path, scoring: str, steps: int
) -> None:
    """maxsim (the default) is trained long enough to learn; dot only runs a few steps."""
    backbone, triples = setup
    dev = write_toy_triples(tmp_path / "dev.tsv", 16, seed=99)
    model_cfg = {
        "backbone": str(backbone),
        "dim": 16,
        "scoring": scoring,
        "query_max_length": 12,
        "doc_max_length": 16,
    }
    train_cfg = {
        "seed": 3,
        "learning_rate": 2e-2,
        "warmup_steps": 3,
        "max_steps": steps,
        "batch_size": 8,
        "checkpoint_every": 15,
        "log_every": 2,
        "eval_every": 15,
        "progress_bar": False,
        "dev_triples": str(dev),
    }
    out = tmp_path / "teacher"
    model_dir = train_teacher(triples, out, model_cfg, train_cfg)
    assert model_dir == out / "model"

    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == steps // 2
    dev_losses = [r["dev_loss"] for r in records if r.get("event") == "eval"]
    assert len(dev_losses) == steps // 15

    card = (model_dir / "README.md").read_text()
    for needle in ("number of triples: 400", f"optimizer steps: {steps}", "seed: 3"):
        assert needle in card
    cfg = json.loads((out / "train_config.json").read_text())
    assert cfg["task"]["temperature"] == (1.0 if scoring == "maxsim" else 0.05)
    assert f"config hash: {cfg['config_hash']}" in card

    # the saved model reproduces its embeddings exactly when loaded again
    trained = TokenEncoder.from_pretrained(model_dir, device="cpu")
    reloaded = TokenEncoder.from_pretrained(model_dir, device="cpu")
    texts = ["where does the cat sleep", "the dog runs in the field"]
    with torch.no_grad():
        a, _ = trained.encode(texts)
        b, _ = reloaded.encode(texts)
    assert torch.equal(a, b)
    if scoring != "maxsim":
        return

    assert sum(losses[-3:]) / 3 < 0.8 * losses[0], losses
    assert dev_losses[-1] < 0.8 * math.log(16), dev_losses  # 16 candidates: chance level
    # the trained model ranks the toy task: positive above negative for most dev triples
    rows = [line.split("\t") for line in dev.read_text().splitlines()]
    with torch.no_grad():
        q, qm = trained.encode_queries([r[0] for r in rows])
        p, pm = trained.encode_documents([r[1] for r in rows])
        n, nm = trained.encode_documents([r[2] for r in rows])
    paired = get_scorer("maxsim", paired=True)
    accuracy = (paired(q, qm, p, pm) > paired(q, qm, n, nm)).float().mean().item()
    assert accuracy >= 0.75


def test_teacher_starts_over_on_other_triples(setup: tuple[Path, Path], tmp_path: Path) -> None:
    """Other triples (the same count) or another model setting: no resume of the old run."""
    backbone, _ = setup
    triples = write_toy_triples(tmp_path / "t.tsv", 32, seed=1)
    model_cfg = {"backbone": str(backbone), "dim": 8, "query_max_length": 8, "doc_max_length": 10}
    train_cfg = {"max_steps": 2, "batch_size": 8, "progress_bar": False, "checkpoint_every": 1}
    out = tmp_path / "teacher"

    def events() -> list[str]:
        return [json.loads(x).get("event") for x in (out / "metrics.jsonl").open()]

    train_teacher(triples, out, model_cfg, train_cfg)
    train_teacher(triples, out, model_cfg, train_cfg)
    assert [e for e in events() if e] == ["start", "resume"]
    write_toy_triples(triples, 32, seed=2)
    train_teacher(triples, out, model_cfg, train_cfg)
    assert [e for e in events() if e] == ["start"] and len(list(out.glob("stale-*"))) == 1
    train_teacher(triples, out, {**model_cfg, "dim": 4}, train_cfg)
    assert [e for e in events() if e] == ["start"] and len(list(out.glob("stale-*"))) == 2
