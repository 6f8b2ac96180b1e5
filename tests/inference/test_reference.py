"""Layouts of the reference and training passes (``micro_batches``), by hand."""

from __future__ import annotations

from r1lab.inference.reference import micro_batches


def test_one_sequence_a_row_longest_first_in_passes_of_the_token_budget():
    # sorted by length (ties in index order): 1 (9), 3 (9), 0 (5), 2 (3); a pass of 18 slots
    # holds two rows of 9, then three rows of 5 would fit but only two are left
    assert micro_batches([5, 9, 3, 9], 0, 18) == [([[1], [3]], 9), ([[0], [2]], 5)]
    # a sequence longer than the pass still gets a pass of its own
    assert micro_batches([30, 2], 0, 8) == [([[0]], 30), ([[1]], 2)]


def test_packed_rows_are_best_fit_and_raised_to_the_longest_sequence():
    # rows of max(10, 9) = 10 tokens: 9 | 9 | 5 + 3; two rows a pass of 20 slots
    assert micro_batches([5, 9, 3, 9], 10, 20) == [([[1], [3]], 10), ([[0, 2]], 10)]
    assert micro_batches([12, 4], 10, 100) == [([[0], [1]], 12)]


def test_no_sequences_no_passes():
    assert micro_batches([], 0, 64) == [] and micro_batches([], 16, 64) == []
