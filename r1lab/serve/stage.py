"""``r1lab serve``: a model folder, or the embedded world's oracle judge, on an OpenAI-compatible
``/v1/chat/completions`` API (:mod:`r1lab.serve.app`), in the foreground until Ctrl-C.

The report's judge and rewriter is DeepSeek-V3 behind an API; serving the oracle (or a
trained checkpoint) the same way lets ``judge.base_url`` point at it, and any tool that
speaks OpenAI's API use it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1lab.config import a_device, in_range, option, section
from r1lab.judge.oracle import ORACLE_MODEL, OracleConfig

__all__ = ["ServeConfig", "build_backend", "run_serve"]


@dataclass
class ServeConfig:
    """``r1lab serve``: what to serve, under which name, where."""

    model: str = option(
        ORACLE_MODEL,
        f"'{ORACLE_MODEL}' serves the embedded world's oracle judge; anything else is a "
        f"Hugging Face model folder (a folder named {ORACLE_MODEL}: ./{ORACLE_MODEL})",
    )
    name: str = option(
        "", f"the model name clients ask for (empty: '{ORACLE_MODEL}', or the folder's name)"
    )
    host: str = option("127.0.0.1", "address to listen on (0.0.0.0: every interface)")
    port: int = option(8000, "port to listen on (0: any free port)", check=in_range(0, 65535))
    device: str = option(
        "auto",
        "device of a served model (auto: CUDA when available); the oracle needs none",
        check=a_device(),
    )
    oracle: OracleConfig = section(OracleConfig)


def build_backend(cfg: ServeConfig) -> tuple[Any, str]:
    """The backend ``cfg`` serves and the name it is served under; a model folder that is
    missing or lacks its config or weights is a one-line :class:`~r1lab.errors.UserError`."""
    from r1lab.serve.backends import ModelBackend, OracleBackend

    if cfg.model == ORACLE_MODEL:
        return OracleBackend(cfg.oracle), cfg.name or ORACLE_MODEL
    folder = Path(cfg.model)
    return ModelBackend(folder, cfg.device), cfg.name or folder.resolve().name


def run_serve(cfg: ServeConfig) -> None:
    """Serve until Ctrl-C: build the backend, bind the port, print where, answer requests."""
    from r1lab.serve.app import create_app
    from r1lab.serve.server import Server

    backend, name = build_backend(cfg)
    server = Server(create_app(backend, name), cfg.host, cfg.port)
    print(f"r1lab serve: {name} on {server.base_url} (Ctrl-C stops)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):  # the way a server stops, not a failure
        server.run()
