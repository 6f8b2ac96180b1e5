"""The pretraining corpus of the embedded base.

Three kinds of document, mirroring what a real base model has read:

* **conversations**: a question as a user turn, the assistant's ``<think>/<answer>`` response in
  the corpus's mix of careful and hasty styles (see :mod:`r1lab.world.problems`). How often the
  base *chooses* the careful style is set here, by ``careful_rate``.
* **worked examples**: the question and a careful trace in plain text, as a textbook writes
  it: the very lines of a careful answer (opener, columns, check, the odd slip caught by the
  check), so that the skill is learned well, without learning to use it in conversation.
* **facts**: lines of one-digit sums and differences (``7+9=16, 13-5=8``): the addition table.
* **general text**: word lists, dictionary lines, notes, greetings and refusals in stories
  (:func:`r1lab.world.general.general_document`): the language of the general prompts,
  read as plain text, never as an assistant's answer.

The split between knowing how (worked examples, facts) and choosing to (conversations) is what
lets pure RL find accuracy: the reward teaches the base to pick the careful style it already
knows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from r1lab.config import at_least, option
from r1lab.world.problems import (
    WorldConfig,
    generate_problems,
    trace_problem,
    worked_example,
    writes_heldout,
)


@dataclass
class CorpusConfig:
    """Size and mix of the pretraining corpus."""

    conversations: int = option(
        12500, "chat documents (question + traced response)", check=at_least(0)
    )
    worked_examples: int = option(6250, "plain-text column-arithmetic documents", check=at_least(0))
    fact_lines: int = option(9000, "documents of one-digit facts, 12 per line", check=at_least(0))
    general_documents: int = option(
        3000, "plain-text documents in the words of the general prompts", check=at_least(0)
    )
    seed: int = option(0, "seed of the corpus draw")


def _fact(rng: random.Random) -> str:
    """One step of column arithmetic: a sum, a sum with a carry, a difference (after a borrow:
    ``12-7=5``), or one with a borrow paid on the way (``5-1-3=1``)."""
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
    """Documents for :func:`r1lab.training.sft.train_sft`: ``{"prompt","response"}`` or ``{"text"}``.

    A drawn trace that would write a held-out operand pair (a check such as ``836-589=247``
    can) is left out, and the problem with it: nothing held out is ever seen.
    """
    rng = random.Random(f"corpus-{cfg.seed}")
    docs: list[dict[str, str]] = []
    wanted = cfg.conversations + cfg.worked_examples
    problems = generate_problems(int(wanted * 1.2) + 16, cfg.seed, "train", world)
    for p in problems:
        if len(docs) == wanted:
            break
        if len(docs) < cfg.conversations:
            doc = {"prompt": p.question, "response": trace_problem(p, world, rng).response}
        else:
            doc = {"text": worked_example(p, world, rng)}
        if not writes_heldout(doc.get("text") or doc["response"], world.heldout_share):
            docs.append(doc)
    if len(docs) < wanted:  # cannot happen at the default shares; said plainly if it does
        raise ValueError(f"corpus: only {len(docs)} of {wanted} traces avoid held-out pairs")
    for _ in range(cfg.fact_lines):
        docs.append({"text": ", ".join(_fact(rng) for _ in range(12)) + "."})
    if cfg.general_documents:
        from r1lab.world.general import general_document

        general = random.Random(f"general-corpus-{cfg.seed}")
        docs += [{"text": general_document(general)} for _ in range(cfg.general_documents)]
    rng.shuffle(docs)
    return docs
