"""The judge client against scripted judge servers (real HTTP): garbage and server errors are
retried, timeouts give up, bad requests are not retried, nothing raises, replies that parsed
are cached and garbage never is, and batches come back in input order."""

from __future__ import annotations

import threading
import time

import openai
import pytest

from r1lab.judge.client import Judge, JudgeConfig
from r1lab.judge.prompts import fields_of
from r1lab.serve.app import create_app
from r1lab.serve.server import Server

ITEM = ("What is 2+3?", "5", "<answer>5</answer>")


class Scripted:
    """A judge backend whose replies follow a script: a string is the reply, an exception is
    raised, a float is seconds to sleep before answering ``VERDICT: correct``. After the script
    runs out it repeats its last step. ``calls`` counts requests."""

    def __init__(self, *script):
        self.script = list(script)
        self.calls = 0
        self._lock = threading.Lock()
        self.release = threading.Event()  # ends every sleep at once, so servers stop quickly

    def complete(self, messages, temperature, top_p, max_tokens, seed, stop):
        with self._lock:
            step = self.script[min(self.calls, len(self.script) - 1)]
            self.calls += 1
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, float):
            self.release.wait(step)
            step = "VERDICT: correct"
        return step, "stop", 1, 1


class Echo:
    """Says ``VERDICT: correct`` when the response's final answer is the reference, so a
    batch's results show whether they line up with its items; waits a little, unevenly, so
    that concurrent requests finish out of order."""

    def complete(self, messages, temperature, top_p, max_tokens, seed, stop):
        _, fields = fields_of(messages)
        time.sleep(0.002 * (len(fields["question"]) % 7))
        right = fields["response"] == f"<answer>{fields['reference']}</answer>"
        return f"VERDICT: {'correct' if right else 'incorrect'}", "stop", 1, 1


def _cfg(**kw):
    return JudgeConfig(**{"backoff": 0.0, "retries": 2, "timeout": 5.0, **kw})


@pytest.fixture
def serve():
    """``serve(backend)``: the URL of a server for ``backend``, stopped after the test."""
    servers = []

    def start(backend):
        server = Server(create_app(backend, "oracle"))
        servers.append((server.__enter__(), backend))
        return server.base_url

    yield start
    for server, backend in servers:
        if isinstance(backend, Scripted):
            backend.release.set()
        server.__exit__()


def test_garbage_is_asked_again(serve):
    backend = Scripted("I think it is fine.", "VERDICT: correct")
    with Judge(_cfg(), None, base_url=serve(backend)) as judge:
        assert judge.correct([ITEM]) == [True]
    assert backend.calls == 2
    assert judge.stats["garbage"] == 1 and judge.stats["retried"] == 1
    assert judge.stats["requests"] == 2 and judge.stats["failed"] == 0


def test_garbage_every_time_gives_up(serve):
    backend = Scripted("")
    with Judge(_cfg(retries=2), None, base_url=serve(backend)) as judge:
        assert judge.correct([ITEM]) == [None]
    assert backend.calls == 3
    assert judge.stats["garbage"] == 3 and judge.stats["failed"] == 1


def test_timeouts_give_up_without_raising(serve):
    backend = Scripted(1.0)
    cfg = _cfg(timeout=0.3, retries=1, concurrency=2)
    with Judge(cfg, None, base_url=serve(backend)) as judge:
        start = time.monotonic()
        assert judge.correct([ITEM, ("What is 1+1?", "2", "<answer>2</answer>")]) == [None, None]
        assert time.monotonic() - start < 3.0
    assert judge.stats["timeouts"] == 2 * (cfg.retries + 1)
    assert judge.stats["failed"] == 2 and judge.stats["retried"] == 2


def test_a_bad_request_is_not_retried(serve):
    backend = Scripted(ValueError("the prompt is too long"))
    with Judge(_cfg(), None, base_url=serve(backend)) as judge:
        assert judge.correct([ITEM]) == [None]
    assert backend.calls == 1
    assert judge.stats["errors"] == 1 and judge.stats["failed"] == 1
    assert judge.stats["retried"] == 0


def test_a_server_error_is_retried(serve):
    # an exception other than ValueError is a bug in the backend: a 500, worth another try
    backend = Scripted(RuntimeError("backend crashed"), "VERDICT: incorrect")
    url = serve(backend)
    client = openai.OpenAI(base_url=url, api_key="none", max_retries=0)
    with pytest.raises(openai.InternalServerError, match="RuntimeError: backend crashed"):
        client.chat.completions.create(model="oracle", messages=[{"role": "user", "content": ""}])
    client.close()
    backend.calls = 0
    with Judge(_cfg(), None, base_url=url) as judge:
        assert judge.correct([ITEM]) == [False]
    assert backend.calls == 2
    assert judge.stats["errors"] == 1 and judge.stats["retried"] == 1
    assert judge.stats["failed"] == 0


def test_no_server_at_all_is_a_failure_not_an_exception():
    with Server(create_app(Echo(), "oracle")) as server:
        url = server.base_url  # a port nothing listens on once the server is gone
    with Judge(_cfg(retries=1), None, base_url=url) as judge:
        assert judge.correct([ITEM]) == [None]
    assert judge.stats["errors"] == 2 and judge.stats["failed"] == 1


def test_replies_that_parsed_are_cached_and_garbage_is_not(serve, tmp_path):
    cache = tmp_path / "judge" / "cache.sqlite"
    items = [(f"What is {i}+1?", str(i + 1), f"<answer>{i + 1}</answer>") for i in range(3)]
    url = serve(Echo())
    with Judge(_cfg(), cache, base_url=url) as judge:
        assert judge.correct(items) == [True] * 3
    assert judge.stats["requests"] == 3 and judge.stats["cached"] == 0
    with Judge(_cfg(), cache, base_url=url) as again:
        assert again.correct(items) == [True] * 3
    assert again.stats["cached"] == 3 and again.stats["requests"] == 0
    # another seed is another judgement, not a cache hit
    with Judge(_cfg(), cache, base_url=url) as judge:
        judge.score([("a prompt", "an answer")], seed=0)
    assert judge.stats["cached"] == 0

    flaky = Scripted("no verdict here")
    item = ("What is 7+1?", "8", "<answer>8</answer>")
    with Judge(_cfg(retries=0), cache, base_url=serve(flaky)) as judge:
        assert judge.correct([item]) == [None]
    flaky.script = ["VERDICT: correct"]
    with Judge(_cfg(retries=0), cache, base_url=serve(flaky)) as judge:
        assert judge.correct([item]) == [True]
    assert judge.stats["cached"] == 0 and judge.stats["requests"] == 1


def test_a_batch_comes_back_in_input_order(serve):
    items = [
        (f"What is {i} plus one?", str(i + 1), f"<answer>{i + 1 if i % 3 else i}</answer>")
        for i in range(20)
    ]
    with Judge(_cfg(concurrency=8), None, base_url=serve(Echo())) as judge:
        assert judge.correct(items) == [i % 3 != 0 for i in range(20)]
    assert judge.stats["requests"] == 20 and judge.stats["failed"] == 0
