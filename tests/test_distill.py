"""Student distillation (train/distill.py): bitext reader, the loss module, end-to-end runs."""

from __future__ import annotations

import gzip
import json
import math
import os
import random
import signal
import threading
from pathlib import Path

import pytest
import torch

from optical_clir.errors import ConfigError, InputError
from optical_clir.losses.optimal_transport import pairwise_cost
from optical_clir.models.card import read_front_matter
from optical_clir.models.encoder import TokenEncoder
from optical_clir.models.tiny import (
    ACTIONS,
    ANIMALS,
    PLACES,
    TOY_WORDS,
    save_tiny_encoder,
)
from optical_clir.train import distill
from optical_clir.train.distill import (
    DistillationModule,
    TeacherTargets,
    collate_pairs,
    distill_student,
    mean_dev_loss,
    read_bitext,
)
from optical_clir.train.loop import list_checkpoints

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ENGLISH = [
    "the cat runs in the river",
    "a dog sleeps on the farm",
    "the big bird flies over the hill",
    "where does the fox hide",
]


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny saved TokenEncoder (2-layer BERT, 16-d projection) playing the teacher."""
    root = tmp_path_factory.mktemp("distill_teacher")
    return save_tiny_encoder(root, seed=0, dim=16, query_max_length=16, doc_max_length=16)


def _write_tsv(path: Path, pairs: list[tuple[str, str]]) -> Path:
    path.write_text("".join(f"{s}\t{e}\n" for s, e in pairs), encoding="utf-8")
    return path


def _toy_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """A learnable toy bitext: the 'source' sentence is the English one with every word
    replaced by a fixed other word of the toy vocabulary (a derangement, the same for all
    pairs), so the student can learn the word mapping."""
    vocab = list(TOY_WORDS)
    shifted = vocab[7:] + vocab[:7]  # every word maps to a different word
    mapping = dict(zip(vocab, shifted, strict=True))
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        en = (
            f"the {rng.choice(ANIMALS)} {rng.choice(ACTIONS)} "
            f"in the {rng.choice(['big', 'small', 'old'])} {rng.choice(PLACES)}"
        )
        pairs.append((" ".join(mapping[w] for w in en.split()), en))
    return pairs


def _encoders(teacher_dir: Path) -> tuple[TokenEncoder, TokenEncoder]:
    """(student, teacher): two independent copies of the saved teacher, on CPU."""
    return (
        TokenEncoder.from_pretrained(teacher_dir, device="cpu"),
        TokenEncoder.from_pretrained(teacher_dir, device="cpu"),
    )


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------ read_bitext


def test_read_bitext_good_file_and_max_pairs(tmp_path: Path) -> None:
    pairs = [("paka anakimbia", "the cat runs"), ("mbwa analala", "the dog sleeps")]
    path = _write_tsv(tmp_path / "b.tsv", [*pairs, ("x y", "z")])
    assert read_bitext(path) == [*pairs, ("x y", "z")]
    assert read_bitext(path, max_pairs=2) == pairs
    gz = tmp_path / "b.tsv.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert read_bitext(gz) == [*pairs, ("x y", "z")]
    assert collate_pairs(pairs) == {
        "source": ["paka anakimbia", "mbwa analala"],
        "english": ["the cat runs", "the dog sleeps"],
    }


@pytest.mark.parametrize(
    "bad_line",
    ["no tab on this line", "source only\t", "\tenglish only", "  \t  ", "a\tb\tc"],
)
def test_read_bitext_bad_line_reports_its_number(tmp_path: Path, bad_line: str) -> None:
    path = tmp_path / "b.tsv"
    path.write_text(f"a b\tc d\ne f\tg h\n{bad_line}\ni j\tk l\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        read_bitext(path)
    assert info.value.line == 3
    assert info.value.path == str(path)
    assert f"{path}:3" in str(info.value)


def test_read_bitext_empty_or_missing_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    with pytest.raises(InputError, match="no sentence pairs") as info:
        read_bitext(empty)
    assert info.value.line is None
    with pytest.raises(InputError, match="does not exist"):
        read_bitext(tmp_path / "missing.tsv")


# ------------------------------------------------------------------------ DistillationModule


@pytest.mark.parametrize("method", ["optical", "kd_mse"])
def test_loss_and_gradients_reach_only_the_student(teacher_dir: Path, method: str) -> None:
    student, teacher = _encoders(teacher_dir)
    module = DistillationModule(student, teacher, method, {"epsilon": 0.1})
    module.train()
    assert teacher.training is False  # train() on the module does not reach the teacher
    assert all(not p.requires_grad for p in teacher.parameters())

    # the module's parameters (what the optimizer and checkpoints see) are the student's only
    teacher_ids = {id(p) for p in teacher.parameters()}
    params = list(module.parameters())
    assert {id(p) for p in params} == {id(p) for p in student.parameters()}
    assert not teacher_ids & {id(p) for p in params}
    keys = list(module.state_dict())
    assert keys and all(k.startswith("student.") for k in keys)
    assert not any("teacher" in k for k in keys)
    assert len(keys) == len(student.state_dict())

    batch = collate_pairs(_toy_pairs(4, seed=1))
    loss = module(batch)
    assert loss.dim() == 0 and loss.requires_grad
    assert math.isfinite(loss.detach().item()) and loss.detach().item() > 0
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert student.projection is not None and student.projection.weight.grad is not None
    assert float(student.projection.weight.grad.abs().sum()) > 0
    embed_grad = student.backbone.embeddings.word_embeddings.weight.grad
    assert embed_grad is not None and float(embed_grad.abs().sum()) > 0

    before_teacher = {k: v.clone() for k, v in teacher.state_dict().items()}
    before_student = {k: v.clone() for k, v in student.state_dict().items()}
    optimizer = torch.optim.SGD(module.parameters(), lr=0.5)
    optimizer.step()
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before_teacher[k]), k
    changed = [k for k, v in student.state_dict().items() if not torch.equal(v, before_student[k])]
    assert "projection.weight" in changed


@pytest.mark.parametrize("method", ["optical", "kd_mse"])
def test_cached_teacher_targets_equal_recomputed_ones_and_run_the_teacher_once(
    teacher_dir: Path, method: str
) -> None:
    _, teacher = _encoders(teacher_dir)
    calls = []
    encode = teacher.encode_batch if method == "optical" else teacher.encode_pooled

    def counting(batch, max_length=None):
        calls.append(batch)
        return encode(batch) if method == "optical" else encode(batch, max_length)

    setattr(teacher, "encode_batch" if method == "optical" else "encode_pooled", counting)
    cached = TeacherTargets(teacher, method == "optical", 32, enabled=True)
    fresh = TeacherTargets(teacher, method == "optical", 32, enabled=False)
    batches = [ENGLISH[:3], ENGLISH[1:] + ENGLISH[:1], [ENGLISH[3], ENGLISH[3]]]
    for batch in batches:  # first batch fills the cache, the later ones mix old and new
        got, got_mask, got_ids, got_share = cached(batch)
        want, want_mask, want_ids, want_share = fresh(batch)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        if method == "optical":
            assert torch.equal(got_mask, want_mask)
            assert torch.equal(got_ids, want_ids * want_mask)
            assert torch.equal(got_share, want_share)
        else:
            assert got_mask is None and want_mask is None
    cached_calls = calls[0::2][:2]  # the cached side's teacher calls happen before fresh's
    sizes = [len(c["input_ids"]) if method == "optical" else len(set(c)) for c in cached_calls]
    assert sorted(sizes) == [1, 3]  # 3 sentences, then the 4th
    assert sorted(cached.cache) == sorted(ENGLISH)

    student, _ = _encoders(teacher_dir)
    pairs = collate_pairs([(e, e) for e in ENGLISH])
    with torch.no_grad():
        losses = [
            float(
                DistillationModule(
                    student, teacher, method, {"epsilon": 0.1}, cache_teacher=c
                ).eval()(pairs)
            )
            for c in (True, False)
        ]
    assert losses[0] == pytest.approx(losses[1], abs=1e-6)


def test_unknown_method_is_a_config_error(teacher_dir: Path) -> None:
    student, teacher = _encoders(teacher_dir)
    with pytest.raises(ConfigError) as info:
        DistillationModule(student, teacher, "kd-mse", {})
    assert info.value.key == "distill.method"


def test_kd_mse_is_zero_for_a_copy_of_the_teacher_on_identical_sentences(
    teacher_dir: Path,
) -> None:
    student, teacher = _encoders(teacher_dir)
    pairs = [(e, e) for e in ENGLISH]
    for include_english in (True, False):
        module = DistillationModule(student, teacher, "kd_mse", {}, include_english).eval()
        with torch.no_grad():
            assert float(module(collate_pairs(pairs))) < 1e-10
            shuffled = list(zip(ENGLISH[1:] + ENGLISH[:1], ENGLISH, strict=True))
            assert float(module(collate_pairs(shuffled))) > 1e-4


def test_optical_loss_of_a_teacher_copy_is_the_ot_cost_of_identical_token_sets(
    teacher_dir: Path,
) -> None:
    """Identical sentences through a copy of the teacher: the cost has a zero diagonal and
    the plan, solved at a small relative epsilon, is close to the identity; the loss equals
    POT's entropic transport cost of the same token sets."""
    import ot

    student, teacher = _encoders(teacher_dir)
    pairs = [(e, e) for e in ENGLISH]
    shuffled = list(zip(ENGLISH[1:] + ENGLISH[:1], ENGLISH, strict=True))
    loss_cfg = {"epsilon": 0.1, "epsilon_mode": "relative", "tol": 1e-9, "max_iter": 20000}
    module = DistillationModule(student, teacher, "optical", loss_cfg).eval()
    with torch.no_grad():
        result = module.plan_result(collate_pairs(pairs))
        loss_shuffled = float(module(collate_pairs(shuffled)))
        tokens, mask = teacher.encode_tokens(ENGLISH, student.config.query_max_length)
    expected = []
    for k in range(len(ENGLISH)):
        t = tokens[k][mask[k]].double()
        c = pairwise_cost(t[None], t[None])[0]
        n = c.shape[0]
        eps = 0.1 * float(c.flatten().std())
        w = ot.unif(n)
        plan = ot.sinkhorn(
            w, w, c.numpy(), eps, method="sinkhorn_log", numItermax=20000, stopThr=1e-9
        )
        expected.append(float((torch.from_numpy(plan) * c).sum()))
        assert float(torch.diagonal(result.plan[k][:n, :n]).sum()) > 0.9
    assert float(result.loss) == pytest.approx(sum(expected) / len(expected), rel=1e-4, abs=1e-7)
    assert 0 <= float(result.loss) < 0.05
    assert loss_shuffled > 10 * float(result.loss)
    assert float(result.diagnostics["row_max_ratio"]) > 5


