import random

import pytest
import torch

from r1lab.data.packing import (
    collate,
    forward_logprobs,
    pack,
    padding_efficiency,
    unpack,
)
from r1lab.world.model import TinyModelConfig, build_model


def test_pack_best_fit_decreasing_by_hand():
    # Longest first: 8 -> new bin A (room 2); 5 -> new bin B (room 5); 4 -> B (room 1).
    # The first 1 fits both; best fit takes B, the tighter (first fit would take A);
    # the second 1 then goes to A.
    assert pack([8, 1, 1, 4, 5], budget=10) == [[0, 2], [4, 3, 1]]
    assert padding_efficiency([8, 1, 1, 4, 5], [[0, 2], [4, 3, 1]], 10) == pytest.approx(0.95)


def test_pack_another_hand_case_and_exact_fit():
    # 7 -> A (3); 5 -> B (5); 4 -> B (1); 3 -> A exactly (0); 2 fits nowhere -> C.
    assert pack([5, 3, 7, 2, 4], budget=10) == [[2, 1], [0, 4], [3]]
    assert pack([10, 10], budget=10) == [[0], [1]]
    assert pack([], budget=10) == []


def _best_fit_reference(lengths, budget):
    # The definition, scanning every bin: the fitting bin with the least room, first on ties.
    bins, rooms = [], []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        fits = [(r, b) for b, r in enumerate(rooms) if r >= lengths[i]]
        if fits:
            _, b = min(fits)
            bins[b].append(i)
            rooms[b] -= lengths[i]
        else:
            bins.append([i])
            rooms.append(budget - lengths[i])
    return bins


def test_pack_matches_the_definition_on_random_lengths():
    rng = random.Random(0)
    for _ in range(50):
        budget = rng.randint(10, 60)
        lengths = [rng.randint(1, budget) for _ in range(rng.randint(1, 40))]
        bins = pack(lengths, budget)
        assert bins == _best_fit_reference(lengths, budget)
        assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
        assert all(sum(lengths[i] for i in b) <= budget for b in bins)


def test_pack_rejects_sequences_over_budget_and_empty_ones():
    with pytest.raises(ValueError, match="sequence 1 has 11 tokens"):
        pack([3, 11], budget=10)
    with pytest.raises(ValueError, match="empty"):
        pack([3, 0], budget=10)


@pytest.mark.parametrize("budget", [1024, 4096])
def test_padding_efficiency_on_realistic_lengths(budget):
    rng = random.Random(0)
    lengths = [rng.randint(40, 400) for _ in range(2000)]
    bins = pack(lengths, budget)
    assert padding_efficiency(lengths, bins, budget) >= 0.95


def test_collate_lays_out_ids_positions_masks_and_extras():
    seqs = [
        {"input_ids": [11, 12, 13], "loss_mask": [0, 1, 1], "adv": [0.5, 0.5, 0.5]},
        {"input_ids": [21, 22], "loss_mask": [1, 1], "adv": [-1.0, -1.0]},
        {"input_ids": [31, 32, 33, 34], "loss_mask": [0, 0, 1, 1], "adv": [2.0] * 4},
    ]
    batch = collate([[0, 1], [2]], seqs, budget=6, pad_token_id=0, pad_values={"adv": 9.0})
    assert batch.input_ids.tolist() == [[11, 12, 13, 21, 22, 0], [31, 32, 33, 34, 0, 0]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 0, 1]]
    assert batch["seq_ids"].tolist() == [[0, 0, 0, 1, 1, -1], [2, 2, 2, 2, -1, -1]]
    # Each sequence's first token is never a target, whatever its own mask says.
    assert batch.loss_mask.int().tolist() == [[0, 1, 1, 0, 1, 0], [0, 0, 1, 1, 0, 0]]
    assert batch.labels.tolist() == [
        [-100, 12, 13, -100, 22, -100],
        [-100, -100, 33, 34, -100, -100],
    ]
    assert batch["adv"].dtype == torch.float32
    assert batch["adv"].tolist() == [[0.5, 0.5, 0.5, -1.0, -1.0, 9.0], [2.0] * 4 + [9.0] * 2]
    assert batch.num_tokens == 9
    assert batch.efficiency == pytest.approx(9 / 12)
    assert batch.spans == {0: (0, 0, 3), 1: (0, 3, 2), 2: (1, 0, 4)}
    parts = unpack(batch, batch["adv"])
    assert {s: p.tolist() for s, p in parts.items()} == {s: q["adv"] for s, q in enumerate(seqs)}


def test_collate_without_loss_mask_targets_all_but_first_tokens():
    batch = collate([[0, 1]], [{"input_ids": [5, 6]}, {"input_ids": [7, 8, 9]}], budget=5)
    assert batch.loss_mask.int().tolist() == [[0, 1, 0, 1, 1]]


def _tiny_model():
    torch.manual_seed(0)
    cfg = TinyModelConfig(
        hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64
    )
    return build_model(cfg, vocab_size=97, pad_token_id=0, eos_token_id=1)


def test_packed_logits_equal_logits_alone():
    model = _tiny_model().train()  # training mode: what the trainer runs in
    gen = torch.Generator().manual_seed(1)
    lengths = [13, 7, 20, 5, 9, 30, 4]
    seqs = [{"input_ids": torch.randint(2, 97, (n,), generator=gen).tolist()} for n in lengths]
    bins = pack(lengths, budget=32)
    assert len(bins) < len(lengths)  # several sequences share rows
    batch = collate(bins, seqs, budget=32)
    with torch.no_grad():
        packed = model(
            input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False
        ).logits
        packed_logp = forward_logprobs(model, batch)
        for s, (r, start, n) in batch.spans.items():
            ids = torch.tensor([seqs[s]["input_ids"]])
            alone = model(input_ids=ids).logits[0]
            assert (packed[r, start : start + n] - alone).abs().max() <= 1e-5
            # forward_logprobs: entry t is log p(token t | tokens before it in its sequence)
            want = torch.log_softmax(alone[:-1], -1).gather(-1, ids[0, 1:, None])[:, 0]
            got = packed_logp[r, start : start + n]
            assert got[0] == 0
            assert (got[1:] - want).abs().max() <= 1e-5
    pad = batch["seq_ids"] < 0
    assert (packed_logp[pad] == 0).all()


def test_forward_logprobs_gradient_stays_within_a_sequence():
    # A loss on sequence 1 alone must give no gradient to sequence 0's embeddings: no
    # attention crosses the boundary. Checked through the input embeddings of each token.
    model = _tiny_model()
    batch = collate([[0, 1]], [{"input_ids": [5, 6, 7]}, {"input_ids": [8, 9, 10, 11]}], budget=8)
    embeds = model.get_input_embeddings()(batch.input_ids).detach().requires_grad_(True)
    logits = model(inputs_embeds=embeds, position_ids=batch.position_ids, use_cache=False).logits
    logits[0, 3:7].sum().backward()
    assert embeds.grad[0, :3].abs().max() == 0
    assert embeds.grad[0, 3:7].abs().max() > 0
