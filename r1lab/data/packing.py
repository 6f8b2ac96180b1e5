"""Sequence packing: many short sequences in fixed token budgets, no padding to speak of.

As the R1 report's training module does it: sort sequences by length and put each, longest
first, into the row with the least room that still fits it (best-fit decreasing). A packed
row restarts ``position_ids`` at 0 for every sequence, which marks where each sequence
starts: :func:`r1lab.data.varlen.packed_hidden_states` turns the restarts into the
``cu_seqlens`` of varlen attention, so that each sequence attends only to itself without an
``[N, N]`` block mask, and a sequence's log-probs in a packed row equal its log-probs alone
(up to float rounding). A batch of one sequence a row needs no boundaries at all: its padding
follows the sequence, where causal attention keeps it from every real token.

Per-token values travel with the ids: an SFT example carries a ``loss_mask``, a GRPO
response its advantages and old log-probs. A value at position t belongs to token t, the
token predicted from positions < t; ``forward_logprobs`` uses the same alignment, and
computes the log-softmax over the vocabulary a chunk of tokens at a time, so that memory
grows with the row length, not with the row length times the vocabulary.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

__all__ = [
    "LOGPROB_CHUNK_TOKENS",
    "PackedBatch",
    "collate",
    "forward_logprobs",
    "pack",
    "padding_efficiency",
    "token_logprobs",
    "unpack",
]

# Tokens whose full-vocabulary logits are held at once by forward_logprobs: [1024, vocab]
# float32 is 4 KiB a vocabulary entry (600 MiB for Qwen2's 152k), however long the rows.
LOGPROB_CHUNK_TOKENS = 1024


def pack(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Best-fit decreasing: group sequence indices into bins of at most ``budget`` tokens.

    Sequences are taken longest first (ties in index order, so the result is deterministic)
    and each goes into the open bin with the least room left that still fits it; a new bin
    opens when none fits. Bins come out in the order they were opened, each listing its
    sequences longest first. A sequence longer than ``budget`` is an error: the caller
    decides whether to truncate or drop it (the SFT trainer's ``overlong`` option), because
    that choice changes the data, not the layout.
    """
    if budget < 1:
        raise ValueError(f"pack: budget must be positive, got {budget}")
    for i, n in enumerate(lengths):
        if n > budget:
            raise ValueError(f"pack: sequence {i} has {n} tokens, more than the budget {budget}")
        if n < 1:
            raise ValueError(f"pack: sequence {i} is empty")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    bins: list[list[int]] = []
    # (room left, bin id) kept sorted, so the best fit is one bisect away: O(n log n)
    # searches instead of scanning every open bin for every sequence.
    open_bins: list[tuple[int, int]] = []
    for i in order:
        n = lengths[i]
        k = bisect.bisect_left(open_bins, (n, -1))
        if k == len(open_bins):
            bins.append([i])
            room, b = budget - n, len(bins) - 1
        else:
            room, b = open_bins.pop(k)
            bins[b].append(i)
            room -= n
        if room > 0:
            bisect.insort(open_bins, (room, b))
    return bins


def padding_efficiency(lengths: Sequence[int], bins: Sequence[Sequence[int]], budget: int) -> float:
    """Real tokens / token slots: ``sum(lengths) / (len(bins) * budget)``."""
    if not bins:
        return 0.0
    real = sum(lengths[i] for b in bins for i in b)
    return real / (len(bins) * budget)


