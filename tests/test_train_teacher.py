"""Teacher training end to end on a tiny model: loss decreases, the saved model is the trained
one, and a SIGTERM'd run resumes to the same weights as an uninterrupted one."""

from __future__ import annotations

import json
import math
import os
import signal
import threading
from pathlib import Path

import pytest
import torch

from optical_clir.models.encoder import TokenEncoder
from optical_clir.models.scoring import get_scorer
from optical_clir.models.tiny import save_tiny_backbone, write_toy_triples
from optical_clir.train import teacher
from optical_clir.train.loop import list_checkpoints
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
    torch.manual_seed(train_cfg["seed"])  # as train_teacher seeds the projection
    trained = TokenEncoder(model_cfg)
    model_dir = train_teacher(triples, out, model_cfg, train_cfg, encoder=trained)
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

    # the saved model is the trained one: same weights, same embeddings as the model in memory
    reloaded = TokenEncoder.from_pretrained(model_dir, device="cpu")
    assert not reloaded.training and not trained.training
    a_state, b_state = trained.state_dict(), reloaded.state_dict()
    assert a_state.keys() == b_state.keys()
    assert all(torch.equal(a_state[k], b_state[k]) for k in a_state)
    texts = ["where does the cat sleep", "the dog runs in the field"]
    with torch.no_grad():
        a, a_mask = trained.encode_queries(texts)
        b, b_mask = reloaded.encode_queries(texts)
        assert torch.equal(a, b)
        assert (a_mask is None) == (b_mask is None) and (
            a_mask is None or torch.equal(a_mask, b_mask)
        )
        assert torch.equal(trained.encode_documents(texts)[0], reloaded.encode_documents(texts)[0])
    # and training changed it (the comparison is not between two untrained copies)
    torch.manual_seed(train_cfg["seed"])
    untrained = TokenEncoder(model_cfg)
    assert not torch.equal(untrained.projection.weight, reloaded.projection.weight)
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


class _StopAt:
    """A Trainer callback that sends this process SIGTERM after a given step (preemption)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def __call__(self, step: int, record: dict) -> None:
        if step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_train_teacher_resumes_to_the_same_weights(
    setup: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("the Trainer handles SIGTERM only in the main thread")
    backbone, triples = setup
    dev = write_toy_triples(tmp_path / "dev.tsv", 8, seed=98)
    model_cfg = {"backbone": str(backbone), "dim": 16, "query_max_length": 12,
                 "doc_max_length": 16}  # fmt: skip
    train_cfg = {"seed": 4, "learning_rate": 2e-2, "warmup_steps": 2, "max_steps": 8,
                 "batch_size": 8, "checkpoint_every": 100, "log_every": 1, "eval_every": 4,
                 "progress_bar": False, "dev_triples": str(dev)}  # fmt: skip
    straight = train_teacher(triples, tmp_path / "a", model_cfg, train_cfg)

    real_trainer = teacher.Trainer

    def preempted_trainer(*a: object, **kw: object) -> object:
        return real_trainer(*a, callbacks=[_StopAt(3)], **kw)

    out = tmp_path / "b"
    with monkeypatch.context() as mp:
        mp.setattr(teacher, "Trainer", preempted_trainer)
        with pytest.raises(SystemExit) as info:
            train_teacher(triples, out, model_cfg, train_cfg)
    assert info.value.code == 143
    assert not (out / "model").exists() and [s for s, _ in list_checkpoints(out)] == [3]

    resumed = train_teacher(triples, out, model_cfg, train_cfg)
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r.get("event") == "resume"] == [3]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 9))
    # bit-identical on CPU: weights, logged losses and dev losses
    a = TokenEncoder.from_pretrained(straight, device="cpu").state_dict()
    b = TokenEncoder.from_pretrained(resumed, device="cpu").state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    first = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]

    def losses(recs: list[dict]) -> dict:
        return {(r["step"], r.get("event")): r.get("loss", r.get("dev_loss")) for r in recs
                if "loss" in r or "dev_loss" in r}  # fmt: skip

    assert losses(records) == losses(first)
    torch.manual_seed(train_cfg["seed"])
    untrained = TokenEncoder(model_cfg).state_dict()
    assert not torch.equal(a["projection.weight"], untrained["projection.weight"])  # it trained
