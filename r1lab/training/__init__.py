"""Module 4 of the RL system: training (SFT, GRPO actor updates), with sequence packing."""
