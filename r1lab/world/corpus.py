"""The pretraining corpus of the embedded base.

Three kinds of document, mirroring what a real base model has read:

* **conversations**: a question as a user turn, the assistant's ``<think>/<answer>`` response in
  the corpus's mix of careful and hasty styles (see :mod:`r1lab.world.problems`). How often the
  base *chooses* the careful style is set here, by ``careful_rate``.
* **worked examples**: column arithmetic written out in plain text, as a textbook would; the
  base learns the skill from these without learning to use it in conversation.
* **facts**: lines of one-digit sums and differences (``7+9=16, 13-5=8``): the addition table.

The split between knowing how (worked examples, facts) and choosing to (conversations) is what
lets pure RL find accuracy: the reward teaches the base to pick the careful style it already
knows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from r1lab.config import at_least, option
from r1lab.world.problems import WorldConfig, careful_trace, generate_problems, trace_problem


@dataclass
class CorpusConfig:
    """Size and mix of the pretraining corpus."""

    conversations: int = option(
        12500, "chat documents (question + traced response)", check=at_least(0)
    )
    worked_examples: int = option(6250, "plain-text column-arithmetic documents", check=at_least(0))
    fact_lines: int = option(9000, "documents of one-digit facts, 12 per line", check=at_least(0))
    seed: int = option(0, "seed of the corpus draw")


def _fact(rng: random.Random) -> str:
    """One step of column arithmetic, as it appears in careful traces."""
    a, b = rng.randint(0, 9), rng.randint(0, 9)
    kind = rng.randrange(5)
    if kind == 0:
        return f"{a}+{b}={a + b}"
    if kind == 1:
        return f"{a}+{b}+1={a + b + 1}"
    if kind == 2:
        return f"{a}-{b}={a - b}" if a >= b else f"1{a}-{b}={10 + a - b}"
    top = max(a, 1)  # a borrowed-from digit is at least 1 when it is not 0 -> "10-1-…"
    return f"{top}-1-{b}={top - 1 - b}" if top - 1 >= b else f"1{top}-1-{b}={10 + top - 1 - b}"


def build_corpus(cfg: CorpusConfig, world: WorldConfig) -> list[dict[str, str]]:
    """Documents for :func:`r1lab.training.sft.train_sft`: ``{"prompt","response"}`` or ``{"text"}``."""
    rng = random.Random(f"corpus-{cfg.seed}")
    docs: list[dict[str, str]] = []
    problems = generate_problems(
        cfg.conversations + cfg.worked_examples,
        cfg.seed,
        "train",
        world.heldout_share,
        world.zh_rate,
    )
    for p in problems[: cfg.conversations]:
        traced = trace_problem(p, world, rng)
        docs.append({"prompt": p.question, "response": traced.response})
    for p in problems[cfg.conversations :]:
        m = p.meta
        lines, _ = careful_trace(m["a"], m["op"], m["b"], m["language"], False, rng)
        docs.append({"text": p.question + "\n" + "\n".join(lines[1:])})
    for _ in range(cfg.fact_lines):
        docs.append({"text": ", ".join(_fact(rng) for _ in range(12)) + "."})
    rng.shuffle(docs)
    return docs
