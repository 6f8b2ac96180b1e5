"""The memory model of docs/scale.md against the bytes actually held, on the embedded tiny
Qwen2 at three sizes. A benchmark, not a test: prints tables.

    python bench/memory_model.py [--sizes s m l] [--threads 2] [--tokens 256]

Each size runs in a fresh process, so that its peak RSS is its own. In it:

1. the policy in float32 (r1lab keeps weights, gradients and AdamW state in float32 and
   computes under bfloat16 autocast on GPUs), one real AdamW step on a batch of random
   tokens with the gradients kept: the bytes held by parameters, gradients and optimizer
   state, each the sum of its tensors' storage sizes;
2. a reference copy in float32 and one in bfloat16 (``ReferencePolicy``, ``grpo.ref_dtype``);
3. a reward model of the same shape (``Qwen2ForSequenceClassification``, one label: the
   policy minus its LM head, plus a one-output head);
4. the training state (gradients and AdamW) offloaded to disk (``r1lab.infra.offload``):
   what it still holds, then restored and compared bit for bit.

Beside each storage figure: the prediction (parameters × bytes per parameter of the table
below) and, as a second measure, the change of the process's resident memory (current RSS
from /proc/self/statm after ``malloc_trim``). The forward and backward's transient is their
peak RSS (VmHWM in /proc/self/status) above what stays after them (the gradients), beside
the estimate of the activations saved for the backward pass.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

# bytes per parameter, r1lab's setting on the tiny models (all float32); docs/scale.md has
# the other settings
BYTES = {
    "weights": 4,  # float32
    "grads": 4,  # float32
    "adamw": 8,  # m and v, float32 (plus a 4-byte step per tensor)
    "reference fp32": 4,
    "reference bf16": 2,
    "reward model": 4,
}

SIZES = {  # name: hidden, layers, heads, kv heads, MLP, vocabulary
    "s": (128, 4, 4, 2, 512, 512),  # the embedded default (r1lab pretrain)
    "m": (512, 8, 8, 4, 2048, 8192),
    "l": (1024, 12, 16, 4, 4096, 16384),
}

MiB = 2**20


def rss() -> int:
    """Current resident set size, in bytes, after glibc has returned its free heap pages
    (freed temporaries are not counted)."""
    ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # the peak RSS restarts from now (Linux)


def peak_rss() -> int:
    """The peak resident set size since :func:`reset_peak`, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def held(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors``."""
    seen = {}
    for t in tensors:
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
    return sum(seen.values())


def measure(size: str, tokens: int, threads: int) -> dict:
    import torch
    from transformers import Qwen2ForSequenceClassification

    from r1lab.inference.reference import ReferencePolicy
    from r1lab.infra.offload import offload, optimizer_tensors, restore, training_state
    from r1lab.training.optim import adamw
    from r1lab.world.model import TinyModelConfig, build_model

    torch.set_num_threads(threads)
    hidden, layers, heads, kv, mlp, vocab = SIZES[size]
    cfg = TinyModelConfig(hidden_size=hidden, num_layers=layers, num_heads=heads,
                          num_kv_heads=kv, intermediate_size=mlp)  # fmt: skip
    out: dict = {"size": size, "shape": SIZES[size]}
    rss0 = rss()
    torch.manual_seed(0)
    model = build_model(cfg, vocab, 0, 1)
    n = sum(p.numel() for p in model.parameters())
    out["params"] = n
    # saved for the backward pass, float32, per token: per layer about 12 h (norms, q/k/v,
    # attention in and out, residuals) + 4 I (the MLP's gate, up, activation, product); the
    # logits, their float copy and log-softmax, 3 V
    out["activations"] = tokens * (layers * (12 * hidden + 4 * mlp) + 3 * vocab) * 4
    out["weights"] = (held(model.parameters()), rss() - rss0)

    rows = max(1, tokens // 128)
    ids = torch.randint(2, vocab, (rows, tokens // rows))
    opt = adamw(model.parameters(), lr=1e-4, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.0)
    before = rss()
    reset_peak()
    model(input_ids=ids, labels=ids).loss.backward()
    grads_rss = rss() - before
    # what the forward and backward held above what stays (the gradients): activations
    out["transient"] = peak_rss() - before - grads_rss
    before = rss()
    opt.step()
    out["grads"] = (held(p.grad for p in model.parameters()), grads_rss)
    state = optimizer_tensors(opt)
    moments = [t for k, t in state.items() if not k.endswith("/step")]
    out["adamw"] = (held(state.values()), rss() - before)
    out["adamw_moments"] = held(moments)
    out["train_steady_rss"] = rss() - rss0

    for name, dtype in (("reference fp32", None), ("reference bf16", torch.bfloat16)):
        before = rss()
        ref = ReferencePolicy(model, dtype)
        out[name] = (held(ref.model.parameters()), rss() - before)
        del ref
    before = rss()
    fields = {k: v for k, v in model.config.to_dict().items() if k not in ("id2label", "label2id")}
    rm_config = model.config.__class__(**fields, num_labels=1)
    rm = Qwen2ForSequenceClassification(rm_config)
    out["rm_params"] = sum(p.numel() for p in rm.parameters())
    out["reward model"] = (held(rm.parameters()), rss() - before)
    del rm

    snapshot = {k: t.clone() for k, t in training_state(model, opt).items()}
    with tempfile.TemporaryDirectory() as folder:
        before = rss()
        away = offload(training_state(model, opt), "disk", Path(folder) / "train.safetensors")
        kept = [p.grad for p in model.parameters()] + list(optimizer_tensors(opt).values())
        out["offloaded"] = (away.nbytes, held(kept), before - rss())
        restore(away)
    now = training_state(model, opt)
    out["bit_exact"] = now.keys() == snapshot.keys() and all(
        torch.equal(now[k], snapshot[k]) for k in snapshot
    )
    return out


def table(results: list[dict]) -> str:
    lines = [
        "| size | params | part | B/param | predicted MiB | storage MiB | RSS Δ MiB |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in results:
        shape = "h{} L{} V{}".format(r["shape"][0], r["shape"][1], r["shape"][5])
        for part, b in BYTES.items():
            n = r["rm_params"] if part == "reward model" else r["params"]
            storage, delta = r[part]
            lines.append(
                f"| {r['size']} ({shape}) | {n:,} | {part} | {b} | {n * b / MiB:.2f} | "
                f"{storage / MiB:.2f} | {delta / MiB:.2f} |"
            )
    return "\n".join(lines)


def summary(results: list[dict]) -> str:
    lines = [
        "| size | train state predicted (16 B/param) | storage | RSS Δ after the step | "
        "activations est. | transient measured | offloaded to disk | still held | RSS freed | "
        "bit-exact |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        n = r["params"]
        storage = r["weights"][0] + r["grads"][0] + r["adamw"][0]
        moved, kept, freed = r["offloaded"]
        lines.append(
            f"| {r['size']} | {16 * n / MiB:.2f} | {storage / MiB:.2f} | "
            f"{r['train_steady_rss'] / MiB:.2f} | {r['activations'] / MiB:.2f} | "
            f"{r['transient'] / MiB:.2f} | "
            f"{moved / MiB:.2f} | {kept / MiB:.2f} | {freed / MiB:.2f} | {r['bit_exact']} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=256, help="tokens of the training batch")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # a size, measured in this process
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.tokens, args.threads)))
        return
    import torch

    results = []
    for size in args.sizes:
        cmd = [sys.executable, __file__, "--one", size, "--threads", str(args.threads),
               "--tokens", str(args.tokens)]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    cpu = next((x.split(":", 1)[1].strip() for x in Path("/proc/cpuinfo").read_text().splitlines()
                if x.startswith("model name")), platform.machine())  # fmt: skip
    print(f"{cpu} ({os.cpu_count()} cores), torch {torch.__version__}, {args.threads} threads, "
          f"a training batch of {args.tokens} tokens in rows of 128\n")  # fmt: skip
    print(table(results))
    print()
    print(summary(results))


if __name__ == "__main__":
    main()
