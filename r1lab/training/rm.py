"""Reward-model training (report §9.2): the helpfulness model on preference pairs with the
Bradley–Terry loss, the safety model on safe/unsafe labelled responses with the point-wise
loss (:mod:`r1lab.training.losses`).

One step, as :func:`train_rm` reads::

    batch     ``batch_size`` pairs (or labelled responses) of the epoch's shuffled order
    scores    the reward model's score of each sequence (:func:`sequence_scores`: the head on
              the last token; the helpfulness model reads the answer part, safety the whole)
    loss      -log σ(r_chosen - r_rejected)  |  BCE(σ(r), safe)
    update    backward, clip, AdamW step, cosine schedule

At the end the model's scores on its training responses give the mean and std that
normalise its rewards in stage D (:meth:`~r1lab.inference.reward_model.RewardModel.normalise`).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Any

import torch

from r1lab.config import a_device, at_least, in_range, one_of, option, positive, validate
from r1lab.errors import UserError
from r1lab.inference.reward_model import rm_sequences, rm_text, sequence_scores
from r1lab.runs import Run, RunConfig
from r1lab.training.device import autocast_for, resolve_device
from r1lab.training.losses import bradley_terry_loss, pointwise_loss
from r1lab.training.optim import adamw
from r1lab.training.schedule import cosine_schedule, warmup_steps_for

__all__ = ["RMTrainConfig", "auc", "evaluate_rm", "rm_rows", "train_rm"]

# per kind: the fields of a data record
FIELDS = {"helpfulness": ("prompt", "chosen", "rejected"), "safety": ("prompt", "response", "safe")}


@dataclass
class RMTrainConfig:
    """Optimisation of a reward model; ``report`` gives the report's values (§9.2, the same
    for both models)."""

    batch_size: int = option(
        8, "pairs (helpfulness) or responses (safety) per optimizer step", report=256,
        check=at_least(1),
    )  # fmt: skip
    lr: float = option(
        1e-4, "peak learning rate (after warm-up; cosine decay to lr_min)", report=6e-6,
        check=positive(),
    )  # fmt: skip
    lr_min: float = option(1e-5, "learning rate at the last step", check=at_least(0))
    warmup_ratio: float = option(
        0.05, "share of the steps spent on linear warm-up", check=in_range(0, 1, high_open=True)
    )
    # a few hundred pairs need many passes; the report's 66k pairs need one
    epochs: int = option(10, "passes over the data", report=1, check=at_least(1))
    max_length: int = option(
        512, "tokens of prompt + scored text at most (a longer one keeps its end)", report=8192,
        check=at_least(2),
    )  # fmt: skip
    micro_batch_tokens: int = option(
        4096, "token slots per forward pass of the scores", check=at_least(1)
    )
    max_grad_norm: float = option(1.0, "clip the gradient norm to this (0: off)", check=at_least(0))
    weight_decay: float = option(0.0, "AdamW weight decay", check=at_least(0))
    dtype: str = option(
        "auto",
        "compute dtype: float32, bfloat16 (autocast) or auto (bfloat16 on CUDA)",
        check=one_of("auto", "float32", "bfloat16"),
    )
    device: str = option("auto", "cpu, cuda, or auto", check=a_device())


def rm_rows(records: list[dict[str, Any]], kind: str, source: str) -> list[dict[str, Any]]:
    """Records of a reward model's data file, checked: every field of :data:`FIELDS` there, text
    where text belongs, ``safe`` a boolean. ``source`` names the file in errors."""
    if kind not in FIELDS:
        raise UserError(f"rm.kind must be one of {', '.join(FIELDS)}, got '{kind}'")
    rows = []
    for i, r in enumerate(records, 1):
        missing = [f for f in FIELDS[kind] if f not in r]
        if missing:
            raise UserError(f"{source}: record {i}: no field '{missing[0]}' (a {kind} record "
                            f"has {', '.join(FIELDS[kind])})")  # fmt: skip
        if kind == "safety" and not isinstance(r["safe"], bool):
            raise UserError(f"{source}: record {i}: field 'safe' must be true or false")
        texts = [f for f in FIELDS[kind] if f != "safe"]
        if not all(isinstance(r[f], str) for f in texts):
            raise UserError(f"{source}: record {i}: fields {', '.join(texts)} must be text")
        rows.append({f: r[f] for f in FIELDS[kind]})
    return rows


def _sequences(tokenizer: Any, rows: list[dict[str, Any]], kind: str, max_length: int) -> list:
    """Per row its token sequences: [chosen, rejected] or [response]."""
    texts = ("chosen", "rejected") if kind == "helpfulness" else ("response",)
    prompts = [r["prompt"] for r in rows for _ in texts]
    bodies = [rm_text(kind, r[t]) for r in rows for t in texts]
    flat = rm_sequences(tokenizer, prompts, bodies, max_length)
    return [flat[i : i + len(texts)] for i in range(0, len(flat), len(texts))]


def _loss(scores: torch.Tensor, rows: list[dict[str, Any]], kind: str) -> torch.Tensor:
    if kind == "helpfulness":
        return bradley_terry_loss(scores[0::2], scores[1::2])
    labels = torch.tensor([r["safe"] for r in rows], dtype=torch.float32, device=scores.device)
    return pointwise_loss(scores, labels)


def train_rm(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    kind: str,
    cfg: RMTrainConfig,
    run: Run,
    run_cfg: RunConfig,
    resume: bool = False,
) -> dict[str, Any]:
    """Train ``model`` (an ``AutoModelForSequenceClassification`` with one label) in place on
    ``rows``; logs a metrics line per step, checkpoints every ``run_cfg.save_every`` steps
    and resumes from the last one. Returns the training summary with the normalisation
    statistics (``score_mean``, ``score_std``)."""
    from tqdm.auto import tqdm

    validate(cfg)
    if not rows:
        raise UserError(f"rm: no {kind} training data")
    device = resolve_device(cfg.device)
    autocast = autocast_for(cfg.dtype, device)
    pad = tokenizer.pad_token_id or 0
    seqs = _sequences(tokenizer, rows, kind, cfg.max_length)
    steps_per_epoch = math.ceil(len(rows) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    model.to(device).train()
    optimizer = adamw(model.parameters(), cfg.lr, (0.9, 0.95), 1e-8, cfg.weight_decay)
    warmup = warmup_steps_for(total, None, cfg.warmup_ratio)
    scheduler = cosine_schedule(optimizer, total, cfg.lr, cfg.lr_min, warmup)
    layout = {"rows": len(rows), "batch_size": cfg.batch_size}
    state = run.restore(model, optimizer, scheduler, layout, total) if resume else {}
    start = int(state.get("step", 0))
    started = time.time()
    bar = tqdm(total=total, initial=start, desc=f"rm ({kind})", unit="step", disable=None)
    for step in range(start, total):
        epoch, index = divmod(step, steps_per_epoch)
        order = list(range(len(rows)))
        random.Random(f"rm-{run_cfg.seed}-{epoch}").shuffle(order)
        idx = order[index * cfg.batch_size : (index + 1) * cfg.batch_size]
        t0 = time.time()
        batch = [s for i in idx for s in seqs[i]]
        with autocast():
            scores = sequence_scores(model, batch, cfg.micro_batch_tokens, 0, pad, device)
        loss = _loss(scores, [rows[i] for i in idx], kind)
        loss.backward()
        norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), norm)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        record = {"step": step + 1, "epoch": round((step + 1) / steps_per_epoch, 4),
                  "loss": loss.item(), "grad_norm": float(grad_norm), "lr": lr,
                  "step_seconds": round(time.time() - t0, 4)}  # fmt: skip
        if kind == "helpfulness":
            record["train_accuracy"] = float((scores[0::2] > scores[1::2]).float().mean())
        run.log(record)
        bar.update(1)
        bar.set_postfix(loss=f"{record['loss']:.3f}")
        done = step + 1
        if done == total or (run_cfg.save_every > 0 and done % run_cfg.save_every == 0):
            run.save_checkpoint(done, model, tokenizer, optimizer, scheduler,
                                {"step": done, "layout": layout}, keep_last=run_cfg.keep_last)  # fmt: skip
    bar.close()
    model.eval()
    flat = [s for pair in seqs for s in pair]
    with torch.no_grad(), autocast():
        values = sequence_scores(model, flat, cfg.micro_batch_tokens, 0, pad, device).cpu()
    losses = [m["loss"] for m in run.metrics()]
    return {
        "steps": total,
        "resumed_from": start,
        "examples": len(rows),
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "score_mean": float(values.mean()),
        "score_std": float(values.std()) if len(values) > 1 else 1.0,
        "seconds": round(time.time() - started, 1),
    }


def auc(scores: list[float], labels: list[bool]) -> float | None:
    """The area under the ROC curve of ``scores`` for the positive ``labels``: the chance that a
    random positive scores above a random negative, ties counting one half (Mann–Whitney U).
    None without both classes."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return None
    ranked = sorted(scores)
    # average rank (1-based) of each distinct score
    ranks: dict[float, float] = {}
    i = 0
    while i < len(ranked):
        j = i
        while j + 1 < len(ranked) and ranked[j + 1] == ranked[i]:
            j += 1
        ranks[ranked[i]] = (i + j) / 2 + 1
        i = j + 1
    u = sum(ranks[s] for s in pos) - len(pos) * (len(pos) + 1) / 2
    return u / (len(pos) * len(neg))


