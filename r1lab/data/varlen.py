"""Attention over packed rows without a dense mask ("varlen" attention).

Given ``position_ids`` and no mask, ``transformers`` (5.x) finds packed sequences itself
(``masking_utils.find_packed_sequence_indices``), but for sdpa and eager attention it then
builds a block-diagonal ``[rows, 1, N, N]`` mask: memory and time quadratic in the row
length N, whatever the length of the sequences in it. Flash-attention's varlen kernel
needs no mask, only the cumulative sequence lengths ``cu_seqlens``; that is how TRL's
padding-free training and verl's ``use_remove_padding`` run packed rows.

:func:`packed_hidden_states` does the same without depending on flash-attention: it
flattens the rows into one, passes ``cu_seq_lens_q/k`` and ``max_length_q/k`` (the
``FlashAttentionKwargs`` of ``transformers``) and skips the model's mask construction. The
attention it runs is :data:`VARLEN`, registered with ``AttentionInterface``:
``flash_attn_varlen_func`` where ``flash_attn`` is installed and the tensors are half
precision on CUDA, else ``scaled_dot_product_attention(is_causal=True)`` over the segments
of each length stacked (one call for a row of equal-length sequences), which holds at most a
segment's scores (none on a CPU, whose fused kernel streams them).
Without ``cu_seq_lens_q`` it is sdpa itself, with sdpa's masks, so a model switched to it
(:func:`use_varlen`, done on its first packed pass) generates exactly as before.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

__all__ = ["VARLEN", "cu_seqlens", "packed_hidden_states", "use_varlen", "varlen_attention"]

VARLEN = "r1lab_varlen"
# Implementations that honour cu_seq_lens: ours, and transformers' flash-attention paths.
_HONOURS_CU_SEQLENS = (VARLEN, "flash_attention_2", "flash_attention_3", "flash_attention_4")

try:  # pragma: no cover - only where flash-attention is installed (CUDA machines)
    from flash_attn import flash_attn_varlen_func
except ImportError:
    flash_attn_varlen_func = None


def cu_seqlens(position_ids: Tensor) -> tuple[Tensor, int]:
    """``(cu_seqlens, longest)`` of the segments of ``[rows, width]`` position ids laid end
    to end: a segment starts at every row start and wherever a position does not follow its
    predecessor by 1 (the rule ``transformers`` uses). ``cu_seqlens`` is int32, ``[S + 1]``."""
    starts = torch.ones_like(position_ids, dtype=torch.bool)
    starts[:, 1:] = position_ids[:, 1:] != position_ids[:, :-1] + 1
    flat = starts.flatten().nonzero().flatten()
    bounds = torch.cat([flat, flat.new_tensor([position_ids.numel()])])
    return bounds.to(torch.int32), int((bounds[1:] - bounds[:-1]).max())


def varlen_attention(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """Causal attention within each segment of ``cu_seq_lens_q`` (query ``[1, heads, N,
    dim]``, the rows flattened), returned ``[1, N, heads, dim]``; sdpa without it."""
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    if query.shape[0] != 1:
        raise ValueError(f"varlen attention: expected one flattened row, got {query.shape[0]}")
    if (
        flash_attn_varlen_func is not None
        and query.is_cuda
        and query.dtype in (torch.float16, torch.bfloat16)
    ):  # pragma: no cover - needs flash-attention on CUDA
        longest = int(kwargs["max_length_q"])
        out = flash_attn_varlen_func(
            query[0].transpose(0, 1),
            key[0].transpose(0, 1),
            value[0].transpose(0, 1),
            cu_seqlens_q=cu,
            cu_seqlens_k=cu,
            max_seqlen_q=longest,
            max_seqlen_k=longest,
            dropout_p=dropout,
            softmax_scale=scaling,
            causal=True,
        )
        return out.unsqueeze(0), None
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    return _by_length(query, key, value, cu.tolist(), dropout, scaling), None


def _by_length(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    bounds: list[int],
    dropout: float,
    scale: float | None,
) -> Tensor:
    """Causal sdpa per segment, segments of one length stacked into one call (a packed
    row of equal-length responses is one call): ``[1, heads, N, dim]`` in, ``[1, N, heads,
    dim]`` out."""
    by_length: dict[int, list[int]] = {}
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        by_length.setdefault(b - a, []).append(a)
    heads, dim = query.shape[1], query.shape[3]
    order, parts = [], []
    for n, starts in by_length.items():
        idx = (torch.tensor(starts)[:, None] + torch.arange(n)).flatten().to(query.device)
        q, k, v = (
            t[0].index_select(1, idx).view(heads, len(starts), n, dim).transpose(0, 1)
            for t in (query, key, value)
        )
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=dropout, scale=scale, is_causal=True
        )
        parts.append(out.permute(0, 2, 1, 3).reshape(len(starts) * n, heads, dim))
        order.append(idx)
    perm = torch.cat(order)
    return torch.cat(parts).index_select(0, torch.argsort(perm)).unsqueeze(0)


AttentionInterface.register(VARLEN, varlen_attention)
# Calls without cu_seq_lens (generation, one sequence a row) get sdpa's masks.
ALL_MASK_ATTENTION_FUNCTIONS.register(VARLEN, sdpa_mask)


def use_varlen(backbone: Any) -> bool:
    """Make ``backbone`` (a ``transformers`` model) run :data:`VARLEN` attention when it
    runs sdpa; whether its attention now honours ``cu_seq_lens`` (eager and flex attention
    do not, and keep transformers' dense block mask)."""
    config = backbone.config
    # Segments are attended in full: a sliding-window layer would need its window applied.
    full = all(t == "full_attention" for t in getattr(config, "layer_types", None) or ())
    if config._attn_implementation == "sdpa" and full:
        backbone.set_attn_implementation(VARLEN)
    return config._attn_implementation in _HONOURS_CU_SEQLENS and full


def packed_hidden_states(backbone: Any, input_ids: Tensor, position_ids: Tensor) -> Tensor:
    """The final hidden states ``[rows, width, hidden]`` of the base model ``backbone``
    (``model.base_model``) on packed rows, each sequence attending only to itself.

    Varlen attention where the model allows it (:func:`use_varlen`), no ``[N, N]`` mask;
    otherwise transformers' packed-sequence detection from ``position_ids``, with its mask.
    """
    if not use_varlen(backbone):
        return backbone(
            input_ids=input_ids, position_ids=position_ids, attention_mask=None, use_cache=False
        ).last_hidden_state
    rows, width = input_ids.shape
    cu, longest = cu_seqlens(position_ids)
    # A prepared (empty) mask per layer type: the model builds none, so no [N, N] block mask.
    layer_types = getattr(backbone.config, "layer_types", None) or ["full_attention"]
    hidden = backbone(
        input_ids=input_ids.reshape(1, -1),
        position_ids=position_ids.reshape(1, -1),
        attention_mask=dict.fromkeys(layer_types),
        use_cache=False,
        cu_seq_lens_q=cu,
        cu_seq_lens_k=cu,
        max_length_q=longest,
        max_length_k=longest,
    ).last_hidden_state
    return hidden.view(rows, width, -1)
