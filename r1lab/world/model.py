"""The embedded base model: a tiny Qwen2 causal LM from ``transformers``."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import Qwen2Config, Qwen2ForCausalLM

from r1lab.config import at_least, option, positive


@dataclass
class TinyModelConfig:
    """Architecture of the embedded base (stands in for DeepSeek-V3-Base, a 671B MoE)."""

    hidden_size: int = option(128, "model width", check=at_least(1))
    num_layers: int = option(4, "transformer blocks", check=at_least(1))
    num_heads: int = option(4, "attention heads", check=at_least(1))
    num_kv_heads: int = option(2, "key/value heads (grouped-query attention)", check=at_least(1))
    intermediate_size: int = option(512, "MLP width", check=at_least(1))
    max_position_embeddings: int = option(
        1024, "longest sequence the rotary embedding is set up for", check=at_least(1)
    )
    tie_word_embeddings: bool = option(False, "share input and output embeddings")
    init_std: float = option(0.02, "std of the random initial weights", check=positive())


def build_model(
    cfg: TinyModelConfig, vocab_size: int, pad_token_id: int, eos_token_id: int
) -> Qwen2ForCausalLM:
    """A randomly initialised Qwen2ForCausalLM of the given shape (fp32, sdpa attention)."""
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=cfg.tie_word_embeddings,
        pad_token_id=pad_token_id,
        eos_token_id=eos_token_id,
        bos_token_id=None,
        rope_theta=10000.0,
        initializer_range=cfg.init_std,
        attn_implementation="sdpa",
    )
    return Qwen2ForCausalLM(config)
