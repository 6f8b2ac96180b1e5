"""RewardPool: weighted totals, failures that score 0 without stopping the run, timeouts."""

from __future__ import annotations

import time

import pytest

from r1lab.errors import UserError
from r1lab.rewards.base import Sample
from r1lab.rewards.pool import RewardPool, RewardResult, RewardsConfig, RewardSpec

try:  # the name the helper module has depends on how pytest put tests/ on sys.path
    from tests.rewards import helpers_user_rewards as helpers
except ImportError:
    import helpers_user_rewards as helpers


def user(fn: str) -> str:
    return f"{helpers.__name__}:{fn}"


# len(c0) = len("<think>") 7 + 1 + len("</think>") 8 + len("<answer>") 8 + 1 + len("</answer>") 9 = 34
# len(c2) = 34 too
BATCH = [
    Sample("q", "<think>a</think><answer>3</answer>", {"answer": "3"}),  # format 1, accuracy 1
    Sample("q", "3", {"answer": "3"}),  # format 0, accuracy 0 (no answer block), length 1
    Sample("q", "<think>b</think><answer>4</answer>", {"answer": "3"}),  # format 1, accuracy 0
]
SPECS = [
    RewardSpec("accuracy", 1.0),
    RewardSpec("format", 0.5, inline=True),
    RewardSpec(user("length"), 0.01),
]
# totals: 1 + 0.5 + 0.01·34 = 1.84;  0 + 0 + 0.01·1 = 0.01;  0 + 0.5 + 0.01·34 = 0.84
TOTALS = [1.84, 0.01, 0.84]


def check_weighted(result: RewardResult) -> None:
    assert result.per_reward == {
        "accuracy": [1.0, 0.0, 0.0],
        "format": [1.0, 0.0, 1.0],
        user("length"): [34.0, 1.0, 34.0],
    }
    assert result.total == pytest.approx(TOTALS)
    assert result.failures == {"accuracy": 0, "format": 0, user("length"): 0}


def test_weighted_sum_in_workers_and_user_reward_by_dotted_path():
    with RewardPool(SPECS, workers=2, timeout_s=30, chunk_size=2) as pool:
        fut1 = pool.submit(BATCH)
        fut2 = pool.submit(BATCH[::-1])  # two batches in flight at once
        check_weighted(fut1.result(timeout=30))
        assert fut2.result(timeout=30).total == pytest.approx(TOTALS[::-1])
        assert pool(BATCH[:0]).total == []
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit(BATCH)


def test_all_inline_without_workers():
    check_weighted(RewardPool(SPECS, workers=0).submit(BATCH).result())


def test_failing_rewards_are_marked_counted_and_leave_no_total():
    specs = [
        RewardSpec("format", 1.0, inline=True),
        RewardSpec(user("raises")),
        RewardSpec(user("exits")),
        RewardSpec(user("wrong_length")),
        RewardSpec(user("nan_on_flag")),
        RewardSpec(user("dies")),
    ]
    batch = [
        Sample("q", "<think>a</think><answer>1</answer>", {"die": True}),
        Sample("q", "x", {"nan": True}),
        Sample("q", "<think>b</think><answer>2</answer>"),
    ]
    with RewardPool(specs, workers=2, timeout_s=30, chunk_size=2) as pool:
        r = pool.submit(batch).result(timeout=30)
        assert r.failures == {
            "format": 0,
            user("raises"): 3,  # every chunk raises
            user("exits"): 3,  # SystemExit is caught in the worker, which lives on
            user("wrong_length"): 3,  # chunks of 2 and 1 answer with 3 and 2 values
            user("nan_on_flag"): 1,  # only the NaN sample
            user("dies"): 2,  # the chunk [0, 1] killed its worker; chunk [2] scored
        }
        assert r.per_reward[user("nan_on_flag")] == [1.0, 0.0, 1.0]
        assert r.per_reward[user("dies")] == [0.0, 0.0, 1.0]
        assert r.per_reward[user("raises")] == [0.0, 0.0, 0.0]
        assert r.failed[user("nan_on_flag")] == [False, True, False]
        assert r.failed[user("dies")] == [True, True, False]
        # a weighted reward failed on every sample (raises): no total is known, none is
        # passed off as a wrong answer's
        assert r.unscored == [True, True, True]
        assert r.total == [0.0, 0.0, 0.0]
        assert "RuntimeError: boom" in r.errors[user("raises")]
        assert "exit code 3" in r.errors[user("dies")]
        # the run goes on: the replaced worker scores the next batch
        r2 = pool.submit([Sample("q", "y")]).result(timeout=30)
        assert r2.per_reward[user("dies")] == [1.0]


