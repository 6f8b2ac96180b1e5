"""A judge for the length of a stage: the configured API, or the oracle served for the occasion.

Stages that need a judge (preference data, rejection sampling, the rewriter) write::

    with judge_session(cfg.judge, cfg.oracle, run.path / "judge.sqlite") as judge:
        verdicts = judge.correct(items)

With ``judge.base_url`` empty the embedded world's oracle is started on a free local port
and reached over HTTP like any other judge, so the code path is the one a real judge takes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from r1lab.judge.client import Judge, JudgeConfig
from r1lab.judge.oracle import OracleConfig

__all__ = ["judge_session"]


@contextmanager
def judge_session(
    cfg: JudgeConfig, oracle: OracleConfig, cache_path: Path | None
) -> Iterator[Judge]:
    """A :class:`Judge` of ``cfg`` (replies cached at ``cache_path``; None: no cache). When
    ``cfg.base_url`` is empty, the oracle judge of ``oracle`` is served on 127.0.0.1 under
    ``cfg.model`` for the judge to use, and stopped on exit, after the judge is closed."""
    with ExitStack() as stack:
        url = cfg.base_url
        if not url:
            from r1lab.serve.app import create_app
            from r1lab.serve.backends import OracleBackend
            from r1lab.serve.server import Server

            app = create_app(OracleBackend(oracle), cfg.model)
            url = stack.enter_context(Server(app, "127.0.0.1", 0)).base_url
        yield stack.enter_context(Judge(cfg, cache_path, base_url=url))
