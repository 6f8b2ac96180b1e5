"""``judge_session``: the oracle served for the occasion and judged over HTTP, or a given API."""

from __future__ import annotations

import httpx
import pytest

from r1lab.judge.client import JudgeConfig
from r1lab.judge.oracle import OracleConfig
from r1lab.judge.session import judge_session
from r1lab.serve.app import create_app
from r1lab.serve.backends import OracleBackend
from r1lab.serve.server import Server

ITEMS = [
    ("What is 2+3?", "5", "<think>\n2+3=5\n</think>\n<answer>\n5\n</answer>"),
    ("What is 2+3?", "5", "<think>\n2+3=6\n</think>\n<answer>\n6\n</answer>"),
    ("What is 7*6?", "42", "<answer>42</answer>"),
]


def test_the_oracle_is_served_for_the_session(tmp_path):
    cache = tmp_path / "cache.sqlite"
    with judge_session(JudgeConfig(), OracleConfig(error_rate=0), cache) as judge:
        url = judge.base_url
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        assert judge.correct(ITEMS) == [True, False, True]
        assert judge.stats["requests"] == 3 and judge.stats["failed"] == 0
    assert cache.is_file()
    with pytest.raises(httpx.ConnectError):  # the server is gone with the session
        httpx.get(f"{url}/models", timeout=2)
    with judge_session(JudgeConfig(), OracleConfig(error_rate=0), cache) as again:
        assert again.correct(ITEMS) == [True, False, True]
        assert again.stats["cached"] == 3 and again.stats["requests"] == 0


def test_a_given_base_url_is_used_and_left_running():
    flipped = OracleBackend(OracleConfig(error_rate=1))
    with Server(create_app(flipped, "v3")) as server:
        cfg = JudgeConfig(base_url=server.base_url, model="v3", backoff=0)
        with judge_session(cfg, OracleConfig(error_rate=0), None) as judge:
            assert judge.base_url == server.base_url
            assert judge.correct(ITEMS) == [False, True, False]  # the given judge, not an oracle
        assert httpx.get(f"{server.base_url}/models", timeout=2).status_code == 200