def test_a_failure_of_a_weight_zero_reward_leaves_the_total():
    specs = [RewardSpec("format", 1.0, inline=True), RewardSpec(user("raises"), 0.0)]
    batch = [Sample("q", "<think>a</think><answer>1</answer>"), Sample("q", "x")]
    r = RewardPool(specs, workers=0).submit(batch).result()
    assert r.failures[user("raises")] == 2
    assert r.unscored == [False, False]
    assert r.total == [1.0, 0.0]
    assert r.metrics()["reward/total"] == 0.5


def test_inline_reward_that_raises_is_counted():
    pool = RewardPool([RewardSpec(user("raises"), inline=True), RewardSpec("format")], workers=0)
    r = pool.submit(BATCH).result()
    assert r.failures[user("raises")] == 3
    assert r.unscored == [True, True, True]


def test_hung_reward_times_out_without_stalling_the_batch():
    specs = [RewardSpec(user("sleeps")), RewardSpec(user("length"))]
    batch = [Sample("q", "ab"), Sample("q", "abc", {"sleep": True}), Sample("q", "a")]
    with RewardPool(specs, workers=2, timeout_s=1.0, chunk_size=1) as pool:
        pool.submit(batch[:1]).result(timeout=30)  # workers up, so startup is not timed
        start = time.monotonic()
        r = pool.submit(batch).result(timeout=30)
        elapsed = time.monotonic() - start
        # one worker is held by the hung chunk for 1 s; the other scores the rest
        assert elapsed < 1.0 + 3.0
        assert r.per_reward[user("sleeps")] == [1.0, 0.0, 1.0]
        assert r.failures == {user("sleeps"): 1, user("length"): 0}
        assert "timed out" in r.errors[user("sleeps")]
        # sleeps + length: 1+2, (timed out: no total), 1+1
        assert r.total == [3.0, 0.0, 2.0]
        assert r.unscored == [False, True, False]
        # the killed worker was replaced
        assert pool.submit(batch[:1]).result(timeout=30).total == [3.0]


def test_close_fails_pending_batches():
    pool = RewardPool([RewardSpec(user("sleeps"))], workers=1, timeout_s=60)
    fut = pool.submit([Sample("q", "a", {"sleep": True})])
    start = time.monotonic()
    pool.close()
    assert time.monotonic() - start < 10  # the hung worker is killed, not waited for
    with pytest.raises(RuntimeError, match="closed"):
        fut.result(timeout=1)


def test_unknown_reward_fails_at_construction():
    with pytest.raises(UserError, match="no_such_reward"):
        RewardPool([RewardSpec("no_such_reward")], workers=0)
    with pytest.raises(UserError, match="twice"):
        RewardPool([RewardSpec("format"), RewardSpec("format")], workers=0)


def test_config_builds_specs():
    cfg = RewardsConfig(weights={"accuracy": 1, "language": 0.5}, workers=0)
    assert cfg.specs() == [
        RewardSpec("accuracy", 1.0, inline=False),
        RewardSpec("language", 0.5, inline=True),
    ]
    r = RewardPool.from_config(cfg).submit(BATCH[:1]).result()
    # accuracy 1; language: the chain of thought 'a' is one English word → 1; 1 + 0.5
    assert r.total == [1.5]
    assert r.metrics() == {
        "reward/total": 1.5,
        "reward/accuracy": 1.0,
        "reward_failures/accuracy": 0.0,
        "reward/language": 1.0,
        "reward_failures/language": 0.0,
    }
