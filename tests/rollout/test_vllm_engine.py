"""The vLLM engine: what runs without a GPU here (seeds, weight chunks, output conversion, the
errors), the reduced GPU check on CPU, and the GPU tests, which skip without vLLM and CUDA."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from r1lab.errors import UserError
from r1lab.rollout.config import RolloutConfig, make_engine
from r1lab.rollout.vllm_engine import VLLMEngine, _chunks, _completion, prompt_seed

REPO = Path(__file__).resolve().parents[2]
HAS_GPU_VLLM = importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


def test_prompt_seed_depends_on_seed_and_prompt_only():
    assert prompt_seed(3, [1, 2]) == prompt_seed(3, [1, 2])
    assert prompt_seed(3, [1, 2]) != prompt_seed(4, [1, 2]) != prompt_seed(3, [2, 1])
    assert prompt_seed(None, [1]) is None
    assert 0 <= prompt_seed(7, list(range(100))) < 2**31


def test_weights_go_over_in_chunks_of_bounded_size():
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 64))  # 4 tensors
    chunks = list(_chunks(model, max_bytes=64 * 64 * 4 + 64 * 4))  # one layer's worth
    assert [len(c) for c in chunks] == [2, 2]
    names = [n for c in chunks for n, _ in c]
    assert names == list(model.state_dict())
    assert all(t.device.type == "cpu" for c in chunks for _, t in c)
    assert torch.equal(chunks[0][0][1], model[0].weight.detach())
    assert len(list(_chunks(model, max_bytes=1))) == 4  # a tensor larger than a chunk goes alone


def test_vllm_outputs_become_completions():
    lp = lambda x: SimpleNamespace(logprob=x)  # noqa: E731
    out = SimpleNamespace(
        token_ids=[5, 9, 2], text="ab", finish_reason="stop",
        logprobs=[{5: lp(-0.5)}, {9: lp(-1.25)}, {2: lp(-0.125)}],
    )  # fmt: skip
    c = _completion(out)
    assert (c.token_ids, c.text, c.logprobs, c.finish_reason) == (
        [5, 9, 2],
        "ab",
        [-0.5, -1.25, -0.125],
        "stop",
    )
    out.finish_reason = "length"
    assert _completion(out).finish_reason == "length"


@pytest.mark.skipif(HAS_GPU_VLLM, reason="vLLM and a GPU are here")
def test_without_vllm_or_gpu_the_engine_says_so():
    with pytest.raises(UserError, match="rollout.engine=vllm needs"):
        VLLMEngine(torch.nn.Linear(1, 1), "nowhere")
    with pytest.raises(UserError, match="rollout.engine=vllm needs"):
        make_engine(RolloutConfig(engine="vllm"), torch.nn.Linear(1, 1), None, "nowhere")


def test_gpu_check_runs_in_its_reduced_mode_on_cpu(tmp_path):
    out = tmp_path / "check.json"
    done = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_check.sh"), "--cpu", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["engine"] == "torch/float32" and report["logprobs"]["samples"] == 32
    for when in ("logprobs", "after_update"):  # the torch engine's log-probs are the trainer's
        assert report[when]["float32"]["max_abs"] < 1e-4
    assert report["grpo_step"]["step_seconds"] > 0
    assert "GRPO step" in done.stdout


@pytest.mark.skipif(
    not HAS_GPU_VLLM,
    reason="vLLM path untested on GPU here: needs vLLM and a CUDA GPU (run bench/gpu_check.sh on one)",
)
def test_vllm_logprobs_match_the_trainer_on_gpu(tmp_path):
    out = tmp_path / "gpu.json"
    subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_check.py"), "--out", str(out)], check=True
    )
    report = json.loads(out.read_text())
    for when in ("logprobs", "after_update"):
        assert report[when]["float32"]["mean_abs"] < 0.05  # bf16 vLLM against an fp32 forward
