"""Reward models in the inference module: a causal LM with a scalar head that scores a prompt
and a response (report §9).

A reward model is the policy's architecture with a one-output head,
``AutoModelForSequenceClassification`` with ``num_labels=1``: its score is the head applied to
the last token's hidden state. ``r1lab rm`` trains one and saves it with ``save_pretrained``; its model card
(``r1lab.reward_model`` in ``config.json``, :mod:`r1lab.model_card`) says what it reads and
how its scores are normalised:

* **what it reads** (report §9.1): the helpfulness model reads the prompt and the **answer
  part** of a response only (what follows the reasoning: :func:`rm_text`), so that it cannot
  reward or punish the reasoning; the safety model reads the **whole response**, reasoning
  included, where a harmful plan can hide before a refusal;
* **normalisation**, so that its reward sits in (0, 1) beside the rule rewards:
  helpfulness ``σ((r - μ) / σ_r)`` with μ and σ_r the mean and std of its scores on the
  responses it was trained on (a Bradley–Terry score has no scale of its own: only
  differences are learned); safety ``σ(r)``, the probability it was trained to give that
  the response is safe.

:func:`sequence_scores` is the one forward both training and scoring use: sequences one a
row sorted by length (plain causal attention) or packed best-fit (``budget > 0``, varlen
attention: :mod:`r1lab.data.varlen`), in passes of at most ``micro_batch_tokens`` token slots.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from r1lab.errors import UserError

__all__ = [
    "KINDS",
    "RewardModel",
    "RewardModels",
    "load_reward_model",
    "rm_sequences",
    "rm_text",
    "sequence_scores",
]

# reward model kind -> the part of a response it reads
KINDS = {"helpfulness": "answer", "safety": "response"}


def rm_text(kind: str, response: str) -> str:
    """The text of ``response`` that a ``kind`` reward model reads: the answer part for
    helpfulness (:func:`r1lab.world.general.answer_part`; empty when there is none), the whole
    response for safety."""
    from r1lab.world.general import answer_part

    if kind not in KINDS:
        raise UserError(f"unknown reward model kind '{kind}' (known: {', '.join(KINDS)})")
    return (answer_part(response) or "") if KINDS[kind] == "answer" else response


def rm_sequences(
    tokenizer: Any, prompts: Sequence[str], texts: Sequence[str], max_length: int
) -> list[list[int]]:
    """Token ids of each prompt (as the user turn of the chat template, ending with the
    assistant header) followed by its text, at most ``max_length`` tokens: a longer sequence
    keeps its last ``max_length`` tokens, since the score is read at the last token."""
    heads = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
        )
        if getattr(tokenizer, "chat_template", None)
        else p
        for p in prompts
    ]
    head_ids = tokenizer(list(heads), add_special_tokens=False)["input_ids"]
    body_ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [(h + b)[-max_length:] for h, b in zip(head_ids, body_ids, strict=True)]


def _head(model: Any) -> torch.nn.Module:
    head = getattr(model, "score", None)
    if not isinstance(head, torch.nn.Module):
        raise UserError(
            f"{type(model).__name__}: no 'score' head (expected an "
            "AutoModelForSequenceClassification of a decoder LM)"
        )
    return head


def sequence_scores(
    model: Any,
    sequences: Sequence[Sequence[int]],
    micro_batch_tokens: int = 4096,
    budget: int = 0,
    pad_token_id: int = 0,
    device: str | torch.device = "cpu",
) -> Tensor:
    """The reward model's score of every sequence, ``[N]`` float32 on ``device``: the head on
    the hidden state of each sequence's last token. Gradients flow when the caller has them
    enabled (training); wrap in ``torch.no_grad()`` to score."""
    from r1lab.data.packing import collate
    from r1lab.data.varlen import packed_hidden_states
    from r1lab.inference.reference import micro_batches

    head, backbone = _head(model), model.base_model
    scores: list[Tensor | None] = [None] * len(sequences)
    lengths = [len(s) for s in sequences]
    if any(n == 0 for n in lengths):
        raise ValueError("sequence_scores: an empty sequence has no last token to score")
    for bins, width in micro_batches(lengths, budget, micro_batch_tokens):
        local, k = [], 0
        order = [s for b in bins for s in b]
        for b in bins:
            local.append(list(range(k, k + len(b))))
            k += len(b)
        batch = collate(local, [{"input_ids": sequences[s]} for s in order], width, pad_token_id)
        batch = batch.to(device)
        if batch.one_per_row:  # right padding after each sequence: causal attention is exact
            hidden = backbone(input_ids=batch.input_ids, use_cache=False).last_hidden_state
        else:  # packed rows: varlen attention, no [N, N] block mask
            hidden = packed_hidden_states(backbone, batch.input_ids, batch.position_ids)
        rows = torch.tensor([batch.spans[i][0] for i in range(len(order))], device=hidden.device)
        last = torch.tensor(
            [batch.spans[i][1] + batch.spans[i][2] - 1 for i in range(len(order))],
            device=hidden.device,
        )
        values = head(hidden[rows, last]).squeeze(-1).float()
        for i, s in enumerate(order):
            scores[s] = values[i]
    return torch.stack([s for s in scores if s is not None]) if scores else torch.zeros(0)


class RewardModel:
    """A trained reward model, ready to score: the model, its tokenizer and its card's
    ``reward_model`` entry (``kind``, ``mean``, ``std``, ``max_length``)."""

    def __init__(
        self, model: Any, tokenizer: Any, meta: dict[str, Any], device: str | torch.device
    ):
        self.model, self.tokenizer, self.meta, self.device = model, tokenizer, meta, device
        self.kind: str = meta["kind"]
        self.max_length = int(meta.get("max_length", 8192))

    @torch.no_grad()
    def raw_scores(
        self, prompts: Sequence[str], responses: Sequence[str], micro_batch_tokens: int = 4096
    ) -> list[float]:
        """The head's scores of each (prompt, response), reading :func:`rm_text` of it."""
        if not prompts:
            return []
        texts = [rm_text(self.kind, r) for r in responses]
        seqs = rm_sequences(self.tokenizer, prompts, texts, self.max_length)
        pad = self.tokenizer.pad_token_id or 0
        values = sequence_scores(self.model, seqs, micro_batch_tokens, 0, pad, self.device)
        return values.cpu().tolist()

    def normalise(self, raw: Sequence[float]) -> list[float]:
        """Rewards in (0, 1): σ((r - mean) / std) for helpfulness, σ(r) for safety."""
        if self.kind == "safety":
            return [_sigmoid(r) for r in raw]
        mean, std = float(self.meta["mean"]), max(float(self.meta["std"]), 1e-6)
        return [_sigmoid((r - mean) / std) for r in raw]

    def rewards(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """Normalised rewards of each (prompt, response)."""
        return self.normalise(self.raw_scores(prompts, responses))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def load_reward_model(folder: str | Path, device: str | torch.device = "cpu") -> RewardModel:
    """A reward model folder written by ``r1lab rm``; one-line errors for what is missing."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    from r1lab.model_card import folder_card
    from r1lab.models import check_model_dir, load_tokenizer

    path = check_model_dir(folder)
    meta = folder_card(path).get("reward_model")
    if not isinstance(meta, dict) or meta.get("kind") not in KINDS:
        raise UserError(
            f"{path}: not a reward model of r1lab rm (its config.json has no r1lab.reward_model "
            f"entry with a kind of {', '.join(KINDS)})"
        )
    hf_logging.disable_progress_bar()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot load reward model ({str(e).splitlines()[0]})") from None
    return RewardModel(model.to(device).eval(), load_tokenizer(path), meta, device)


class RewardModels:
    """The reward models of a run's rewards (``rewards.models``: name -> folder), each scoring
    the samples of its tasks (``rewards.only``) when it is on."""

    def __init__(self, cfg: Any, device: str | torch.device = "cpu") -> None:
        self.models = {
            name: load_reward_model(folder, device) for name, folder in cfg.models.items()
        }
        self.tasks = {name: tuple(cfg.only.get(name, ())) for name in cfg.models}

    def __bool__(self) -> bool:
        return bool(self.models)

    def score(
        self, samples: Sequence[Any], active: set[str] | None = None
    ) -> dict[str, list[float]]:
        """Per reward model, the normalised reward of every sample: exactly 0.0, and not
        computed, where it is off (not in ``active``) or the sample's task is not its."""
        out = {}
        for name, rm in self.models.items():
            values = [0.0] * len(samples)
            if active is None or name in active:
                idx = [i for i, x in enumerate(samples)
                       if not self.tasks[name] or x.meta.get("task") in self.tasks[name]]  # fmt: skip
                scored = rm.rewards([samples[i].prompt for i in idx],
                                    [samples[i].completion for i in idx])  # fmt: skip
                for i, v in zip(idx, scored, strict=True):
                    values[i] = v
            out[name] = values
        return out
