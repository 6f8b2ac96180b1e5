"""Supervised fine-tuning on packed sequences (``r1lab sft``; ``r1lab pretrain`` reuses it).

The report's SFT stages (cold start, A; rejection-sampled data, C) train 2-3 epochs with a
cosine learning rate from 5e-5 to 5e-6, context 32,768 and batch 128, on sequences packed
best-fit into fixed token budgets (:mod:`r1lab.data.packing`).

An example is ``{"prompt": str, "response": str}`` (the prompt becomes a user turn of the
chat template with the assistant header after it; the response is followed by the EOS token,
so the model learns to stop) or ``{"text": str}`` for plain language modelling (followed by
EOS too, so documents are delimited).

The loss of an optimizer step is the mean negative log-likelihood over all loss tokens of the
step, across its gradient-accumulation micro-batches: each micro-batch's summed NLL is divided
by the step's total loss-token count. So a token weighs the same whichever micro-batch or
packed row it lands in, and splitting a step into more micro-batches leaves the gradient as it
was. (Dividing each micro-batch by its own count, then by ``grad_accum``, would up-weight the
tokens of micro-batches with few loss tokens.)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from r1lab.config import (
    a_device,
    at_least,
    in_range,
    one_of,
    option,
    positive,
    section,
    to_dict,
    validate,
)
from r1lab.data.packing import (
    LOGPROB_CHUNK_TOKENS,
    PackedBatch,
    collate,
    forward_logprobs,
    pack,
    padding_efficiency,
)
from r1lab.errors import UserError
from r1lab.runs import Run, RunConfig
from r1lab.training.device import autocast_for, resolve_device
from r1lab.training.optim import adamw
from r1lab.training.schedule import cosine_schedule, warmup_steps_for

__all__ = [
    "SFTConfig",
    "SFTDataConfig",
    "SFTStageConfig",
    "run_sft_stage",
    "tokenize_examples",
    "train_sft",
]


@dataclass
class SFTConfig:
    """Optimisation, packing and batching of supervised fine-tuning."""

    lr_max: float = option(
        5e-4,
        "peak learning rate, reached at the end of warm-up (tiny models take larger steps)",
        report=5e-5,
        check=positive(),
    )
    lr_min: float = option(
        5e-5,
        "learning rate at the last step, the end of the cosine",
        report=5e-6,
        check=at_least(0),
    )
    warmup_ratio: float = option(
        0.05, "share of the steps spent on the linear warm-up", check=in_range(0, 1, high_open=True)
    )
    warmup_steps: int | None = option(
        None, "warm-up steps; when set it replaces warmup_ratio", check=at_least(0)
    )
    epochs: int = option(2, "passes over the data", report="2-3", check=at_least(1))
    max_steps: int = option(
        0,
        "stop after this many optimizer steps (0: all epochs); the schedule spans them",
        check=at_least(0),
    )
    token_budget: int = option(
        1024,
        "tokens per packed row; longer examples are handled by 'overlong'",
        report=32768,
        check=at_least(2),
    )
    rows_per_micro_batch: int = option(
        2, "packed rows per forward/backward pass", check=at_least(1)
    )
    logprob_chunk_tokens: int = option(
        LOGPROB_CHUNK_TOKENS,
        "tokens whose full-vocabulary logits are computed at once (and recomputed in the "
        "backward pass): memory [chunk, vocab] instead of [tokens of a micro-batch, vocab], "
        "the same loss and gradients",
        check=at_least(1),
    )
    grad_accum: int = option(
        2,
        "micro-batches per optimizer step; rows per step = rows_per_micro_batch * grad_accum",
        report="rows_per_micro_batch * grad_accum = 128 (batch 128)",
        check=at_least(1),
    )
    max_grad_norm: float = option(
        1.0, "clip the global gradient norm to this (0: no clipping)", check=at_least(0)
    )
    weight_decay: float = option(
        0.0, "AdamW weight decay (not given in the report)", check=at_least(0)
    )
    adam_beta1: float = option(0.9, "AdamW beta1", check=in_range(0, 1, high_open=True))
    adam_beta2: float = option(0.95, "AdamW beta2", check=in_range(0, 1, high_open=True))
    adam_eps: float = option(1e-8, "AdamW epsilon", check=positive())
    loss_on: str = option(
        "response",
        "response: loss on the response and its EOS only; all: on every token, the prompt "
        "and chat markup included (pretraining documents are always 'all')",
        check=one_of("response", "all"),
    )
    overlong: str = option(
        "truncate",
        "an example longer than token_budget: truncate (keep its first token_budget tokens) "
        "or drop it",
        check=one_of("truncate", "drop"),
    )
    dtype: str = option(
        "auto",
        "compute dtype: float32, bfloat16 (autocast, weights stay as loaded), or auto "
        "(bfloat16 on CUDA, float32 on CPU)",
        check=one_of("auto", "float32", "bfloat16"),
    )
    device: str = option(
        "auto",
        "cpu, cuda, or auto (cuda when available)",
        check=a_device(),
    )
    gradient_checkpointing: bool = option(
        False, "recompute activations in the backward pass: less memory, ~30% more time"
    )


@dataclass
class SFTDataConfig:
    """Where the examples come from."""

    path: str = option(
        "",
        "JSONL or Parquet file of examples; a relative path not found here is looked up "
        "among the packaged benchmarks (gsm8k/train.jsonl)",
    )
    format: str = option(
        "chat",
        "chat: records with prompt and response; text: records with text (pretraining)",
    )
    fields: dict[str, str] = option(
        {}, "field mapping, our name -> the file's, e.g. {prompt: question, response: answer}"
    )
    limit: int = option(0, "use the first N records (0: all)")


@dataclass
class SFTStageConfig:
    """``r1lab sft``: fine-tune a model folder on a file of examples."""

    model: str = option("runs/pretrain/final", "model folder to start from (Hugging Face format)")
    tokenizer: str = option("", "tokenizer folder (empty: the model folder)")
    data: SFTDataConfig = section(SFTDataConfig)
    sft: SFTConfig = section(SFTConfig)
    run: RunConfig = section(RunConfig)


# --- tokenization -------------------------------------------------------------------------


def tokenize_examples(
    tokenizer: Any, examples: list[dict[str, Any]], loss_on: str = "response"
) -> list[dict[str, list]]:
    """Examples -> sequences ``{"input_ids": [...], "loss_mask": [...]}``.

    Prompt and response are tokenized separately, as generation sees them: the model is
    given the templated prompt's tokens and produces the response's.
    """
    if loss_on not in ("response", "all"):
        raise UserError(f"sft.loss_on must be response or all, got '{loss_on}'")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise UserError("the tokenizer has no EOS token; SFT appends it to every example")
    texts, chat = [], []
    for i, ex in enumerate(examples):
        if "text" in ex:
            texts.append(("", str(ex["text"])))
            chat.append(False)
        elif "prompt" in ex and "response" in ex:
            prompt = tokenizer.apply_chat_template(
                [{"role": "user", "content": str(ex["prompt"])}],
                tokenize=False,
                add_generation_prompt=True,
            )
            texts.append((prompt, str(ex["response"])))
            chat.append(True)
        else:
            raise UserError(f"example {i}: expected fields prompt and response, or text")
    heads = tokenizer([t[0] for t in texts], add_special_tokens=False)["input_ids"]
    bodies = tokenizer([t[1] for t in texts], add_special_tokens=False)["input_ids"]
    sequences = []
    for head, body, is_chat in zip(heads, bodies, chat, strict=True):
        body = [*body, eos]
        on_head = not is_chat or loss_on == "all"
        sequences.append(
            {"input_ids": head + body, "loss_mask": [on_head] * len(head) + [True] * len(body)}
        )
    return sequences


def _fit_budget(sequences: list[dict[str, list]], budget: int, overlong: str) -> tuple[list, dict]:
    """Truncate or drop sequences longer than the budget; drop those left with no loss token."""
    if overlong not in ("truncate", "drop"):
        raise UserError(f"sft.overlong must be truncate or drop, got '{overlong}'")
    kept, truncated, dropped = [], 0, 0
    for seq in sequences:
        cut = len(seq["input_ids"]) > budget
        if cut and overlong == "truncate":
            seq = {k: v[:budget] for k, v in seq.items()}
        # The first token is never a target, so a sequence needs a loss token after it.
        if (cut and overlong == "drop") or not any(seq["loss_mask"][1:]):
            dropped += 1
            continue
        truncated += cut
        kept.append(seq)
    return kept, {"truncated": truncated, "dropped": dropped}


# --- training -----------------------------------------------------------------------------


def _train_step(
    model: Any,
    micro_batches: list[PackedBatch],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    cfg: SFTConfig,
    autocast: Any,
) -> dict[str, float]:
    """One optimizer step over ``micro_batches``: accumulate, clip, step, advance the lr."""
    lr = optimizer.param_groups[0]["lr"]
    # Normalise by the step's loss tokens (module docstring): the step's token-mean NLL.
    loss_tokens = sum(int(mb.loss_mask.sum()) for mb in micro_batches)
    loss_total = 0.0
    for mb in micro_batches:
        with autocast():
            logp = forward_logprobs(model, mb, chunk_tokens=cfg.logprob_chunk_tokens)
        loss = -(logp * mb.loss_mask).sum() / max(loss_tokens, 1)
        loss.backward()
        loss_total += loss.item()
    max_norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return {"loss": loss_total, "lr": lr, "grad_norm": float(grad_norm), "loss_tokens": loss_tokens}


def _step_bins(order: list[int], index: int, rows_per_step: int, rows: int) -> list[list[int]]:
    """The bin ids of step ``index`` of an epoch, split into micro-batches of ``rows``."""
    chosen = order[index * rows_per_step : (index + 1) * rows_per_step]
    return [chosen[i : i + rows] for i in range(0, len(chosen), rows)]


def _epoch_order(num_bins: int, seed: int, epoch: int) -> list[int]:
    # Seeded by (seed, epoch) alone, so a resumed run rebuilds the same order without
    # replaying the RNG.
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(num_bins, generator=gen).tolist()


def train_sft(
    model: Any,
    tokenizer: Any,
    examples: list[dict[str, Any]],
    cfg: SFTConfig,
    run: Run,
    resume: bool = False,
    run_cfg: RunConfig | None = None,
) -> dict[str, Any]:
    """Fine-tune ``model`` in place on ``examples``; returns the summary (also summary.json).

    Logs one metrics line per optimizer step to ``run``, checkpoints every
    ``run_cfg.save_every`` steps and at the end, and with ``resume`` continues from the run's
    latest complete checkpoint: the weights, optimizer, schedule and RNG state are restored
    and the data order is rebuilt from the seed, so the result equals an uninterrupted run.
    """
    from tqdm.auto import tqdm

    run_cfg = run_cfg or RunConfig()
    device = resolve_device(cfg.device)
    autocast = autocast_for(cfg.dtype, device)
    validate(cfg)  # load_config did for the command line; this is for callers in code

    sequences, dropped = _fit_budget(
        tokenize_examples(tokenizer, examples, cfg.loss_on), cfg.token_budget, cfg.overlong
    )
    if not sequences:
        raise UserError("sft: no example has a token to learn from")
    lengths = [len(s["input_ids"]) for s in sequences]
    bins = pack(lengths, cfg.token_budget)
    efficiency = padding_efficiency(lengths, bins, cfg.token_budget)
    rows_per_step = cfg.rows_per_micro_batch * cfg.grad_accum
    steps_per_epoch = math.ceil(len(bins) / rows_per_step)
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps > 0:
        total_steps = min(total_steps, cfg.max_steps)

    model.to(device).train()
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    optimizer = adamw(
        model.parameters(),
        lr=cfg.lr_max,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        eps=cfg.adam_eps,
        weight_decay=cfg.weight_decay,
    )
    warmup = warmup_steps_for(total_steps, cfg.warmup_steps, cfg.warmup_ratio)
    scheduler = cosine_schedule(optimizer, total_steps, cfg.lr_max, cfg.lr_min, warmup)

    # What a step trains on: a checkpoint made with another layout cannot be continued.
    layout = {"rows": len(bins), "rows_per_step": rows_per_step, "token_budget": cfg.token_budget}
    state = run.restore(model, optimizer, scheduler, layout, total_steps) if resume else {}
    start = int(state.get("step", 0))

    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    started = time.time()
    bar = tqdm(total=total_steps, initial=start, desc="sft", unit="step", disable=None)
    order, order_epoch = [], -1
    for step in range(start, total_steps):
        epoch, index = divmod(step, steps_per_epoch)
        if epoch != order_epoch:
            order, order_epoch = _epoch_order(len(bins), run_cfg.seed, epoch), epoch
        t0 = time.time()
        micro = [
            collate([bins[b] for b in ids], sequences, cfg.token_budget, pad_id).to(device)
            for ids in _step_bins(order, index, rows_per_step, cfg.rows_per_micro_batch)
        ]
        stats = _train_step(model, micro, optimizer, scheduler, cfg, autocast)
        seconds = time.time() - t0
        tokens = sum(mb.num_tokens for mb in micro)
        slots = sum(mb.input_ids.numel() for mb in micro)
        run.log(
            {
                "step": step + 1,
                "epoch": round((step + 1) / steps_per_epoch, 4),
                **stats,
                "tokens": tokens,
                "padding_efficiency": tokens / slots,
                "step_seconds": round(seconds, 4),
                "tokens_per_s": round(tokens / max(seconds, 1e-9), 1),
            }
        )
        bar.update(1)
        bar.set_postfix(
            loss=f"{stats['loss']:.3f}",
            lr=f"{stats['lr']:.2e}",
            tok_s=f"{tokens / max(seconds, 1e-9):.0f}",
        )
        done = step + 1
        if done == total_steps or (run_cfg.save_every > 0 and done % run_cfg.save_every == 0):
            run.save_checkpoint(
                done,
                model,
                tokenizer,
                optimizer,
                scheduler,
                state={"step": done, "epoch": epoch, "layout": layout},
                keep_last=run_cfg.keep_last,
            )
    bar.close()
    model.eval()

    losses = [m["loss"] for m in run.metrics()]
    summary = {
        "stage": "sft",
        "steps": total_steps,
        "resumed_from": start,
        "epochs": cfg.epochs,
        "examples": len(examples),
        "sequences": len(sequences),
        "truncated": dropped["truncated"],
        "dropped": dropped["dropped"],
        "rows": len(bins),
        "token_budget": cfg.token_budget,
        "tokens_per_epoch": sum(lengths),
        "padding_efficiency": round(efficiency, 4),
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "seconds": round(time.time() - started, 1),
    }
    run.write_summary(summary)
    return summary


# --- the stage ----------------------------------------------------------------------------


def run_sft_stage(cfg: SFTStageConfig, resume: bool = False) -> dict[str, Any]:
    """Load the model and data, train, save ``runs/<name>/final``; returns the summary."""
    from r1lab.data.io import read_records
    from r1lab.data.tasks import find_data_file
    from r1lab.models import load_model, load_tokenizer
    from r1lab.runs import save_model_atomic, seed_everything

    if not cfg.data.path:
        raise UserError("no SFT data: give a JSONL or Parquet file with data.path=<file>")
    required = {"chat": ("prompt", "response"), "text": ("text",)}.get(cfg.data.format)
    if required is None:
        raise UserError(f"data.format must be chat or text, got '{cfg.data.format}'")
    examples = read_records(find_data_file(cfg.data.path), cfg.data.fields, required)
    if cfg.data.limit > 0:
        examples = examples[: cfg.data.limit]
    examples = [{k: ex[k] for k in required} for ex in examples]

    if not examples:
        raise UserError(f"{cfg.data.path}: no examples (the file is empty)")
    # Load before creating the run folder: a bad model path must leave nothing behind.
    model = load_model(cfg.model)
    tokenizer = load_tokenizer(cfg.tokenizer or cfg.model)
    run = Run.create(cfg.run, "sft", cfg, resume=resume)
    seed_everything(cfg.run.seed)
    summary = train_sft(model, tokenizer, examples, cfg.sft, run, resume=resume, run_cfg=cfg.run)

    final = save_model_atomic(model, tokenizer, run.path / "final")
    summary = {**summary, "model": str(final), "base_model": cfg.model, "config": to_dict(cfg)}
    run.write_summary(summary)
    return summary