@dataclass
class PackedBatch:
    """Rows of packed sequences, every tensor ``[rows, budget]``.

    ``tensors`` holds ``input_ids``, ``position_ids`` (restarting at 0 per sequence, and
    for the padding run at the end of a row), ``seq_ids`` (index of the sequence in the
    list given to :func:`collate`, -1 on padding), ``loss_mask`` (bool) and every other
    per-token field of the sequences. ``spans[s] = (row, start, length)`` locates sequence s.
    """

    tensors: dict[str, Tensor]
    spans: dict[int, tuple[int, int, int]]

    @property
    def one_per_row(self) -> bool:
        """Every row holds a single sequence (then plain causal attention is exact)."""
        return len(self.spans) == self.input_ids.shape[0]

    def __getitem__(self, key: str) -> Tensor:
        return self.tensors[key]

    @property
    def input_ids(self) -> Tensor:
        return self.tensors["input_ids"]

    @property
    def position_ids(self) -> Tensor:
        return self.tensors["position_ids"]

    @property
    def loss_mask(self) -> Tensor:
        return self.tensors["loss_mask"]

    @property
    def labels(self) -> Tensor:
        """Hugging Face style labels (ids, -100 where no loss), for ``model(labels=...)``.

        The first token of every sequence is masked, so the shifted loss never asks the last
        token of one sequence to predict the first token of the next.
        """
        return torch.where(self.loss_mask, self.input_ids, torch.full_like(self.input_ids, -100))

    @property
    def num_tokens(self) -> int:
        """Real (non-padding) tokens."""
        return int((self.tensors["seq_ids"] >= 0).sum())

    @property
    def efficiency(self) -> float:
        """Real tokens / token slots of this batch."""
        return self.num_tokens / self.input_ids.numel()

    def to(self, device: str | torch.device) -> PackedBatch:
        return PackedBatch({k: v.to(device) for k, v in self.tensors.items()}, self.spans)


def _dtype_of(values: Sequence[Any]) -> torch.dtype:
    dtype = torch.as_tensor(values).dtype
    # float64 (numpy's default) would double memory for no precision the model uses.
    return torch.float32 if dtype == torch.float64 else dtype


def collate(
    bins: Sequence[Sequence[int]],
    sequences: Sequence[Mapping[str, Sequence[Any]]],
    budget: int,
    pad_token_id: int = 0,
    pad_values: Mapping[str, Any] | None = None,
) -> PackedBatch:
    """Lay out ``bins`` (from :func:`pack`) as a :class:`PackedBatch` of ``len(bins)`` rows.

    Each sequence is a mapping of equal-length per-token lists (or 1-d tensors) with at
    least ``input_ids``; every other key (``loss_mask``, ``advantages``, ``old_logprobs``,
    ...) is packed alongside. Padding takes ``pad_token_id`` for ids and ``pad_values[key]``
    (default 0 / False) for the rest. ``loss_mask`` defaults to all tokens and is always
    False on each sequence's first token (nothing in the sequence predicts it) and on padding.
    """
    pad_values = dict(pad_values or {})
    rows = len(bins)
    keys = [k for k in sequences[bins[0][0]] if k not in ("input_ids", "loss_mask")] if rows else []
    input_ids = torch.full((rows, budget), pad_token_id, dtype=torch.long)
    position_ids = torch.zeros((rows, budget), dtype=torch.long)
    seq_ids = torch.full((rows, budget), -1, dtype=torch.long)
    loss_mask = torch.zeros((rows, budget), dtype=torch.bool)
    extras = {
        k: torch.full(
            (rows, budget),
            pad_values.get(k, 0),
            dtype=_dtype_of(sequences[bins[0][0]][k]),
        )
        for k in keys
    }
    spans: dict[int, tuple[int, int, int]] = {}
    for r, members in enumerate(bins):
        start = 0
        for s in members:
            seq = sequences[s]
            n = len(seq["input_ids"])
            if start + n > budget:
                raise ValueError(f"collate: row {r} holds more than {budget} tokens")
            end = start + n
            input_ids[r, start:end] = torch.as_tensor(seq["input_ids"], dtype=torch.long)
            position_ids[r, start:end] = torch.arange(n)
            seq_ids[r, start:end] = s
            if "loss_mask" in seq:
                loss_mask[r, start:end] = torch.as_tensor(seq["loss_mask"], dtype=torch.bool)
            else:
                loss_mask[r, start:end] = True
            loss_mask[r, start] = False
            for k in keys:
                if len(seq[k]) != n:
                    raise ValueError(
                        f"collate: sequence {s} has {len(seq[k])} '{k}' for {n} tokens"
                    )
                extras[k][r, start:end] = torch.as_tensor(seq[k], dtype=extras[k].dtype)
            spans[s] = (r, start, n)
            start = end
        # The padding run restarts at 0 too, so it is a sequence of its own that no real
        # token attends to (and that attends only to itself).
        position_ids[r, start:] = torch.arange(budget - start)
    tensors = {
        "input_ids": input_ids,
        "position_ids": position_ids,
        "seq_ids": seq_ids,
        "loss_mask": loss_mask,
        **extras,
    }
    return PackedBatch(tensors, spans)


