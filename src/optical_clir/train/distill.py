"""Distil the teacher's query encoder into a student for language L, on L-English bitext only.

Two methods share everything but the loss:

- ``optical`` (the paper): the student encodes the L sentence, the frozen teacher encodes
  its English translation, both into token vectors; the loss is the optimal-transport
  alignment cost ``<P, C>`` between the two token sets
  (:class:`optical_clir.losses.OTAlignmentLoss`).
- ``kd_mse`` (baseline, multilingual knowledge distillation in the manner of Reimers and
  Gurevych, 2020): mean squared error between the student's pooled vector of the L sentence
  and the teacher's pooled vector of the English sentence; with ``mse_include_english`` the
  student's vector of the English sentence is also pulled to the teacher's (as in their
  method). Our choice of baseline details, not the paper's.

The student starts as a copy of the teacher (the teacher's query encoder), the teacher is
frozen, and documents stay encoded by the teacher. Output layout of ``output_dir``: ``model/``
(``save_pretrained`` + model card), ``checkpoints/``, ``metrics.jsonl`` (with dev loss) and
``train_config.json``; training resumes from the last checkpoint when rerun.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from optical_clir.errors import ConfigError, InputError
from optical_clir.io import atomic_write_text, open_text
from optical_clir.losses.optimal_transport import OTAlignmentLoss
from optical_clir.models.encoder import TokenEncoder
from optical_clir.train.loop import Trainer, TrainingArguments
from optical_clir.train.teacher import MODEL_SUBDIR, config_hash

logger = logging.getLogger(__name__)

METHODS = ("optical", "kd_mse")
Pair = tuple[str, str]  # (L sentence, English sentence)

# Keys of the loss config; the OT ones are passed to OTAlignmentLoss.
OT_KEYS = ("cost", "marginals", "epsilon", "n_iters", "tol", "detach_plan", "cost_scale")
TASK_KEYS = ("mse_include_english", "dev_max_pairs", "max_train_pairs", "cache_teacher")


def read_bitext(path: str | Path, max_pairs: int | None = None) -> list[Pair]:
    """Read ``src<TAB>en`` lines; a line without exactly two non-empty fields is an error."""
    pairs: list[Pair] = []
    with open_text(path) as handle:
        for lineno, line in enumerate(handle, start=1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
                raise InputError(path, "expected 'L sentence<TAB>English sentence'", line=lineno)
            pairs.append((fields[0], fields[1]))
            if max_pairs is not None and len(pairs) >= max_pairs:
                break
    if not pairs:
        raise InputError(path, "no sentence pairs")
    return pairs


def collate_pairs(examples: list[Pair]) -> dict[str, list[str]]:
    """A list of pairs -> the L sentences and their English sides."""
    return {"source": [e[0] for e in examples], "english": [e[1] for e in examples]}


class TeacherTargets:
    """The frozen teacher's outputs for English sentences, computed once and reused.

    Every epoch meets the same English sentences and the teacher never changes, so its
    token vectors (``optical``) or pooled vectors (``kd_mse``) are kept per sentence on the
    CPU (real tokens only) and assembled into a padded batch on demand: the teacher's forward
    pass runs once per sentence instead of once per epoch (sentence-transformers'
    distillation precomputes its targets likewise). Values equal the uncached ones up to
    float rounding of the batch shapes. ``enabled=False`` recomputes every time.
    """

    def __init__(self, teacher: TokenEncoder, tokens: bool, max_length: int, enabled: bool = True):
        self.teacher, self.tokens, self.enabled = teacher, tokens, enabled
        self._max_length = max_length
        self.cache: dict[str, torch.Tensor] = {}

    @property
    def max_length(self) -> int:
        return self._max_length

    @max_length.setter
    def max_length(self, value: int) -> None:
        """Targets depend on the truncation length: a new length empties the cache."""
        if value != self._max_length:
            self._max_length = value
            self.cache.clear()

    @torch.no_grad()
    def _compute(self, english: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.tokens:
            return self.teacher.encode_tokens(english, self.max_length)
        return self.teacher.encode_pooled(english, self.max_length), None

    @torch.no_grad()
    def precompute(self, english: Sequence[str], batch_size: int) -> None:
        """Fill the cache in a fixed order (data order, fixed chunks), so that a resumed
        run sees bit-identical targets to an uninterrupted one."""
        if not self.enabled:
            return
        todo = [text for text in dict.fromkeys(english) if text not in self.cache]
        for start in range(0, len(todo), batch_size):
            self._store(todo[start : start + batch_size])

    def _store(self, texts: list[str]) -> None:
        vectors, mask = self._compute(texts)
        for i, text in enumerate(texts):
            kept = vectors[i][mask[i]] if mask is not None else vectors[i]
            self.cache[text] = kept.detach().cpu()

    @torch.no_grad()
    def __call__(self, english: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Targets of a batch: ``[B, T, D]`` vectors and ``[B, T]`` mask, or ``[B, D]`` and None."""
        if not self.enabled:
            return self._compute(english)
        missing = [text for text in dict.fromkeys(english) if text not in self.cache]
        if missing:
            self._store(missing)
        device = self.teacher.device
        rows = [self.cache[text] for text in english]
        if not self.tokens:
            return torch.stack(rows).to(device), None
        length = max(row.shape[0] for row in rows)
        vectors = rows[0].new_zeros((len(rows), length, rows[0].shape[-1]))
        mask = torch.zeros((len(rows), length), dtype=torch.bool)
        for i, row in enumerate(rows):
            vectors[i, : row.shape[0]] = row
            mask[i, : row.shape[0]] = True
        return vectors.to(device), mask.to(device)


