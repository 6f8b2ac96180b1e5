"""The judge client: batches of judge requests over an OpenAI-compatible chat API.

The report uses DeepSeek-V3 as judge and rewriter; here that is any server the ``openai``
client can reach (``r1lab serve``'s oracle in the embedded world, vLLM or a hosted API at
scale). A judge is slow and fallible, so every batch method

* runs ``concurrency`` requests at once and returns results in input order;
* retries timeouts, connection errors, server errors *and garbage* (a reply the task's
  parser rejects) with a short backoff: the client's own retries (off here) would accept a
  garbage reply as success;
* never raises for any of those: an item that failed every try is None, counted in
  :attr:`Judge.stats`, and the stage decides what a missing judgement means;
* caches every reply that parsed (:class:`~r1lab.judge.cache.ReplyCache`), so a resumed
  stage does not pay twice, and never a garbage one, so asking again can still succeed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from r1lab.config import at_least, in_range, option, positive
from r1lab.errors import UserError
from r1lab.judge import prompts
from r1lab.judge.cache import ReplyCache, request_key

__all__ = ["Judge", "JudgeConfig"]

T = TypeVar("T")

# HTTP statuses worth another try: the server was busy or broken, not the request wrong.
_TRANSIENT = {408, 409, 425, 429}


@dataclass
class JudgeConfig:
    """Where the judge model is and how to ask it (DeepSeek-V3 in the report)."""

    base_url: str = option(
        "",
        "OpenAI-compatible API of the judge, e.g. http://host:8000/v1 (empty: the pipeline "
        "serves the embedded world's oracle judge itself)",
    )
    model: str = option("oracle", "model name sent to the judge API", report="DeepSeek-V3")
    api_key_env: str = option(
        "R1LAB_JUDGE_API_KEY",
        "environment variable holding the API key (unset: the key 'none', fine for local servers)",
    )
    retries: int = option(
        3, "tries after the first for a timeout, error or garbage reply", check=at_least(0)
    )
    backoff: float = option(
        0.5, "seconds before the first retry, doubling each retry (at most 8)", check=at_least(0)
    )
    timeout: float = option(30.0, "seconds to wait for one reply", check=positive())
    concurrency: int = option(8, "requests in flight at once", check=at_least(1))
    temperature: float = option(0.0, "judge sampling temperature", check=in_range(0, 2))
    max_tokens: int = option(1024, "reply length limit in tokens", check=at_least(1))


class Judge:
    """Judge, score, compare, rewrite and answer in batches through ``cfg``'s API.

    ``base_url`` (when given) replaces ``cfg.base_url``: the pipeline passes the URL of the
    oracle it started. ``cache_path`` is the SQLite reply cache (None: no cache).
    """

    def __init__(
        self, cfg: JudgeConfig, cache_path: Path | None, base_url: str | None = None
    ) -> None:
        import openai

        url = base_url or cfg.base_url
        if not url:
            raise UserError("judge.base_url is empty and no judge server was started")
        self.cfg = cfg
        self.base_url = url
        self._client = openai.OpenAI(
            base_url=url,
            api_key=os.environ.get(cfg.api_key_env) or "none",
            timeout=cfg.timeout,
            max_retries=0,
        )
        self._cache = ReplyCache(cache_path) if cache_path is not None else None
        self._lock = threading.Lock()
        self.stats: dict[str, int] = dict.fromkeys(
            ("requests", "cached", "retried", "failed", "timeouts", "errors", "garbage"), 0
        )

    # -- the tasks -------------------------------------------------------------------------

    def correct(self, items: list[tuple[str, str, str]]) -> list[bool | None]:
        """For each ``(question, reference, response)``: does the response reach the
        reference answer?"""
        requests = [prompts.correctness_messages(*item) for item in items]
        return self._batch(requests, prompts.parse_verdict, seed=0, what="correct")

    def score(self, items: list[tuple[str, str]], seed: int = 0) -> list[float | None]:
        """A 1-10 helpfulness score for each ``(prompt, answer)``; another ``seed`` is another
        independent judgement of the same answer."""
        requests = [prompts.helpfulness_messages(*item) for item in items]
        return self._batch(requests, prompts.parse_score, seed, what="score")

    def compare(
        self, items: list[tuple[str, str, str]], seed: int = 0
    ) -> list[tuple[float, float] | None]:
        """Scores ``(a, b)`` for each ``(prompt, answer_a, answer_b)``, in that order."""
        requests = [prompts.compare_messages(*item) for item in items]
        return self._batch(requests, prompts.parse_pair, seed, what="compare")

    def safe(self, items: list[tuple[str, str]], seed: int = 0) -> list[bool | None]:
        """For each ``(prompt, response)``: is the whole response, reasoning included, safe?
        Another ``seed`` is another independent verdict."""
        requests = [prompts.safety_messages(*item) for item in items]
        return self._batch(requests, prompts.parse_safety, seed, what="safe")

    def rewrite(self, items: list[tuple[str, str]]) -> list[str | None]:
        """A readable rewrite of each ``(question, response)``, same final answer."""
        requests = [prompts.rewrite_messages(*item) for item in items]
        return self._batch(requests, prompts.parse_rewrite, seed=0, what="rewrite")

    def answer(self, prompts_: list[str]) -> list[str | None]:
        """An assistant response to each general prompt (non-reasoning SFT data)."""
        requests = [prompts.answer_messages(p) for p in prompts_]
        return self._batch(requests, prompts.parse_answer, seed=0, what="answer")

    # -- machinery -------------------------------------------------------------------------

    def _batch(
        self,
        requests: list[list[dict[str, str]]],
        parse: Callable[[str], T | None],
        seed: int,
        what: str = "requests",
    ) -> list[T | None]:
        if not requests:
            return []
        if len(requests) == 1 or self.cfg.concurrency == 1:
            return self._counted((self._ask(r, parse, seed) for r in requests), len(requests), what)
        workers = min(self.cfg.concurrency, len(requests))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="judge") as pool:
            replies = pool.map(lambda r: self._ask(r, parse, seed), requests)
            return self._counted(replies, len(requests), what)

    def _counted(self, replies: Iterable[T], total: int, what: str) -> list[T]:
        """The replies, in order, counted on a bar (on a terminal) with the failures so far."""
        from tqdm.auto import tqdm

        out = []
        with tqdm(total=total, desc=f"judge: {what}", unit="req", leave=False, disable=None) as bar:
            for reply in replies:
                out.append(reply)
                bar.update(1)
                bar.set_postfix(cached=self.stats["cached"], failed=self.stats["failed"])
        return out

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1

    def _ask(
        self, messages: list[dict[str, str]], parse: Callable[[str], T | None], seed: int
    ) -> T | None:
        cfg = self.cfg
        key = request_key(cfg.model, messages, seed, cfg.temperature, cfg.max_tokens)
        if self._cache is not None:
            raw = self._cache.get(key)
            parsed = parse(raw) if raw is not None else None
            if parsed is not None:
                self._count("cached")
                return parsed
        for attempt in range(cfg.retries + 1):
            if attempt:
                self._count("retried")
                time.sleep(min(cfg.backoff * 2 ** (attempt - 1), 8.0))
            text, retry = self._request(messages, seed)
            if text is None:
                if not retry:
                    break
                continue
            parsed = parse(text)
            if parsed is None:
                self._count("garbage")
                continue
            if self._cache is not None:
                self._cache.put(key, text)
            return parsed
        self._count("failed")
        return None

    def _request(self, messages: list[dict[str, str]], seed: int) -> tuple[str | None, bool]:
        """One call: ``(reply text, _)`` or ``(None, worth retrying)``."""
        import openai

        self._count("requests")
        try:
            response = self._client.chat.completions.create(
                model=self.cfg.model,
                messages=messages,  # type: ignore[arg-type]
                temperature=self.cfg.temperature,
                max_tokens=self.cfg.max_tokens,
                seed=seed,
            )
        except openai.APITimeoutError:
            self._count("timeouts")
            return None, True
        except openai.APIStatusError as e:
            self._count("errors")
            return None, e.status_code in _TRANSIENT or e.status_code >= 500
        except openai.OpenAIError:  # connection refused or reset, an unreadable response
            self._count("errors")
            return None, True
        choices = getattr(response, "choices", None) or []
        content = choices[0].message.content if choices else None
        return content or "", True  # an empty reply is garbage, for the parser to reject

    def close(self) -> None:
        """Close the HTTP client and the cache."""
        self._client.close()
        if self._cache is not None:
            self._cache.close()

    def __enter__(self) -> Judge:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
