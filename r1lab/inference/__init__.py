"""Module 2 of the RL system: forward passes of frozen models (reference policy, reward models)."""
