"""GRPO as stage D runs it: reasoning and general prompts in one batch, a reward model routed
to the general prompts, and the reward schedule: off, a reward is exactly 0 and never
computed; on, it enters the total."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from r1lab.config import load_config
from r1lab.errors import UserError
from r1lab.model_card import set_card
from r1lab.stages.grpo import run_grpo_stage
from r1lab.stages.rm import load_rm_init
from r1lab.training.grpo_config import GRPOStageConfig, check_config
from r1lab.training.losses import GRPOLossConfig
from r1lab.world.general import all_general
from r1lab.world.model import TinyModelConfig, build_model
from r1lab.world.problems import generate_problems
from r1lab.world.tokenizer import build_tokenizer

HERE = Path(__file__).parent


def test_reward_model_and_schedule_in_a_grpo_run(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))
    texts = [p.question for p in all_general()]
    texts += [f"{p.question} <think>{p.answer}</think><answer>{p.answer}</answer>"
              for p in generate_problems(200, seed=5)]  # fmt: skip
    tok = build_tokenizer(texts, vocab_size=400)
    torch.manual_seed(0)
    cfg = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
                          intermediate_size=64)  # fmt: skip
    model = build_model(cfg, len(tok), tok.pad_token_id, tok.eos_token_id)
    base = tmp_path / "base"
    model.save_pretrained(base)
    tok.save_pretrained(base)
    rm, _ = load_rm_init(base)  # an untrained head: its scores still vary with the text
    set_card(rm, reward_model={"kind": "helpfulness", "mean": 0.0, "std": 1.0, "max_length": 128})
    rm.save_pretrained(tmp_path / "rm")
    tok.save_pretrained(tmp_path / "rm")

    overrides = [
        f"model={base}", f"run.output_dir={tmp_path}", "run.name=d", "task.limit=32",
        "task.general=32", "grpo.steps=4", "grpo.minibatches=2", "grpo.prompts_per_step=4",
        "grpo.group_size=4", "grpo.max_new_tokens=12", "grpo.device=cpu", "rewards.workers=1",
        "rewards.weights={format: 1.0, helpfulness: 1.0, 'helpers_grpo_rewards:raises': 1.0}",
        f"rewards.models={{helpfulness: {tmp_path / 'rm'}}}",
        "rewards.only={helpfulness: [general], accuracy: [embedded]}",
        # helpfulness in the second half; the raising reward never (steps 100-200 of 4)
        "rewards.schedule={helpfulness: [0.5, 1.0], 'helpers_grpo_rewards:raises': [100, 200]}",
    ]  # fmt: skip
    run_grpo_stage(load_config(GRPOStageConfig, None, overrides))
    metrics = [json.loads(x) for x in (tmp_path / "d" / "metrics.jsonl").read_text().splitlines()]
    assert [m["reward_on/helpfulness"] for m in metrics] == [0, 0, 1, 1]
    assert [m["reward_on/helpers_grpo_rewards:raises"] for m in metrics] == [0, 0, 0, 0]
    # off: exactly 0 and nothing failed (a computed 'raises' would fail every sample)
    assert all(m["reward/helpers_grpo_rewards:raises"] == 0.0 for m in metrics)
    assert all(m["reward_failures/helpers_grpo_rewards:raises"] == 0 for m in metrics)
    assert all(m["reward_unscored"] == 0.0 for m in metrics)
    assert metrics[0]["reward/helpfulness"] == metrics[1]["reward/helpfulness"] == 0.0
    assert all(0.0 < m["reward/helpfulness"] < 1.0 for m in metrics[2:])
    # on, it enters the total: total - format = helpfulness (averaged over its prompts)
    samples = [json.loads(x) for x in (tmp_path / "d" / "samples.jsonl").read_text().splitlines()]
    late = [s for s in samples if s["rollout"] == 2]
    for s in late:
        assert s["reward"] == pytest.approx(s["format"] + s["helpfulness"], abs=1e-5)
    early = [s for s in samples if s["rollout"] == 1]
    assert all(s["helpfulness"] == 0.0 and s["reward"] == s["format"] for s in early)


def test_task_schedule_draws_general_prompts_only_in_their_range():
    from r1lab.data.problem import Problem
    from r1lab.training.grpo_rollout import ScheduledPrompts
    from r1lab.world.tokenizer import build_tokenizer

    problems = [Problem(f"e{i}", f"{i}+{i}?", str(2 * i), {"task": "embedded"}) for i in range(6)]
    problems += [Problem(f"g{i}", f"Hi {i}!", "", {"task": "general"}) for i in range(6)]
    tok = build_tokenizer([p.question for p in problems], vocab_size=280)
    cfg = load_config(
        GRPOStageConfig, None, ["grpo.steps=8", "grpo.task_schedule={general: [0.5, 1.0]}"]
    )

    def tasks(stream, rollout):
        chosen, ids = stream.take(rollout, 2, 4)
        assert len(ids) == 4
        return [p.meta["task"] for p in chosen], [p.id for p in chosen]

    stream = ScheduledPrompts(problems, tok, cfg, None)
    first = [tasks(stream, r) for r in range(4)]
    assert set(first[0][0]) == set(first[1][0]) == {"embedded"}  # steps 0 and 2 of 8
    assert "general" in first[2][0] + first[3][0]  # steps 4 and 6: every task
    # the embedded-only rollouts read on through their own order: no prompt twice in a row
    assert not set(first[0][1]) & set(first[1][1][:2])
    # a resumed run (a new stream, rollout 3 first) draws what the uninterrupted one did
    assert tasks(ScheduledPrompts(problems, tok, cfg, None), 3) == first[3]
    with pytest.raises(UserError, match=r"grpo.task_schedule.general: expected \[start, end\]"):
        check_config(load_config(GRPOStageConfig, None, ["grpo.task_schedule={general: [1, 0]}"]).grpo,
                     GRPOLossConfig())  # fmt: skip
