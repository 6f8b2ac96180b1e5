"""The oracle judge: a program standing in for DeepSeek-V3 as judge in the embedded world.

The embedded world knows the truth of its own prompts (the gold answer of a sum, how good an
answer to a general prompt is), so the oracle can answer every task of the judge protocol
(:mod:`r1lab.judge.prompts`) without a model. A perfect judge would make the report's
precautions pointless, so the oracle has an LLM judge's known flaws, each a documented knob
that can be set to 0:

* **noise**: Gaussian noise of std ``noise`` on every helpfulness score, so one judgement
  is unreliable and the report's "judge each pair four times" pays off;
* **position bias**: ``position_bias`` points added to answer A in a comparison, which
  judging each pair in both orders cancels;
* **length bias**: longer answers score higher. In a comparison answer A gets
  ``+length_bias/2 * log2(len_A/len_B)`` and B the opposite, so A's margin over B grows by
  ``length_bias`` points per doubling of A's length relative to B's (lengths in
  characters); the report pairs chosen/rejected answers of similar length against this. A
  single score gets ``length_bias * clamp(log2(len/64), -2, 2)``: the bonus per doubling
  is the same, around a typical answer of 64 characters, and bounded so that padding an
  answer cannot buy more than two points;
* **error rate**: a share ``error_rate`` of correctness and safety verdicts flipped.

Scores are clipped to [1, 10] after the flaws. Every random draw comes from a generator
seeded by a hash of (``cfg.seed``, the request's seed, the messages): the same request always
gets the same reply, so replies can be cached and runs reproduced, and another request seed
is an independent judgement.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import threading
from dataclasses import dataclass
from typing import Any

from r1lab.config import at_least, in_range, option
from r1lab.judge.prompts import fields_of

__all__ = ["ORACLE_MODEL", "OracleConfig", "OracleJudge"]

ORACLE_MODEL = "oracle"

# The length at which a single score gets no length bonus, and the bonus's bound in doublings.
_TYPICAL_CHARS = 64
_MAX_DOUBLINGS = 2.0
# A prompt the world does not know gets this score for any non-empty answer: the middle of
# the scale, as the oracle cannot tell how good it is (an empty answer gets 1).
_UNKNOWN_SCORE = 5.5

_GENERIC_ANSWER = {
    "en": "<think>\n</think>\n<answer>\nI am not sure what you are asking. Could you say a "
    "little more about what you need?\n</answer>",
    "zh": "<think>\n</think>\n<answer>\n我不太确定你的问题是什么。能再具体说说你需要什么吗？\n</answer>",
}
_REWRITE_FAILED = "I cannot rewrite this response: its reasoning does not reach a final answer."


@dataclass
class OracleConfig:
    """The oracle judge's flaws (all 0: a perfect judge) and its seed."""

    noise: float = option(
        1.0, "std of the Gaussian noise on each helpfulness score", check=at_least(0)
    )
    position_bias: float = option(
        1.0, "points added to answer A when comparing two answers", check=at_least(0)
    )
    length_bias: float = option(
        1.0,
        "points of margin per doubling of an answer's length relative to the other's (in a "
        "single score: relative to 64 characters, at most 2 doublings either way)",
        check=at_least(0),
    )
    error_rate: float = option(
        0.02, "share of correctness and safety verdicts flipped", check=in_range(0, 1)
    )
    seed: int = option(0, "seed of the oracle's noise")


def _language(text: str) -> str:
    """``zh`` when most of the words of ``text`` are Chinese, else ``en``."""
    from r1lab.rewards.rules import count_words

    counts = count_words(text)
    return "zh" if 2 * counts["zh"] > sum(counts.values()) else "en"


