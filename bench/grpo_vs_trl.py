"""One GRPO workload run by r1lab and by TRL's GRPOTrainer, side by side. A benchmark, not a
test: prints a table, and as its last line one JSON object.

    python bench/grpo_vs_trl.py                 # both sides, the issue-5 workload and the small one
    python bench/grpo_vs_trl.py --only r1lab    # one side
    python bench/grpo_vs_trl.py --workloads issue5 --steps 12

TRL runs in its own virtual environment, which is not a dependency of r1lab; make it once with

    python -m venv .venv-trl && .venv-trl/bin/pip install torch==2.13.0 trl

(``--trl-python`` points elsewhere). Each side runs in a fresh process, so that its peak
resident memory is its own.

The workload (issue 5): a randomly initialised Qwen2ForCausalLM (hidden 128, 4 layers, 4
heads, 2 KV heads, MLP 512, untied embeddings, sdpa, float32) over a character-level
vocabulary; prompts like ``What is 37+48? ``; P prompts x G samples per step, exactly 64 new
tokens each (EOS ignored), T = 1.0, beta = 0.04 with a reference model, one optimizer step per
rollout batch, AdamW at lr 1e-6; the reward is the share of digits in the completion (cheap,
so that the rule-based reward module is not what is timed, and it varies within a group, so
that every advantage is not zero). The step time is the median of steps 3..N (the first two
warm up allocators and caches). Completion tokens/s = P x G x 64 / step time.

MFU is model FLOP/s over the machine's fp32 matmul peak, measured here with the same number
of threads. Model FLOPs count the work the algorithm needs, the same for both sides: the
forward of every sampled token (prompts prefilled once), the reference forward and the
training forward and backward (3x a forward) of every prompt + completion token; a forward
costs 2 x (weights in matrix multiplies) per token plus attention (4 x layers x width x context).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

WORKLOADS = {"issue5": (32, 16), "small": (8, 8)}  # prompts per step, samples per prompt
NEW_TOKENS = 64
BETA = 0.04
LR = 1e-6
ROOT = Path(__file__).resolve().parent.parent


# --- the workload, built the same way on both sides (no r1lab import here) ------------------


def char_tokenizer() -> PreTrainedTokenizerFast:
    """One token per printable ASCII character, plus pad, EOS and unknown (98 tokens). It has
    no chat template, so both sides tokenize the prompt as plain text, to the same ids."""
    specials = ["<pad>", "<eos>", "<unk>"]
    vocab = {t: i for i, t in enumerate(specials + list(string.printable[:95]))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), "isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )


def workload_model(tokenizer: PreTrainedTokenizerFast) -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=512,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        attn_implementation="sdpa",
    )
    return Qwen2ForCausalLM(config)


def prompts(count: int) -> list[str]:
    rng = random.Random(0)
    return [f"What is {rng.randint(10, 99)}+{rng.randint(10, 99)}? " for _ in range(count)]


def digit_share(completions: list[str], **_: Any) -> list[float]:
    """The reward: share of digits in each completion."""
    return [sum(c.isdigit() for c in text) / max(len(text), 1) for text in completions]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- r1lab's side ---------------------------------------------------------------------------


def r1lab_digit_share(samples: list[Any]) -> list[float]:
    """``digit_share`` over r1lab samples (a reward is a callable on a batch of samples)."""
    return digit_share([s.completion for s in samples])


def run_r1lab(n_prompts: int, group: int, steps: int, out: Path) -> dict[str, Any]:
    from r1lab.config import load_config
    from r1lab.data.problem import Problem
    from r1lab.runs import Run
    from r1lab.training.grpo import train_grpo
    from r1lab.training.grpo_config import GRPOStageConfig

    tokenizer = char_tokenizer()
    model = workload_model(tokenizer)
    problems = [
        Problem(id=str(i), question=q, answer="0", meta={"language": "en"})
        for i, q in enumerate(prompts(n_prompts * steps))
    ]
    cfg = load_config(
        GRPOStageConfig,
        None,
        [
            f"grpo.steps={steps}",
            f"grpo.prompts_per_step={n_prompts}",
            f"grpo.group_size={group}",
            "grpo.minibatches=1",
            "grpo.inner_epochs=1",
            "grpo.temperature=1.0",
            f"grpo.max_new_tokens={NEW_TOKENS}",
            "grpo.ignore_eos=true",
            f"grpo.lr={LR}",
            f"grpo.rollout_chunk={n_prompts}",
            "grpo.max_grad_norm=1.0",
            "grpo.device=cpu",
            "grpo.dtype=float32",
            f"loss.beta={BETA}",
            "loss.eps_low=0.2",
            "loss.eps_high=0.2",
            "loss.loss_agg=token-mean",
            "rewards.weights={'grpo_vs_trl:r1lab_digit_share': 1.0}",
            "rewards.workers=0",
            "rewards.metrics=[]",
            f"run.output_dir={out}",
            "run.name=r1lab",
            "run.save_every=0",
        ],
    )
    run = Run.create(cfg.run, "grpo", cfg)
    train_grpo(model, tokenizer, problems, cfg, run)
    rows = run.metrics()
    return {
        "step_seconds": [m["step_seconds"] for m in rows],
        "rollout_seconds": [m["gen_seconds"] for m in rows],
        "reference_seconds": [m["ref_seconds"] for m in rows],
        "completion_tokens": [m["gen_tokens"] for m in rows],
        "settings": {
            "engine": "TorchEngine (one prefill per prompt, slab KV cache)",
            "training pass": "one response a row, sorted by length, micro-batches of "
            f"{cfg.grpo.micro_batch_tokens} token slots; sampling log-probs are pi_old",
            "reference pass": "same layout",
            "loss": "token-mean, eps 0.2, k3 KL",
        },
    }


# --- TRL's side -----------------------------------------------------------------------------


def run_trl(n_prompts: int, group: int, steps: int, out: Path) -> dict[str, Any]:
    import trl
    from datasets import Dataset
    from transformers import TrainerCallback

    tokenizer = char_tokenizer()
    model_dir = out / "model"
    workload_model(tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    batch = n_prompts * group
    micro = min(batch, 64)
    args = trl.GRPOConfig(
        output_dir=str(out / "trl"),
        learning_rate=LR,
        lr_scheduler_type="constant",
        max_steps=steps,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=batch // micro,
        num_generations=group,
        max_completion_length=NEW_TOKENS,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        # exactly NEW_TOKENS tokens: EOS is never chosen before then
        generation_kwargs={"min_new_tokens": NEW_TOKENS},
        beta=BETA,
        epsilon=0.2,
        loss_type="dapo",  # token-mean over the batch, as on r1lab's side
        max_grad_norm=1.0,
        use_cpu=True,
        bf16=False,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    dataset = Dataset.from_dict({"prompt": prompts(n_prompts * steps)})
    trainer = trl.GRPOTrainer(
        model=str(model_dir),
        reward_funcs=digit_share,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )

    spent = {"rollout": 0.0, "reference": 0.0}

    def timed(name: str, fn: Any, only_ref: bool = False) -> Any:
        def wrapper(*a: Any, **kw: Any) -> Any:
            if only_ref and a[0] is not trainer.ref_model:
                return fn(*a, **kw)
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[name] += time.perf_counter() - t

        return wrapper

    trainer._generate_single_turn = timed("rollout", trainer._generate_single_turn)
    trainer._get_per_token_logps_and_entropies = timed(
        "reference", trainer._get_per_token_logps_and_entropies, only_ref=True
    )
    record: dict[str, list[float]] = {
        "step_seconds": [],
        "rollout_seconds": [],
        "reference_seconds": [],
        "completion_tokens": [],
    }

    class Clock(TrainerCallback):
        """Wall time from the end of one optimizer step to the end of the next, as r1lab's
        ``step_seconds``: generation, scoring, the reference pass and the update."""

        def on_train_begin(self, *a: Any, **kw: Any) -> None:
            self.last = time.perf_counter()

        def on_step_end(self, *a: Any, **kw: Any) -> None:
            now = time.perf_counter()
            record["step_seconds"].append(now - self.last)
            record["rollout_seconds"].append(spent["rollout"])
            record["reference_seconds"].append(spent["reference"])
            record["completion_tokens"].append(batch * NEW_TOKENS)
            spent.update(rollout=0.0, reference=0.0)
            self.last = now

    trainer.add_callback(Clock())
    trainer.train()
    record["settings"] = {
        "engine": "transformers generate(), prompts repeated G times",
        "training pass": f"padded, micro-batches of {micro} completions x "
        f"{batch // micro} accumulation steps",
        "reference pass": "padded, same micro-batches",
        "loss": "dapo (token-mean), eps 0.2, k3 KL",
        "version": f"trl {trl.__version__}",
    }
    return record


# --- the comparison -------------------------------------------------------------------------


def worker(side: str, workload: str, steps: int, threads: int) -> None:
    torch.set_num_threads(threads)
    n_prompts, group = WORKLOADS[workload]
    with tempfile.TemporaryDirectory() as tmp:
        fn = run_r1lab if side == "r1lab" else run_trl
        started = time.perf_counter()
        record = fn(n_prompts, group, steps, Path(tmp))
    record["wall_seconds"] = time.perf_counter() - started
    record["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(record))


def matmul_peak_gflops(threads: int, size: int = 1024, repeats: int = 20) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best / 1e9


def model_gflop_per_step(n_prompts: int, group: int, prompt_len: int) -> float:
    layers, width, kv, mlp, vocab = 4, 128, 64, 512, 98
    weights = layers * (2 * width * width + 2 * width * kv + 3 * width * mlp) + width * vocab
    seq = prompt_len + NEW_TOKENS

    def forward(tokens: int, context: float) -> float:
        return tokens * (2 * weights + 4 * layers * width * context)

    sampled = n_prompts * group
    rollout = forward(n_prompts * prompt_len, prompt_len / 2) + forward(
        sampled * NEW_TOKENS, prompt_len + NEW_TOKENS / 2
    )
    scored = forward(sampled * seq, seq / 2)  # reference; training is 3x this
    return (rollout + scored + 3 * scored) / 1e9


def launch(python: str, side: str, workload: str, steps: int, threads: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "bench"), "OMP_NUM_THREADS": str(threads)}
    cmd = [python, __file__, "--worker", side, "--workloads", workload, "--steps", str(steps)]
    cmd += ["--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise SystemExit(f"{side} on {workload} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1][len("RESULT ") :])


def summarise(record: dict[str, Any], gflop: float, peak: float) -> dict[str, Any]:
    keep = slice(2, None)  # steps 3..N
    step = statistics.median(record["step_seconds"][keep])
    share = {
        k: statistics.median(
            r / s
            for r, s in zip(record[f"{k}_seconds"][keep], record["step_seconds"][keep], strict=True)
        )
        for k in ("rollout", "reference")
    }
    share["training"] = 1 - share["rollout"] - share["reference"]
    tokens = statistics.median(record["completion_tokens"][keep])
    return {
        "step_s": step,
        "tokens_per_s": tokens / step,
        "share": share,
        "peak_rss_mb": record["peak_rss_mb"],
        "mfu": gflop / step / peak,
        "settings": record["settings"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["r1lab", "trl"], help="run one side only")
    parser.add_argument(
        "--workloads", nargs="+", default=["issue5", "small"], choices=list(WORKLOADS)
    )
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per run (>= 3)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--trl-python", default=str(ROOT / ".venv-trl" / "bin" / "python"))
    parser.add_argument("--worker", choices=["r1lab", "trl"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.workloads[0], args.steps, args.threads)
        return
    if args.steps < 3:
        parser.error("--steps must be at least 3 (steps 1-2 are warm-up)")
    sides = [args.only] if args.only else ["r1lab", "trl"]
    if "trl" in sides and not Path(args.trl_python).exists():
        parser.error(
            f"no TRL interpreter at {args.trl_python}; make it with: python -m venv .venv-trl "
            "&& .venv-trl/bin/pip install torch==2.13.0 trl  (or pass --trl-python)"
        )
    peak = matmul_peak_gflops(args.threads)
    print(
        f"{platform.processor() or platform.machine()}, {args.threads} threads, torch "
        f"{torch.__version__}; fp32 matmul peak {peak:.0f} GFLOP/s"
    )
    result: dict[str, Any] = {"matmul_peak_gflops": round(peak, 1)}
    prompt_len = len(prompts(1)[0])
    for workload in args.workloads:
        n_prompts, group = WORKLOADS[workload]
        gflop = model_gflop_per_step(n_prompts, group, prompt_len)
        rows = {}
        for side in sides:
            python = sys.executable if side == "r1lab" else args.trl_python
            rows[side] = summarise(
                launch(python, side, workload, args.steps, args.threads), gflop, peak
            )
        print(
            f"\n{workload}: {n_prompts} prompts x {group} samples x {NEW_TOKENS} tokens per step, "
            f"{gflop:.0f} GFLOP of model work per step, median of steps 3-{args.steps}"
        )
        header = f"{'':<22}" + "".join(f"{s:>14}" for s in rows)
        print(header + "\n" + "-" * len(header))
        for label, fn in (
            ("step seconds", lambda r: f"{r['step_s']:.2f}"),
            ("completion tokens/s", lambda r: f"{r['tokens_per_s']:,.0f}"),
            ("rollout share", lambda r: f"{r['share']['rollout']:.0%}"),
            ("reference share", lambda r: f"{r['share']['reference']:.0%}"),
            ("training share", lambda r: f"{r['share']['training']:.0%}"),
            ("peak RSS (MB)", lambda r: f"{r['peak_rss_mb']:,.0f}"),
            ("MFU", lambda r: f"{r['mfu']:.1%}"),
        ):
            print(f"{label:<22}" + "".join(f"{fn(r):>14}" for r in rows.values()))
        for side, r in rows.items():
            print(f"{side} settings: " + "; ".join(f"{k}: {v}" for k, v in r["settings"].items()))
        if len(rows) == 2:
            ratio = rows["r1lab"]["tokens_per_s"] / rows["trl"]["tokens_per_s"]
            print(f"ratio r1lab / TRL: {ratio:.2f}x")
        prefix = "" if workload == "issue5" else f"{workload}_"
        for side, r in rows.items():
            result[f"{prefix}{side}_tokens_per_s"] = round(r["tokens_per_s"], 1)
            result[f"{prefix}{side}_peak_rss_mb"] = round(r["peak_rss_mb"], 1)
        if len(rows) == 2:
            result[f"{prefix}ratio"] = round(ratio, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
