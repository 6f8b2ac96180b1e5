"""Peak memory and time of the log-prob pass over packed rows: varlen attention and chunked
log-softmax (``r1lab.data.packing.forward_logprobs``) against the pass they replaced
(transformers' block-diagonal mask from the position ids, and the logits of every token at
once).

    python bench/logprob_memory.py --widths 2048 8192 --threads 2

Peak memory is :class:`r1lab.tracking.memory.TensorMemory`'s: the most bytes of tensors
created by the pass that are alive at once (exact; the model's weights are not counted).
Times are the best of ``--repeats`` runs. A second table times the reference pass of
``bench/grpo_vs_trl.py``'s workload (512 responses of 15 + 64 tokens, vocabulary 98) one
response a row against packed into rows of 1,024 tokens.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from r1lab.data.packing import collate, forward_logprobs
from r1lab.inference.reference import score_responses
from r1lab.tracking.memory import TensorMemory
from r1lab.world.model import TinyModelConfig, build_model


def dense_logprobs(model, batch):
    """The pass before varlen attention: an [N, N] block mask and all logits at once."""
    ids = batch.input_ids
    logits = model(input_ids=ids, position_ids=batch.position_ids, use_cache=False).logits
    nll = F.cross_entropy(
        logits[:, :-1].float().flatten(0, 1), ids[:, 1:].flatten(), reduction="none"
    )
    return -nll


def measure(fn, model, batch, grad: bool, repeats: int) -> tuple[float, float]:
    """(peak MiB, best seconds) of ``fn`` (with its backward when ``grad``)."""

    def run() -> None:
        with torch.set_grad_enabled(grad):
            out = fn(model, batch)
            if grad:
                out.sum().backward()
        model.zero_grad(set_to_none=True)

    run()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t)
    with TensorMemory() as mem:
        run()
    return mem.peak / 2**20, best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[2048, 8192], help="row lengths")
    ap.add_argument("--seq", type=int, default=256, help="tokens per packed sequence")
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--chunk", type=int, default=1024, help="logprob_chunk_tokens")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(TinyModelConfig(), vocab_size=args.vocab, pad_token_id=0, eos_token_id=1)
    params = sum(p.numel() for p in model.parameters())
    print(f"model: TinyModelConfig() defaults, vocab {args.vocab}, {params / 1e6:.2f}M parameters")
    print("| row tokens | pass | method | peak MiB | seconds |")
    print("|---:|---|---|---:|---:|")
    gen = torch.Generator().manual_seed(1)
    for width in args.widths:
        n = width // args.seq
        seqs = [{"input_ids": torch.randint(2, args.vocab, (args.seq,), generator=gen).tolist()}
                for _ in range(n)]  # fmt: skip
        batch = collate([list(range(n))], seqs, width)
        for grad, name in ((False, "reference (no grad)"), (True, "training (fwd+bwd)")):
            methods = (
                ("dense mask, all logits", dense_logprobs),
                ("varlen, chunked", lambda m, b: forward_logprobs(m, b, chunk_tokens=args.chunk)),
            )
            for label, fn in methods:
                peak, seconds = measure(fn, model, batch, grad, args.repeats)
                print(f"| {width:,} | {name} | {label} | {peak:.1f} | {seconds:.3f} |")

    layouts(args.repeats)


def layouts(repeats: int) -> None:
    """Reference-pass seconds of 512 responses, one a row against packed rows of 1,024."""
    torch.manual_seed(0)
    model = build_model(TinyModelConfig(), vocab_size=98, pad_token_id=0, eos_token_id=1).eval()
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(2, 98, (15,), generator=gen).tolist() for _ in range(512)]
    responses = [torch.randint(2, 98, (64,), generator=gen).tolist() for _ in range(512)]
    print("\n| reference pass, 512 x (15 + 64) tokens | seconds |\n|---|---:|")
    for budget, label in ((0, "one response a row"), (1024, "packed, rows of 1,024")):
        best = float("inf")
        for _ in range(repeats + 1):  # the first is a warm-up
            t = time.perf_counter()
            score_responses(model, prompts, responses, budget=budget, micro_batch_tokens=2048)
            best = min(best, time.perf_counter() - t)
        print(f"| {label} | {best:.3f} |")


if __name__ == "__main__":
    main()
