"""The built-in PyTorch rollout engine: batched sampling from any Hugging Face causal LM.

How a call runs:

1. **Prefill once per prompt.** The prompts are left-padded into one batch (attention mask and
   position ids make the padding invisible, so a padded prompt computes what it would alone)
   and run through the model once. The ``n`` samples of a prompt then share that prefill: its
   KV cache rows are copied ``n`` times, never recomputed.
2. **Decode** one token per step for every unfinished row, feeding the model's own
   ``forward`` (no ``generate()``) with a prebuilt 4-D mask, so that no Hugging Face mask code
   runs per step, and our own KV cache: preallocated slabs written in place. The slabs grow
   geometrically when full, so memory follows the actual lengths rather than
   ``max_new_tokens``. A preallocated slab beats ``DynamicCache`` (which concatenates, i.e.
   copies the whole cache, every step) and ``StaticCache`` (which attends over all
   ``max_cache_len`` slots every step); see ``bench/rollout_speed.py`` for the figures.
3. **Drop finished rows.** Rows that hit EOS or a stop string are removed from the batch (and
   the cache) once an eighth of it is done, and left padding that no remaining row needs is cut
   at the same time, so long tails do not pay for finished neighbours. The call ends when every
   row is done.

Token choice and its randomness live in :mod:`r1lab.rollout.sampling`: counter-based random
numbers make a sample depend only on the seed and its own prompt, not on the batch around it.
Log-probabilities are of the model's full distribution at temperature ``T`` (top-k/top-p
truncation is not reflected), computed in float32 from the logits of the model's own dtype.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from transformers.cache_utils import Cache, CacheLayerMixin

from r1lab.data.varlen import VARLEN
from r1lab.rollout.base import Completion, SamplingParams
from r1lab.rollout.sampling import choose, sample_keys, uniforms

__all__ = ["TorchEngine"]

# Drop finished rows once this fraction of the batch is done: a compaction copies the cache
# once, which a step over the dead rows costs anyway within a few steps.
_COMPACT_FRACTION = 1 / 8


class _SlabLayer(CacheLayerMixin):
    """One layer's keys and values, ``[batch, kv_heads, capacity, head_dim]``, written in place.

    Only the first ``length`` slots are filled and only those are handed to attention, so a
    step costs attention over the tokens seen, not over the capacity.
    """

    is_sliding = False

    def __init__(self) -> None:
        super().__init__()
        self.length = 0

    def lazy_initialization(self, key_states: Tensor, value_states: Tensor) -> None:
        self.keys, self.values = key_states, value_states
        self.is_initialized = True

    def update(
        self, key_states: Tensor, value_states: Tensor, *args: Any, **kwargs: Any
    ) -> tuple[Tensor, Tensor]:
        n, q = self.length, key_states.shape[-2]
        if not self.is_initialized:  # the prefill: keep its tensors, resized right after
            self.lazy_initialization(key_states, value_states)
        else:
            self.keys[:, :, n : n + q] = key_states
            self.values[:, :, n : n + q] = value_states
        self.length = n + q
        return self.keys[:, :, : n + q], self.values[:, :, : n + q]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.length + query_length, 0

    def get_seq_length(self) -> int:
        return self.length

    def get_max_length(self) -> int:
        return -1

    def resize(self, rows: Tensor | None, start: int, capacity: int) -> None:
        """Keep batch ``rows`` (all if None) and slots ``start:length``, in new slabs of
        ``capacity`` slots."""
        keys, values = self.keys[:, :, start : self.length], self.values[:, :, start : self.length]
        if rows is not None:
            keys, values = keys.index_select(0, rows), values.index_select(0, rows)
        kept = self.length - start
        self.keys = keys.new_empty((*keys.shape[:2], capacity, keys.shape[3]))
        self.values = values.new_empty((*values.shape[:2], capacity, values.shape[3]))
        self.keys[:, :, :kept] = keys
        self.values[:, :, :kept] = values
        self.length = kept


class _KVCache(Cache):
    """A Hugging Face ``Cache`` of :class:`_SlabLayer` s, created as the model's layers call it."""

    def __init__(self) -> None:
        super().__init__(layer_class_to_replicate=_SlabLayer)

    @property
    def length(self) -> int:
        return self.layers[0].length

    def resize(self, rows: Tensor | None, start: int, capacity: int) -> None:
        for layer in self.layers:
            layer.resize(rows, start, capacity)


