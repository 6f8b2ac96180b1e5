"""Completion tokens per second of the PyTorch rollout engine against Hugging Face generate().
A benchmark, not a test: prints tables.

    python bench/rollout_speed.py [--threads 2] [--repeats 3] [--workloads issue5 small]

The model is the issue-5 one: a randomly initialised Qwen2ForCausalLM (hidden 128, 4 layers, 4
heads, 2 KV heads, MLP 512, untied embeddings, sdpa, float32) over a character-level vocabulary
of printable ASCII; prompts like ``What is 37+48? ``. Both sides sample at T=1.0 with no
top-k/top-p and generate exactly ``max_new_tokens`` (the engine with ``ignore_eos``,
``generate()`` with no EOS id), ``n`` samples per prompt (``num_return_sequences`` for
``generate()``). Each figure is the best of ``--repeats`` runs (the machine is shared, so the
best is the least disturbed), runs of the two sides interleaved.

A second table times one decode step of the model's forward with three KV caches at the
issue-5 batch: ``DynamicCache`` (concatenates every step), ``StaticCache`` (attends over all of
its slots every step) and the engine's slabs (written in place, attention over the filled
slots only).
"""

from __future__ import annotations

import argparse
import platform
import random
import time
from collections.abc import Callable

import torch
import transformers
from grpo_vs_trl import char_tokenizer, workload_model  # the issue-5 workload, defined once
from transformers import DynamicCache, GenerationConfig, PreTrainedTokenizerFast, StaticCache

from r1lab.rollout.base import SamplingParams
from r1lab.rollout.torch_engine import TorchEngine, _KVCache

WORKLOADS = {  # name: (prompts, samples per prompt, new tokens)
    "issue5": (32, 16, 64),
    "small": (8, 8, 64),
}


def arithmetic_prompts(tokenizer: PreTrainedTokenizerFast, count: int) -> list[list[int]]:
    rng = random.Random(0)
    texts = [f"What is {rng.randint(1, 99)}+{rng.randint(1, 99)}? " for _ in range(count)]
    return [tokenizer.encode(t) for t in texts]


def run_engine(engine: TorchEngine, prompts: list[list[int]], n: int, new: int) -> int:
    params = SamplingParams(n=n, temperature=1.0, max_new_tokens=new, ignore_eos=True, seed=0)
    groups = engine.generate(prompts, params)
    return sum(len(c.token_ids) for g in groups for c in g)


def run_hf(model: torch.nn.Module, prompts: list[list[int]], n: int, new: int, pad: int) -> int:
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    config = GenerationConfig(
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=new,
        num_return_sequences=n,
        pad_token_id=pad,
        eos_token_id=None,  # like ignore_eos: every row runs to max_new_tokens
    )
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    assert out.shape == (len(prompts) * n, width + new), out.shape
    return out.shape[0] * new


def best_of(repeats: int, fns: dict[str, Callable[[], int]]) -> dict[str, tuple[float, int]]:
    """Best wall time of each function over ``repeats`` interleaved rounds, and its tokens."""
    best: dict[str, tuple[float, int]] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            tokens = fn()
            seconds = time.perf_counter() - start
            if name not in best or seconds < best[name][0]:
                best[name] = (seconds, tokens)
    return best


def decode_step_ms(
    model: torch.nn.Module, batch: int, prompt: int, new: int, kind: str, repeats: int
) -> float:
    """Mean milliseconds of one decode step (the model's forward on one token per row) over
    ``new`` steps after a ``prompt``-token prefill, with the given KV cache."""
    ids = torch.randint(3, 98, (batch, prompt), generator=torch.Generator().manual_seed(0))
    total = prompt + new
    best = float("inf")
    for _ in range(repeats):
        with torch.inference_mode():
            if kind == "DynamicCache":
                cache = DynamicCache(config=model.config)
            elif kind == "StaticCache":
                cache = StaticCache(config=model.config, max_cache_len=total)
            else:
                cache = _KVCache()
            model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
            if kind == "engine slabs":
                cache.resize(None, 0, total)
            visible = torch.ones(batch, total, dtype=torch.bool)
            token = ids[:, -1:]
            position = torch.full((batch, 1), prompt)
            start = time.perf_counter()
            for step in range(new):
                seen = prompt + step + 1
                if kind == "StaticCache":  # its attention spans every slot; hide the empty ones
                    mask = torch.arange(total)[None, None, None] < seen
                    mask = mask.expand(batch, 1, 1, total)
                else:
                    mask = visible[:, None, None, :seen]
                model(
                    input_ids=token,
                    attention_mask=mask,
                    position_ids=position,
                    past_key_values=cache,
                    use_cache=True,
                )
                position += 1
            best = min(best, (time.perf_counter() - start) / new * 1000)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per figure; the best is kept")
    ap.add_argument(
        "--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS), metavar="W"
    )
    ap.add_argument("--no-hf", action="store_true", help="skip Hugging Face generate()")
    ap.add_argument("--no-cache-table", action="store_true", help="skip the decode-step table")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    tokenizer = char_tokenizer()
    model = workload_model(tokenizer).eval()
    engine = TorchEngine(model, tokenizer)
    params = sum(p.numel() for p in model.parameters())
    print(
        f"{platform.node()} · torch {torch.__version__} · transformers {transformers.__version__}"
        f" · {args.threads} threads · {params / 1e6:.2f}M params · vocab {len(tokenizer)}"
    )
    warm = arithmetic_prompts(tokenizer, 2)
    run_engine(engine, warm, 2, 4)
    if not args.no_hf:
        run_hf(model, warm, 2, 4, tokenizer.pad_token_id)

    print(f"\n{'workload':28} {'method':18} {'seconds':>8} {'tokens/s':>9} {'speed-up':>8}")
    for name in args.workloads:
        count, n, new = WORKLOADS[name]
        prompts = arithmetic_prompts(tokenizer, count)
        fns = {"TorchEngine": lambda p=prompts, n=n, new=new: run_engine(engine, p, n, new)}
        if not args.no_hf:
            fns["HF generate()"] = lambda p=prompts, n=n, new=new: run_hf(
                model, p, n, new, tokenizer.pad_token_id
            )
        results = best_of(args.repeats, fns)
        label = f"{name}: {count}x{n}x{new}"
        base = results.get("HF generate()", (None, 0))[0]
        for method, (seconds, tokens) in results.items():
            ratio = f"{base / seconds:.2f}x" if base else "-"
            print(f"{label:28} {method:18} {seconds:>8.2f} {tokens / seconds:>9.0f} {ratio:>8}")

    if not args.no_cache_table:
        count, n, new = WORKLOADS["issue5"]
        prompt = len(arithmetic_prompts(tokenizer, 1)[0])
        print(f"\ndecode step, batch {count * n}, {prompt}-token prompt, {new} steps: ms/step")
        for kind in ("DynamicCache", "StaticCache", "engine slabs"):
            ms = decode_step_ms(model, count * n, prompt, new, kind, args.repeats)
            print(f"  {kind:14} {ms:7.2f}")


if __name__ == "__main__":
    main()