def unpack(batch: PackedBatch, values: Tensor) -> dict[int, Tensor]:
    """Per-sequence slices of a ``[rows, budget, ...]`` tensor, keyed by sequence index."""
    return {s: values[r, start : start + n] for s, (r, start, n) in batch.spans.items()}


def forward_logprobs(
    model: Any,
    batch: PackedBatch,
    temperature: float = 1.0,
    chunk_tokens: int = LOGPROB_CHUNK_TOKENS,
) -> Tensor:
    """``log p(token t | tokens < t of its sequence)`` for every slot, ``[rows, budget]``
    float32, at temperature ``temperature`` (logits divided by it, as the sampler did).

    Entry t belongs to token t, matching ``loss_mask`` and the other per-token fields. A
    sequence's first token and padding have nothing to be predicted from and hold 0.
    ``model`` is a ``transformers`` causal LM: its base model gives the final hidden states
    once (packed rows through varlen attention, :mod:`r1lab.data.varlen`), and
    :func:`token_logprobs` applies its output embeddings ``chunk_tokens`` tokens at a time,
    so the ``[tokens, vocab]`` logits are never held for all tokens at once, not even for the
    backward pass. Gradients flow when the caller has them enabled.
    """
    from r1lab.data.varlen import packed_hidden_states  # imports transformers: only when run

    ids = batch.input_ids
    backbone = model.base_model
    if batch.one_per_row:
        # Each sequence starts its row and the padding follows it, where causal attention
        # keeps it from every real token: attention takes its fast causal path.
        hidden = backbone(input_ids=ids, use_cache=False).last_hidden_state
    else:
        hidden = packed_hidden_states(backbone, ids, batch.position_ids)
    valid = (batch.position_ids > 0) & (batch["seq_ids"] >= 0)
    # Token t is predicted from the hidden state at t - 1; a row's first slot never is.
    targets = valid[:, 1:]
    values = token_logprobs(
        hidden[:, :-1][targets],
        model.get_output_embeddings(),
        ids[:, 1:][targets],
        temperature,
        chunk_tokens,
    )
    slots = torch.cat([torch.zeros_like(valid[:, :1]), targets], dim=1)
    return torch.zeros(ids.shape, dtype=values.dtype, device=values.device).masked_scatter(
        slots, values
    )


def token_logprobs(
    hidden: Tensor,
    head: torch.nn.Module,
    targets: Tensor,
    temperature: float = 1.0,
    chunk_tokens: int = LOGPROB_CHUNK_TOKENS,
) -> Tensor:
    """``log softmax(head(hidden) / temperature)[targets]``, ``[tokens]`` float32, from
    hidden states ``[tokens, hidden]``, computed ``chunk_tokens`` tokens at a time.

    The log-softmax is taken in float32 (fused in a cross-entropy). With gradients, each
    chunk is checkpointed: its logits are freed after the forward and recomputed in the
    backward, so that one chunk's logits are alive at a time then too.
    """
    if chunk_tokens < 1:
        raise ValueError(f"token_logprobs: chunk_tokens must be positive, got {chunk_tokens}")
    grad = torch.is_grad_enabled() and (
        hidden.requires_grad or any(p.requires_grad for p in head.parameters())
    )
    parts = []
    for i in range(0, targets.shape[0], chunk_tokens):
        h, t = hidden[i : i + chunk_tokens], targets[i : i + chunk_tokens]
        if grad:
            parts.append(checkpoint(_chunk_logprobs, h, t, head, temperature, use_reentrant=False))
        else:
            parts.append(_chunk_logprobs(h, t, head, temperature))
    # No tokens: an empty result still attached to the graph, so a loss on it can backward.
    return torch.cat(parts) if parts else hidden[:0, 0].float()


def _chunk_logprobs(
    hidden: Tensor, targets: Tensor, head: torch.nn.Module, temperature: float
) -> Tensor:
    logits = head(hidden).float()
    if temperature != 1.0:
        logits = logits / temperature
    return -F.cross_entropy(logits, targets, reduction="none")
