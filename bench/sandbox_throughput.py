"""Executions per second of the code sandbox: a trivial passing program, HumanEval's
canonical solutions. A benchmark, not a test: prints a table.

    python bench/sandbox_throughput.py [--workers 2] [--n 400] [--humaneval PATH]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from r1lab.rewards.code import load_code_tasks
from r1lab.rewards.sandbox import Sandbox, SandboxPool

TRIVIAL = ("def add(a, b):\n    return a + b\n", ["assert add(1, 2) == 3"], "", None)
HUMANEVAL = Path(__file__).resolve().parents[2] / "shared/data/humaneval/HumanEval.jsonl"


def measure(pool: SandboxPool, jobs: list[tuple]) -> tuple[float, int]:
    start = time.perf_counter()
    futures = [pool.submit(*job) for job in jobs]
    passed = sum(f.result().passed for f in futures)
    return time.perf_counter() - start, passed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--n", type=int, default=400, help="executions of the trivial program")
    ap.add_argument("--humaneval", default=str(HUMANEVAL))
    args = ap.parse_args()

    sandbox = Sandbox()
    sandbox.check()
    rows = []
    with SandboxPool(sandbox, workers=args.workers) as pool:
        measure(pool, [TRIVIAL] * (2 * args.workers))  # warm-up
        seconds, passed = measure(pool, [TRIVIAL] * args.n)
        rows.append(("trivial passing program", args.n, passed, seconds))
        if Path(args.humaneval).exists():
            jobs = []
            for p in load_code_tasks(args.humaneval):
                m = p.meta
                jobs.append((m["reference"], m["tests"], m["setup"], m["entry_point"]))
            seconds, passed = measure(pool, jobs)
            rows.append(("HumanEval canonical solutions", len(jobs), passed, seconds))

    print(
        f"{platform.node()} · {os.cpu_count()} CPUs · {args.workers} workers · python "
        f"{sandbox._python}"
    )
    print(f"{'case':32} {'runs':>6} {'passed':>7} {'seconds':>8} {'exec/s':>7}")
    for name, n, passed, seconds in rows:
        print(f"{name:32} {n:>6} {passed:>7} {seconds:>8.2f} {n / seconds:>7.1f}")


if __name__ == "__main__":
    main()
