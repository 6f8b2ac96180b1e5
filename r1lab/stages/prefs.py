"""``r1lab prefs``: preference pairs and safety labels for the reward models (report §9.2).

For each general prompt, candidate responses are sampled from a policy (Dev-3 by default;
the judge's own answer may join them, as DeepSeek-V3 writes the candidates in the report),
and pairs of candidates are judged. Every step is a switch:

1. **4× judging, A/B order randomised** (``judgings``, ``swap``): each pair is compared
   ``judgings`` times, each time an independent judgement (another request seed); with
   ``swap`` half of them show the pair the other way round (the first judgement always
   shows candidate 1 as A), so a judge's preference for answer A cancels in the mean;
* **margin** (``min_margin``): only pairs whose mean score difference exceeds it are kept;
* **length balance** (``length_balance``): only pairs whose chosen and rejected answers are
  of similar length (longer / shorter ≤ ``max_length_ratio``) are kept, so that "longer
  wins" is not what the reward model learns.

The judge sees, and the helpfulness reward model learns from, the **answer part** only (what
follows the reasoning: report §9.1); the safety labels are the majority of the judge's
``safety_judgings`` verdicts on the **whole** response of every candidate. Held-out prompts
(the world's split) make the evaluation set of both reward models; their pairs are judged
``heldout_judgings`` times and their labels take ``heldout_safety_judgings`` verdicts, so that a reward model is
measured against reliable labels, not against the judge's noise.

Measured and reported in ``summary.json`` (``bias``), before and after the steps:

* position: the judge's mean score of answer A minus answer B over all judgements (points),
  and the share of kept pairs whose chosen is candidate 1 (the one the first judgement shows
  as A; candidates are drawn alike, so 0.5 is unbiased): by the first judgement alone
  ("before") and by the mean of all ("after");
* length: the share of kept pairs whose chosen answer is the longer, and the mean
  log2(chosen / rejected length), before and after the length balance;
* where the world knows the prompts (the embedded world): the share of kept pairs whose
  chosen is truly the better (:func:`r1lab.world.general.helpfulness`).

``runs/prefs/`` gets ``pairs.jsonl`` and ``pairs_heldout.jsonl`` (training and held-out
general prompts, split as the world splits them), ``safety.jsonl`` and
``safety_heldout.jsonl``, the candidates (``candidates.json``, reused by a rerun), the judge's
reply cache and ``summary.json``.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1lab.config import at_least, option, positive, section, to_dict
from r1lab.data.filters import Funnel
from r1lab.data.problem import Problem
from r1lab.errors import UserError
from r1lab.judge.client import JudgeConfig
from r1lab.judge.oracle import OracleConfig
from r1lab.runs import RunConfig
from r1lab.stages.sampling import SamplingConfig

__all__ = ["PrefsConfig", "bias_report", "judge_pairs", "keep_pairs", "run_prefs"]

DEFAULT_POLICY = "runs/pipeline/stage-c/final"


@dataclass
class PrefsConfig:
    """``r1lab prefs``: policy candidates → pairs judged 4×, A/B swapped → Δ > 1 → similar
    lengths; and safety verdicts on every candidate."""

    model: str = option(
        DEFAULT_POLICY,
        "policy whose samples are the candidates (Dev-3); when it is the default and "
        "missing, it is built first with r1lab pipeline until=stage-c",
        report="DeepSeek-V3",
    )
    # T = 0.7: the tiny Dev-3 sampled at T = 1 writes broken text for most general prompts
    # (mean true helpfulness 1.6), at 0.7 candidates of every quality (4.1; 31 % near-ideal)
    sampling: SamplingConfig = section(SamplingConfig, k=6, temperature=0.7, max_new_tokens=128)
    judge_candidate: bool = option(
        True,
        "add the judge's own answer to each prompt's candidates (the report's candidates "
        "are DeepSeek-V3's)",
    )
    pairs_per_prompt: int = option(
        21,
        "candidate pairs judged per prompt (distinct, drawn at random; 21 is every pair of "
        "the 6 samples and the judge's answer)",
        report=1,
        check=at_least(1),
    )  # fmt: skip
    judgings: int = option(4, "judgements of each training pair, averaged", check=at_least(1))
    heldout_judgings: int = option(
        16,
        "judgements of each held-out pair: the evaluation set's labels are made reliable with "
        "more judge calls, as a test set is annotated with more care than training data",
        check=at_least(1),
    )
    heldout_safety_judgings: int = option(
        5, "safety verdicts of each held-out response (the majority)", check=at_least(1)
    )
    safety_judgings: int = option(
        3, "safety verdicts of each training response; the label is their majority",
        check=at_least(1),
    )  # fmt: skip
    swap: bool = option(
        True,
        "show half the judgements of a pair in the other order (off: candidate 1 is always A)",
    )
    min_margin: float = option(
        1.0, "keep pairs whose mean score difference exceeds this (points of 1-10)",
        check=at_least(0),
    )  # fmt: skip
    length_balance: bool = option(True, "keep only pairs of similar answer length")
    max_length_ratio: float = option(
        1.5, "longer / shorter answer (characters) of a kept pair at most", check=positive()
    )
    seed: int = option(0, "seed of the pair draw and the A/B orders")
    judge: JudgeConfig = section(JudgeConfig)
    oracle: OracleConfig = section(OracleConfig)
    run: RunConfig = section(RunConfig)


# --- judging ------------------------------------------------------------------------------


def _orders(n: int, swap: bool, rng: random.Random) -> list[bool]:
    """Per judgement, whether candidate 2 is shown as A. The first shows candidate 1 as A;
    with ``swap`` half of the judgements (rounded down) are flipped, at random places."""
    if not swap or n == 1:
        return [False] * n
    rest = [True] * (n // 2) + [False] * (n - 1 - n // 2)
    rng.shuffle(rest)
    return [False, *rest]


def judge_pairs(
    pairs: list[dict[str, Any]], judge: Any, judgings: int, swap: bool, seed: int
) -> list[dict[str, Any]]:
    """Judge each pair (``prompt``, ``a``, ``b``: the two candidates' answers) ``judgings``
    times; returns the pairs that got every judgement, each with ``scores`` (per judgement:
    ``[score of a, score of b, a shown first]``) and ``margin`` (mean score of a − mean of
    b). Judgement j is the judge's request seed j + 1: an independent judgement."""
    rng = random.Random(f"prefs-orders-{seed}")
    orders = [_orders(judgings, swap, rng) for _ in pairs]
    scores: list[list[list[Any]] | None] = [[] for _ in pairs]
    for j in range(judgings):
        items = [
            (p["prompt"], p["b"], p["a"]) if o[j] else (p["prompt"], p["a"], p["b"])
            for p, o in zip(pairs, orders, strict=True)
        ]
        for i, got in enumerate(judge.compare(items, seed=j + 1)):
            if scores[i] is None or got is None:
                scores[i] = None
                continue
            first, second = got
            flipped = orders[i][j]
            scores[i].append([second, first, False] if flipped else [first, second, True])
    out = []
    for p, s in zip(pairs, scores, strict=True):
        if s is None:
            continue
        margin = sum(a - b for a, b, _ in s) / len(s)
        out.append({**p, "scores": s, "margin": round(margin, 4)})
    return out


def _first_margin(p: dict[str, Any]) -> float:
    a, b, _ = p["scores"][0]
    return a - b


def _length_ratio(p: dict[str, Any]) -> float:
    la, lb = max(len(p["a"]), 1), max(len(p["b"]), 1)
    return max(la, lb) / min(la, lb)


def keep_pairs(
    judged: list[dict[str, Any]], cfg: PrefsConfig, funnel: Funnel
) -> list[dict[str, Any]]:
    """The judged pairs past the margin and (when on) the length balance, counted in
    ``funnel``, as ``chosen``/``rejected`` records."""
    kept = funnel.keep("margin", judged, lambda p: abs(p["margin"]) > cfg.min_margin)
    if cfg.length_balance:
        kept = funnel.keep(
            "length_balance", kept, lambda p: _length_ratio(p) <= cfg.max_length_ratio
        )
    return [_chosen_rejected(p) for p in kept]


def _chosen_rejected(p: dict[str, Any]) -> dict[str, Any]:
    """A kept pair as the reward model's record: ``chosen``/``rejected`` are the whole
    responses (the reward model reads its own span of them), ``chosen_answer`` /
    ``rejected_answer`` what the judge compared."""
    first = p["margin"] > 0  # candidate 1 (a) is chosen
    c, r = ("a", "b") if first else ("b", "a")
    return {
        "prompt": p["prompt"],
        "chosen": p[f"{c}_response"],
        "rejected": p[f"{r}_response"],
        "chosen_answer": p[c],
        "rejected_answer": p[r],
        "margin": abs(p["margin"]),
        "chosen_is_first": first,
        **{k: p[k] for k in ("id", "kind", "language") if k in p},
    }


# --- measuring the judge's biases ---------------------------------------------------------


def _share(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def _length_stats(rows: list[tuple[str, str]]) -> dict[str, Any]:
    """Of (chosen, rejected) answers: the share where chosen is longer, the mean log2 length
    ratio."""
    ratios = [math.log2(max(len(c), 1) / max(len(r), 1)) for c, r in rows]
    return {
        "pairs": len(rows),
        "chosen_longer": _share([x > 0 for x in ratios]),
        "mean_log2_length_ratio": round(sum(ratios) / len(ratios), 4) if ratios else None,
    }


def _truth(rows: list[tuple[str, str, str]]) -> float | None:
    """The share of (prompt, chosen, rejected) whose chosen is truly better; None when the
    world does not know a prompt."""
    from r1lab.world.general import helpfulness, problem_of

    flags = []
    for prompt, chosen, rejected in rows:
        problem = problem_of(prompt)
        if problem is None:
            return None
        flags.append(helpfulness(problem, chosen) > helpfulness(problem, rejected))
    return _share(flags)


def bias_report(judged: list[dict[str, Any]], cfg: PrefsConfig) -> dict[str, Any]:
    """The judge's position and length bias, measured before and after each step (see the
    module's docstring)."""
    judgings = len(judged[0]["scores"]) if judged else 0
    shown_first = [(a - b) if a_first else (b - a) for p in judged for a, b, a_first in p["scores"]]

    def margin_kept(key: Any) -> list[tuple[dict[str, Any], bool]]:
        # (pair, candidate 1 chosen) for the pairs past the margin by ``key``'s difference
        return [(p, key(p) > 0) for p in judged if abs(key(p)) > cfg.min_margin]

    def oriented(rows: list[tuple[dict[str, Any], bool]]) -> list[tuple[str, str, str]]:
        return [
            (p["prompt"], *((p["a"], p["b"]) if first else (p["b"], p["a"]))) for p, first in rows
        ]

    single, mean = margin_kept(_first_margin), margin_kept(lambda p: p["margin"])
    balanced = [(p, f) for p, f in mean if _length_ratio(p) <= cfg.max_length_ratio]
    return {
        "judgings": judgings,
        "position": {
            "judge_a_minus_b": round(sum(shown_first) / len(shown_first), 4)
            if shown_first
            else None,
            "first_candidate_chosen": {
                "one_judgement": _share([f for _, f in single]),
                "mean": _share([f for _, f in mean]),
            },
        },
        "length": {
            "before_balance": _length_stats([(c, r) for _, c, r in oriented(mean)]),
            "after_balance": _length_stats([(c, r) for _, c, r in oriented(balanced)]),
        },
        "truth_agreement": {
            "one_judgement": _truth(oriented(single)),
            "mean": _truth(oriented(mean)),
            "after_length_balance": _truth(oriented(balanced)),
        },
    }


# --- candidates ---------------------------------------------------------------------------


def _policy(cfg: PrefsConfig) -> Path:
    folder = Path(cfg.model)
    if (folder / "config.json").is_file():
        return folder
    if folder != Path(DEFAULT_POLICY):
        raise UserError(f"{folder}: no model there (the policy whose samples are the candidates)")
    from r1lab.stages.pipeline import PipelineConfig, run_pipeline

    print(f"prefs: no policy at {folder}; building Dev-3 with r1lab pipeline until=stage-c")
    run_pipeline(PipelineConfig(until="stage-c"))
    return folder


def sample_candidates(
    model: Any, tokenizer: Any, problems: list[Problem], cfg: SamplingConfig, out: Path
) -> dict[str, list[str]]:
    """``cfg.k`` sampled responses per general prompt (id -> texts), read from ``out`` when
    they were sampled before."""
    import torch

    from r1lab.data.tasks import render_prompt
    from r1lab.rollout.base import SamplingParams
    from r1lab.rollout.torch_engine import TorchEngine
    from r1lab.runs import write_json_atomic

    if out.is_file():
        return json.loads(out.read_text(encoding="utf-8"))
    from tqdm.auto import tqdm

    engine = TorchEngine(model.eval(), tokenizer)
    prompts = [render_prompt(tokenizer, p) for p in problems]
    texts: dict[str, list[str]] = {}
    bar = tqdm(total=len(problems), desc="prefs: candidates", unit="prompt", disable=None)
    with torch.no_grad():
        for c, start in enumerate(range(0, len(prompts), cfg.batch_size)):
            params = SamplingParams(
                n=cfg.k, temperature=cfg.temperature, top_p=cfg.top_p,
                max_new_tokens=cfg.max_new_tokens, seed=cfg.seed * 1009 + c,
            )  # fmt: skip
            groups = engine.generate(prompts[start : start + cfg.batch_size], params)
            for p, group in zip(problems[start:], groups, strict=False):
                texts[p.id] = [comp.text for comp in group]
            bar.update(len(groups))
    bar.close()
    write_json_atomic(out, texts)
    return texts


def _pairs_of(
    problems: list[Problem], candidates: dict[str, list[str]], per_prompt: int, seed: int
) -> list[dict[str, Any]]:
    """Up to ``per_prompt`` candidate pairs per prompt, each in a random order. Candidates
    with the same answer part are one candidate: a pair of equal answers prefers nothing."""
    from r1lab.world.general import answer_part

    rng = random.Random(f"prefs-pairs-{seed}")
    out = []
    for p in problems:
        by_answer = {answer_part(t) or "": t for t in candidates.get(p.id, [])}
        texts = list(by_answer.values())
        combos = [(i, j) for i in range(len(texts)) for j in range(i + 1, len(texts))]
        for i, j in rng.sample(combos, min(per_prompt, len(combos))):
            if rng.random() < 0.5:
                i, j = j, i
            out.append(
                {
                    "id": p.id, "prompt": p.question, "kind": p.meta["kind"],
                    "language": p.meta["language"],
                    "a": answer_part(texts[i]) or "", "b": answer_part(texts[j]) or "",
                    "a_response": texts[i], "b_response": texts[j],
                }
            )  # fmt: skip
    return out


def _safety_labels(
    problems: list[Problem], candidates: dict[str, list[str]], judge: Any, verdicts: int,
    funnel: Funnel,
) -> list[dict[str, Any]]:  # fmt: skip
    """Every distinct candidate of every prompt with the majority of ``verdicts`` independent
    safety verdicts of the judge (an odd count breaks no tie; a tie is unsafe)."""
    items = [(p, t) for p in problems for t in dict.fromkeys(candidates.get(p.id, []))]
    votes: list[list[bool] | None] = [[] for _ in items]
    for v in range(verdicts):
        for i, got in enumerate(judge.safe([(p.question, t) for p, t in items], seed=v)):
            if votes[i] is None or got is None:
                votes[i] = None
            else:
                votes[i].append(got)
    labelled = [(p, t, v) for (p, t), v in zip(items, votes, strict=True)]
    labelled = funnel.keep(f"safety judged {verdicts}x", labelled, lambda x: x[2] is not None)
    return [
        {"prompt": p.question, "response": t, "safe": 2 * sum(v) > len(v), "id": p.id,
         "kind": p.meta["kind"], "language": p.meta["language"]}
        for p, t, v in labelled
    ]  # fmt: skip


def run_prefs(cfg: PrefsConfig, resume: bool = False) -> dict[str, Any]:
    """Build the preference pairs and safety labels; returns the summary (also
    ``summary.json``)."""
    from r1lab.config import save_config, validate
    from r1lab.data.io import write_jsonl
    from r1lab.judge.session import judge_session
    from r1lab.models import load_model, load_tokenizer
    from r1lab.runs import Run
    from r1lab.world.general import all_general, general_split

    started = time.time()
    validate(cfg)
    folder = _policy(cfg)
    model, tokenizer = load_model(folder), load_tokenizer(folder)
    run = Run.create(cfg.run, "prefs", cfg, resume=resume)
    if resume:
        save_config(cfg, run.path / "config.yaml")
    problems = list(all_general())
    candidates = sample_candidates(
        model, tokenizer, problems, cfg.sampling, run.path / "candidates.json"
    )
    summary: dict[str, Any] = {"stage": "prefs", "model": str(folder), "splits": {}}
    with judge_session(cfg.judge, cfg.oracle, run.path / "judge_cache.sqlite") as judge:
        if cfg.judge_candidate:
            answers = judge.answer([p.question for p in problems])
            for p, a in zip(problems, answers, strict=True):
                if a is not None:
                    candidates[p.id] = [*candidates[p.id], a]
        for split in ("train", "heldout"):
            chosen = [p for p in problems if general_split(p.question) == split]
            funnel = Funnel()
            pairs = _pairs_of(chosen, candidates, cfg.pairs_per_prompt, cfg.seed)
            funnel.record("pairs", pairs, pairs)
            n = cfg.judgings if split == "train" else cfg.heldout_judgings
            judged = judge_pairs(pairs, judge, n, cfg.swap, cfg.seed)
            judged = funnel.record(f"judged {n}x", pairs, judged)
            kept = keep_pairs(judged, cfg, funnel)
            verdicts = cfg.safety_judgings if split == "train" else cfg.heldout_safety_judgings
            safety = _safety_labels(chosen, candidates, judge, verdicts, funnel)
            suffix = "" if split == "train" else "_heldout"
            write_jsonl(run.path / f"pairs{suffix}.jsonl", kept)
            write_jsonl(run.path / f"safety{suffix}.jsonl", safety)
            summary["splits"][split] = {
                "prompts": len(chosen),
                "pairs": len(kept),
                "safety_examples": len(safety),
                "unsafe_examples": sum(not x["safe"] for x in safety),
                "funnel": funnel.counts(),
                "bias": bias_report(judged, cfg),
            }
            print(f"prefs ({split}):\n{funnel.table()}")
        summary["judge"] = dict(judge.stats)
    summary.update(
        funnel=summary["splits"]["train"]["funnel"],
        data=str(run.path / "pairs.jsonl"),
        heldout=str(run.path / "pairs_heldout.jsonl"),
        safety=str(run.path / "safety.jsonl"),
        safety_heldout=str(run.path / "safety_heldout.jsonl"),
        minutes=round((time.time() - started) / 60, 2),
        config=to_dict(cfg),
    )
    run.write_summary(summary)
    run.close()
    splits = summary["splits"]
    bias = splits["train"]["bias"]
    print(
        f"prefs: {splits['train']['pairs']} training pairs, {splits['heldout']['pairs']} "
        f"held out; position bias {bias['position']['judge_a_minus_b']} points, first "
        f"candidate chosen {bias['position']['first_candidate_chosen']}; chosen longer "
        f"{bias['length']['before_balance']['chosen_longer']} -> "
        f"{bias['length']['after_balance']['chosen_longer']} ({summary['minutes']:.1f} min)"
    )
    return summary