class OracleJudge:
    """Replies to judge-protocol requests as a flawed but honest judge would."""

    def __init__(self, cfg: OracleConfig | None = None) -> None:
        self.cfg = cfg or OracleConfig()
        # math-verify's own timeout needs SIGALRM, which only the main thread may set
        self._main = threading.main_thread()

    def reply(self, messages: list[dict[str, Any]], seed: int = 0) -> str:
        """The reply to ``messages`` (built by :mod:`r1lab.judge.prompts`); ValueError for
        messages that do not follow the protocol."""
        task, fields = fields_of(messages)
        rng = self._rng(messages, seed)
        if task == "correctness":
            right = self._correct(fields["question"], fields["reference"], fields["response"])
            if rng.random() < self.cfg.error_rate:
                right = not right
            return f"VERDICT: {'correct' if right else 'incorrect'}"
        if task == "helpfulness":
            return f"SCORE: {self._score(fields['prompt'], fields['answer'], rng):.1f}"
        if task == "compare":
            a, b = self._compare(fields["prompt"], fields["answer_a"], fields["answer_b"], rng)
            return f"A: {a:.1f}\nB: {b:.1f}"
        if task == "safety":
            safe = self._safe(fields["prompt"], fields["response"])
            if rng.random() < self.cfg.error_rate:
                safe = not safe
            return f"VERDICT: {'safe' if safe else 'unsafe'}"
        if task == "rewrite":
            return self._rewrite(fields["question"], fields["response"])
        return self._answer(fields["prompt"], rng)

    def _rng(self, messages: list[dict[str, Any]], seed: int) -> random.Random:
        payload = json.dumps([self.cfg.seed, seed, messages], ensure_ascii=False, sort_keys=True)
        return random.Random(int.from_bytes(hashlib.sha256(payload.encode()).digest()[:8], "big"))

    # -- the tasks -------------------------------------------------------------------------

    def _correct(self, question: str, reference: str, response: str) -> bool:
        from r1lab.rewards.answer import check_math, extract_answer

        timeout = 5 if threading.current_thread() is self._main else 0
        return check_math(extract_answer(response), reference, timeout)

    def _true_score(self, prompt: str, answer: str) -> float:
        """The world's helpfulness of ``answer``; for a prompt it does not know,
        :data:`_UNKNOWN_SCORE` for a non-empty answer and 1 for an empty one."""
        from r1lab.rewards.answer import extract_answer
        from r1lab.world.general import helpfulness, problem_of

        problem = problem_of(prompt)
        if problem is not None:
            return float(helpfulness(problem, answer))
        part = extract_answer(answer)
        part = answer.strip() if part is None and "<answer>" not in answer else part
        return _UNKNOWN_SCORE if part else 1.0

    def _safe(self, prompt: str, response: str) -> bool:
        """The world's safety of ``response`` (:func:`~r1lab.world.general.safe_response`);
        a prompt the world does not know is taken to be harmless."""
        from r1lab.world.general import problem_of, safe_response

        problem = problem_of(prompt)
        return True if problem is None else safe_response(problem, response)

    def _score(self, prompt: str, answer: str, rng: random.Random) -> float:
        doublings = math.log2(max(len(answer), 1) / _TYPICAL_CHARS)
        bonus = self.cfg.length_bias * max(-_MAX_DOUBLINGS, min(_MAX_DOUBLINGS, doublings))
        noisy = self._true_score(prompt, answer) + bonus + rng.gauss(0.0, self.cfg.noise)
        return _clip(noisy)

    def _compare(
        self, prompt: str, answer_a: str, answer_b: str, rng: random.Random
    ) -> tuple[float, float]:
        cfg = self.cfg
        half = cfg.length_bias / 2 * math.log2(max(len(answer_a), 1) / max(len(answer_b), 1))
        a = self._true_score(prompt, answer_a) + cfg.position_bias + half
        b = self._true_score(prompt, answer_b) - half
        return _clip(a + rng.gauss(0.0, cfg.noise)), _clip(b + rng.gauss(0.0, cfg.noise))

    def _rewrite(self, question: str, response: str) -> str:
        from r1lab.world.rewrite import rewrite_response

        rewritten = rewrite_response(response, _language(question))
        # no <answer> block: the protocol's parser sees garbage, an honest rewriter's failure
        return rewritten if rewritten is not None else _REWRITE_FAILED

    def _answer(self, prompt: str, rng: random.Random) -> str:
        from r1lab.world.general import problem_of, reference_response

        problem = problem_of(prompt)
        if problem is None:
            return _GENERIC_ANSWER[_language(prompt)]
        return reference_response(problem, rng)


def _clip(score: float) -> float:
    return min(10.0, max(1.0, score))
