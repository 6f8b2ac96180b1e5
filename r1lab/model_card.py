"""What a model folder says about how it was made, under ``r1lab`` in its ``config.json``.

* ``prompt``: how the model was prompted in training. ``instruction`` / ``instruction_zh``
  are what follows an outside question (the embedded base saw bare questions, so none);
  tasks whose ``instruction`` is ``auto`` use them, so a question written as the model
  was trained scores as in training.
* ``world``: for the embedded base, the :class:`~r1lab.world.problems.WorldConfig` its corpus
  was drawn from (for the code base, the :class:`~r1lab.world.code.CodeWorldConfig` with
  ``kind: code``); the embedded tasks use it, so the held-out split is the one the corpus
  left out, whatever the defaults are today.

The card lives in the model's ``PretrainedConfig``, so every checkpoint of every stage
trained from the model carries it, and plain ``transformers`` loads the folder as before.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

__all__ = ["EMBEDDED_PROMPT", "card", "folder_card", "prompt_of", "set_card", "world_of"]

# The embedded corpus's prompt: the question alone as the user turn.
EMBEDDED_PROMPT = {"template": "{question}", "instruction": "", "instruction_zh": ""}


def card(model: Any) -> dict[str, Any]:
    """The ``r1lab`` card of a model (or its config); empty when it has none."""
    config = getattr(model, "config", model)
    found = getattr(config, "r1lab", None)
    return found if isinstance(found, dict) else {}


def folder_card(folder: str | Path) -> dict[str, Any]:
    """The card in a model folder's ``config.json`` (without loading the weights); empty when
    the folder or the card is missing."""
    try:
        found = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")).get("r1lab")
    except (OSError, ValueError, AttributeError):
        return {}
    return found if isinstance(found, dict) else {}


def set_card(model: Any, **entries: Any) -> None:
    """Add ``entries`` to the model's card (dataclasses are stored as dicts)."""
    config = getattr(model, "config", model)
    config.r1lab = {
        **card(config),
        **{k: asdict(v) if hasattr(v, "__dataclass_fields__") else v for k, v in entries.items()},
    }


def prompt_of(found: dict[str, Any]) -> dict[str, str] | None:
    """The prompt of a card: how the model was trained to be prompted, or None."""
    prompt = found.get("prompt")
    return prompt if isinstance(prompt, dict) else None


def world_of(found: dict[str, Any]) -> Any:
    """The world of a card: the :class:`~r1lab.world.problems.WorldConfig` of an arithmetic
    base, or the :class:`~r1lab.world.code.CodeWorldConfig` of a code base (``kind: code``),
    carried by every model trained from it; None for a model from elsewhere."""
    from r1lab.world.code import KIND, CodeWorldConfig
    from r1lab.world.problems import WorldConfig

    saved = found.get("world")
    if not isinstance(saved, dict):
        return None
    kind = CodeWorldConfig if saved.get("kind") == KIND else WorldConfig
    known = {f.name for f in fields(kind)}
    return kind(**{k: v for k, v in saved.items() if k in known})
