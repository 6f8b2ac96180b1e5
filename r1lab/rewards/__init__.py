"""Module 3 of the RL system: rule-based rewards (answer checks, format, language, code)."""

from r1lab.rewards.base import RewardFn, Sample, get_reward, registered_rewards, reward

__all__ = ["RewardFn", "Sample", "get_reward", "registered_rewards", "reward"]
