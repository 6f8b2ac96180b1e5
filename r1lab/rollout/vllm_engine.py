"""The vLLM rollout engine (``rollout.engine=vllm``): the GPU generation engine of the report's
rollout module, behind the same interface as :class:`~r1lab.rollout.torch_engine.TorchEngine`.

* **One process, one GPU, colocated with the trainer** (vLLM's ``LLM`` in this process, as
  TRL's colocate mode and verl's hybrid engine do): vLLM takes ``gpu_memory_utilization`` of
  the GPU and, with ``sleep_between_rollouts``, frees its weights and KV cache while the
  trainer works (``LLM.sleep`` / ``wake_up``).
* **Weights without a restart**: :meth:`VLLMEngine.update_weights` copies the trainer
  module's current weights into vLLM's model by ``collective_rpc`` on every worker, in chunks
  of ``weight_chunk_mb`` (``model.load_weights``, the path vLLM documents for RLHF). It is the
  one path weights take from the trainer to the rollout engine.
* **Sampling**: ``n`` samples per prompt, temperature / top-p / top-k, stop strings, EOS or
  ``ignore_eos``, a seed per prompt (from the rollout's seed and the prompt's tokens, so a
  prompt's samples do not depend on the batch). The log-prob of each sampled token comes back
  as vLLM computes it after temperature and the top-p/top-k filter (``logprobs_mode=
  processed_logprobs``): with top-p = 1 and top-k = 0, the distribution sampled from.

vLLM's kernels differ from the trainer's forward, so :meth:`numerics` says ``vllm/<dtype>`` and
GRPO recomputes π_old with its own forward (``grpo.recompute_old_logprobs: null``).

**Untested on a GPU so far**: no GPU was lent to the sessions that wrote this;
``bench/gpu_check.sh`` is the check to run on one (it compares this engine's log-probs with
the trainer's and times a GRPO step), and the tests that need vLLM skip saying so.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from r1lab.config import at_least, in_range, option
from r1lab.errors import UserError
from r1lab.rollout.base import Completion, SamplingParams

__all__ = ["VLLMConfig", "VLLMEngine", "prompt_seed"]


@dataclass
class VLLMConfig:
    """The vLLM engine's settings (``rollout.engine=vllm``)."""

    gpu_memory_utilization: float = option(
        0.4,
        "share of the GPU's memory vLLM takes for weights and KV cache; the rest is the "
        "trainer's (colocated on one GPU)",
        check=in_range(0, 1, low_open=True),
    )
    dtype: str = option("bfloat16", "vLLM's weight and compute dtype (bfloat16, float16, float32)")
    max_model_len: int = option(
        4096, "longest prompt + response vLLM reserves KV cache for", report=65536,
        check=at_least(1),
    )  # fmt: skip
    tensor_parallel_size: int = option(1, "GPUs one vLLM instance spans", check=at_least(1))
    enforce_eager: bool = option(
        False, "no CUDA graphs (quicker start, slower decoding; for debugging)"
    )
    sleep_between_rollouts: bool = option(
        True,
        "free vLLM's weights and KV cache while the trainer works (LLM.sleep, level 1) and "
        "take them back before the next rollout",
    )
    weight_chunk_mb: int = option(
        512, "weights sent to vLLM per collective_rpc call, in MiB", check=at_least(1)
    )


def prompt_seed(seed: int | None, prompt: list[int]) -> int | None:
    """The seed of one prompt's samples: a function of the rollout's seed and the prompt's
    tokens only, so the samples do not depend on which other prompts share the batch."""
    if seed is None:
        return None
    digest = hashlib.blake2b(f"{seed}:{prompt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF


def _load_weights(worker: Any, named: list[tuple[str, torch.Tensor]]) -> None:
    # runs inside each vLLM worker (collective_rpc sends the function and the tensors)
    worker.model_runner.model.load_weights(weights=named)


def _chunks(model: torch.nn.Module, max_bytes: int) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """The trainer module's weights by name, on the CPU, in lists of at most ``max_bytes``
    (a tensor larger than that goes alone)."""
    chunk: list[tuple[str, torch.Tensor]] = []
    size = 0
    for name, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu", copy=True)
        if chunk and size + t.nbytes > max_bytes:
            yield chunk
            chunk, size = [], 0
        chunk.append((name, t))
        size += t.nbytes
    if chunk:
        yield chunk


class VLLMEngine:
    """Generate with vLLM from the weights of ``model`` (the trainer's module), loaded from
    ``folder`` (its Hugging Face folder) at start and updated in place after each step."""

    def __init__(self, model: torch.nn.Module, folder: str, cfg: VLLMConfig | None = None):
        try:
            from vllm import LLM
        except ImportError as e:
            raise UserError(
                f"rollout.engine=vllm needs vLLM on a CUDA machine: pip install 'r1lab[gpu]' ({e})"
            ) from None
        if not torch.cuda.is_available():
            raise UserError("rollout.engine=vllm needs a CUDA GPU; use rollout.engine=torch")
        self.model, self.cfg = model, cfg or VLLMConfig()
        c = self.cfg
        self.llm = LLM(
            model=folder,
            dtype=c.dtype,
            gpu_memory_utilization=c.gpu_memory_utilization,
            max_model_len=c.max_model_len,
            tensor_parallel_size=c.tensor_parallel_size,
            enforce_eager=c.enforce_eager,
            enable_sleep_mode=c.sleep_between_rollouts,
            logprobs_mode="processed_logprobs",
        )
        self._asleep = False

    def numerics(self) -> str:
        return f"vllm/{self.cfg.dtype}"

    def update_weights(self) -> None:
        """Wake vLLM if it sleeps and copy the trainer's current weights into it."""
        if self._asleep:
            self.llm.wake_up()
            self._asleep = False
        for chunk in _chunks(self.model, self.cfg.weight_chunk_mb << 20):
            self.llm.collective_rpc(_load_weights, args=(chunk,))

    def sleep(self) -> None:
        """Free vLLM's GPU memory until the next :meth:`update_weights` (when configured)."""
        if self.cfg.sleep_between_rollouts and not self._asleep:
            self.llm.sleep(level=1)
            self._asleep = True

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Completion]]:
        """``params.n`` completions for each prompt, in prompt order."""
        from vllm import SamplingParams as VSamplingParams

        requests = [{"prompt_token_ids": list(p)} for p in prompts]
        sampling = [
            VSamplingParams(
                n=params.n,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k if params.top_k > 0 else 0,
                max_tokens=params.max_new_tokens,
                stop=list(params.stop) or None,
                ignore_eos=params.ignore_eos,
                seed=prompt_seed(params.seed, p),
                logprobs=0,  # the sampled token's own log-prob
            )
            for p in prompts
        ]
        outputs = self.llm.generate(requests, sampling, use_tqdm=False)
        return [[_completion(o) for o in sorted(out.outputs, key=lambda o: o.index)]
                for out in outputs]  # fmt: skip


def _completion(out: Any) -> Completion:
    ids = list(out.token_ids)
    logprobs = [float(step[tok].logprob) for tok, step in zip(ids, out.logprobs or [], strict=True)]
    return Completion(
        token_ids=ids,
        text=out.text,
        logprobs=logprobs,
        finish_reason="length" if out.finish_reason == "length" else "stop",
    )
