"""The reference policy of GRPO's KL term, and batched scoring of responses.

The report's inference module runs forward passes of frozen models over the rollout: the
reference policy here, reward models later. :func:`response_logprobs` is the one forward
both need, the training pass included (with gradients there): prompt + response sequences
are laid out by :func:`micro_batches`, packed best-fit (:mod:`r1lab.data.packing`) or one a
row sorted by length, and the log-probs of the response tokens come back one row per
response, ``[S, T]`` with a mask, the layout that :func:`r1lab.training.losses.grpo_loss`
takes.

R1-Zero replaces the reference by the current policy every 400 steps, so the KL term holds
the policy near where it was recently, not near the base forever.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from r1lab.data.packing import (
    LOGPROB_CHUNK_TOKENS,
    PackedBatch,
    collate,
    forward_logprobs,
    pack,
)

__all__ = ["ReferencePolicy", "micro_batches", "response_logprobs", "score_responses"]


def micro_batches(
    lengths: Sequence[int], budget: int, micro_batch_tokens: int
) -> list[tuple[list[list[int]], int]]:
    """The forward passes over sequences of ``lengths``: ``(rows, width)`` per micro-batch,
    each row a list of sequence ids, every row ``width`` tokens wide.

    ``budget > 0``: best-fit packing into rows of ``max(budget, longest)`` tokens,
    ``micro_batch_tokens // width`` rows a pass. ``budget == 0``: one sequence a row, longest
    first, so that the rows of a pass have similar lengths and the pass is as wide as its
    longest; a pass holds up to ``micro_batch_tokens`` token slots (at least one row).
    """
    if budget > 0:
        width = max(budget, *lengths) if lengths else budget
        bins = pack(lengths, width)
        rows = max(1, micro_batch_tokens // width)
        return [(bins[i : i + rows], width) for i in range(0, len(bins), rows)]
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    out, i = [], 0
    while i < len(order):
        width = lengths[order[i]]
        rows = max(1, micro_batch_tokens // width)
        out.append(([[s] for s in order[i : i + rows]], width))
        i += rows
    return out


def response_logprobs(
    model: Any,
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    bins: Sequence[Sequence[int]],
    width: int,
    pad_token_id: int = 0,
    temperature: float = 1.0,
    device: str | torch.device = "cpu",
    chunk_tokens: int = LOGPROB_CHUNK_TOKENS,
) -> tuple[Tensor, Tensor, list[int]]:
    """Log-probs of the response tokens of the sequences in ``bins`` (one packed forward).

    Returns ``logp [S, T]`` (T = the longest response among them), ``mask [S, T]`` and the
    sequence ids in row order. ``logp[i, j]`` is ``log π(response_i[j] | prompt_i,
    response_i[:j])`` at temperature ``temperature`` (the distribution the rollout sampled
    from); masked positions hold 0. The vocabulary's log-softmax is taken ``chunk_tokens``
    tokens at a time (:func:`r1lab.data.packing.forward_logprobs`). Gradients flow when the
    caller has them enabled.
    """
    order = [s for b in bins for s in b]
    local, k = [], 0
    for b in bins:  # renumber the chosen sequences 0..S-1, in row order
        local.append(list(range(k, k + len(b))))
        k += len(b)
    seqs = [{"input_ids": [*prompts[s], *responses[s]]} for s in order]
    batch: PackedBatch = collate(local, seqs, width, pad_token_id).to(device)
    packed = forward_logprobs(model, batch, temperature, chunk_tokens)
    longest = max((len(responses[s]) for s in order), default=0)
    rows = torch.zeros(len(order), max(longest, 1), dtype=torch.long)
    cols = torch.zeros_like(rows)
    mask = torch.zeros(len(order), max(longest, 1), dtype=torch.bool)
    for i, s in enumerate(order):
        row, start, _ = batch.spans[i]
        n = len(responses[s])
        rows[i, :n] = row
        cols[i, :n] = start + len(prompts[s]) + torch.arange(n)
        mask[i, :n] = True
    mask = mask.to(packed.device)
    logp = torch.where(mask, packed[rows.to(packed.device), cols.to(packed.device)], 0.0)
    return logp, mask, order


class ReferencePolicy:
    """A frozen copy of the policy that scores rollouts for the KL term."""

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype | None = None):
        """A copy of ``model``, stored in ``dtype`` (default: the model's own)."""
        self.model = copy.deepcopy(model).eval()
        if dtype is not None:
            self.model.to(dtype)
        self.model.requires_grad_(False)

    def reset(self, model: torch.nn.Module) -> None:
        """Become a copy of ``model``'s current weights (R1-Zero does this every 400 steps),
        cast to the reference's storage dtype."""
        self.model.load_state_dict(model.state_dict())

    def state_dict(self) -> dict[str, Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.model.load_state_dict(state)

    def logprobs(
        self, prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], **kw: Any
    ) -> list[Tensor]:
        """The reference log-probs of every response (:func:`score_responses`)."""
        return score_responses(self.model, prompts, responses, **kw)


@torch.inference_mode()
def score_responses(
    model: Any,
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    budget: int,
    micro_batch_tokens: int,
    pad_token_id: int = 0,
    temperature: float = 1.0,
    device: str | torch.device = "cpu",
    autocast: Any = None,
    chunk_tokens: int = LOGPROB_CHUNK_TOKENS,
) -> list[Tensor]:
    """Log-probs of every response under ``model`` (no gradients), a 1-d CPU tensor each,
    computed in the micro-batches of :func:`micro_batches`."""
    out: list[Tensor] = [torch.zeros(0)] * len(responses)
    lengths = [len(p) + len(r) for p, r in zip(prompts, responses, strict=True)]
    for bins, width in micro_batches(lengths, budget, micro_batch_tokens):
        with autocast() if autocast else contextlib.nullcontext():
            logp, _, order = response_logprobs(
                model,
                prompts,
                responses,
                bins,
                width,
                pad_token_id,
                temperature,
                device,
                chunk_tokens,
            )
        logp = logp.float().cpu()
        for i, s in enumerate(order):
            out[s] = logp[i, : len(responses[s])].clone()
    return out