def _mask_kind(config: Any) -> str:
    """How masks are handed to the model: prebuilt 4-D (``"bool"`` for sdpa, ``"float"``
    additive for eager), or as a 2-D padding mask (``"2d"``) that the model expands itself;
    the latter for every other attention implementation and for sliding-window layers, whose
    masks differ per layer."""
    impl = getattr(config, "_attn_implementation", None)
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        full_only = all(t == "full_attention" for t in layer_types)
    else:
        full_only = getattr(config, "sliding_window", None) is None
    if not full_only or not getattr(config, "is_causal", True):
        return "2d"
    # r1lab's varlen attention is sdpa when no packed segments are given (r1lab.data.varlen)
    return {"sdpa": "bool", VARLEN: "bool", "eager": "float"}.get(impl, "2d")


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """EOS ids from the tokenizer and the model's generation config (Qwen's chat models list
    several there)."""
    found: list[int] = []
    sources = [
        getattr(tokenizer, "eos_token_id", None),
        getattr(getattr(model, "generation_config", None), "eos_token_id", None),
    ]
    for ids in sources:
        for i in ids if isinstance(ids, (list, tuple)) else [ids]:
            if i is not None and int(i) not in found:
                found.append(int(i))
    return found


class TorchEngine:
    """Samples completions with the policy module itself, in this process (cpu or cuda).

    ``model`` is a Hugging Face causal LM; it is put in eval mode for a call and given back in
    the mode it was in. ``tokenizer`` decodes completions (``text``) and finds stop strings;
    without one, texts are empty and stop strings are refused. ``eos_token_ids`` overrides the
    EOS ids found in the tokenizer and the model's generation config. ``cache_chunk`` is the
    room for generated tokens the KV cache starts with; it doubles when full. ``sync_every``
    is how often (in steps) the host looks at which rows are done: every step on a CPU, where
    that is free, every 8 on an accelerator, where each look waits for the device.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        eos_token_ids: Iterable[int] | None = None,
        pad_token_id: int | None = None,
        cache_chunk: int = 256,
        sync_every: int | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.eos_token_ids = (
            [int(i) for i in eos_token_ids]
            if eos_token_ids is not None
            else _eos_ids(model, tokenizer)
        )
        if pad_token_id is None:
            pad_token_id = getattr(tokenizer, "pad_token_id", None)
        # Padding is masked out, so any id in the vocabulary will do.
        self.pad_token_id = int(pad_token_id) if pad_token_id is not None else 0
        if cache_chunk < 1:
            raise ValueError(f"cache_chunk must be >= 1, got {cache_chunk}")
        self.cache_chunk = cache_chunk
        self.sync_every = sync_every
        self._mask_kind = _mask_kind(model.config.get_text_config())
        forward = inspect.signature(model.forward).parameters
        self._logits_to_keep = "logits_to_keep" in forward
        # transformers renamed the cache argument (past_key_values -> cache) in 5.x
        self._cache_arg = "cache" if "cache" in forward else "past_key_values"

    def update_weights(self) -> None:
        """A no-op: the engine samples with the trainer's own module, so it always sees the
        latest weights. (vLLM's engine, in another process, needs the weights sent over.)"""

    def numerics(self) -> str:
        """``torch/<dtype of the weights>``: the engine runs the module as it is, no autocast."""
        return "torch/" + str(next(self.model.parameters()).dtype).removeprefix("torch.")

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Completion]]:
        """``params.n`` completions for each prompt (token ids), in prompt order.

        A completion that ends with EOS keeps the EOS token in ``token_ids`` and ``logprobs``
        (the policy has to learn to emit it) but not in ``text``. One that hits a stop string
        ends with the token that completed it, and its text stops just before the stop string.
        Stop strings are also honoured with ``ignore_eos``, as in vLLM. At temperature 0 the
        ``n`` samples are identical, so the prompt is decoded once and its completion copied.
        """
        _check(params, prompts)
        if params.stop and self.tokenizer is None:
            raise ValueError("stop strings need a tokenizer: TorchEngine(model, tokenizer)")
        if not prompts:
            return []
        if params.max_new_tokens == 0:
            return [[Completion([], "", [], "length") for _ in range(params.n)] for _ in prompts]
        greedy = params.temperature == 0
        n = 1 if greedy else params.n
        seed = params.seed
        if seed is None:  # from torch's global generator, so that torch.manual_seed governs it
            seed = int(torch.randint(0, 2**62, ()).item())
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                tokens, logprobs = self._sample(prompts, n, params, seed)
        finally:
            self.model.train(was_training)
        done = self._finish(tokens, logprobs, params)
        if greedy:
            return [[_copy(done[i]) for _ in range(params.n)] for i in range(len(prompts))]
        return [done[i * n : (i + 1) * n] for i in range(len(prompts))]

    # -- sampling --------------------------------------------------------------------------

    def _forward(self, ids: Tensor, positions: Tensor, mask: Tensor, cache: _KVCache) -> Tensor:
        kwargs: dict[str, Any] = {self._cache_arg: cache}
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = 1
        out = self.model(
            input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **kwargs
        )
        return out.logits[:, -1]

    def _allowed(self, valid: Tensor, dtype: torch.dtype) -> Tensor:
        """The mask buffer in the form the model takes: bool, or additive float for eager."""
        if self._mask_kind != "float" or valid.dtype != torch.bool:
            return valid
        return torch.zeros(valid.shape, dtype=dtype, device=valid.device).masked_fill_(
            ~valid, torch.finfo(dtype).min
        )

    def _prefill_mask(self, valid: Tensor, dtype: torch.dtype) -> Tensor:
        if self._mask_kind == "2d":
            return valid
        length = valid.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=valid.device).tril_()
        mask = causal[None] & valid[:, None, :]
        # A padding query attends to itself only: a row with nothing to attend to would give
        # NaN, which would reach the real tokens through the padding's keys and values.
        mask |= torch.eye(length, dtype=torch.bool, device=valid.device)[None]
        return self._allowed(mask, dtype)[:, None]

    def _sample(
        self, prompts: list[list[int]], n: int, params: SamplingParams, seed: int
    ) -> tuple[Tensor, Tensor]:
        """Run prefill and decode; returns ``[rows, steps]`` token ids (``-1`` after a dropped
        row's last token) and their log-probs, on the CPU, row ``i * n + j`` for sample ``j``
        of prompt ``i``."""
        model_dtype = next(self.model.parameters()).dtype
        device = next(self.model.parameters()).device
        sync_every = self.sync_every or (1 if device.type == "cpu" else 8)
        max_new = params.max_new_tokens
        temperature, top_k, top_p = params.temperature, params.top_k, params.top_p
        stops = list(params.stop)

        # Prefill, left-padded.
        lengths = [len(p) for p in prompts]
        width = max(lengths)
        ids = torch.tensor(
            [[self.pad_token_id] * (width - len(p)) + list(p) for p in prompts], device=device
        )
        pads = torch.tensor([width - n_ for n_ in lengths], device=device)
        valid = torch.arange(width, device=device)[None] >= pads[:, None]
        positions = (valid.long().cumsum(-1) - 1).clamp_(min=0)
        cache = _KVCache()
        logits = self._forward(ids, positions, self._prefill_mask(valid, model_dtype), cache)

        # Expand to n rows per prompt, sharing the prefill.
        rows = torch.arange(len(prompts), device=device).repeat_interleave(n) if n > 1 else None
        if rows is not None:
            logits, valid, pads = logits[rows], valid[rows], pads[rows]
        batch = logits.shape[0]
        capacity = width + min(max_new, self.cache_chunk)
        cache.resize(rows, 0, capacity)
        allowed = self._allowed(_grow(valid, capacity), model_dtype)
        positions = (width - pads)[:, None]

        row_ids = torch.arange(batch, device=device)  # active row -> output row
        out_tokens = torch.full((batch, max_new), -1, dtype=torch.long, device=device)
        out_logprobs = torch.zeros((batch, max_new), dtype=torch.float32, device=device)
        eos = torch.tensor(self.eos_token_ids, device=device)
        check_eos = not params.ignore_eos and len(self.eos_token_ids) > 0
        done = torch.zeros(batch, dtype=torch.bool, device=device)

        greedy = temperature == 0
        keys = sample_keys(seed, prompts, n) if not greedy else None
        keys_active = keys
        noise: Tensor | None = None
        noise_start = 0
        checked = 0  # stop strings are searched in tokens from here on (less a margin)
        margin = max((len(s.encode()) for s in stops), default=0) + 4
        step = 0
        while True:
            u = None
            if not greedy:
                if noise is None or step - noise_start == noise.shape[1]:
                    noise_start = step
                    chunk = min(max_new - step, 64)
                    noise = torch.from_numpy(uniforms(keys_active, step, chunk)).to(device)
                u = noise[:, step - noise_start]
            tokens, logprobs = choose(logits, temperature, top_k, top_p, u)
            out_tokens[row_ids, step] = tokens
            out_logprobs[row_ids, step] = logprobs
            step += 1
            if step == max_new:
                break
            if check_eos:
                done |= torch.isin(tokens, eos)
            if step % sync_every == 0:
                if stops:
                    lo = max(0, checked - margin)
                    done |= self._hit_stop(out_tokens, row_ids, done, lo, step, stops)
                    checked = step
                finished = int(done.sum())
                if finished == len(done):
                    break
                if finished and finished >= _COMPACT_FRACTION * len(done):
                    alive = (~done).nonzero()[:, 0]
                    start = int(pads[alive].min())
                    cache.resize(alive, start, allowed.shape[1] - start)
                    allowed = allowed[alive, start:]
                    row_ids, tokens, positions = row_ids[alive], tokens[alive], positions[alive]
                    pads, done = pads[alive] - start, done[alive]
                    if not greedy:
                        noise = noise[alive]
                        keys_active = keys[row_ids.cpu().numpy()]
            length = cache.length
            if length == allowed.shape[1]:  # full: grow geometrically
                capacity = length + min(max_new - step, max(self.cache_chunk, length))
                cache.resize(None, 0, capacity)
                allowed = self._allowed(_grow(allowed, capacity), model_dtype)
            if self._mask_kind == "2d":
                mask = allowed[:, : length + 1]
            else:
                mask = allowed[:, None, None, : length + 1]
            logits = self._forward(tokens[:, None], positions, mask, cache)
            positions += 1
        return out_tokens[:, :step].cpu(), out_logprobs[:, :step].cpu()

    def _hit_stop(
        self, out_tokens: Tensor, row_ids: Tensor, done: Tensor, lo: int, hi: int, stops: list[str]
    ) -> Tensor:
        """Which active rows' completions now contain a stop string. Only the tokens since the
        last look (plus a margin) are decoded; a hit is confirmed on the whole completion, so
        a row is never stopped wrongly. A miss only costs compute: the completion is cut at its
        first stop string at the end anyway."""
        window = out_tokens[row_ids, lo:hi].tolist()
        undone = (~done).tolist()
        texts = self.tokenizer.batch_decode(
            [w if keep else [] for w, keep in zip(window, undone, strict=True)],
            skip_special_tokens=True,
        )
        hits = [i for i, text in enumerate(texts) if any(s in text for s in stops)]
        confirmed = []
        for i in hits:
            whole = [t for t in out_tokens[row_ids[i], :hi].tolist() if t >= 0]
            if any(s in self.tokenizer.decode(whole, skip_special_tokens=True) for s in stops):
                confirmed.append(i)
        hit = torch.zeros(len(window), dtype=torch.bool)
        hit[confirmed] = True
        return hit.to(done.device)

    # -- completions -----------------------------------------------------------------------

    def _finish(self, tokens: Tensor, logprobs: Tensor, params: SamplingParams) -> list[Completion]:
        """Cut each row at its EOS or first stop string, decode, and say why it ended."""
        ended = (tokens >= 0).sum(1)
        has_eos = torch.zeros(len(tokens), dtype=torch.bool)
        if not params.ignore_eos and self.eos_token_ids:
            is_eos = torch.isin(tokens, torch.tensor(self.eos_token_ids))
            has_eos = is_eos.any(1)
            ended = torch.where(has_eos, is_eos.int().argmax(1) + 1, ended)
        ends, eos_flags = ended.tolist(), has_eos.tolist()
        token_rows, logprob_rows = tokens.tolist(), logprobs.tolist()
        seqs = [row[:end] for row, end in zip(token_rows, ends, strict=True)]
        bodies = [s[:-1] if e else s for s, e in zip(seqs, eos_flags, strict=True)]
        if self.tokenizer is not None:
            texts = self.tokenizer.batch_decode(bodies, skip_special_tokens=True)
        else:
            texts = [""] * len(bodies)
        out = []
        for i, (seq, text) in enumerate(zip(seqs, texts, strict=True)):
            lps = logprob_rows[i][: len(seq)]
            if params.stop and any(s in text for s in params.stop):
                k = self._stop_cut(bodies[i], params.stop)
                text = self.tokenizer.decode(bodies[i][:k], skip_special_tokens=True)
                text = text[: min(text.find(s) for s in params.stop if s in text)]
                out.append(Completion(seq[:k], text, lps[:k], "stop"))
            else:
                out.append(Completion(seq, text, lps, "stop" if eos_flags[i] else "length"))
        return out

    def _stop_cut(self, body: list[int], stops: list[str]) -> int:
        """The fewest leading tokens of ``body`` whose text holds a stop string (binary search;
        once per stopped completion)."""
        lo, hi = 1, len(body)
        while lo < hi:
            mid = (lo + hi) // 2
            text = self.tokenizer.decode(body[:mid], skip_special_tokens=True)
            if any(s in text for s in stops):
                hi = mid
            else:
                lo = mid + 1
        return lo


def _grow(mask: Tensor, capacity: int) -> Tensor:
    """``mask`` widened to ``capacity`` columns; the new columns (generated tokens) are visible."""
    if mask.dtype == torch.bool:
        extra = torch.ones(mask.shape[0], capacity - mask.shape[1], dtype=torch.bool)
    else:
        extra = torch.zeros(mask.shape[0], capacity - mask.shape[1], dtype=mask.dtype)
    return torch.cat([mask, extra.to(mask.device)], 1)


def _copy(c: Completion) -> Completion:
    return dataclasses.replace(c, token_ids=list(c.token_ids), logprobs=list(c.logprobs))


def _check(params: SamplingParams, prompts: list[list[int]]) -> None:
    if params.n < 1:
        raise ValueError(f"SamplingParams.n must be >= 1, got {params.n}")
    if params.temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {params.temperature}")
    if not 0 < params.top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {params.top_p}")
    if params.top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0: off), got {params.top_k}")
    if params.max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {params.max_new_tokens}")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    if any(s == "" for s in params.stop):
        raise ValueError("stop strings must not be empty")
