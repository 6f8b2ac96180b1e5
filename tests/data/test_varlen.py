"""Packed rows without a dense mask: varlen attention and chunked log-probs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from r1lab.data.packing import collate, forward_logprobs, pack, token_logprobs
from r1lab.data.varlen import VARLEN, cu_seqlens, use_varlen
from r1lab.tracking.memory import TensorMemory
from r1lab.world.model import TinyModelConfig, build_model


def _model(vocab: int = 97, layers: int = 2):
    torch.manual_seed(0)
    cfg = TinyModelConfig(
        hidden_size=32, num_layers=layers, num_heads=4, num_kv_heads=2, intermediate_size=64
    )
    return build_model(cfg, vocab_size=vocab, pad_token_id=0, eos_token_id=1)


def _sequences(lengths, vocab=97, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(2, vocab, (n,), generator=gen).tolist()} for n in lengths]


def test_cu_seqlens_by_hand():
    # row 0: sequences of 3 and 2 tokens and a padding run of 1; row 1: 2 + 4
    pos = torch.tensor([[0, 1, 2, 0, 1, 0], [0, 1, 0, 1, 2, 3]])
    cu, longest = cu_seqlens(pos)
    assert cu.tolist() == [0, 3, 5, 6, 8, 12] and cu.dtype == torch.int32
    assert longest == 4
    # a row always starts a segment, even where its first position follows the last one
    assert cu_seqlens(torch.tensor([[0, 1], [2, 3]]))[0].tolist() == [0, 2, 4]


def _alone(model, ids, temperature):
    logits = model(input_ids=torch.tensor([ids])).logits[0].float() / temperature
    return torch.log_softmax(logits[:-1], -1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]


def test_packed_varlen_equals_each_sequence_alone_with_gradients():
    model = _model().train()
    lengths = [13, 7, 20, 5, 9, 30, 4, 1]
    seqs = _sequences(lengths)
    bins = pack(lengths, budget=32)
    assert len(bins) < len(lengths)  # several sequences share rows
    batch = collate(bins, seqs, budget=32)
    weights = torch.randn(batch.input_ids.shape, generator=torch.Generator().manual_seed(2))

    packed = forward_logprobs(model, batch, temperature=0.7, chunk_tokens=16)
    assert model.config._attn_implementation == VARLEN
    (packed * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    total = torch.zeros(())
    for s, (r, start, n) in batch.spans.items():
        want = _alone(model, seqs[s]["input_ids"], 0.7)
        got = packed[r, start : start + n]
        assert got[0] == 0  # nothing predicts a sequence's first token
        torch.testing.assert_close(got[1:], want, atol=1e-5, rtol=0)
        total = total + (want * weights[r, start + 1 : start + n]).sum()
    assert (packed[batch["seq_ids"] < 0] == 0).all()
    total.backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_a_switched_model_attends_as_sdpa_without_segments():
    # Generation and one-a-row passes carry no cu_seq_lens: varlen is then sdpa exactly,
    # left padding mask included.
    model = _model().eval()
    ids = torch.tensor([[0, 0, 5, 6, 7], [8, 9, 10, 11, 12]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    with torch.no_grad():
        sdpa = model(input_ids=ids, attention_mask=mask).logits
        assert use_varlen(model.base_model) and model.config._attn_implementation == VARLEN
        varlen = model(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(sdpa, varlen)


def test_eager_attention_keeps_the_dense_block_mask_and_stays_exact():
    model = _model()
    model.set_attn_implementation("eager")
    seqs = _sequences([6, 9, 3])
    batch = collate([[1, 0, 2]], seqs, budget=20)
    with torch.no_grad():
        assert not use_varlen(model.base_model)
        packed = forward_logprobs(model, batch)
        for s, (r, start, n) in batch.spans.items():
            want = _alone(model, seqs[s]["input_ids"], 1.0)
            torch.testing.assert_close(packed[r, start + 1 : start + n], want, atol=1e-5, rtol=0)


def test_token_logprobs_by_hand():
    # logits = hidden @ W^T = [ln 2, 0, 0]: softmax (1/2, 1/4, 1/4); at T = 0.5 the logits
    # double to [2 ln 2, 0, 0]: softmax (4/6, 1/6, 1/6).
    head = torch.nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    hidden = torch.tensor([[math.log(2), 0.0], [math.log(2), 0.0], [0.0, 0.0]])
    targets = torch.tensor([0, 1, 2])
    got = token_logprobs(hidden, head, targets, chunk_tokens=2)
    torch.testing.assert_close(got, torch.tensor([math.log(1 / 2), math.log(1 / 4), -math.log(3)]))
    got = token_logprobs(hidden, head, targets, temperature=0.5, chunk_tokens=1)
    torch.testing.assert_close(got, torch.tensor([math.log(4 / 6), math.log(1 / 6), -math.log(3)]))
    with pytest.raises(ValueError, match="chunk_tokens"):
        token_logprobs(hidden, head, targets, chunk_tokens=0)
    # no tokens at all (every sequence a single token): empty, and a loss on it backwards
    empty = token_logprobs(torch.zeros(0, 2, requires_grad=True), head, targets[:0])
    assert empty.shape == (0,)
    empty.sum().backward()


def test_chunked_logprobs_equal_unchunked_with_gradients():
    model = _model()
    lengths = [40, 25, 31, 12, 50]
    seqs = _sequences(lengths)
    batch = collate(pack(lengths, budget=64), seqs, budget=64)
    weights = torch.randn(batch.input_ids.shape, generator=torch.Generator().manual_seed(3))
    results = []
    for chunk in (7, 10**6):  # 7 does not divide the 153 target tokens: a ragged last chunk
        model.zero_grad()
        logp = forward_logprobs(model, batch, temperature=0.8, chunk_tokens=chunk)
        (logp * weights).sum().backward()
        results.append((logp.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (chunked, g_chunked), (whole, g_whole) = results
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=0)
    for name in g_whole:
        torch.testing.assert_close(g_chunked[name], g_whole[name], atol=1e-5, rtol=1e-4)


def _row(width: int, vocab: int, seq: int = 128):
    """One row of ``width`` tokens packed with sequences of ``seq`` tokens."""
    n = width // seq
    return collate([list(range(n))], _sequences([seq] * n, vocab), width)


def _dense_logprobs(model, batch):
    # The pass before varlen attention and chunking: transformers' block mask from the
    # position ids ([N, N]) and the logits of every token at once.
    ids = batch.input_ids
    logits = model(input_ids=ids, position_ids=batch.position_ids, use_cache=False).logits
    return -F.cross_entropy(logits[0, :-1].float(), ids[0, 1:], reduction="none")


def _peak(fn, model, batch) -> int:
    model.zero_grad(set_to_none=True)
    with TensorMemory() as mem:
        fn(model, batch).sum().backward()
    model.zero_grad(set_to_none=True)
    return mem.peak


def test_peak_memory_of_the_logprob_pass_grows_linearly_with_row_length():
    # The training pass (forward and backward) over one packed row, sequences of 128 tokens.
    # Linear growth: 4x the row, at most 4x the memory (less: the model and a chunk's logits
    # are fixed costs), and equal steps between doublings double. A [N, N] mask grows 16x.
    model, vocab = _model(vocab=500), 500
    widths = (1024, 2048, 4096)
    new = [_peak(lambda m, b: forward_logprobs(m, b, chunk_tokens=256), model, _row(w, vocab))
           for w in widths]  # fmt: skip
    assert new[2] / new[0] < 6
    assert (new[2] - new[1]) / (new[1] - new[0]) < 2.5  # linear: 2, quadratic: 4
    # Measured: 7.1, 12.5, 23.3 MiB. The dense pass (19.0, 53.9, 172 MiB) fails both bounds.
    old = [_peak(_dense_logprobs, model, _row(w, vocab)) for w in widths]
    assert old[2] / old[0] > 6
    assert (old[2] - old[1]) / (old[1] - old[0]) > 2.5
    # Chunking: all logits at once hold [N, vocab] float32 about 3 times over in the backward
    # (logits, log-softmax, its gradient); chunks of 256 hold a 16th of that (44.6 vs 23.3 MiB).
    whole = _peak(lambda m, b: forward_logprobs(m, b, chunk_tokens=10**6), model, _row(4096, vocab))
    assert whole - new[2] > 2 * 4096 * vocab * 4
