"""The GRPO trainer: the composed loss by hand, micro-batching, flat groups, a tiny end-to-end
run with failing rewards, and SIGKILL + --resume against an uninterrupted run."""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from r1lab.config import load_config
from r1lab.errors import UserError
from r1lab.inference.reference import score_responses
from r1lab.runs import Run, RunConfig
from r1lab.training.grpo import train_grpo, train_step
from r1lab.training.grpo_config import GRPOConfig, GRPOStageConfig, max_new_tokens_at
from r1lab.training.grpo_rollout import Rollout
from r1lab.training.losses import GRPOLossConfig, group_advantages, grpo_loss
from r1lab.world.model import TinyModelConfig, build_model
from r1lab.world.problems import generate_problems
from r1lab.world.tokenizer import build_tokenizer

HERE = Path(__file__).parent
REPO = HERE.parents[1]
TIMING = ("step_seconds", "gen_seconds", "gen_tokens_per_s", "tokens_per_s", "ref_seconds",
          "reward_seconds", "reward_wait_seconds", "reward_hidden")  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer():
    texts = [
        f"{p.question} <think>{p.meta['a']}{p.meta['op']}{p.meta['b']}</think>"
        f"<answer>{p.answer}</answer>"
        for p in generate_problems(300, seed=5)
    ]
    return build_tokenizer(texts, vocab_size=300)


def tiny_model(tokenizer, seed=0):
    torch.manual_seed(seed)
    cfg = TinyModelConfig(
        hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64
    )
    return build_model(cfg, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)


def close(actual, expected, tol=1e-5):
    torch.testing.assert_close(
        torch.as_tensor(actual, dtype=torch.float32),
        torch.as_tensor(expected, dtype=torch.float32),
        atol=tol,
        rtol=tol,
    )


# --- the composed loss, by hand -----------------------------------------------------------


@pytest.mark.parametrize(
    ("agg", "expected"),
    [
        # two responses, ρ = 1 everywhere, A = [+1, -1], β = 0.1
        # response 0: π_θ = [.5, .5], π_ref = [.25, .5] → k3 = [0.193147, 0]
        #   per-token loss -A + β k3 = [-1 + 0.0193147, -1]
        # response 1: π_θ = [.25], π_ref = [.5] → k3 = 0.306853 → loss [1 + 0.0306853]
        # token-mean: (-0.9806853 - 1 + 1.0306853) / 3 = -0.95 / 3
        ("token-mean", -0.95 / 3),
        # seq-mean-token-mean: (-1.9806853 / 2 + 1.0306853) / 2 = 0.0201713
        ("seq-mean-token-mean", (-1.9806853 / 2 + 1.0306853) / 2),
        # seq-mean-token-sum, norm_len 4: (-1.9806853 / 4 + 1.0306853 / 4) / 2 = -0.11875
        ("seq-mean-token-sum", -0.11875),
    ],
)
def test_composed_loss_per_aggregation_by_hand(agg, expected):
    logp = torch.log(torch.tensor([[0.5, 0.5], [0.25, 1.0]])).requires_grad_()
    ref = torch.log(torch.tensor([[0.25, 0.5], [0.5, 1.0]]))
    mask = torch.tensor([[True, True], [True, False]])
    cfg = GRPOLossConfig(beta=0.1, loss_agg=agg, norm_len=4)
    loss, m = grpo_loss(logp, logp.detach(), ref, torch.tensor([1.0, -1.0]), mask, cfg)
    close(loss, expected)
    # k3 token mean: (0.193147 + 0 + 0.306853) / 3 = 0.5 / 3
    assert m["kl"] == pytest.approx(0.5 / 3, abs=1e-5)


# --- train_step ---------------------------------------------------------------------------


