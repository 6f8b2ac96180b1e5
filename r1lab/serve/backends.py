"""What ``r1lab serve`` serves: the oracle judge, or any Hugging Face causal LM folder."""

from __future__ import annotations

import re
import threading
from pathlib import Path

from r1lab.judge.oracle import OracleConfig, OracleJudge

__all__ = ["ModelBackend", "OracleBackend"]

# The oracle has no tokenizer: it counts words, Han characters and punctuation marks as tokens.
# (\w matches Han characters too: they are kept out of the word runs.)
_PIECE = re.compile(r"[\u3400-\u9fff]|[^\W\u3400-\u9fff]+|[^\w\s]")


def _cut(text: str, max_tokens: int, stop: list[str]) -> tuple[str, str]:
    """``text`` up to its first stop string and at most ``max_tokens`` pieces, whichever comes
    first, with the finish reason."""
    hits = [text.find(s) for s in stop if s in text]
    if hits:
        text = text[: min(hits)]
    pieces = list(_PIECE.finditer(text))
    if len(pieces) > max_tokens:
        return text[: pieces[max_tokens - 1].end()], "length"
    return text, "stop"


class OracleBackend:
    """The oracle judge (:class:`~r1lab.judge.oracle.OracleJudge`) behind the chat API;
    sampling settings do not apply (its noise is seeded by the request's ``seed``)."""

    def __init__(self, cfg: OracleConfig | None = None) -> None:
        self.judge = OracleJudge(cfg)

    def complete(
        self,
        messages: list[dict[str, str]],
        temperature: float,
        top_p: float,
        max_tokens: int,
        seed: int | None,
        stop: list[str],
    ) -> tuple[str, str, int, int]:
        reply = self.judge.reply(messages, seed or 0)
        text, finish = _cut(reply, max_tokens, stop)
        prompt_tokens = sum(len(_PIECE.findall(m["content"])) for m in messages)
        return text, finish, prompt_tokens, len(_PIECE.findall(text))


class ModelBackend:
    """A model folder (any Hugging Face causal LM with its tokenizer and a chat template),
    sampled with r1lab's rollout engine; temperature 0 is greedy.

    One generation runs at a time: the engine drives the model's forward passes itself, and
    requests arriving together would only slow each other down on the same device.
    """

    def __init__(self, model_dir: str | Path, device: str = "auto") -> None:
        import torch

        from r1lab.models import load_model, load_tokenizer
        from r1lab.rollout.torch_engine import TorchEngine
        from r1lab.training.device import resolve_device

        where = resolve_device(device)
        # bfloat16 halves memory and time on GPUs; CPUs are slow at it (as in r1lab eval)
        dtype = torch.bfloat16 if where.type == "cuda" else torch.float32
        self.model = load_model(model_dir, dtype=dtype, device=str(where)).eval()
        self.tokenizer = load_tokenizer(model_dir)
        if not getattr(self.tokenizer, "chat_template", None):
            from r1lab.errors import UserError

            raise UserError(f"{model_dir}: the tokenizer has no chat template to serve it with")
        self.engine = TorchEngine(self.model, self.tokenizer)
        self.context = int(getattr(self.model.config, "max_position_embeddings", 0) or 0)
        self._lock = threading.Lock()

    def complete(
        self,
        messages: list[dict[str, str]],
        temperature: float,
        top_p: float,
        max_tokens: int,
        seed: int | None,
        stop: list[str],
    ) -> tuple[str, str, int, int]:
        from r1lab.rollout.base import SamplingParams

        chat = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        # the chat template already wrote any BOS; adding special tokens again would double it
        ids = list(self.tokenizer(chat, add_special_tokens=False)["input_ids"])
        if self.context:
            room = self.context - len(ids)
            if room < 1:
                raise ValueError(
                    f"the prompt is {len(ids)} tokens; the model's context is {self.context}"
                )
            max_tokens = min(max_tokens, room)
        params = SamplingParams(
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_tokens,
            stop=stop,
            seed=seed,
        )
        with self._lock:
            completion = self.engine.generate([ids], params)[0][0]
        return completion.text, completion.finish_reason, len(ids), len(completion.token_ids)