def evaluate_rm(
    model: Any, tokenizer: Any, rows: list[dict[str, Any]], kind: str, cfg: RMTrainConfig
) -> dict[str, Any]:
    """Held-out metrics: ``pairwise_accuracy`` (chosen scored above rejected, ties one half)
    for helpfulness; ``safety_auc`` and ``safety_accuracy`` (σ(score) > 0.5 is "safe") for
    safety."""
    if not rows:
        return {"examples": 0}
    device = resolve_device(cfg.device)
    pad = tokenizer.pad_token_id or 0
    seqs = [s for pair in _sequences(tokenizer, rows, kind, cfg.max_length) for s in pair]
    with torch.no_grad(), autocast_for(cfg.dtype, device)():
        scores = sequence_scores(model.eval(), seqs, cfg.micro_batch_tokens, 0, pad, device)
    scores = scores.cpu().tolist()
    if kind == "helpfulness":
        wins = [
            1.0 if c > r else 0.5 if c == r else 0.0
            for c, r in zip(scores[0::2], scores[1::2], strict=True)
        ]
        return {"examples": len(rows), "pairwise_accuracy": round(sum(wins) / len(wins), 4)}
    labels = [r["safe"] for r in rows]
    right = [(s > 0) == y for s, y in zip(scores, labels, strict=True)]
    area = auc(scores, labels)
    return {
        "examples": len(rows),
        "unsafe": sum(not y for y in labels),
        "safety_auc": None if area is None else round(area, 4),
        "safety_accuracy": round(sum(right) / len(right), 4),
    }
