"""Evaluation on general (non-reasoning) prompts: helpfulness, safety and when a model thinks.

Each held-out general prompt of the embedded world (:mod:`r1lab.world.general`) is decoded
greedily; the response is scored by the judge (``helpfulness``, 1-10, as a judge would: with
its flaws) and by the world (``true_helpfulness``, what the judge's score stands for), and
counted for

* ``refusal_rate``: unsafe prompts refused (a safe model: 1.0);
* ``over_refusal``: safe prompts refused;
* ``greeting_cot``: greetings answered with a non-empty chain of thought (report §8.2: none).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from r1lab.data.problem import Problem

__all__ = ["evaluate_general"]


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def evaluate_general(
    model: Any, tokenizer: Any, problems: list[Problem], judge: Any, out: Path,
    max_new_tokens: int = 128, batch_size: int = 64,
) -> dict[str, Any]:  # fmt: skip
    """Metrics of ``model`` on general ``problems`` (``{"metrics": …, "by_kind": …}``),
    written to ``out`` with the responses beside it (``<stem>.samples.jsonl``); read from
    ``out`` when it exists, so a resumed pipeline does not evaluate twice."""
    import torch

    from r1lab.data.io import write_jsonl
    from r1lab.rewards.rules import think_content
    from r1lab.rollout.base import SamplingParams
    from r1lab.rollout.torch_engine import TorchEngine
    from r1lab.runs import write_json_atomic
    from r1lab.world.general import answer_part, helpfulness, is_refusal

    if out.is_file():
        return json.loads(out.read_text(encoding="utf-8"))
    from tqdm.auto import tqdm

    started = time.time()
    engine = TorchEngine(model.eval(), tokenizer)
    prompts = [
        tokenizer(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": p.question}], tokenize=False,
                add_generation_prompt=True,
            ),
            add_special_tokens=False,
        )["input_ids"]
        for p in problems
    ]  # fmt: skip
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens, seed=0)
    texts: list[str] = []
    tokens: list[int] = []
    bar = tqdm(total=len(prompts), desc="general eval", unit="prompt", disable=None)
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            for group in engine.generate(prompts[start : start + batch_size], params):
                texts.append(group[0].text)
                tokens.append(len(group[0].token_ids))
            bar.update(min(batch_size, len(prompts) - start))
            bar.set_postfix(len=f"{sum(tokens) / max(len(tokens), 1):.0f}")
    bar.close()
    scores = judge.score([(p.question, t) for p, t in zip(problems, texts, strict=True)])
    records = []
    for p, text, n, score in zip(problems, texts, tokens, scores, strict=True):
        answer = answer_part(text) or ""
        records.append(
            {
                "id": p.id,
                "kind": p.meta["kind"],
                "language": p.meta["language"],
                "question": p.question,
                "text": text,
                "tokens": n,
                "judge": score,
                "true": helpfulness(p, text),
                "refused": is_refusal(answer),
                "thought": bool((think_content(text) or "").strip()),
            }
        )

    def metrics(rs: list[dict[str, Any]]) -> dict[str, Any]:
        unsafe = [r for r in rs if r["kind"] == "unsafe"]
        safe = [r for r in rs if r["kind"] != "unsafe"]
        return {
            "prompts": len(rs),
            "helpfulness": _mean([r["judge"] for r in rs if r["judge"] is not None]),
            "true_helpfulness": _mean([r["true"] for r in rs]),
            "refusal_rate": _mean([float(r["refused"]) for r in unsafe]),
            "over_refusal": _mean([float(r["refused"]) for r in safe]),
            "greeting_cot": _mean([float(r["thought"]) for r in rs if r["kind"] == "greeting"]),
            "judge_failed": sum(r["judge"] is None for r in rs),
            "mean_tokens": _mean([float(r["tokens"]) for r in rs]),
        }

    kinds = sorted({r["kind"] for r in records})
    result = {
        "metrics": metrics(records),
        "by_kind": {k: metrics([r for r in records if r["kind"] == k]) for k in kinds},
        "seconds": round(time.time() - started, 1),
    }
    write_jsonl(out.with_name(out.stem + ".samples.jsonl"), records)
    write_json_atomic(out, result)
    return result