def test_special_tokens_without_mass_and_idf_marginals(teacher_dir: Path) -> None:
    student, teacher = _encoders(teacher_dir)
    pairs = _toy_pairs(4, seed=1)
    module = DistillationModule(
        student, teacher, "optical", {"special_tokens": "no_mass", "marginals": "idf"},
        idf_sentences=([s for s, _ in pairs], [e for _, e in pairs]),
    ).eval()  # fmt: skip
    with torch.no_grad():
        result = module.plan_result(collate_pairs(pairs))
    batch = student.tokenize([s for s, _ in pairs], module.max_length)
    special = torch.isin(batch["input_ids"], torch.tensor(student.tokenizer.all_special_ids))
    rows = result.plan.sum(-1)
    assert torch.all(rows[special] == 0)  # [CLS], [SEP], padding: no mass
    assert torch.all(rows[batch["attention_mask"].bool() & ~special] > 0)
    # idf: a token of every sentence carries less mass than one of a single sentence
    rows_ids = [set(r) for r in batch["input_ids"].tolist()]
    ids = batch["input_ids"][0].tolist()
    everywhere = [
        i for i, tok in enumerate(ids) if all(tok in r for r in rows_ids) and not special[0, i]
    ]
    once = [i for i, tok in enumerate(ids) if sum(tok in r for r in rows_ids) == 1]
    assert everywhere and once
    assert max(float(rows[0, i]) for i in everywhere) < min(float(rows[0, i]) for i in once)
    with pytest.raises(ConfigError, match="special_tokens"):
        DistillationModule(student, teacher, "optical", {"special_tokens": "drop"})


