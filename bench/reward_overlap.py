"""How much of a slow reward's time the trainer never waits for.

The report's rule-reward module scores asynchronously: a chunk of responses goes to the
reward workers as soon as it is sampled, and the trainer collects the rewards only after
generation *and* its reference pass. This runs GRPO on the embedded code world, where every
response is a program run against its tests in the sandbox, and prints per rollout the
generation, reference and reward times, the time the trainer waited for rewards after its
own work, and the hidden share ``1 - waited / reward time`` (reward time: the chunks' compute
time in their workers, summed).

    python bench/reward_overlap.py --model runs/pretrain-code/final   # r1lab pretrain kind=code
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from r1lab.cli import main as r1lab


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="runs/pretrain-code/final", help="a code-world model")
    ap.add_argument("--steps", type=int, default=8, help="optimizer steps (2 per rollout)")
    ap.add_argument("--beta", type=float, default=0.04, help="KL weight (0: no reference pass)")
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp())
    code = r1lab([
        "grpo", "task.name=embedded-code", f"model={args.model}", f"grpo.steps={args.steps}",
        f"loss.beta={args.beta}", "heldout.problems=0", f"run.output_dir={out}", "run.name=o",
    ])  # fmt: skip
    if code:
        raise SystemExit(code)
    rows = [json.loads(x) for x in (out / "o" / "metrics.jsonl").read_text().splitlines()]
    firsts = {m["rollout"]: m for m in reversed(rows)}  # a rollout's figures, once
    print(
        f"\n{'rollout':>7} {'gen s':>7} {'ref s':>7} {'reward s':>9} {'waited s':>9} {'hidden':>7}"
    )
    total_reward = total_wait = 0.0
    for r, m in sorted(firsts.items()):
        total_reward += m["reward_seconds"]
        total_wait += m["reward_wait_seconds"]
        print(f"{r:>7} {m['gen_seconds']:>7.2f} {m['ref_seconds']:>7.2f} "
              f"{m['reward_seconds']:>9.2f} {m['reward_wait_seconds']:>9.2f} "
              f"{m['reward_hidden']:>7.1%}")  # fmt: skip
    hidden = 1 - min(total_wait / total_reward, 1) if total_reward else 1.0
    print(f"{'all':>7} {'':>7} {'':>7} {total_reward:>9.2f} {total_wait:>9.2f} {hidden:>7.1%}")


if __name__ == "__main__":
    main()
