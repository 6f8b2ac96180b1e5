"""Sample records for the review tests: a cold-start review queue and a rejection-sampling SFT
file, as the stages write them."""

from __future__ import annotations

import json
from pathlib import Path

# The fourth item's trace writes a script, its question an image that runs one: a reviewer
# must see both as text.
SCRIPT = "<script>window.__pwned = 1</script>"
IMG = '<img src=x onerror="window.__pwned = 2">'


def trace(a: int, b: int, wording: str = "I add") -> str:
    return (
        f"<think>\n{wording} {a} and {b}.\n{a} plus {b} makes {a + b}.\n"
        f"So the sum is {a + b}.\n</think>\n<answer>\n{a + b}\n</answer>"
    )


def queue_records(n: int = 5) -> list[dict]:
    records = []
    for i in range(n):
        a, b = 10 + i, 3 * i + 1
        records.append(
            {"id": f"p{i}", "question": f"What is {a}+{b}?", "gold": str(a + b),
             "original": trace(a, b, "Let me see:"), "rewritten": trace(a, b),
             "language": "en"}
        )  # fmt: skip
    if n > 3:
        records[3]["question"] += " " + IMG
        records[3]["rewritten"] = records[3]["rewritten"].replace("I add", f"{SCRIPT} I add")
    return records


def sft_records() -> list[dict]:
    return [
        {"prompt": "What is 2+3?", "response": trace(2, 3), "id": "s0", "language": "en",
         "source": "reasoning"},
        {"prompt": "Say hello.", "response": "Hello!", "id": "g0", "language": "en",
         "source": "general/greeting"},
    ]  # fmt: skip


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
