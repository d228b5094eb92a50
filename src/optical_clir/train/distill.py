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
(``save_pretrained`` + model card + ``dev_criterion.json``), ``checkpoints/``,
``metrics.jsonl`` (losses, OT plan diagnostics, dev loss) and ``train_config.json``; training
resumes from the last checkpoint when rerun.
"""

from __future__ import annotations

import json
import logging
import os
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from optical_clir.errors import ConfigError, InputError
from optical_clir.evaluation.bitext_retrieval import bitext_retrieval
from optical_clir.io import atomic_write_text, file_sha256, open_text, tree_sha256
from optical_clir.losses.optimal_transport import OTAlignmentLoss, OTResult
from optical_clir.models.card import ST_USAGE, encoder_card_metadata, front_matter
from optical_clir.models.encoder import TokenEncoder
from optical_clir.train.loop import Trainer, TrainingArguments
from optical_clir.train.teacher import MODEL_SUBDIR, config_hash

logger = logging.getLogger(__name__)

METHODS = ("optical", "kd_mse")
Pair = tuple[str, str]  # (L sentence, English sentence)

TASK_KEYS = ("mse_include_english", "dev_max_pairs", "max_train_pairs", "cache_teacher")
# Files of a published model folder that describe it rather than make it up: left out of
# the teacher's hash in a student's training fingerprint.
TEACHER_PROVENANCE = ("README.md", "metrics.jsonl", "train_config.json")
# Keys of ``distill.loss`` read here rather than by the OT loss itself.
MASS_KEYS = ("special_tokens",)
SPECIAL_TOKEN_POLICIES = ("keep", "no_mass")
# A plan whose rows put at most this many times the uniform share on their best token is
# "near uniform": it carries no alignment, and training says so (our threshold).
NEAR_UNIFORM_RATIO = 2.0
# The row-marginal L1 error above which a plan is logged as not converged.
MARGINAL_TOLERANCE = 1e-3
DIAGNOSTIC_KEYS = (
    "row_max_ratio",
    "normalized_entropy",
    "marginal_error",
    "cost_mean",
    "cost_sd",
    "epsilon",
    "iterations",
)


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


# ----------------------------------------------------------------- token mass and weights


def _is_punctuation(token: str) -> bool:
    text = token.removeprefix("##").removeprefix("▁").removeprefix("Ġ")
    return bool(text) and all(unicodedata.category(ch)[0] in "PS" for ch in text)


def massless_token_ids(tokenizer: Any) -> torch.Tensor:
    """A ``[vocab]`` bool table: special tokens ([CLS], [SEP], ...; not [UNK], which stands
    for a word) and punctuation-only tokens, which carry no OT mass with ``special_tokens:
    no_mass`` (our switch)."""
    vocab = tokenizer.get_vocab()
    table = torch.zeros(max(vocab.values()) + 1, dtype=torch.bool)
    for token, index in vocab.items():
        table[index] = _is_punctuation(token)
    special = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}
    table[sorted(special)] = True
    return table


def idf_table(tokenizer: Any, sentences: Sequence[str], max_length: int) -> torch.Tensor:
    """``[vocab]`` smoothed inverse document frequency of each token over ``sentences``,
    ``log((N + 1) / (df + 1)) + 1`` (> 0, so unseen tokens still carry mass)."""
    vocab_size = max(tokenizer.get_vocab().values()) + 1
    df = torch.zeros(vocab_size, dtype=torch.float64)
    for start in range(0, len(sentences), 256):
        ids = tokenizer(
            list(sentences[start : start + 256]), truncation=True, max_length=max_length
        )
        for row in ids["input_ids"]:
            df[sorted(set(row))] += 1
    return torch.log((len(sentences) + 1) / (df + 1)) + 1


# ----------------------------------------------------------------------- teacher targets


class TeacherTargets:
    """The frozen teacher's outputs for English sentences, computed once and reused.

    Every epoch meets the same English sentences and the teacher never changes, so its
    token vectors and token ids (``optical``) or pooled vectors (``kd_mse``) are kept per
    sentence on the CPU (real tokens only) and assembled into a padded batch on demand: the
    teacher runs once per sentence instead of once per epoch (sentence-transformers'
    distillation precomputes its targets likewise). ``enabled=False`` recomputes every time.
    """

    def __init__(self, teacher: TokenEncoder, tokens: bool, max_length: int, enabled: bool = True):
        self.teacher, self.tokens, self.enabled = teacher, tokens, enabled
        self._max_length = max_length
        self.cache: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}

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
    def _compute(self, english: list[str]) -> tuple[torch.Tensor, Any, Any, Any]:
        if self.tokens:
            batch = self.teacher.tokenize(english, self.max_length, word_share=True)
            vectors, mask = self.teacher.encode_batch(batch)
            return vectors, mask, batch["input_ids"], batch["word_share"]
        return self.teacher.encode_pooled(english, self.max_length), None, None, None

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
        vectors, mask, ids, share = self._compute(texts)
        for i, text in enumerate(texts):
            if mask is None:
                self.cache[text] = (vectors[i].detach().cpu(), None, None)
            else:
                keep = mask[i]
                self.cache[text] = (
                    vectors[i][keep].detach().cpu(),
                    ids[i][keep].cpu(),
                    share[i][keep].cpu(),
                )

    @torch.no_grad()
    def __call__(self, english: list[str]) -> tuple[torch.Tensor, Any, Any, Any]:
        """Targets of a batch: ``[B, T, D]`` vectors, ``[B, T]`` mask, token ids (padding id
        0) and word shares (see :meth:`TokenEncoder.tokenize`), or ``[B, D]`` and three None
        for pooled targets."""
        if not self.enabled:
            return self._compute(english)
        missing = [text for text in dict.fromkeys(english) if text not in self.cache]
        if missing:
            self._store(missing)
        device = self.teacher.device
        rows = [self.cache[text] for text in english]
        if not self.tokens:
            return torch.stack([r[0] for r in rows]).to(device), None, None, None
        length = max(r[0].shape[0] for r in rows)
        vectors = rows[0][0].new_zeros((len(rows), length, rows[0][0].shape[-1]))
        mask = torch.zeros((len(rows), length), dtype=torch.bool)
        ids = torch.zeros((len(rows), length), dtype=torch.long)
        share = torch.zeros((len(rows), length), dtype=torch.float32)
        for i, (vec, tok, sh) in enumerate(rows):
            vectors[i, : vec.shape[0]] = vec
            mask[i, : vec.shape[0]] = True
            ids[i, : vec.shape[0]] = tok
            share[i, : vec.shape[0]] = sh
        return vectors.to(device), mask.to(device), ids.to(device), share.to(device)


# ------------------------------------------------------------------------ the module


class DistillationModule(nn.Module):
    """Student + frozen teacher; ``forward(batch)`` returns the distillation loss of a batch.

    ``loss_cfg`` is the ``distill.loss`` config: the OT options of
    :class:`OTAlignmentLoss` plus ``special_tokens`` (``keep``: every real token carries
    mass, as in training the plan over all tokens; ``no_mass``: special tokens and
    punctuation carry none). With ``marginals: idf``, ``idf_sentences`` (the training
    bitext's L and English sides) give each side's token weights.
    """

    def __init__(
        self,
        student: TokenEncoder,
        teacher: TokenEncoder,
        method: str,
        loss_cfg: Mapping[str, Any],
        mse_include_english: bool = True,
        cache_teacher: bool = False,
        idf_sentences: tuple[Sequence[str], Sequence[str]] | None = None,
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
        self.ot_loss = OTAlignmentLoss.from_config(loss_cfg)
        policy = loss_cfg.get("special_tokens", "keep")
        if policy not in SPECIAL_TOKEN_POLICIES:
            raise ConfigError(
                "distill.loss.special_tokens", f"must be one of {SPECIAL_TOKEN_POLICIES}"
            )
        self.no_mass = massless_token_ids(student.tokenizer) if policy == "no_mass" else None
        self.idf: tuple[torch.Tensor, torch.Tensor] | None = None
        if self.ot_loss.marginals == "idf":
            if idf_sentences is None:
                raise ConfigError("distill.loss.marginals", "idf needs the training sentences")
            self.idf = (
                idf_table(student.tokenizer, idf_sentences[0], self.max_length),
                idf_table(teacher.tokenizer, idf_sentences[1], self.max_length),
            )
        self.targets = TeacherTargets(
            teacher, method == "optical", self.max_length, enabled=cache_teacher
        )
        self._window: list[dict[str, Any]] = []

    @property
    def teacher(self) -> TokenEncoder:
        return self._teacher[0]

    def _apply(self, fn: Any, recurse: bool = True) -> DistillationModule:
        # ``.to(device)`` (the Trainer's move to cuda:<local_rank> under torchrun) must move
        # the teacher too, although it is not a submodule.
        super()._apply(fn, recurse)
        self.teacher._apply(fn, recurse)
        return self

    def set_training_progress(self, step: int, total_steps: int) -> None:
        """Called by the Trainer before each step: the OT epsilon schedule follows it."""
        self.ot_loss.set_progress(step / max(1, total_steps))

    def _mass(self, mask: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        if self.no_mass is None:
            return mask
        kept = mask & ~self.no_mass.to(ids.device)[ids]
        # A sentence of special tokens and punctuation only keeps its real tokens.
        return torch.where(kept.any(-1, keepdim=True), kept, mask)

    def token_mass(self, encoder: TokenEncoder, texts: list[str]) -> list[list[bool]]:
        """Which tokens of each text carry OT mass (padded rows, as :meth:`plan_result`
        tokenises them)."""
        batch = encoder.tokenize(texts, self.max_length)
        mass = self._mass(batch["attention_mask"].bool(), batch["input_ids"])
        return [row.tolist() for row in mass.cpu()]

    def plan_result(self, batch: Mapping[str, list[str]]) -> OTResult:
        """The OT loss, plans and diagnostics of a batch (method ``optical``)."""
        source, english = batch["source"], batch["english"]
        self.targets.max_length = self.max_length  # the caller may change the module's
        target, target_mask, target_ids, target_share = self.targets(english)
        tokenized = self.student.tokenize(source, self.max_length, word_share=True)
        student, student_mask = self.student.encode_batch(tokenized)
        s_ids = tokenized["input_ids"]
        weights = (None, None)
        if self.idf is not None:
            weights = (
                self.idf[0].to(s_ids.device)[s_ids],
                self.idf[1].to(s_ids.device)[target_ids],
            )
        elif self.ot_loss.marginals == "word":
            weights = (tokenized["word_share"], target_share)
        return self.ot_loss(
            student,
            self._mass(student_mask, s_ids),
            target,
            self._mass(target_mask, target_ids),
            *weights,
        )

    def forward(self, batch: Mapping[str, list[str]]) -> torch.Tensor:
        if self.method == "optical":
            result = self.plan_result(batch)
            if self.training:
                self._window.append(result.diagnostics)
            return result.loss
        source, english = batch["source"], batch["english"]
        self.targets.max_length = self.max_length
        target = self.targets(english)[0]
        loss = F.mse_loss(self.student.encode_pooled(source, self.max_length), target)
        if self.mse_include_english:
            loss = loss + F.mse_loss(self.student.encode_pooled(english, self.max_length), target)
        return loss

    def training_metrics(self) -> dict[str, float]:
        """Plan diagnostics averaged since the last call (the Trainer logs them); a plan
        near uniform is a warning."""
        if not self._window:
            return {}
        window, self._window = self._window, []
        metrics = {
            f"ot_{key}": sum(float(d[key]) for d in window) / len(window) for key in DIAGNOSTIC_KEYS
        }
        metrics["ot_marginal_error"] = max(float(d["marginal_error"]) for d in window)
        if metrics["ot_marginal_error"] > MARGINAL_TOLERANCE:
            logger.warning(
                "Sinkhorn did not converge: row-marginal error %.2e after %d iterations "
                "(raise distill.loss.max_iter or epsilon)",
                metrics["ot_marginal_error"], int(metrics["ot_iterations"]),
            )  # fmt: skip
        if metrics["ot_row_max_ratio"] < NEAR_UNIFORM_RATIO:
            logger.warning(
                "OT plan near uniform: rows put %.2fx the uniform share on their best token "
                "(epsilon %.4g vs cost sd %.4g); the loss is then a sentence-level mean",
                metrics["ot_row_max_ratio"], metrics["ot_epsilon"], metrics["ot_cost_sd"],
            )  # fmt: skip
        return metrics


@torch.no_grad()
def mean_dev_loss(module: nn.Module, dev: Sequence[Pair], batch_size: int) -> float:
    """Average distillation loss over the dev pairs (weighted by batch size)."""
    total, count = 0.0, 0
    for start in range(0, len(dev), batch_size):
        chunk = list(dev[start : start + batch_size])
        total += float(module(collate_pairs(chunk))) * len(chunk)
        count += len(chunk)
    return total / max(count, 1)


@torch.no_grad()
def dev_plan_diagnostics(
    module: DistillationModule, dev: Sequence[Pair], batch_size: int
) -> tuple[float, dict[str, float]]:
    """The OT loss and plan diagnostics of the final student on the dev pairs in one pass
    (pair-weighted means; the marginal error is the largest)."""
    sums: dict[str, float] = {}
    loss, worst, count = 0.0, 0.0, 0
    for start in range(0, len(dev), batch_size):
        chunk = list(dev[start : start + batch_size])
        result = module.plan_result(collate_pairs(chunk))
        loss += float(result.loss) * len(chunk)
        for key in DIAGNOSTIC_KEYS:
            sums[key] = sums.get(key, 0.0) + float(result.diagnostics[key]) * len(chunk)
        worst = max(worst, float(result.diagnostics["marginal_error"]))
        count += len(chunk)
    diagnostics = {key: value / max(count, 1) for key, value in sums.items()}
    diagnostics["marginal_error"] = worst
    return loss / max(count, 1), diagnostics


def _split_cfg(train_cfg: Mapping[str, Any], output_dir: Path) -> tuple[dict, dict]:
    task = {k: train_cfg[k] for k in TASK_KEYS if k in train_cfg}
    loop = {k: v for k, v in train_cfg.items() if k not in TASK_KEYS}
    loop["output_dir"] = str(output_dir)
    return task, loop


def _model_card(
    method: str,
    language: str,
    teacher_dir: str | Path,
    train_bitext: str | Path,
    n_train: int,
    result: Any,
    final_dev: float | None,
    criterion: dict[str, float] | None,
    plan: dict[str, float] | None,
    seed: int,
    chash: str,
    backbone: str,
) -> str:
    """README of a student: hub front matter (languages, the teacher's backbone and licence),
    then what it was trained on and how it did on the dev bitext."""
    resumed = (
        f" (resumed from step {result.resumed_from})" if result.resumed_from is not None else ""
    )
    method_tags = {"optical": ["optimal-transport"], "kd_mse": []}.get(method, [])
    meta = encoder_card_metadata(
        backbone, [language, "en"],
        ["cross-lingual-retrieval", "knowledge-distillation", *method_tags],
    )  # fmt: skip
    lines = [
        f"# {method} student for '{language}'",
        "",
        f"Query encoder distilled from the teacher at `{teacher_dir}` on bitext only "
        f"({n_train} training pairs from `{train_bitext}`), method `{method}`.",
        f"Documents are encoded by the teacher; use this model for queries in '{language}' only.",
        *ST_USAGE,
        "",
        f"- optimizer steps: {result.step}{resumed}",
        f"- final training loss: {result.last_loss}",
        f"- final dev loss: {final_dev}",
    ]
    if criterion:
        lines.append(
            f"- dev bitext retrieval (L sentence -> its English translation among "
            f"{criterion['pairs']}): P@1 {criterion['p_at_1']:.4f}, MRR {criterion['mrr']:.4f}"
        )
    if plan:
        lines.append(
            "- OT plan on the dev pairs: row max {row_max_ratio:.2f}x uniform, normalised "
            "entropy {normalized_entropy:.3f}, marginal error {marginal_error:.2e}, epsilon "
            "{epsilon:.4g} (cost mean {cost_mean:.3f}, sd {cost_sd:.3f})".format(**plan)
        )
    lines += [f"- seed: {seed}", f"- config hash: {chash}", ""]
    return front_matter(meta) + "\n".join(lines)


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

    ``loss_cfg``: the ``distill.loss`` options (see :class:`DistillationModule`).
    ``train_cfg``: :class:`TrainingArguments` keys plus ``mse_include_english`` (True),
    ``dev_max_pairs`` and ``max_train_pairs`` (the first N training pairs only: the learning
    curve's subsets) and ``cache_teacher`` (True: the teacher's targets are computed once,
    see :class:`TeacherTargets`). The saved model folder holds ``dev_criterion.json``: the
    dev bitext retrieval P@1 and MRR (and, for ``optical``, the plan diagnostics).
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
        idf_sentences=([s for s, _ in train], [e for _, e in train]),
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
    lengths = [len(src) for src, _ in train] if args.group_by_length else None
    fingerprint = {
        "task": "distill",
        "method": method,
        "loss": dict(loss_cfg),
        "task_keys": task,
        "train_bitext_sha256": file_sha256(train_bitext),
        "teacher_sha256": tree_sha256(teacher_dir, skip=TEACHER_PROVENANCE),
    }
    trainer = Trainer(
        module, args, train, collate_pairs, eval_fn=eval_fn if dev else None, lengths=lengths,
        fingerprint=fingerprint,
    )  # fmt: skip
    result = trainer.train()

    model_dir = output_dir / MODEL_SUBDIR
    if is_main:
        student.eval()
        module.eval()
        final_dev, plan = None, None
        if dev and method == "optical":
            final_dev, plan = dev_plan_diagnostics(module, dev, args.batch_size)
        elif dev:
            final_dev = mean_dev_loss(module, dev, args.batch_size)
        criterion = bitext_retrieval(student, teacher, dev, args.batch_size) if dev else None
        if plan and plan["row_max_ratio"] < NEAR_UNIFORM_RATIO:
            logger.warning("final OT plan on the dev pairs is near uniform: %s", plan)
        student.save_pretrained(model_dir)
        record = {"method": method, "language": language, "seed": args.seed,
                  "dev_loss": final_dev, "bitext_retrieval": criterion, "plan": plan}  # fmt: skip
        atomic_write_text(model_dir / "dev_criterion.json", json.dumps(record, indent=2) + "\n")
        card = _model_card(
            method, language, teacher_dir, train_bitext, len(train), result, final_dev,
            criterion, plan, args.seed, chash, student.config.backbone,
        )  # fmt: skip
        atomic_write_text(model_dir / "README.md", card)
        logger.info(
            "student saved to %s (dev loss %s, dev retrieval %s, plan %s)",
            model_dir, final_dev, criterion, plan,
        )  # fmt: skip
    return model_dir
