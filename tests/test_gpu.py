"""What only runs on a CUDA GPU: bf16/fp16 autocast and the grad scaler in the Trainer, the
OT loss on the GPU (POT's log-domain batched Sinkhorn), distillation and document encoding
on the GPU. Marked ``gpu`` and skipped without CUDA; ``benchmarks/gpu_check.sh`` runs them.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from optical_clir.losses import optimal_transport
from optical_clir.losses.optimal_transport import sinkhorn_plan
from optical_clir.models.encoder import TokenEncoder
from optical_clir.models.tiny import save_tiny_backbone, save_tiny_encoder, write_toy_triples
from optical_clir.retrieval.dense import encode_documents, search
from optical_clir.train import teacher
from optical_clir.train.distill import distill_student
from optical_clir.train.loop import list_checkpoints, resolve_precision
from optical_clir.train.teacher import train_teacher

os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _precision(name: str) -> str:
    if name == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    return name


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_backbone(tmp_path_factory.mktemp("gpu") / "bb")


def _teacher_cfg(backbone: Path, precision: str, **train: object) -> tuple[dict, dict]:
    model = {"backbone": str(backbone), "dim": 16, "query_max_length": 12, "doc_max_length": 16}
    cfg = {"seed": 3, "learning_rate": 1e-3, "max_steps": 6, "batch_size": 8,
           "checkpoint_every": 3, "log_every": 1, "progress_bar": False, "device": "cuda",
           "mixed_precision": precision, **train}  # fmt: skip
    return model, cfg


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_training_steps(backbone: Path, tmp_path: Path, precision: str) -> None:
    precision = _precision(precision)
    assert resolve_precision(precision, torch.device("cuda")) == precision
    model_cfg, train_cfg = _teacher_cfg(backbone, precision)
    torch.manual_seed(train_cfg["seed"])
    encoder = TokenEncoder(model_cfg)
    initial = {k: v.clone() for k, v in encoder.state_dict().items()}
    seen: set[torch.dtype] = set()
    encoder.projection.register_forward_hook(
        lambda module, args, out: seen.add(out.dtype) if module.training else None
    )
    triples = write_toy_triples(tmp_path / "t.tsv", 64)
    out = tmp_path / "teacher"
    train_teacher(triples, out, model_cfg, train_cfg, encoder=encoder)

    assert seen == {DTYPES[precision]}  # the forward ran under autocast
    assert {p.dtype for p in encoder.parameters()} == {torch.float32}  # master weights fp32
    assert all(torch.isfinite(p).all() for p in encoder.parameters())
    trained = encoder.state_dict()
    assert not torch.equal(trained["projection.weight"].cpu(), initial["projection.weight"].cpu())
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 6 and all(np.isfinite(losses))
    state = torch.load(list_checkpoints(out)[-1][1] / "training.pt", weights_only=False)
    if precision == "fp16":  # the grad scaler is on, and its state is checkpointed
        assert state["scaler"]["scale"] > 0 and "_growth_tracker" in state["scaler"]
    else:
        assert state["scaler"] == {}


class _StopAt:
    def __init__(self, step: int) -> None:
        self.step = step

    def __call__(self, step: int, record: dict) -> None:
        if step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_fp16_run_resumes_with_its_grad_scaler(
    backbone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("the Trainer handles SIGTERM only in the main thread")
    model_cfg, train_cfg = _teacher_cfg(backbone, "fp16", checkpoint_every=100)
    triples = write_toy_triples(tmp_path / "t.tsv", 64)
    real = teacher.Trainer
    out = tmp_path / "run"
    with monkeypatch.context() as mp:
        mp.setattr(teacher, "Trainer", lambda *a, **kw: real(*a, callbacks=[_StopAt(2)], **kw))
        with pytest.raises(SystemExit) as info:
            train_teacher(triples, out, model_cfg, train_cfg)
    assert info.value.code == 143
    saved = torch.load(list_checkpoints(out)[-1][1] / "training.pt", weights_only=False)
    assert saved["scaler"]["scale"] > 0
    train_teacher(triples, out, model_cfg, train_cfg)
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r.get("event") == "resume"] == [2]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 7))
    assert all(np.isfinite([r["loss"] for r in records if "loss" in r]))


def _ot_problem(device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    cost = torch.rand(4, 6, 9, generator=g)
    a = torch.rand(4, 6, generator=g) + 0.1
    b = torch.rand(4, 9, generator=g) + 0.1
    a[1, 4:] = 0  # padding: no mass
    b[2, 7:] = 0
    a, b = a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)
    return cost.to(device), a.to(device), b.to(device)


def test_sinkhorn_on_cuda_uses_the_log_domain_solver_and_matches_the_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    methods: list[str] = []
    real = optimal_transport.solve_batch

    def recording(*args: object, method: str, **kwargs: object) -> object:
        methods.append(method)
        return real(*args, method=method, **kwargs)

    monkeypatch.setattr(optimal_transport, "solve_batch", recording)
    cost, a, b = _ot_problem("cuda")
    plan, iters = sinkhorn_plan(cost, a, b, epsilon=0.05, max_iter=5000, tol=1e-9)
    assert methods == ["log_sinkhorn"] and plan.device.type == "cuda"
    cpu_plan, _ = sinkhorn_plan(cost.cpu(), a.cpu(), b.cpu(), epsilon=0.05, max_iter=5000, tol=1e-9)
    assert methods == ["log_sinkhorn", "sinkhorn"]
    assert torch.allclose(plan.cpu(), cpu_plan, atol=1e-6)
    assert torch.allclose(plan.sum(-1), a, atol=1e-6) and torch.allclose(plan.sum(-2), b, atol=1e-6)
    assert plan[1, 4:].abs().sum() == 0 and plan[2, :, 7:].abs().sum() == 0
    assert 1 <= iters <= 5001

    # differentiable through the iterations on the GPU
    leaf = cost.clone().requires_grad_(True)
    plan, _ = sinkhorn_plan(leaf, a, b, epsilon=0.05, max_iter=200, tol=1e-9, detach=False)
    (plan * leaf).sum().backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()


@pytest.mark.parametrize("method", ["optical", "kd_mse"])
def test_distillation_on_cuda_with_autocast(tmp_path: Path, method: str) -> None:
    precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    teacher_dir = save_tiny_encoder(tmp_path, seed=0, dim=16, query_max_length=16)
    pairs = [("tiger runs lake", "the cat runs in the lake"),
             ("wolf sits farm", "the dog sits on the farm")] * 12  # fmt: skip
    bitext = tmp_path / "train.tsv"
    bitext.write_text("".join(f"{s}\t{e}\n" for s, e in pairs))
    cfg = {"max_steps": 4, "batch_size": 8, "checkpoint_every": 2, "log_every": 1,
           "progress_bar": False, "device": "cuda", "mixed_precision": precision,
           "learning_rate": 1e-3}  # fmt: skip
    loss = {"epsilon": 0.1, "marginals": "idf"} if method == "optical" else {}
    model_dir = distill_student(bitext, bitext, teacher_dir, tmp_path / "s", method, loss, cfg)
    records = [json.loads(x) for x in (tmp_path / "s" / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite([r["loss"] for r in records if "loss" in r]))
    if method == "optical":
        assert all(r["ot_marginal_error"] < 1e-3 for r in records if "ot_marginal_error" in r)
    student = TokenEncoder.from_pretrained(model_dir, device="cpu").state_dict()
    start = TokenEncoder.from_pretrained(teacher_dir, device="cpu").state_dict()
    assert not torch.equal(student["projection.weight"], start["projection.weight"])


def test_encoding_and_search_on_cuda_match_the_cpu(tmp_path: Path) -> None:
    model_dir = save_tiny_encoder(tmp_path, seed=1, dim=8, scoring="maxsim")
    words = ["cat", "dog", "bird", "runs", "sits", "river", "farm", "lake", "the", "in"]
    rng = np.random.default_rng(0)
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(
        json.dumps({"id": f"D{i}", "title": "", "text": " ".join(rng.choice(words, 3 + i % 7))})
        + "\n" for i in range(60)
    ))  # fmt: skip
    queries = tmp_path / "q.tsv"
    queries.write_text("q1\tthe cat runs\nq2\tdog in the lake\n")
    for device in ("cpu", "cuda"):
        index = tmp_path / f"index-{device}"
        encode_documents(model_dir, docs, index, shard_size=25, dtype="float32", device=device)
    for shard in ("shard-00000", "shard-00001", "shard-00002"):
        cpu = np.load(tmp_path / "index-cpu" / f"{shard}.emb.npy")
        gpu = np.load(tmp_path / "index-cuda" / f"{shard}.emb.npy")
        assert cpu.shape == gpu.shape and np.allclose(cpu, gpu, atol=1e-4)
    # the GPU search of the GPU index scores every document it returns as the CPU does
    every, top = tmp_path / "cpu-all.txt", tmp_path / "cuda-top.txt"
    search(model_dir, tmp_path / "index-cpu", queries, every, k=60, device="cpu")
    search(model_dir, tmp_path / "index-cuda", queries, top, k=10, device="cuda")
    exact: dict[str, dict[str, float]] = {}
    for line in every.read_text().splitlines():
        qid, _, docid, _, score, _ = line.split()
        exact.setdefault(qid, {})[docid] = float(score)
    got: dict[str, list[tuple[str, float]]] = {}
    for line in top.read_text().splitlines():
        qid, _, docid, _, score, _ = line.split()
        got.setdefault(qid, []).append((docid, float(score)))
    assert got.keys() == exact.keys() == {"q1", "q2"}
    for qid, ranked in got.items():
        assert len(ranked) == 10
        for docid, score in ranked:
            assert score == pytest.approx(exact[qid][docid], abs=1e-4)
        best = sorted(exact[qid].values(), reverse=True)[:10]
        assert [s for _, s in ranked] == pytest.approx(best, abs=1e-4)
