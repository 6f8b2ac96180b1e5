"""The GPU check: does the vLLM rollout engine give the trainer's log-probs, does it take new
weights without a restart, and how long is a GRPO step? No model hub: a randomly initialised
Qwen2 of about 0.5B parameters is built from a config.

    bash bench/gpu_check.sh            # on one CUDA GPU with vLLM installed (a few minutes)
    bash bench/gpu_check.sh --cpu      # the reduced mode: a tiny model and the torch engine

It prints a table and writes the figures as JSON (``--out``, default ``gpu_check.json``):

* **log-probs**: tokens sampled by the engine, scored again by the trainer's forward (float32,
  and bfloat16 autocast on a GPU); max and mean |Δ log p| and the range of exp(Δ), the
  importance ratio a step would see without recomputing π_old;
* **weight update**: after one optimizer step on the trainer, ``update_weights`` and the same
  comparison again (a stale engine would show the step's change);
* **GRPO step**: seconds per optimizer step of ``train_grpo`` with this engine (prompts ×
  samples, max new tokens as printed), generation and training split.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from r1lab.inference.reference import score_responses
from r1lab.rollout.base import SamplingParams
from r1lab.world.problems import generate_problems
from r1lab.world.tokenizer import build_tokenizer

# about 0.47B parameters: Qwen2 blocks of Qwen2.5-0.5B's depth, wider, over a small vocabulary
GPU_SHAPE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                 num_key_value_heads=2, intermediate_size=5632)  # fmt: skip
CPU_SHAPE = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, intermediate_size=128)  # fmt: skip


def build(folder: Path, shape: dict, seed: int = 0):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    texts = [f"{p.question} <think>{p.answer}</think><answer>{p.answer}</answer>"
             for p in generate_problems(400, seed=seed)]  # fmt: skip
    tokenizer = build_tokenizer(texts, vocab_size=512)
    config = Qwen2Config(
        vocab_size=len(tokenizer), max_position_embeddings=2048, tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None, **shape,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, tokenizer


def compare(engine, model, tokenizer, prompts, params, device, dtypes) -> dict:
    """Sample with the engine, score the samples with the trainer's forward in each dtype."""
    groups = engine.generate(prompts, params)
    p_ids = [prompts[i] for i, g in enumerate(groups) for _ in g]
    r_ids = [list(c.token_ids) for g in groups for c in g]
    sampled = [torch.tensor(c.logprobs) for g in groups for c in g]
    out = {"samples": len(r_ids), "tokens": sum(len(r) for r in r_ids)}
    for dtype in dtypes:
        autocast = None
        if dtype == "bfloat16":

            def autocast():  # noqa: E306
                return torch.autocast(device.type, dtype=torch.bfloat16)

        trainer = score_responses(
            model, p_ids, r_ids, budget=0, micro_batch_tokens=8192,
            pad_token_id=tokenizer.pad_token_id, temperature=params.temperature,
            device=device, autocast=autocast,
        )  # fmt: skip
        delta = torch.cat([t - s for t, s in zip(trainer, sampled, strict=True)])
        out[dtype] = {
            "max_abs": float(delta.abs().max()),
            "mean_abs": float(delta.abs().mean()),
            "ratio_min": float(delta.exp().min()),
            "ratio_max": float(delta.exp().max()),
        }
    return out


def grpo_step_seconds(model, tokenizer, folder, engine, device, cpu: bool) -> dict:
    from r1lab.runs import Run, RunConfig
    from r1lab.training.grpo import train_grpo
    from r1lab.training.grpo_config import GRPOConfig, GRPOStageConfig

    g = GRPOConfig(steps=2, minibatches=1, prompts_per_step=4 if cpu else 16,
                   group_size=4 if cpu else 8, max_new_tokens=32 if cpu else 256,
                   device=device.type, ref_reset_every=0)  # fmt: skip
    stage = GRPOStageConfig(grpo=g)
    stage.rewards.weights, stage.rewards.metrics, stage.rewards.workers = {"format": 1.0}, [], 0
    out = Path(tempfile.mkdtemp())
    run = Run.create(RunConfig(output_dir=str(out), name="step"), "grpo", stage)
    train_grpo(model, tokenizer, generate_problems(64, seed=2), stage, run, engine=engine)
    last = json.loads((out / "step" / "metrics.jsonl").read_text().splitlines()[-1])
    return {
        "prompts": g.prompts_per_step, "samples": g.group_size, "max_new_tokens": g.max_new_tokens,
        "step_seconds": last["step_seconds"], "gen_seconds": last["gen_seconds"],
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu", action="store_true", help="reduced mode: tiny model, torch engine")
    ap.add_argument("--out", default="gpu_check.json", help="where the JSON figures go")
    args = ap.parse_args()
    device = torch.device("cpu" if args.cpu else "cuda")
    if not args.cpu and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device; run with --cpu for the reduced mode")
    folder = Path(tempfile.mkdtemp()) / "model"
    started = time.time()
    model, tokenizer = build(folder, CPU_SHAPE if args.cpu else GPU_SHAPE)
    model.to(device)
    params_n = sum(p.numel() for p in model.parameters())
    if args.cpu:
        from r1lab.rollout.torch_engine import TorchEngine

        engine, dtypes = TorchEngine(model, tokenizer), ["float32"]
    else:
        from r1lab.rollout.vllm_engine import VLLMConfig, VLLMEngine

        engine = VLLMEngine(model, str(folder), VLLMConfig(gpu_memory_utilization=0.3))
        dtypes = ["float32", "bfloat16"]
    prompts = [tokenizer(p.question)["input_ids"] for p in generate_problems(8, seed=1)]
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=64, seed=0)
    report = {"device": torch.cuda.get_device_name() if not args.cpu else "cpu",
              "engine": engine.numerics(), "parameters": params_n}  # fmt: skip
    with torch.no_grad():
        report["logprobs"] = compare(engine, model, tokenizer, prompts, params, device, dtypes)
    # one optimizer step on the trainer, then the weights go over
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    ids = torch.tensor([prompts[0]], device=device)
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    engine.update_weights()
    with torch.no_grad():
        report["after_update"] = compare(engine, model, tokenizer, prompts, params, device, dtypes)
    report["grpo_step"] = grpo_step_seconds(model, tokenizer, folder, engine, device, args.cpu)
    report["seconds"] = round(time.time() - started, 1)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"gpu_check on {report['device']} ({report['engine']}, {params_n / 1e6:.1f}M params)")
    for when in ("logprobs", "after_update"):
        for dtype in dtypes:
            r = report[when][dtype]
            print(f"  {when:<13} trainer {dtype:<9} max|Δ| {r['max_abs']:.2e}  mean|Δ| "
                  f"{r['mean_abs']:.2e}  ratio {r['ratio_min']:.4f}-{r['ratio_max']:.4f}")  # fmt: skip
    s = report["grpo_step"]
    print(f"  GRPO step ({s['prompts']} prompts x {s['samples']}, {s['max_new_tokens']} new "
          f"tokens): {s['step_seconds']:.2f} s, generation {s['gen_seconds']:.2f} s")  # fmt: skip
    print(f"  figures in {args.out} ({report['seconds']} s in all)")


if __name__ == "__main__":
    main()