def test_mean_dev_loss_is_the_size_weighted_mean_of_batch_losses(teacher_dir: Path) -> None:
    student, teacher = _encoders(teacher_dir)
    module = DistillationModule(student, teacher, "kd_mse", {}).eval()
    dev = _toy_pairs(5, seed=2)
    with torch.no_grad():
        per_pair = [float(module(collate_pairs([p]))) for p in dev]
        got = mean_dev_loss(module, dev, batch_size=2)
        first = float(module(collate_pairs(dev[:2])))
    # kd_mse's per-batch loss is a mean over elements, so batches of 2, 2 and 1 pairs
    assert first == pytest.approx(sum(per_pair[:2]) / 2, rel=1e-5)
    assert got == pytest.approx(sum(per_pair) / 5, rel=1e-5)
    assert mean_dev_loss(module, [], batch_size=2) == 0.0


def _plan_diagnostics(**values: float) -> dict[str, float]:
    """One batch's plan diagnostics: a converged, peaked plan unless ``values`` say otherwise."""
    good = {"row_max_ratio": 6.0, "normalized_entropy": 0.2, "marginal_error": 1e-5,
            "cost_mean": 1.0, "cost_sd": 0.3, "epsilon": 0.05, "iterations": 130}  # fmt: skip
    return {**good, **values}