class DistillationModule(nn.Module):
    """Student + frozen teacher; ``forward(batch)`` returns the distillation loss of a batch."""

    def __init__(
        self,
        student: TokenEncoder,
        teacher: TokenEncoder,
        method: str,
        loss_cfg: Mapping[str, Any],
        mse_include_english: bool = True,
        cache_teacher: bool = False,
    ) -> None:
        super().__init__()
        if method not in METHODS:
            raise ConfigError("distill.method", f"must be one of {METHODS}, got {method!r}")
        self.student = student
        # Kept out of the module's parameters so that the optimizer and checkpoints see only
        # the student; the teacher never changes.
        self._teacher = [teacher.eval().requires_grad_(False)]
        self.method = method
        self.max_length = student.config.query_max_length
        self.mse_include_english = mse_include_english
        self.ot_loss = OTAlignmentLoss(**{k: v for k, v in loss_cfg.items() if k in OT_KEYS})
        self.targets = TeacherTargets(
            teacher, method == "optical", self.max_length, enabled=cache_teacher
        )

    @property
    def teacher(self) -> TokenEncoder:
        return self._teacher[0]

    def _apply(self, fn: Any, recurse: bool = True) -> DistillationModule:
        # ``.to(device)`` (the Trainer's move to cuda:<local_rank> under torchrun) must move
        # the teacher too, although it is not a submodule.
        super()._apply(fn, recurse)
        self.teacher._apply(fn, recurse)
        return self

    def forward(self, batch: Mapping[str, list[str]], return_plan: bool = False) -> Any:
        source, english = batch["source"], batch["english"]
        self.targets.max_length = self.max_length  # the caller may change the module's
        target, target_mask = self.targets(english)
        if self.method == "optical":
            student, student_mask = self.student.encode_tokens(source, self.max_length)
            return self.ot_loss(student, student_mask, target, target_mask, return_plan=return_plan)
        loss = F.mse_loss(self.student.encode_pooled(source, self.max_length), target)
        if self.mse_include_english:
            loss = loss + F.mse_loss(self.student.encode_pooled(english, self.max_length), target)
        return loss


def _split_cfg(train_cfg: Mapping[str, Any], output_dir: Path) -> tuple[dict, dict]:
    task = {k: train_cfg[k] for k in TASK_KEYS if k in train_cfg}
    loop = {k: v for k, v in train_cfg.items() if k not in TASK_KEYS}
    loop["output_dir"] = str(output_dir)
    return task, loop


@torch.no_grad()
def mean_dev_loss(module: nn.Module, dev: Sequence[Pair], batch_size: int) -> float:
    """Average distillation loss over the dev pairs (weighted by batch size)."""
    total, count = 0.0, 0
    for start in range(0, len(dev), batch_size):
        chunk = list(dev[start : start + batch_size])
        total += float(module(collate_pairs(chunk))) * len(chunk)
        count += len(chunk)
    return total / max(count, 1)


