"""Loading Hugging Face causal LMs and tokenizers from local folders, with one-line errors."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from r1lab.errors import UserError

_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def check_model_dir(path: str | Path) -> Path:
    folder = Path(path)
    if not folder.exists():
        raise UserError(f"{folder}: model folder not found")
    if not folder.is_dir():
        raise UserError(f"{folder}: expected a Hugging Face model folder, found a file")
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder}: not a Hugging Face model folder (no config.json)")
    if not any((folder / w).is_file() for w in _WEIGHT_FILES):
        raise UserError(f"{folder}: model folder has no weights (expected model.safetensors)")
    return folder


def load_model(
    path: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu"
) -> PreTrainedModel:
    folder = check_model_dir(path)
    # A tiny model loads in milliseconds; the per-tensor bar would only clutter stderr.
    hf_logging.disable_progress_bar()
    try:
        model = AutoModelForCausalLM.from_pretrained(
            folder, dtype=dtype, attn_implementation="sdpa"
        )
    except (OSError, ValueError, SafetensorError) as e:
        raise UserError(f"{folder}: cannot load model ({str(e).splitlines()[0]})") from None
    return model.to(device)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    folder = Path(path)
    if (
        not (folder / "tokenizer.json").is_file()
        and not (folder / "tokenizer_config.json").is_file()
    ):
        raise UserError(f"{folder}: no tokenizer files (expected tokenizer.json)")
    try:
        tok = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as e:
        raise UserError(f"{folder}: cannot load tokenizer ({str(e).splitlines()[0]})") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok
