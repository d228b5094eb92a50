"""Student variants, the dev criterion (bitext retrieval) and the choice made on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from optical_clir.errors import ConfigError
from optical_clir.evaluation.bitext_retrieval import bitext_retrieval, retrieval_ranks
from optical_clir.evaluation.selection import publish_selected, select_candidate
from optical_clir.models.encoder import TokenEncoder
from optical_clir.models.tiny import save_tiny_encoder
from optical_clir.variants import (
    choose_student,
    parse_student,
    resolve_student,
    student_job_params,
    student_settings,
    variant_names,
)

DISTILL = {
    "loss": {"epsilon": 0.1, "marginals": "idf"},
    "train": {"learning_rate": 1e-3, "num_epochs": 3},
    "method_overrides": {"kd_mse": {"train": {"learning_rate": 5e-4}}},
}
GRID = {
    "optical": {"epsilon": [0.05, 0.5], "learning_rate": [3e-4]},
    "kd_mse": {"learning_rate": [1e-3]},
}


def test_variant_names_and_their_settings() -> None:
    assert variant_names("optical", GRID["optical"]) == [
        "optical", "optical+epsilon-0.05", "optical+epsilon-0.5", "optical+learning_rate-0.0003",
    ]  # fmt: skip
    assert parse_student("optical+epsilon-0.5", [GRID]) == ("optical", {"epsilon": 0.5})
    loss, train = student_settings(DISTILL, "optical", {"epsilon": 0.5})
    assert loss == {"epsilon": 0.5, "marginals": "idf"} and train["learning_rate"] == 1e-3
    loss, train = student_settings(DISTILL, "kd_mse", {})
    assert train["learning_rate"] == 5e-4  # the method's own override
    _, train = student_settings(DISTILL, "optical", {"learning_rate": 3e-4})
    assert train["learning_rate"] == 3e-4
    with pytest.raises(ConfigError, match="no variant named"):
        parse_student("optical+epsilon-0.7", [GRID])
    with pytest.raises(ConfigError):
        parse_student("colbert", [GRID])


def test_resolve_student_for_a_subset_a_seed_and_a_selection() -> None:
    candidates = variant_names("optical", GRID["optical"])
    params = student_job_params(DISTILL, [GRID], "optical+selected", "sw", 14, 100, candidates)
    assert sorted(params["settings"]) == sorted(candidates)
    method, loss, train = resolve_student(params, {"chosen": "optical+epsilon-0.05"})
    assert method == "optical" and loss["epsilon"] == 0.05
    assert train["seed"] == 14 and train["max_train_pairs"] == 100
    with pytest.raises(ValueError, match="needs the selection"):
        resolve_student(params)
    with pytest.raises(ValueError, match="not a candidate"):
        resolve_student(params, {"chosen": "kd_mse"})
    # a plain student's job holds its own settings only
    plain = student_job_params(DISTILL, [GRID], "kd_mse", "sw", 13, None)
    assert list(plain["settings"]) == ["kd_mse"]
    assert resolve_student(plain)[2] == {"learning_rate": 5e-4, "num_epochs": 3, "seed": 13}


def test_choose_student_by_p_at_1_then_mrr_then_order() -> None:
    run = lambda p, m: {"p_at_1": p, "mrr": m}  # noqa: E731
    assert choose_student({"a": [run(0.5, 0.6)], "b": [run(0.7, 0.1)]}) == "b"
    assert choose_student({"a": [run(0.5, 0.6)], "b": [run(0.5, 0.7)]}) == "b"
    assert choose_student({"a": [run(0.5, 0.6)], "b": [run(0.5, 0.6)]}) == "a"  # tie: earlier
    # mean over seeds
    assert choose_student({"a": [run(0.9, 0.9), run(0.1, 0.1)], "b": [run(0.6, 0.6)] * 2}) == "b"


def test_retrieval_ranks_count_ties_against_the_hit() -> None:
    scores = torch.tensor([[3.0, 1.0, 2.0], [1.0, 1.0, 0.0], [0.0, 5.0, 4.0]])
    assert retrieval_ranks(scores).tolist() == [1, 2, 2]


def test_bitext_retrieval_on_a_toy_whose_answer_is_known(tmp_path: Path) -> None:
    """The teacher retrieving its own sentences finds each one (P@1 1); a zero query
    encoder finds none (every score ties, and ties count against the hit)."""
    teacher = TokenEncoder.from_pretrained(
        save_tiny_encoder(tmp_path, seed=0, dim=16, scoring="dot"), device="cpu"
    )
    sentences = ["the cat runs", "a dog sleeps on the farm", "the bird flies",
                 "where does the fox hide", "the cow eats in the field"]  # fmt: skip
    pairs = [(s, s) for s in sentences]
    own = bitext_retrieval(teacher, teacher, pairs, batch_size=2)
    assert own == {"p_at_1": 1.0, "mrr": 1.0, "pairs": 5}

    class Constant(torch.nn.Module):
        config = teacher.config

        def encode_queries(self, texts):
            return torch.zeros(len(texts), teacher.output_dim), None

    flat = bitext_retrieval(Constant(), teacher, pairs)
    assert flat["p_at_1"] == 0.0 and flat["mrr"] == pytest.approx(1 / 5)
    with pytest.raises(ValueError):
        bitext_retrieval(teacher, teacher, [("a", "x"), ("b", "x")])


def test_select_and_publish_the_chosen_candidate(tmp_path: Path) -> None:
    dirs = []
    for name, p1 in (("optical", 0.5), ("optical+epsilon-0.05", 0.8)):
        for seed in (13, 14):
            folder = tmp_path / "student" / name / "sw" / "pairs-all" / f"seed-{seed}"
            folder.mkdir(parents=True)
            record = {"bitext_retrieval": {"p_at_1": p1 + seed / 1000, "mrr": p1, "pairs": 10}}
            (folder / "dev_criterion.json").write_text(json.dumps(record))
            (folder / "weights.bin").write_bytes(bytes([seed]))
            dirs.append(folder)
    out = tmp_path / "selection.json"
    record = select_candidate("optical", "sw", ["optical", "optical+epsilon-0.05"], dirs, out)
    assert record["chosen"] == "optical+epsilon-0.05"
    assert [c["seeds"] for c in record["candidates"]] == [2, 2]
    assert record["candidates"][1]["p_at_1"] == pytest.approx(0.8135)
    target = tmp_path / "student" / "optical+selected" / "sw" / "pairs-all" / "seed-14"
    publish_selected(out, dirs, target)
    assert (target / "weights.bin").read_bytes() == bytes([14])
    assert (target / "weights.bin").stat().st_ino == (dirs[3] / "weights.bin").stat().st_ino
