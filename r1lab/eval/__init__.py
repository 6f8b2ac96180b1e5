"""Evaluation: pass@1 over k samples and cons@k with math-verify."""
