"""Teacher retrieval model: a :class:`TokenEncoder` trained contrastively on mMARCO triples.

Output layout of ``train_teacher(..., output_dir, ...)``::

    output_dir/model/            final TokenEncoder (save_pretrained) + README.md model card
    output_dir/checkpoints/      resumable training checkpoints (see optical_clir.train.loop)
    output_dir/metrics.jsonl     training metrics
    output_dir/train_config.json the effective configuration

Command line (what a Snakemake rule or a SLURM job runs)::

    python -m optical_clir.train.teacher --config teacher.json

with ``{"triples": ..., "output_dir": ..., "model": {...}, "train": {...}}``. The exit code is
143 after SIGTERM (checkpoint written; rerun to resume).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from optical_clir.config import config_hash as workflow_config_hash
from optical_clir.data.mmarco import Triple, TriplesFile
from optical_clir.errors import ConfigError
from optical_clir.io import file_sha256
from optical_clir.losses.contrastive import ContrastiveLoss
from optical_clir.models.card import ST_USAGE, encoder_card_metadata, front_matter
from optical_clir.models.encoder import EncoderConfig, TokenEncoder
from optical_clir.models.scoring import score_all_pairs
from optical_clir.train.loop import Trainer, TrainingArguments, TrainResult

logger = logging.getLogger(__name__)

MODEL_SUBDIR = "model"
# keys of train_cfg that belong to the teacher task rather than to TrainingArguments
TASK_KEYS = ("temperature", "in_batch_negatives", "max_triples", "dev_triples", "dev_max_triples")


def default_temperature(scoring: str) -> float:
    """Our choice, not the paper's: 1.0 for MaxSim (sums of cosines, ColBERT uses no
    temperature), 0.05 for dot products of normalised pooled vectors."""
    return 1.0 if scoring == "maxsim" else 0.05


def collate_triples(examples: list[Triple]) -> dict[str, list[str]]:
    """List of triples -> lists of queries, positives and negatives."""
    return {
        "queries": [e[0] for e in examples],
        "positives": [e[1] for e in examples],
        "negatives": [e[2] for e in examples],
    }


class TeacherTrainingModule(nn.Module):
    """``forward(batch) -> loss``: queries against the batch's positives then negatives."""

    def __init__(self, encoder: TokenEncoder, loss: ContrastiveLoss) -> None:
        super().__init__()
        self.encoder = encoder
        self.loss = loss

    def scores(self, batch: Mapping[str, list[str]]) -> torch.Tensor:
        """``[B, 2B]`` scores of each query against all positives, then all negatives."""
        enc = self.encoder
        q, q_mask = enc.encode_queries(list(batch["queries"]))
        d, d_mask = enc.encode_documents(list(batch["positives"]) + list(batch["negatives"]))
        return score_all_pairs(enc.config.scoring, q, q_mask, d, d_mask)

    def forward(self, batch: Mapping[str, list[str]]) -> torch.Tensor:
        return self.loss(self.scores(batch))


def config_hash(*parts: Mapping[str, Any]) -> str:
    """Short stable hash of JSON-able configs (for the model card and provenance)."""
    return workflow_config_hash(list(parts))


def _split_train_cfg(train_cfg: Mapping[str, Any], output_dir: Path) -> tuple[dict, dict]:
    task = {k: train_cfg[k] for k in TASK_KEYS if k in train_cfg}
    loop_cfg = {k: v for k, v in train_cfg.items() if k not in TASK_KEYS and k != "output_dir"}
    loop_cfg["output_dir"] = str(output_dir)
    return task, loop_cfg


def _model_card(
    triples_path: Path,
    n_triples: int,
    result: TrainResult,
    model_cfg: EncoderConfig,
    args: TrainingArguments,
    task: Mapping[str, Any],
    chash: str,
) -> str:
    scoring_tag = "colbert" if model_cfg.scoring == "maxsim" else "dense-retrieval"
    meta = encoder_card_metadata(model_cfg.backbone, ["en"], ["information-retrieval", scoring_tag])
    return front_matter(meta) + "\n".join(
        [
            "# OPTICAL teacher retrieval model",
            "",
            "Token encoder trained contrastively (InfoNCE over in-batch and hard negatives) on",
            "MS MARCO/mMARCO-format training triples, as the teacher of OPTICAL",
            "(arXiv 2301.12566).",
            *ST_USAGE,
            "",
            f"- training data: `{triples_path}`",
            f"- number of triples: {n_triples}",
            f"- optimizer steps: {result.step}",
            f"- effective batch: {args.batch_size} x {args.gradient_accumulation_steps}"
            " (accumulation) x world size",
            f"- seed: {args.seed}",
            f"- config hash: {chash}",
            f"- backbone: `{model_cfg.backbone}`",
            f"- scoring: {model_cfg.scoring}; dim: {model_cfg.dim}",
            f"- temperature: {task.get('temperature')}; final training loss: {result.last_loss}",
            "",
            "```json",
            json.dumps(
                {"model": model_cfg.to_dict(), "train": args.to_dict(), "task": dict(task)},
                indent=2,
                default=str,
            ),
            "```",
            "",
        ]
    )


