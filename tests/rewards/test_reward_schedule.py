"""Stage D's reward schedule and routing: a reward off outside its step range, or on a prompt
of another task, contributes exactly 0 and is never called."""

from __future__ import annotations

import pytest

from r1lab.errors import UserError
from r1lab.rewards.base import Sample
from r1lab.rewards.config import RewardsConfig, active_rewards, check_rewards, schedule_range
from r1lab.rewards.pool import RewardPool, RewardSpec

try:  # the name the helper module has depends on how pytest put tests/ on sys.path
    from tests.rewards import helpers_user_rewards as helpers
except ImportError:
    import helpers_user_rewards as helpers

RAISES = f"{helpers.__name__}:raises"
LENGTH = f"{helpers.__name__}:length"


def test_schedule_in_steps_or_fractions():
    cfg = RewardsConfig(
        weights={"accuracy": 1.0, "format": 1.0, LENGTH: 1.0},
        schedule={LENGTH: [1300 / 1700, 1.0], "format": [10, 20]},
    )
    # the report's last 400 of 1,700 steps, and the same fraction of a 68-step run
    assert schedule_range(cfg, LENGTH, 1700) == (1300, 1700)
    assert schedule_range(cfg, LENGTH, 68) == (52, 68)
    assert schedule_range(cfg, "format", 68) == (10, 20)
    assert schedule_range(cfg, "accuracy", 68) == (0, 68)  # not scheduled: always on
    assert LENGTH not in active_rewards(cfg, 51, 68)
    assert LENGTH in active_rewards(cfg, 52, 68) and LENGTH in active_rewards(cfg, 67, 68)
    assert "format" in active_rewards(cfg, 10, 68) and "format" not in active_rewards(cfg, 20, 68)
    assert {"accuracy", "language"} <= active_rewards(cfg, 0, 68)  # language: a metric


def test_schedule_and_routing_are_checked():
    with pytest.raises(UserError, match="rewards.schedule.style: no such reward"):
        check_rewards(RewardsConfig(schedule={"style": [0, 1]}))
    with pytest.raises(UserError, match=r"rewards.schedule.format: expected \[start, end\]"):
        check_rewards(RewardsConfig(schedule={"format": [5, 2]}))
    with pytest.raises(UserError, match="rewards.only.format: expected a list"):
        check_rewards(RewardsConfig(only={"format": "general"}))  # type: ignore[dict-item]
    with pytest.raises(UserError, match="rewards.models.safety: give the reward a weight"):
        check_rewards(RewardsConfig(models={"safety": "nowhere"}))
    with pytest.raises(UserError, match="nowhere: model folder not found"):
        check_rewards(RewardsConfig(weights={"safety": 1.0}, models={"safety": "nowhere"}))
    # a pipeline checks stage D before its reward models exist
    check_rewards(RewardsConfig(weights={"safety": 1.0}, models={"safety": "nowhere"}), False)


BATCH = [
    Sample("2+2?", "<think>a</think><answer>4</answer>", {"answer": "4", "task": "embedded"}),
    Sample(
        "Hi!", "<think></think><answer>Hello!</answer>", {"task": "general", "needs_thought": False}
    ),  # fmt: skip
    Sample("3+3?", "<answer>6</answer>", {"answer": "6", "task": "embedded"}),
]


@pytest.mark.parametrize("workers", [0, 1])
def test_an_inactive_reward_is_zero_and_not_called(workers):
    specs = [RewardSpec("format", 1.0), RewardSpec(RAISES, 1.0)]
    with RewardPool(specs, workers=workers, timeout_s=30, chunk_size=2) as pool:
        on = pool.submit(BATCH).result(timeout=30)
        off = pool.submit(BATCH, active={"format"}).result(timeout=30)
    # on, the raising reward fails every sample and leaves none scored
    assert on.failures[RAISES] == 3 and all(on.unscored)
    # off, it is exactly 0 everywhere, not called (no failure), and the totals are format's
    assert off.per_reward[RAISES] == [0.0, 0.0, 0.0] and off.failures[RAISES] == 0
    assert off.total == [1.0, 1.0, 0.0] and not any(off.unscored)


@pytest.mark.parametrize("workers", [0, 1])
def test_a_routed_reward_scores_its_tasks_only(workers):
    specs = [
        RewardSpec("accuracy", 1.0, tasks=("embedded",)),
        RewardSpec(RAISES, 1.0, tasks=("code",)),  # no prompt of its task: never called
        RewardSpec(LENGTH, 1.0, tasks=("general",)),
    ]
    with RewardPool(specs, workers=workers, timeout_s=30, chunk_size=1) as pool:
        result = pool.submit(BATCH).result(timeout=30)
    assert result.per_reward["accuracy"] == [1.0, 0.0, 1.0]
    assert result.per_reward[LENGTH] == [0.0, float(len(BATCH[1].completion)), 0.0]
    assert result.failures[RAISES] == 0 and not any(result.unscored)


def test_format_and_language_of_prompts_that_need_no_thinking():
    from r1lab.rewards.rules import format_reward, language

    hello = [
        Sample("Hi!", "<think>\n</think>\n<answer>Hello! How can I help?</answer>",
               {"needs_thought": False, "language": "en"}),
        Sample("你好！", "<think></think><answer>你好！有什么可以帮你的吗？</answer>",
               {"needs_thought": False, "language": "zh"}),
        Sample("你好！", "<think></think><answer>Hello!</answer>",
               {"needs_thought": False, "language": "zh"}),
    ]  # fmt: skip
    assert format_reward(hello) == [1.0, 1.0, 1.0]
    assert language(hello) == [1.0, 1.0, 0.0]  # the answer, in the user's language or not
    # a prompt that needs thinking still needs a chain of thought, as before
    reasoning = [Sample("2+2?", "<think></think><answer>4</answer>", {"language": "en"})]
    assert format_reward(reasoning) == [0.0] and language(reasoning) == [0.0]
