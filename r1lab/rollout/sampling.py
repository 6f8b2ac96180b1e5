"""Choosing the next token: temperature, top-k, top-p, and the random numbers behind them.

Randomness is counter-based rather than drawn from a stateful ``torch.Generator``: the uniform
number that picks token ``t`` of a sample is a hash of ``(seed, prompt tokens, sample number,
t)``. A sample is therefore a function of its own prompt and the seed only, never of what else
shares the batch, how much left padding it got, or when finished neighbours were dropped: the
same seed gives the same samples on any batch size, and ``generate([p], n=3)`` (one prefill,
expanded three times) gives exactly the samples of ``generate([p, p, p], n=1)``. The hash is
integer arithmetic in NumPy (SplitMix64), so the stream is also the same on every device.

One uniform number per token is enough: the token is drawn by inverting the cumulative
distribution, which is exact up to float32 resolution (tokens of probability below about 1e-7
are sampled with a slightly wrong probability, as with vLLM's float32 sampler).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on uint64 arrays (NumPy wraps unsigned overflow, as the hash needs)."""
    x = x + np.uint64(_GOLDEN)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def prompt_digest(prompt: Sequence[int]) -> int:
    """A stable 64-bit digest of a prompt's token ids (same on every platform and Python)."""
    data = np.asarray(prompt, dtype="<i8").tobytes()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def sample_keys(seed: int, prompts: Sequence[Sequence[int]], n: int) -> np.ndarray:
    """One 64-bit key per sample, row ``i * n + j`` for sample ``j`` of prompt ``i``.

    A prompt that occurs several times in one call continues its sample numbering (its second
    copy gets samples ``n .. 2n-1``), so duplicates are sampled independently, and the samples
    are the same whether a prompt is repeated or asked for with a larger ``n``.
    """
    seen: dict[int, int] = {}
    digests, firsts = [], []
    for prompt in prompts:
        digest = prompt_digest(prompt)
        digests.append(digest)
        firsts.append(seen.get(digest, 0))
        seen[digest] = firsts[-1] + n
    digest = np.repeat(np.array(digests, dtype=np.uint64), n)
    number = np.repeat(np.array(firsts, dtype=np.uint64), n) + np.tile(
        np.arange(n, dtype=np.uint64), len(prompts)
    )
    x = _splitmix64(np.full(len(digest), seed & _MASK64, dtype=np.uint64))
    return _splitmix64(_splitmix64(x ^ digest) ^ number)


def uniforms(keys: np.ndarray, start: int, steps: int) -> np.ndarray:
    """``[len(keys), steps]`` float32 uniforms in ``[0, 1 - 2**-23]`` for tokens ``start ..``.

    23 bits, so that ``u * total`` stays strictly below ``total`` after float32 rounding and
    the inverse-CDF search can never run past the last token of positive probability.
    """
    t = np.arange(start, start + steps, dtype=np.uint64)
    x = _splitmix64(keys[:, None] ^ _splitmix64(t + np.uint64(1))[None, :])
    return ((x >> np.uint64(41)).astype(np.float32)) * np.float32(2.0**-23)


def choose(
    logits: Tensor, temperature: float, top_k: int, top_p: float, u: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Pick one token per row of ``logits`` ``[B, V]``; returns ``(tokens, logprobs)``, ``[B]``.

    ``logprobs`` are ``log_softmax(logits / T)`` of the model's full distribution at the chosen
    token (``T = 0`` counts as ``T = 1``); top-k/top-p truncation is not reflected in them, as in
    vLLM's default, because GRPO's importance ratio compares them with the training forward,
    which computes exactly this. ``temperature == 0`` is greedy (``u`` unused). Top-k is applied
    first, then top-p on the renormalised top-k distribution (as Hugging Face and vLLM do); the
    token that crosses ``top_p`` is kept, and so is the most likely token always.
    """
    logits = logits.float()
    if temperature == 0:
        tokens = logits.argmax(-1, keepdim=True)
        return tokens[:, 0], torch.log_softmax(logits, -1).gather(-1, tokens)[:, 0]
    if temperature != 1.0:
        logits = logits / temperature
    logp = torch.log_softmax(logits, -1)
    vocab = logp.shape[-1]
    assert u is not None
    target = u[:, None]
    if (top_k <= 0 or top_k >= vocab) and top_p >= 1.0:
        cdf = logp.exp().cumsum(-1)
        tokens = torch.searchsorted(cdf, target * cdf[:, -1:], right=True).clamp_(max=vocab - 1)
        return tokens[:, 0], logp.gather(-1, tokens)[:, 0]
    # Sorting (stable, so ties keep the lowest id first, as argmax does) serves both filters:
    # top-k is a slice, top-p a prefix, and the draw is made in sorted order.
    sorted_logp, order = logp.sort(dim=-1, descending=True, stable=True)
    if 0 < top_k < vocab:
        sorted_logp, order = sorted_logp[:, :top_k], order[:, :top_k]
    probs = sorted_logp.exp()
    cdf = probs.cumsum(-1)
    if top_p < 1.0:
        probs = probs * ((cdf - probs) < top_p * cdf[:, -1:])
        cdf = probs.cumsum(-1)
    ranks = torch.searchsorted(cdf, target * cdf[:, -1:], right=True).clamp_(
        max=sorted_logp.shape[-1] - 1
    )
    return order.gather(-1, ranks)[:, 0], sorted_logp.gather(-1, ranks)[:, 0]