def train_teacher(
    triples_path: str | Path,
    output_dir: str | Path,
    model_cfg: Mapping[str, Any] | EncoderConfig,
    train_cfg: Mapping[str, Any],
    encoder: TokenEncoder | None = None,
) -> Path:
    """Train the teacher on ``triples_path`` (TSV query/pos/neg); return the final model dir.

    ``model_cfg``: :class:`EncoderConfig` keys. ``train_cfg``: :class:`TrainingArguments` keys
    plus ``temperature`` (default by scoring), ``in_batch_negatives`` (True), ``max_triples``
    (None), ``dev_triples`` (a TSV for a dev loss every ``eval_every`` steps) and
    ``dev_max_triples`` (256). ``encoder`` may be given to skip loading the backbone.
    Resumes from ``output_dir/checkpoints`` when present.
    """
    output_dir = Path(output_dir)
    triples_path = Path(triples_path)
    mcfg = EncoderConfig.from_dict(model_cfg if encoder is None else encoder.config)
    task, loop_cfg = _split_train_cfg(train_cfg, output_dir)
    args = TrainingArguments.from_dict(loop_cfg)
    temperature = task.get("temperature")
    task["temperature"] = (
        float(temperature) if temperature is not None else default_temperature(mcfg.scoring)
    )
    chash = config_hash(
        mcfg.to_dict(), {k: v for k, v in loop_cfg.items() if k != "output_dir"}, task
    )

    data = TriplesFile(triples_path, task.get("max_triples"))
    logger.info("%d training triples from %s", len(data), triples_path)
    torch.manual_seed(args.seed)  # the projection's initialisation
    if encoder is None:
        encoder = TokenEncoder(mcfg)
    module = TeacherTrainingModule(
        encoder, ContrastiveLoss(task["temperature"], bool(task.get("in_batch_negatives", True)))
    )

    eval_fn = None
    if task.get("dev_triples"):
        dev = TriplesFile(task["dev_triples"], int(task.get("dev_max_triples") or 256))

        def eval_fn(m: nn.Module) -> dict[str, float]:
            total, count = 0.0, 0
            for start in range(0, len(dev), args.batch_size):
                chunk = [dev[i] for i in range(start, min(len(dev), start + args.batch_size))]
                n = len(chunk)
                total += float(m(collate_triples(chunk))) * n
                count += n
            return {"dev_loss": total / count}

    output_dir.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        effective = {
            "model": mcfg.to_dict(),
            "train": args.to_dict(),
            "task": task,
            "triples": str(triples_path),
            "config_hash": chash,
        }
        tmp = output_dir / ".train_config.json.tmp"
        tmp.write_text(json.dumps(effective, indent=2, default=str) + "\n")
        os.replace(tmp, output_dir / "train_config.json")

    lengths = None
    if args.group_by_length:  # the documents dominate a triple's cost
        lengths = [len(data[i][1]) + len(data[i][2]) for i in range(len(data))]
    fingerprint = {
        "task": "teacher",
        "model": mcfg.to_dict(),
        "task_keys": task,
        "triples_sha256": file_sha256(triples_path),
    }
    trainer = Trainer(
        module, args, data, collate_triples, eval_fn=eval_fn, lengths=lengths,
        fingerprint=fingerprint,
    )  # fmt: skip
    result = trainer.train()

    model_dir = output_dir / MODEL_SUBDIR
    if rank == 0:
        encoder.eval()
        encoder.save_pretrained(model_dir)
        card = _model_card(triples_path, len(data), result, mcfg, args, task, chash)
        tmp = model_dir / ".README.md.tmp"
        tmp.write_text(card)
        os.replace(tmp, model_dir / "README.md")
        logger.info("teacher saved to %s", model_dir)
    return model_dir


def main(argv: list[str] | None = None) -> int:
    """``python -m optical_clir.train.teacher --config cfg.json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--config", required=True, help="JSON with triples, output_dir, model, train"
    )
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = json.loads(Path(ns.config).read_text())
    for key in ("triples", "output_dir"):
        if key not in cfg:
            raise ConfigError(key, "missing", source=ns.config)
    train_teacher(cfg["triples"], cfg["output_dir"], cfg.get("model", {}), cfg.get("train", {}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
