"""The generic training loop: determinism, resume, signals, checkpoints, metrics."""

from __future__ import annotations

import json
import os
import random
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from optical_clir.errors import ConfigError
from optical_clir.train.loop import (
    GROUP_WINDOW,
    ResumableBatches,
    Trainer,
    TrainingArguments,
    TrainingInterrupted,
    latest_checkpoint,
    list_checkpoints,
    resolve_precision,
    set_seed,
)


class Regressor(nn.Module):
    """Tiny model with dropout (so the RNG state matters) returning its own loss."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return nn.functional.mse_loss(self.net(batch["x"]).squeeze(-1), batch["y"])


def make_data(n: int = 64) -> list[tuple[np.ndarray, float]]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0], dtype=np.float32)).astype(np.float32)
    return [(x[i], float(y[i])) for i in range(n)]


def collate(examples: list[tuple[np.ndarray, float]]) -> dict[str, torch.Tensor]:
    return {
        "x": torch.from_numpy(np.stack([e[0] for e in examples])),
        "y": torch.tensor([e[1] for e in examples]),
    }


DATA = make_data()


def make_args(out: Path, **kw: object) -> TrainingArguments:
    base = dict(
        output_dir=str(out),
        seed=7,
        learning_rate=1e-2,
        warmup_steps=3,
        max_steps=20,
        batch_size=8,
        checkpoint_every=5,
        keep_checkpoints=2,
        log_every=1,
        progress_bar=False,
    )
    base.update(kw)
    return TrainingArguments(**base)  # type: ignore[arg-type]


def run(out: Path, callbacks=(), eval_fn=None, **kw: object) -> tuple[Regressor, object]:
    torch.manual_seed(123)  # model init: differs from the training seed on purpose
    model = Regressor()
    trainer = Trainer(
        model, make_args(out, **kw), DATA, collate, eval_fn=eval_fn, callbacks=callbacks
    )
    return model, trainer.train()


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def read_metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def stop_at(step_to_stop: int):
    def callback(step: int, record: dict) -> None:
        if step == step_to_stop:
            os.kill(os.getpid(), signal.SIGTERM)

    return callback


def test_resume_is_bit_identical(tmp_path: Path) -> None:
    straight, result = run(tmp_path / "a")
    assert result.step == 20 and result.resumed_from is None
    # k steps, SIGTERM (finishes the step, checkpoints, exits 143), resume to N
    with pytest.raises(TrainingInterrupted) as exc:
        run(tmp_path / "b", callbacks=[stop_at(7)])
    assert exc.value.code == 143 and exc.value.step == 7
    assert latest_checkpoint(tmp_path / "b").name == "step-00000007"
    resumed, result_b = run(tmp_path / "b")
    assert result_b.resumed_from == 7 and result_b.step == 20
    assert same_weights(straight, resumed)
    steps = [r["step"] for r in read_metrics(tmp_path / "b") if "loss" in r]
    assert steps == list(range(1, 21))
    events = [r["event"] for r in read_metrics(tmp_path / "b") if "event" in r]
    assert events == ["start", "interrupted", "resume"]


def test_resume_from_periodic_checkpoint_after_crash(tmp_path: Path) -> None:
    """Simulate a crash after step 12: the latest checkpoint is step 10; metrics of 11-12
    are dropped and redone; the end result equals the straight run."""
    straight, _ = run(tmp_path / "a")

    def crash(step: int, record: dict) -> None:
        if step == 12:
            raise RuntimeError("node died")

    with pytest.raises(RuntimeError):
        run(tmp_path / "b", callbacks=[crash])
    assert [s for s, _ in list_checkpoints(tmp_path / "b")] == [5, 10]
    # a checkpoint half-written by a kill is ignored and cleaned up
    stale = tmp_path / "b" / "checkpoints" / ".tmp-step-00000015-999"
    stale.mkdir()
    resumed, result = run(tmp_path / "b")
    assert result.resumed_from == 10 and not stale.exists()
    assert same_weights(straight, resumed)
    steps = [r["step"] for r in read_metrics(tmp_path / "b") if "loss" in r]
    assert steps == list(range(1, 21))
    # keep_checkpoints=2: only the last two remain
    assert [s for s, _ in list_checkpoints(tmp_path / "b")] == [15, 20]


def test_finished_run_is_a_no_op(tmp_path: Path) -> None:
    first, _ = run(tmp_path / "a", max_steps=5)
    again, result = run(tmp_path / "a", max_steps=5)
    assert result.resumed_from == 5 and result.step == 5 and same_weights(first, again)


def test_sigint_code_and_contents(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when started in the background (nohup &)

    def interrupt(step: int, record: dict) -> None:
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted) as exc:
        run(tmp_path, callbacks=[interrupt])
    assert exc.value.code == 130
    ckpt = latest_checkpoint(tmp_path)
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "model.pt",
        "rng.pt",
        "trainer_state.json",
        "training.pt",
    ]
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["step"] == 3 and state["data"]["index"] == 3 and state["data"]["epoch"] == 0
    rng = torch.load(ckpt / "rng.pt", weights_only=True)
    assert {"python", "numpy", "torch"} <= set(rng)
    assert signal.getsignal(signal.SIGINT) is before  # restored


def test_metrics_and_eval(tmp_path: Path) -> None:
    plain, _ = run(tmp_path / "a", max_steps=10)
    calls = []

    def eval_fn(model: nn.Module) -> dict[str, float]:
        calls.append(model.training)
        torch.rand(5)  # consuming RNG here must not change training
        return {"dev_loss": 1.5}

    with_eval, _ = run(tmp_path / "b", max_steps=10, eval_every=4, eval_fn=eval_fn)
    assert calls == [False, False]
    assert same_weights(plain, with_eval)
    records = read_metrics(tmp_path / "b")
    evals = [r for r in records if r.get("event") == "eval"]
    assert [(r["step"], r["dev_loss"]) for r in evals] == [(4, 1.5), (8, 1.5)]
    train = [r for r in records if "loss" in r]
    assert {"step", "loss", "lr", "examples_per_s", "epoch"} <= set(train[0])
    assert train[0]["lr"] == pytest.approx(1e-2 * 2 / 3)  # warmup: step 2 of 3 next
    assert all(r["examples_per_s"] > 0 for r in train)


def test_gradient_accumulation_matches_big_batch(tmp_path: Path) -> None:
    class Linear(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 1)

        def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return nn.functional.mse_loss(self.lin(batch["x"]).squeeze(-1), batch["y"])

    models = []
    for name, bs, acc in (("big", 8, 1), ("acc", 4, 2)):
        torch.manual_seed(0)
        m = Linear()
        args = make_args(
            tmp_path / name, batch_size=bs, gradient_accumulation_steps=acc, max_steps=6
        )
        Trainer(m, args, DATA, collate).train()
        models.append(m)
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_epochs_and_data_order() -> None:
    b = ResumableBatches(10, 3, seed=1)
    assert b.batches_per_epoch == 3
    epoch0 = [b.next_batch() for _ in range(3)]
    flat = [i for batch in epoch0 for i in batch]
    assert len(set(flat)) == 9
    state = b.state_dict()
    nxt = b.next_batch()
    assert b.epoch == 1
    c = ResumableBatches(10, 3, seed=1)
    c.load_state_dict(state)
    assert c.next_batch() == nxt
    with pytest.raises(ConfigError, match="batch_size"):
        ResumableBatches(10, 4, seed=1).load_state_dict(state)
    # ranks: disjoint shards of equal length
    shards = [ResumableBatches(11, 5, seed=2, rank=r, world_size=2) for r in range(2)]
    got = [s.next_batch() for s in shards]
    assert not set(got[0]) & set(got[1]) and len(got[0]) == len(got[1]) == 5


def _epoch(batches: ResumableBatches) -> list[list[int]]:
    return [batches.next_batch() for _ in range(batches.batches_per_epoch)]


def _padded(batches: list[list[int]], lengths: np.ndarray) -> int:
    """Token slots of the batches padded to their longest example."""
    return sum(len(b) * int(lengths[b].max()) for b in batches)


def test_group_by_length_batches_cover_each_epoch_and_group_similar_lengths() -> None:
    """Each epoch's length-grouped batches hold every index once (with drop_last=False a
    short tail batch comes last), and each batch is a run of neighbours in length within its
    window of GROUP_WINDOW batches of the epoch's shuffled order, so padding shrinks."""
    n, size = 200, 4
    lengths = np.random.default_rng(3).permutation(n) + 1  # distinct: one way to sort
    grouped = ResumableBatches(n, size, seed=5, drop_last=False, lengths=lengths)
    plain = ResumableBatches(n, size, seed=5, drop_last=False)
    window = size * GROUP_WINDOW
    epochs = []
    for _ in range(2):
        epoch, shuffled = _epoch(grouped), [i for b in _epoch(plain) for i in b]
        assert sorted(i for b in epoch for i in b) == list(range(n))
        assert [len(b) for b in epoch] == [size] * (n // size)
        expected = set()
        for start in range(0, n, window):  # the same windows of the same permutation
            part = sorted(shuffled[start : start + window], key=lambda i: -lengths[i])
            expected |= {frozenset(part[i : i + size]) for i in range(0, len(part), size)}
        assert {frozenset(b) for b in epoch} == expected
        ungrouped = [shuffled[i : i + size] for i in range(0, n, size)]
        assert _padded(epoch, lengths) < 0.8 * _padded(ungrouped, lengths)
        epochs.append(epoch)
    assert epochs[0] != epochs[1]  # a new order each epoch
    odd = ResumableBatches(n + 2, size, seed=5, drop_last=False, lengths=[*lengths, 7, 9])
    tail = _epoch(odd)
    assert sorted(i for b in tail for i in b) == list(range(n + 2)) and len(tail[-1]) == 2


def test_group_by_length_order_resumes_from_the_state_dict() -> None:
    """Interrupted anywhere, even across an epoch boundary, a new iterator loaded with the
    state gives the batches the uninterrupted one gives; the grouped order is a function of
    (seed, epoch) only."""
    lengths = np.random.default_rng(0).integers(1, 40, size=150)
    straight = ResumableBatches(150, 8, seed=2, lengths=lengths)
    reference = [straight.next_batch() for _ in range(3 * straight.batches_per_epoch)]
    for cut in (1, 17, 18, 30):
        first = ResumableBatches(150, 8, seed=2, lengths=lengths)
        taken = [first.next_batch() for _ in range(cut)]
        resumed = ResumableBatches(150, 8, seed=2, lengths=lengths)
        resumed.load_state_dict(first.state_dict())
        rest = [resumed.next_batch() for _ in range(len(reference) - cut)]
        assert taken + rest == reference, cut
    assert straight.batches_per_epoch == 18  # 150 // 8; drop_last leaves the tail out


def test_group_by_length_without_lengths_is_a_config_error(tmp_path: Path) -> None:
    """A task that gives the Trainer no example lengths cannot group by length: the error
    names train.group_by_length before any step; with lengths the run trains."""
    args = make_args(tmp_path / "none", group_by_length=True, max_steps=2)
    with pytest.raises(ConfigError) as info:
        Trainer(Regressor(), args, DATA, collate).train()
    assert info.value.key == "train.group_by_length"
    assert not list_checkpoints(tmp_path / "none")
    lengths = [int(abs(x[0]) * 10) for x, _ in DATA]
    args = make_args(tmp_path / "lengths", group_by_length=True, max_steps=2)
    assert Trainer(Regressor(), args, DATA, collate, lengths=lengths).train().step == 2


def test_num_epochs(tmp_path: Path) -> None:
    _, result = run(tmp_path, max_steps=None, num_epochs=2, gradient_accumulation_steps=2)
    assert result.total_steps == 8  # 64 / 8 = 8 batches per epoch, x2 epochs, /2 accumulation


def test_arguments_validation() -> None:
    with pytest.raises(ConfigError, match="max_steps"):
        TrainingArguments(output_dir="x")
    with pytest.raises(ConfigError, match="mixed_precision"):
        TrainingArguments(output_dir="x", max_steps=1, mixed_precision="fp8")
    with pytest.raises(ConfigError, match=r"train\.lr"):
        TrainingArguments.from_dict({"output_dir": "x", "max_steps": 1, "lr": 1.0})
    assert resolve_precision("auto", torch.device("cpu")) == "no"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
    assert resolve_precision("fp16", torch.device("cpu")) == "no"


def test_every_checkpoint_file_loads_with_weights_only(tmp_path: Path) -> None:
    """Checkpoints hold tensors and plain values only: ``weights_only=True`` (no pickled
    objects, no code run on load) reads every part, and the RNG states round-trip."""
    import random

    from optical_clir.train.loop import rng_state, set_rng_state

    run(tmp_path, max_steps=5)
    ckpt = latest_checkpoint(tmp_path)
    for name in ("model.pt", "training.pt", "rng.pt"):
        torch.load(ckpt / name, weights_only=True)
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    state = torch.load(ckpt / "rng.pt", weights_only=True)  # any saved state, then ours
    set_rng_state(state)
    saved = rng_state()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    set_rng_state(saved)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected


# ----------------------------------------------------------------------------- fingerprints


def test_changed_setting_starts_over_instead_of_resuming_a_finished_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A finished run rerun with another learning rate used to "resume" at step N of N and
    train nothing; now its checkpoints are set aside and it trains from step 0."""
    first, _ = run(tmp_path / "a", max_steps=5)
    with caplog.at_level("WARNING", logger="optical_clir.train.loop"):
        again, result = run(tmp_path / "a", max_steps=5, learning_rate=2e-2)
    assert result.resumed_from is None and result.step == 5
    assert not same_weights(first, again)
    fresh, _ = run(tmp_path / "b", max_steps=5, learning_rate=2e-2)
    assert same_weights(fresh, again)  # exactly a run from scratch with the new setting
    assert "learning_rate: 0.01 -> 0.02" in caplog.text and "starts over" in caplog.text
    (stale,) = (tmp_path / "a").glob("stale-*")
    assert sorted(p.name for p in (stale / "checkpoints").iterdir()) == ["step-00000005"]
    old_events = [json.loads(x).get("event") for x in (stale / "metrics.jsonl").open()]
    assert old_events[0] == "start"
    assert [r.get("event") for r in read_metrics(tmp_path / "a") if "event" in r] == ["start"]


def test_changed_task_fingerprint_starts_over_and_operational_settings_resume(
    tmp_path: Path,
) -> None:
    def trainer(out: Path, task: dict, **kw: object) -> tuple[Regressor, object]:
        torch.manual_seed(123)
        model = Regressor()
        args = make_args(out, max_steps=5, **kw)
        return model, Trainer(model, args, DATA, collate, fingerprint=task).train()

    out = tmp_path / "run"
    trainer(out, {"data_sha256": "aaa"})
    # where and how often training reports or saves does not change what it computes
    _, result = trainer(out, {"data_sha256": "aaa"}, log_every=2, checkpoint_every=1)
    assert result.resumed_from == 5
    _, result = trainer(out, {"data_sha256": "bbb"})
    assert result.resumed_from is None and result.step == 5
    assert len(list(out.glob("stale-*"))) == 1
    state = json.loads((latest_checkpoint(out) / "trainer_state.json").read_text())
    assert state["fingerprint_inputs"]["task"] == {"data_sha256": "bbb"}


def test_checkpoint_without_a_fingerprint_is_not_resumed(tmp_path: Path) -> None:
    run(tmp_path, max_steps=5)
    state_file = latest_checkpoint(tmp_path) / "trainer_state.json"
    state = json.loads(state_file.read_text())
    del state["fingerprint"], state["fingerprint_inputs"]  # what an earlier version wrote
    state_file.write_text(json.dumps(state))
    (tmp_path / "fingerprint.json").unlink()
    _, result = run(tmp_path, max_steps=5)
    assert result.resumed_from is None
    (stale,) = tmp_path.glob("stale-*")
    assert (stale / "checkpoints" / "step-00000005" / "model.pt").is_file()


def test_progress_bar_shows_loss_and_throughput(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``progress_bar: true``: a tqdm bar on stderr whose postfix is the last logged loss and
    examples per second (README: "a progress bar with loss and throughput"); off, no bar."""
    run(tmp_path / "bar", progress_bar=True, max_steps=10, log_every=5)
    err = capsys.readouterr().err
    last = [r for r in read_metrics(tmp_path / "bar") if "loss" in r][-1]
    assert last["step"] == 10
    assert "train" in err and "10/10" in err
    assert f"loss={last['loss']:.4f}" in err
    assert f"ex_s={last['examples_per_s']:.1f}" in err
    run(tmp_path / "quiet", progress_bar=False, max_steps=10, log_every=5)
    assert "ex_s=" not in capsys.readouterr().err


@pytest.fixture
def global_torch_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Put back what ``set_seed`` changes for the whole process: torch's deterministic
    flags, cudnn.benchmark, CUBLAS_WORKSPACE_CONFIG and the RNGs of python, numpy, torch."""
    flags = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    benchmark = torch.backends.cudnn.benchmark
    rngs = random.getstate(), np.random.get_state(), torch.get_rng_state()
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "recorded")  # restored after the test
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    yield
    torch.use_deterministic_algorithms(flags[0], warn_only=flags[1])
    torch.backends.cudnn.benchmark = benchmark
    random.setstate(rngs[0])
    np.random.set_state(rngs[1])
    torch.set_rng_state(rngs[2])


def test_set_seed_requests_deterministic_kernels_warn_only(global_torch_state: None) -> None:
    """``set_seed(..., deterministic=True)`` turns torch's deterministic algorithms on in
    warn_only mode (an op without a deterministic kernel warns instead of failing), on every
    device, not only CUDA, and sets what CUDA needs for it; ``deterministic=False`` leaves the
    flags alone."""
    torch.use_deterministic_algorithms(False)
    set_seed(0, deterministic=False)
    assert not torch.are_deterministic_algorithms_enabled()
    set_seed(0, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"  # cuBLAS's deterministic workspace
    assert torch.backends.cudnn.benchmark is False


def test_training_requests_deterministic_kernels_unless_told_not_to(
    tmp_path: Path, global_torch_state: None
) -> None:
    """Every Trainer run calls set_seed with ``train.deterministic`` (default true), so the
    flags are on after a run on CPU as on a GPU (README: deterministic kernels, warn_only)."""
    torch.use_deterministic_algorithms(False)
    run(tmp_path / "default", max_steps=2)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(False)
    run(tmp_path / "off", max_steps=2, deterministic=False)
    assert not torch.are_deterministic_algorithms_enabled()