def distill_student(
    train_bitext: str | Path,
    dev_bitext: str | Path | None,
    teacher_dir: str | Path,
    output_dir: str | Path,
    method: str,
    loss_cfg: Mapping[str, Any],
    train_cfg: Mapping[str, Any],
    language: str = "",
) -> Path:
    """Train the student of ``method`` on the bitext; return the saved student's folder.

    ``loss_cfg``: the OT options (``cost``, ``marginals``, ``epsilon``, ``n_iters``, ``tol``,
    ``detach_plan``, ``cost_scale``; see :class:`OTAlignmentLoss`). ``train_cfg``:
    :class:`TrainingArguments` keys plus ``mse_include_english`` (True), ``dev_max_pairs`` and
    ``max_train_pairs`` (the first N training pairs only: the learning curve's subsets) and
    ``cache_teacher`` (True: the teacher's targets are computed once, see :class:`TeacherTargets`).
    """
    output_dir = Path(output_dir)
    task, loop_cfg = _split_cfg(train_cfg, output_dir)
    args = TrainingArguments.from_dict(loop_cfg)
    train = read_bitext(train_bitext, task.get("max_train_pairs"))
    if task.get("max_train_pairs") and len(train) < task["max_train_pairs"]:
        logger.warning(
            "%s/%s: %d training pairs requested, only %d in %s: training on all of them",
            method, language, task["max_train_pairs"], len(train), train_bitext,
        )  # fmt: skip
    dev = read_bitext(dev_bitext, task.get("dev_max_pairs")) if dev_bitext else []
    logger.info("%s/%s: %d training pairs, %d dev pairs", method, language, len(train), len(dev))

    device = args.device
    teacher = TokenEncoder.from_pretrained(teacher_dir, device=device)
    student = TokenEncoder.from_pretrained(teacher_dir, device=device).train()
    module = DistillationModule(
        student,
        teacher,
        method,
        loss_cfg,
        bool(task.get("mse_include_english", True)),
        cache_teacher=bool(task.get("cache_teacher", True)),
    )

    def eval_fn(m: nn.Module) -> dict[str, float]:
        return {"dev_loss": mean_dev_loss(m, dev, args.batch_size)}

    chash = config_hash(
        {"method": method},
        dict(loss_cfg),
        {k: v for k, v in loop_cfg.items() if k != "output_dir"},
        task,
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    is_main = int(os.environ.get("RANK", "0")) == 0
    if is_main:
        effective = {
            "method": method,
            "language": language,
            "loss": dict(loss_cfg),
            "train": args.to_dict(),
            "task": task,
            "n_train_pairs": len(train),
            "bitext": {"train": str(train_bitext), "dev": str(dev_bitext) if dev_bitext else None},
            "teacher": str(teacher_dir),
            "config_hash": chash,
        }
        atomic_write_text(
            output_dir / "train_config.json", json.dumps(effective, indent=2, default=str) + "\n"
        )

    english = [en for _, en in train] + [en for _, en in dev]
    module.targets.precompute(english, args.batch_size)
    trainer = Trainer(module, args, train, collate_pairs, eval_fn=eval_fn if dev else None)
    result = trainer.train()

    model_dir = output_dir / MODEL_SUBDIR
    if is_main:
        student.eval()
        final_dev = mean_dev_loss(module.eval(), dev, args.batch_size) if dev else None
        student.save_pretrained(model_dir)
        card = "\n".join(
            [
                f"# {method} student for '{language}'",
                "",
                f"Query encoder distilled from the teacher at `{teacher_dir}` on bitext only "
                f"({len(train)} training pairs from `{train_bitext}`), method `{method}`.",
                "Documents are encoded by the teacher; use this model for queries in "
                f"'{language}' only.",
                "",
                f"- optimizer steps: {result.step} (resumed from step {result.resumed_from})",
                f"- final training loss: {result.last_loss}",
                f"- final dev loss: {final_dev}",
                f"- seed: {args.seed}",
                f"- config hash: {chash}",
                "",
            ]
        )
        atomic_write_text(model_dir / "README.md", card)
        logger.info("student saved to %s (dev loss %s)", model_dir, final_dev)
    return model_dir