def _rollout(model, tokenizer, rewards, group_size, seed=0, noise=0.3):
    """A rollout of random responses whose π_old and π_ref are the model's log-probs plus
    noise, so that ratios spread out and some are clipped."""
    g = torch.Generator().manual_seed(seed)
    n = len(rewards)
    vocab = len(tokenizer)
    prompts = [torch.randint(3, vocab, (int(torch.randint(3, 9, (1,), generator=g)),),
                             generator=g).tolist() for _ in range(n // group_size)]  # fmt: skip
    prompt_ids = [prompts[i // group_size] for i in range(n)]
    responses = [
        torch.randint(
            3, vocab, (int(torch.randint(1, 12, (1,), generator=g)),), generator=g
        ).tolist()
        for _ in range(n)
    ]
    exact = score_responses(model, prompt_ids, responses, budget=64, micro_batch_tokens=256)
    old = [x + noise * torch.randn(x.shape, generator=g) for x in exact]
    ref = [x + noise * torch.randn(x.shape, generator=g) for x in exact]
    r = torch.tensor(rewards, dtype=torch.float32)
    return Rollout(
        problems=[None] * n,
        prompt_ids=prompt_ids,
        response_ids=responses,
        old_logprobs=old,
        truncated=[False] * n,
        texts=[""] * n,
        rewards=r,
        per_reward={"x": rewards},
        failures={"x": 0},
        failed={"x": [False] * n},
        scored=torch.ones(n, dtype=torch.bool),
        trainable=torch.ones(n, dtype=torch.bool),
        advantages=group_advantages(r, group_size),
        group_size=group_size,
        seconds=0.0,
        ref_logprobs=ref,
    )


def _step(model, ro, idx, grpo_cfg, loss_cfg):
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    before = [p.detach().clone() for p in model.parameters()]
    stats = train_step(
        model, ro, idx, opt, sched, grpo_cfg, loss_cfg, 16, 0, torch.device("cpu"),
        lambda: torch.autocast("cpu", enabled=False),
    )  # fmt: skip
    grads = [b - p.detach() for b, p in zip(before, model.parameters(), strict=True)]
    return stats, grads


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"])
def test_step_gradient_does_not_depend_on_micro_batching(tokenizer, agg):
    model = tiny_model(tokenizer)
    rewards = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0]
    ro = _rollout(model, tokenizer, rewards, group_size=4)
    loss_cfg = GRPOLossConfig(beta=0.05, loss_agg=agg)
    idx = [0, 2, 3, 5, 6, 8, 9, 11]
    # one packed pass; many small packed passes; one response a row (plain causal) in
    # passes of two rows; the same, all in one pass
    layouts = [(512, 512), (20, 20), (0, 40), (0, 4096)]
    steps = [
        _step(
            copy.deepcopy(model), ro, idx,
            GRPOConfig(token_budget=b, micro_batch_tokens=t, max_grad_norm=0), loss_cfg,
        )
        for b, t in layouts
    ]  # fmt: skip
    s1, g1 = steps[0]
    assert s1["clip_frac"] > 0  # the noise makes some ratios leave the clip range
    for s2, g2 in steps[1:]:
        for k in ("loss", "pg_loss", "kl", "clip_frac"):
            assert s1[k] == pytest.approx(s2[k], abs=1e-5), k
        for a, b in zip(g1, g2, strict=True):
            close(a, b, tol=1e-5)
    # the step saw every response of idx
    assert s1["train_tokens"] == sum(len(ro.response_ids[i]) for i in idx)


def test_flat_groups_give_zero_gradient_and_no_nan(tokenizer):
    model = tiny_model(tokenizer)
    ro = _rollout(model, tokenizer, [1.0] * 4 + [0.0] * 4, group_size=4, noise=2.0)
    assert (ro.advantages == 0).all()
    stats, grads = _step(model, ro, list(range(8)), GRPOConfig(), GRPOLossConfig(beta=0.0))
    assert stats["grad_norm"] == 0.0 and stats["loss"] == 0.0
    assert all((g == 0).all() for g in grads)
    assert all(math.isfinite(v) for v in stats.values())
    # with the KL term the gradient is the KL's alone, and finite
    stats, _ = _step(model, ro, list(range(8)), GRPOConfig(), GRPOLossConfig(beta=0.1))
    assert stats["pg_loss"] == 0.0 and stats["grad_norm"] > 0
    assert all(math.isfinite(v) for v in stats.values())


def test_rewards_of_a_chunk_are_scored_while_the_next_chunk_generates():
    from concurrent.futures import Future

    from r1lab.data.problem import Problem
    from r1lab.rewards.pool import RewardResult
    from r1lab.rollout.base import Completion, SamplingParams
    from r1lab.training.grpo_rollout import generate_rollout

    events = []

    class Engine:
        def generate(self, prompts, params):
            events.append(("generate", len(prompts), params.seed))
            return [
                [Completion([1, 2], f"<answer>{i}</answer>", [-0.5, -0.5], "stop")
                 for i in range(params.n)]
                for _ in prompts
            ]  # fmt: skip

    class Pool:
        def submit(self, samples, active=None):
            events.append(("submit", len(samples)))
            fut = Future()
            fut.set_result(RewardResult([float(s.completion[8]) for s in samples],
                                        {"r": [0.0] * len(samples)}, {"r": 0}))  # fmt: skip
            return fut

    problems = [Problem(str(i), f"q{i}", "1") for i in range(5)]
    ro = generate_rollout(
        Engine(), Pool(), problems, [[3]] * 5, SamplingParams(n=2, seed=7), 2, GRPOLossConfig()
    )
    # generate, submit, generate, submit, ...: each chunk is handed over before the next starts
    assert [e[0] for e in events] == ["generate", "submit"] * 3
    assert [e[1] for e in events] == [2, 4, 2, 4, 1, 2]
    assert len({e[2] for e in events if e[0] == "generate"}) == 3  # a seed per chunk
    # rewards [0, 1] per group → advantages [-1, 1]
    close(ro.advantages, [-1.0, 1.0] * 5, tol=1e-4)
    assert ro.group_size == 2 and len(ro.response_ids) == 10


# --- config -------------------------------------------------------------------------------


def test_length_schedule_and_config_checks(tokenizer, tmp_path):
    cfg = GRPOConfig(max_new_tokens=32768, max_new_tokens_schedule={8200: 65536})
    assert max_new_tokens_at(cfg, 0) == 32768
    assert max_new_tokens_at(cfg, 8199) == 32768
    assert max_new_tokens_at(cfg, 8200) == 65536
    stage = GRPOStageConfig(grpo=GRPOConfig(steps=3, minibatches=2))
    run = Run.create(RunConfig(output_dir=str(tmp_path)), "grpo", stage)
    with pytest.raises(UserError, match="multiple of minibatches"):
        train_grpo(tiny_model(tokenizer), tokenizer, [object()], stage, run)


def test_full_scale_values_are_documented():
    from r1lab.config import flat_keys

    keys = flat_keys(GRPOStageConfig)
    report = {k: f.metadata.get("report") for k, f in keys.items()}
    assert report["grpo.lr"] == 3e-6
    assert report["grpo.group_size"] == 16
    assert report["grpo.prompts_per_step"] == 32
    assert report["grpo.minibatches"] == 16
    assert report["grpo.ref_reset_every"] == 400
    assert report["grpo.max_new_tokens_schedule"] == {8200: 65536}
    assert report["grpo.steps"] == 10400


# --- end to end ---------------------------------------------------------------------------


def _save_base(tokenizer, folder: Path) -> Path:
    model = tiny_model(tokenizer)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _overrides(base: Path, out: Path, name: str, extra=()):
    return [
        f"model={base}",
        f"run.output_dir={out}",
        f"run.name={name}",
        "task.limit=64",
        "grpo.prompts_per_step=4",
        "grpo.group_size=4",
        "grpo.max_new_tokens=12",
        "grpo.device=cpu",
        *extra,
    ]


def test_end_to_end_run_survives_failing_rewards(tokenizer, tmp_path, monkeypatch):
    from r1lab.stages.grpo import run_grpo_stage

    monkeypatch.syspath_prepend(str(HERE))
    base = _save_base(tokenizer, tmp_path / "base")
    cfg = load_config(
        GRPOStageConfig,
        None,
        _overrides(
            base,
            tmp_path,
            "e2e",
            [
                "grpo.steps=4",
                "grpo.minibatches=2",
                "run.save_every=2",
                "rewards.workers=1",
                "rewards.timeout_s=2",
                "rewards.chunk_size=2",
                # picky fails some chunks: those samples are unscored and left out; a weight-0
                # reward that fails (hangs) is counted and leaves the totals alone
                "rewards.weights={format: 1.0, 'helpers_grpo_rewards:picky': 1.0, "
                "'helpers_grpo_rewards:hangs': 0.0}",
            ],
        ),
    )
    summary = run_grpo_stage(cfg)
    run = tmp_path / "e2e"
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    assert [m["rollout"] for m in metrics] == [1, 1, 2, 2]
    for key in (
        "reward/total", "reward/format", "accuracy", "format_rate", "language_consistency",
        "response_len_mean", "response_len_max", "truncated", "kl", "entropy", "clip_frac",
        "grad_norm", "lr", "step_seconds", "tokens_per_s", "gen_tokens_per_s",
    ):  # fmt: skip
        assert all(key in m and math.isfinite(m[key]) for m in metrics), key
    # failures are counted once per rollout (on its first step)
    hangs = [m["reward_failures/helpers_grpo_rewards:hangs"] for m in metrics]
    assert hangs == [32, 0, 32, 0]
    picky = [m["reward_failures/helpers_grpo_rewards:picky"] for m in metrics]
    assert picky[1] == picky[3] == 0 and 0 < picky[0] + picky[2] < 64
    assert summary["reward_failures"]["helpers_grpo_rewards:picky"] == picky[0] + picky[2]
    # the picky failures, and only they, are left out of the loss
    unscored = sum(m["reward_unscored"] * 16 for m in metrics)  # 16 responses a step
    assert unscored == pytest.approx(picky[0] + picky[2])
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-2", "step-4"]
    assert (run / "final" / "model.safetensors").is_file()
    report = (run / "report.md").read_text()
    assert "![rewards (mean per step)](plots/rewards.png)" in report
    assert (run / "plots" / "kl.png").stat().st_size > 1000
    assert json.loads((run / "summary.json").read_text())["steps"] == 4


def test_flat_rewards_leave_the_weights_untouched(tokenizer, tmp_path, monkeypatch):
    from r1lab.models import load_model
    from r1lab.stages.grpo import run_grpo_stage

    monkeypatch.syspath_prepend(str(HERE))
    base = _save_base(tokenizer, tmp_path / "base")
    cfg = load_config(
        GRPOStageConfig,
        None,
        _overrides(
            base,
            tmp_path,
            "flat",
            [
                "grpo.steps=2",
                "grpo.minibatches=1",
                "loss.beta=0",
                "rewards.workers=0",
                "rewards.weights={'helpers_grpo_rewards:constant': 1.0}",
            ],
        ),
    )
    run_grpo_stage(cfg)
    metrics = [
        json.loads(x) for x in (tmp_path / "flat" / "metrics.jsonl").read_text().splitlines()
    ]
    assert all(m["grad_norm"] == 0.0 and m["groups_flat"] == 1.0 for m in metrics)
    before = load_model(base).state_dict()
    after = load_model(tmp_path / "flat" / "final").state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


# --- SIGKILL and --resume -----------------------------------------------------------------

SCRIPT = r"""
import os, signal, sys, time
import torch
torch.set_num_threads(1)
import r1lab.runs
from r1lab.config import load_config
from r1lab.stages.grpo import run_grpo_stage
from r1lab.training.grpo_config import GRPOStageConfig

if __name__ == "__main__":
    pause = float(os.environ.get("PAUSE_AFTER_STEP", "0"))
    if pause:  # a window in which the test can kill the run mid-training
        log = r1lab.runs.Run.log
        def slow_log(self, record):
            log(self, record)
            time.sleep(pause)
        r1lab.runs.Run.log = slow_log
    die_in = os.environ.get("DIE_WRITING")
    if die_in:  # SIGKILL after the files of this checkpoint are written, before its rename
        save = r1lab.runs.save_model
        def save_and_die(model, tokenizer, folder):
            save(model, tokenizer, folder)
            if folder.name == f".tmp-{die_in}":
                os.kill(os.getpid(), signal.SIGKILL)
        r1lab.runs.save_model = save_and_die
    cfg = load_config(GRPOStageConfig, None, sys.argv[2:])
    run_grpo_stage(cfg, resume=sys.argv[1] == "resume")
"""


def _launch(mode, overrides, env_extra=None):
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, mode, *overrides],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _metrics(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in TIMING} for x in lines]


def _complete(ckpt: Path) -> bool:
    names = {p.name for p in ckpt.iterdir()}
    return {"model.safetensors", "trainer_state.pt", "trainer_state.json"} <= names


def test_sigkill_and_resume_match_an_uninterrupted_run(tokenizer, tmp_path):
    base = _save_base(tokenizer, tmp_path / "base")
    extra = [
        "grpo.steps=6",
        "grpo.minibatches=1",
        "grpo.ref_reset_every=2",  # the reference differs from the base when resumed
        "loss.beta=0.05",
        "run.save_every=2",
        "run.keep_last=3",
        "rewards.workers=0",
        "rewards.weights={format: 1.0, language: 0.5}",
    ]
    whole = _launch("fresh", _overrides(base, tmp_path, "whole", extra))
    assert whole.wait(timeout=300) == 0, whole.stderr.read()

    # 1. SIGKILL from outside while step 3 trains (the checkpoint of step 2 is on disk)
    run = tmp_path / "cut"
    proc = _launch("fresh", _overrides(base, tmp_path, "cut", extra), {"PAUSE_AFTER_STEP": "1"})
    deadline = time.time() + 240
    while time.time() < deadline:
        if (run / "metrics.jsonl").is_file() and len(_metrics(run)) >= 3:
            break
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("step-")] == [
        "step-2"
    ]

    # 2. resumed, and killed again half-way through writing the checkpoint of step 4
    proc = _launch("resume", _overrides(base, tmp_path, "cut", extra), {"DIE_WRITING": "step-4"})
    assert proc.wait(timeout=240) == -signal.SIGKILL
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == [".tmp-step-4", "step-2"]  # the half-written one is never picked up
    assert all(_complete(p) for p in (run / "checkpoints").glob("step-*"))

    # 3. resumed to the end: the same metrics and weights as the uninterrupted run; while it
    # runs, a second writer (--resume, or run.overwrite) is refused at once
    # (5 s after each step: room for the second command to start up while the first runs)
    # (metrics.jsonl already has the killed runs' steps: wait for the resumed one to hold the lock)
    proc = _launch("resume", _overrides(base, tmp_path, "cut", extra), {"PAUSE_AFTER_STEP": "5"})
    while (run / ".lock").read_text().strip() != str(proc.pid):
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for second in (["--resume"], ["run.overwrite=true"]):
        other = subprocess.run(
            [sys.executable, "-m", "r1lab", "grpo", *_overrides(base, tmp_path, "cut", extra),
             *second],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert other.returncode == 2, other.stderr
        assert f"in use by another r1lab process (PID {proc.pid})" in other.stderr
        assert proc.poll() is None  # still the first one's run
    assert proc.wait(timeout=240) == 0, proc.stderr.read()
    a, b = _metrics(tmp_path / "whole"), _metrics(run)
    assert [m["step"] for m in b] == [1, 2, 3, 4, 5, 6]
    # the sampled responses too: those of killed rollouts are cut back on resume
    samples = [(tmp_path / name / "samples.jsonl").read_text() for name in ("whole", "cut")]
    assert samples[0] == samples[1] and len(samples[0].splitlines()) == 6 * 4
    for ma, mb in zip(a, b, strict=True):
        assert ma.keys() == mb.keys()
        for k in ma:
            assert mb[k] == pytest.approx(ma[k], rel=1e-5, abs=1e-6), (ma["step"], k)
    from safetensors.torch import load_file

    wa = load_file(tmp_path / "whole" / "final" / "model.safetensors")
    wb = load_file(run / "final" / "model.safetensors")
    for k in wa:
        close(wa[k], wb[k], tol=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampling_logprobs_equal_the_training_forward(tokenizer, temperature):
    # why π_old needs no recompute on CPU/float32: the engine's log-probs are the policy's
    from r1lab.rollout.base import SamplingParams
    from r1lab.rollout.torch_engine import TorchEngine

    model = tiny_model(tokenizer).eval()
    prompts = [tokenizer("What is 12+34?")["input_ids"], tokenizer("5-3等于多少？")["input_ids"]]
    params = SamplingParams(n=3, temperature=temperature, max_new_tokens=10, seed=3)
    out = TorchEngine(model, tokenizer).generate(prompts, params)
    flat_prompts = [p for p, group in zip(prompts, out, strict=True) for _ in group]
    comps = [c for group in out for c in group]
    for budget in (32, 0):  # packed rows, and one response a row
        scored = score_responses(
            model, flat_prompts, [c.token_ids for c in comps], budget=budget,
            micro_batch_tokens=64, temperature=temperature,
        )  # fmt: skip
        for c, s in zip(comps, scored, strict=True):
            close(torch.tensor(c.logprobs), s, tol=1e-4)
