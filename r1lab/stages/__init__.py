"""Stages: thin recipes over the components (pretrain, sft, grpo, eval, zero, ...)."""