def _plan_warnings(caplog: pytest.LogCaptureFixture) -> tuple[list[str], list[str]]:
    messages = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    return (
        [m for m in messages if m.startswith("Sinkhorn did not converge")],
        [m for m in messages if m.startswith("OT plan near uniform")],
    )


def test_training_metrics_warn_on_unconverged_or_near_uniform_plans(
    teacher_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The README's two plan warnings, at their thresholds: a row-marginal error above
    MARGINAL_TOLERANCE (the window's worst batch) and a mean row max ratio below
    NEAR_UNIFORM_RATIO; values on the thresholds warn of nothing."""
    module = DistillationModule(*_encoders(teacher_dir), "optical", {})
    caplog.set_level("WARNING", logger=distill.__name__)

    module._window = [_plan_diagnostics(marginal_error=distill.MARGINAL_TOLERANCE,
                                        row_max_ratio=distill.NEAR_UNIFORM_RATIO)]  # fmt: skip
    module.training_metrics()
    module._window = [_plan_diagnostics(), _plan_diagnostics(marginal_error=5e-4)]
    metrics = module.training_metrics()
    assert _plan_warnings(caplog) == ([], [])
    assert metrics["ot_marginal_error"] == 5e-4  # the worst batch, not the mean
    assert module.training_metrics() == {}  # the window was emptied

    module._window = [_plan_diagnostics(), _plan_diagnostics(marginal_error=5e-3, iterations=20)]
    module.training_metrics()
    unconverged, uniform = _plan_warnings(caplog)
    assert len(unconverged) == 1 and not uniform
    assert "5.00e-03 after 75 iterations" in unconverged[0]  # mean of 130 and 20 iterations
    assert "distill.loss.max_iter" in unconverged[0]

    caplog.clear()
    module._window = [_plan_diagnostics(row_max_ratio=1.1), _plan_diagnostics(row_max_ratio=1.3)]
    module.training_metrics()
    unconverged, uniform = _plan_warnings(caplog)
    assert not unconverged and len(uniform) == 1 and "1.20x the uniform share" in uniform[0]


def test_training_batches_log_the_plan_warnings_of_real_plans(
    teacher_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the training forward pass: one Sinkhorn iteration leaves the row marginals
    off (not converged), a huge epsilon gives a near-uniform plan, and the defaults give
    neither on these sentences."""
    batch = collate_pairs(list(zip(ENGLISH[::-1], ENGLISH, strict=True)))
    caplog.set_level("WARNING", logger=distill.__name__)
    found = {}
    for name, loss_cfg in {"default": {}, "one_iteration": {"max_iter": 1},
                           "huge_epsilon": {"epsilon": 100.0}}.items():  # fmt: skip
        caplog.clear()
        module = DistillationModule(*_encoders(teacher_dir), "optical", loss_cfg).train()
        with torch.no_grad():
            module(batch)
        metrics = module.training_metrics()
        found[name] = tuple(len(messages) for messages in _plan_warnings(caplog))
        if name == "one_iteration":
            assert metrics["ot_iterations"] == 1
    assert found == {"default": (0, 0), "one_iteration": (1, 0), "huge_epsilon": (0, 1)}


# ------------------------------------------------------------------------- distill_student


def _train_cfg(**overrides: object) -> dict:
    cfg = {
        "seed": 5,
        "learning_rate": 5e-3,
        "warmup_steps": 2,
        "max_steps": 20,
        "batch_size": 8,
        "checkpoint_every": 10,
        "log_every": 1,
        "eval_every": 10,
        "progress_bar": False,
        "device": "cpu",
        "dev_max_pairs": 8,
    }
    cfg.update(overrides)
    return cfg


def test_distill_student_optical_end_to_end(teacher_dir: Path, tmp_path: Path) -> None:
    train = _write_tsv(tmp_path / "train.tsv", _toy_pairs(40, seed=0))
    dev = _write_tsv(tmp_path / "dev.tsv", _toy_pairs(12, seed=1))
    loss_cfg = {"epsilon": 0.1}
    out = tmp_path / "run"

    # dev loss of the starting point (the teacher's copy), on the 8 dev pairs used
    student, teacher = _encoders(teacher_dir)
    start = DistillationModule(student, teacher, "optical", loss_cfg).eval()
    with torch.no_grad():
        initial_dev = mean_dev_loss(start, read_bitext(dev, 8), 8)

    model_dir = distill_student(
        train, dev, teacher_dir, out, "optical", loss_cfg, _train_cfg(), language="pseudo"
    )
    assert model_dir == out / "model"
    assert (model_dir / "optical_encoder.json").is_file()
    card = (model_dir / "README.md").read_text()
    assert "optical" in card and "'pseudo'" in card
    assert "optimizer steps: 20" in card and "seed: 5" in card

    cfg = json.loads((out / "train_config.json").read_text())
    assert cfg["method"] == "optical" and cfg["language"] == "pseudo"
    assert cfg["loss"] == loss_cfg
    criterion = json.loads((model_dir / "dev_criterion.json").read_text())
    assert 0.0 <= criterion["bitext_retrieval"]["p_at_1"] <= 1.0
    assert criterion["plan"]["row_max_ratio"] > 1.0 and criterion["plan"]["marginal_error"] < 1e-3
    assert "dev bitext retrieval" in card and "OT plan on the dev pairs" in card
    ot_logged = [r for r in _metrics(out) if "ot_row_max_ratio" in r]
    assert ot_logged and all(r["ot_marginal_error"] < 1e-3 for r in ot_logged)
    assert cfg["task"] == {"dev_max_pairs": 8}
    assert cfg["train"]["max_steps"] == 20 and cfg["train"]["output_dir"] == str(out)
    assert cfg["teacher"] == str(teacher_dir)
    assert f"config hash: {cfg['config_hash']}" in card

    records = _metrics(out)
    assert records[0]["event"] == "start"
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 20 and all(math.isfinite(x) for x in losses)
    evals = [r for r in records if r.get("event") == "eval"]
    assert [r["step"] for r in evals] == [10, 20]
    assert all(math.isfinite(r["dev_loss"]) for r in evals)
    assert [s for s, _ in list_checkpoints(out)] == [20]  # keep_checkpoints: 1 by default

    # the student learns the word mapping: training and dev OT losses go down
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    assert evals[-1]["dev_loss"] < evals[0]["dev_loss"] < initial_dev
    # ... and finds each dev sentence's translation better than its starting point does
    from optical_clir.evaluation.bitext_retrieval import bitext_retrieval

    with torch.no_grad():
        before = bitext_retrieval(student, teacher, read_bitext(dev, 8))
    assert criterion["bitext_retrieval"]["mrr"] > before["mrr"]
    # the card's final dev loss is the eval-mode loss of the saved student
    final = float(card.split("final dev loss: ")[1].split("\n")[0])
    assert final == pytest.approx(evals[-1]["dev_loss"], rel=1e-5)

    # the saved student differs from the teacher; the teacher folder is untouched
    saved = TokenEncoder.from_pretrained(model_dir, device="cpu")
    original = TokenEncoder.from_pretrained(teacher_dir, device="cpu")
    assert not torch.equal(saved.projection.weight, original.projection.weight)
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(
        ["README.md", "backbone", "dev_criterion.json", "optical_encoder.json",
         "projection.safetensors", "modules.json", "config_sentence_transformers.json",
         "1_Dense", "2_Pooling", "3_Normalize", "4_Normalize"]
    )  # fmt: skip
    assert read_front_matter(card)["library_name"] == "sentence-transformers"


class _StopAt:
    """A Trainer callback that sends this process SIGTERM after a given step (preemption)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def __call__(self, step: int, record: dict) -> None:
        if step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


# OPTICAL with the epsilon schedule and idf marginals: the loss state that a resume must
# restore (progress through the schedule) and the tables built from the training bitext.
RESUME_LOSS = {
    "kd_mse": {},
    "optical": {"marginals": "idf", "epsilon": 0.1, "epsilon_mode": "relative",
                "epsilon_start": 1.0, "anneal_fraction": 0.75},
}  # fmt: skip


@pytest.mark.parametrize("method", ["kd_mse", "optical"])
def test_distill_student_resumes_to_the_same_weights(
    teacher_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("the Trainer handles SIGTERM only in the main thread")
    train = _write_tsv(tmp_path / "train.tsv", _toy_pairs(40, seed=3))
    dev = _write_tsv(tmp_path / "dev.tsv", _toy_pairs(4, seed=4))
    cfg = _train_cfg(max_steps=8, checkpoint_every=100, eval_every=4, batch_size=8)
    args = (dev, teacher_dir)
    loss = RESUME_LOSS[method]

    straight = distill_student(train, *args, tmp_path / "a", method, loss, cfg, language="sw")

    real_trainer = distill.Trainer

    def preempted_trainer(*a: object, **kw: object) -> object:
        return real_trainer(*a, callbacks=[_StopAt(3)], **kw)

    out = tmp_path / "b"
    with monkeypatch.context() as mp:
        mp.setattr(distill, "Trainer", preempted_trainer)
        with pytest.raises(SystemExit) as info:
            distill_student(train, *args, out, method, loss, cfg, language="sw")
    assert info.value.code == 143
    assert not (out / "model").exists()
    assert [s for s, _ in list_checkpoints(out)] == [3]

    resumed = distill_student(train, *args, out, method, loss, cfg, language="sw")
    records = _metrics(out)
    assert [r["step"] for r in records if r.get("event") == "resume"] == [3]
    assert [r["step"] for r in records if r.get("event") == "interrupted"] == [3]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 9))
    card = (resumed / "README.md").read_text()
    assert "resumed from step 3" in card and "'sw'" in card and method in card

    # bit-identical on CPU: the same weights as the uninterrupted run, the same logged losses
    a = TokenEncoder.from_pretrained(straight, device="cpu").state_dict()
    b = TokenEncoder.from_pretrained(resumed, device="cpu").state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    losses = {r["step"]: r["loss"] for r in _metrics(tmp_path / "a") if "loss" in r}
    assert {r["step"]: r["loss"] for r in records if "loss" in r} == losses
    # and the run did train: the weights moved away from the teacher's
    t = TokenEncoder.from_pretrained(teacher_dir, device="cpu").state_dict()
    assert not torch.equal(a["projection.weight"], t["projection.weight"])


@pytest.mark.parametrize("method", ["optical", "kd_mse"])
def test_the_teacher_follows_the_module_to_another_device_or_dtype(
    teacher_dir: Path, method: str
) -> None:
    """The Trainer moves the module with ``model.to(device)`` (under torchrun, to
    ``cuda:<local_rank>``); the teacher, kept out of the parameters, must move with it.
    A dtype change is the CPU-visible form of the same move."""
    student, teacher = _encoders(teacher_dir)
    module = DistillationModule(student, teacher, method, {"epsilon": 0.1})
    assert module.to(torch.float64) is module
    assert {p.dtype for p in teacher.parameters()} == {torch.float64}
    assert {p.dtype for p in student.parameters()} == {torch.float64}
    assert all(not p.requires_grad for p in teacher.parameters())  # still frozen
    assert not teacher.training
    assert len(list(module.parameters())) == len(list(student.parameters()))
    loss = module(collate_pairs(_toy_pairs(2, seed=6)))
    assert loss.dtype == torch.float64
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())


def test_distill_starts_over_when_its_bitext_or_teacher_changed(
    teacher_dir: Path, tmp_path: Path
) -> None:
    """A rerun on other training pairs (same count) or another teacher does not resume
    the old student: its checkpoints are set aside and it trains from step 0."""
    import shutil

    teacher = Path(shutil.copytree(teacher_dir, tmp_path / "teacher"))
    train = _write_tsv(tmp_path / "train.tsv", _toy_pairs(16, seed=3))
    cfg = _train_cfg(max_steps=3, eval_every=None, batch_size=8)
    out = tmp_path / "run"

    def events() -> list[str]:
        return [r["event"] for r in _metrics(out) if "event" in r]

    first = distill_student(train, None, teacher, out, "kd_mse", {}, cfg, language="sw")
    weights = TokenEncoder.from_pretrained(first, device="cpu").state_dict()
    distill_student(train, None, teacher, out, "kd_mse", {}, cfg, language="sw")
    assert events() == ["start", "resume"] and not list(out.glob("stale-*"))  # same: resumes

    _write_tsv(train, _toy_pairs(16, seed=4))
    second = distill_student(train, None, teacher, out, "kd_mse", {}, cfg, language="sw")
    assert events() == ["start"] and len(list(out.glob("stale-*"))) == 1
    changed = TokenEncoder.from_pretrained(second, device="cpu").state_dict()
    assert not torch.equal(changed["projection.weight"], weights["projection.weight"])

    other = save_tiny_encoder(tmp_path / "other", seed=1, dim=16, query_max_length=16,
                              doc_max_length=16)  # fmt: skip
    shutil.copy2(other / "projection.safetensors", teacher / "projection.safetensors")
    distill_student(train, None, teacher, out, "kd_mse", {}, cfg, language="sw")
    assert events() == ["start"] and len(list(out.glob("stale-*"))) == 2
    state = json.loads((list_checkpoints(out)[-1][1] / "trainer_state.json").read_text())[
        "fingerprint_inputs"
    ]["task"]
    assert set(state) >= {"train_bitext_sha256", "teacher_sha256", "method", "loss"}
