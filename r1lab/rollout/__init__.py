"""Module 1 of the RL system: rollout (generation engines)."""
