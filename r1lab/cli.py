"""The ``r1lab`` command: one subcommand per stage, plus ``verify``.

Every stage subcommand reads the same way::

    r1lab <stage> [--recipe FILE.yaml] [--resume] [--print-config] [key=value ...]

Its config is the stage's dataclass defaults, then the recipe, then the overrides (last wins).
A stage may take bare arguments too (``r1lab report RUN [RUN ...]``): they fill one list key
of its config, as that key's override would.
A stage is one line of :data:`STAGES`; its module is imported only when that stage is chosen,
so ``r1lab --help`` stays quick and a stage whose module is missing fails only when run.

Bad input (:class:`~r1lab.errors.UserError`, or an ``OSError`` on a path the run cannot use)
prints one line, ``r1lab: error: <message>``, on stderr and exits 2; Ctrl-C exits 130. Other
exceptions are bugs and keep their traceback.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

from r1lab.errors import UserError


class Stage(NamedTuple):
    config: str  # "module:ConfigClass"
    run: str  # "module:run_function", called as run(cfg) or run(cfg, resume=...)
    help: str  # one line for ``r1lab --help``
    # (config key, metavar): the list key that bare arguments fill, as in r1lab report RUN ...
    positional: tuple[str, str] | None = None


# One line per stage; keep them unwrapped so adding a stage stays a one-line change.
# fmt: off
STAGES: dict[str, Stage] = {
    "pretrain": Stage("r1lab.stages.pretrain:PretrainStageConfig", "r1lab.stages.pretrain:run_pretrain_stage", "build the embedded base model (it stands in for DeepSeek-V3-Base)"),
    "sft": Stage("r1lab.training.sft:SFTStageConfig", "r1lab.training.sft:run_sft_stage", "supervised fine-tuning of a model folder on a JSONL/Parquet file of examples"),
    "grpo": Stage("r1lab.training.grpo_config:GRPOStageConfig", "r1lab.stages.grpo:run_grpo_stage", "GRPO reinforcement learning on a task's verifiable problems"),
    "zero": Stage("r1lab.stages.zero:ZeroConfig", "r1lab.stages.zero:run_zero", "the R1-Zero path: base -> eval -> GRPO (accuracy + format) -> eval"),
    "coldstart": Stage("r1lab.stages.coldstart:ColdStartConfig", "r1lab.stages.coldstart:run_coldstart", "cold-start data (stage A): R1-Zero samples -> correct, readable, one language -> judge rewrite -> re-check"),
    "sample": Stage("r1lab.stages.sample:SampleConfig", "r1lab.stages.sample:run_sample", "rejection sampling (stage C data): Dev-2 samples -> rules or judge -> readability filters -> + general data"),
    "prefs": Stage("r1lab.stages.prefs:PrefsConfig", "r1lab.stages.prefs:run_prefs", "preference pairs and safety labels: policy candidates -> judged 4x with A/B swapped -> margin > 1 -> similar lengths"),
    "rm": Stage("r1lab.stages.rm:RMStageConfig", "r1lab.stages.rm:run_rm", "train the helpfulness (pairwise) or safety (point-wise) reward model; with no arguments on the embedded world's preference data"),
    "distill": Stage("r1lab.stages.distill:DistillConfig", "r1lab.stages.distill:run_distill", "distillation: the final model's traces, rejection-sampled, SFT a smaller student; and the same student by RL alone for the same time"),
    "pipeline": Stage("r1lab.stages.pipeline:PipelineConfig", "r1lab.stages.pipeline:run_pipeline", "the R1 recipe: pretrain, R1-Zero, cold start, A, B, rejection sampling, C, one report (a rerun resumes)"),
    "eval": Stage("r1lab.eval.evaluate:EvalConfig", "r1lab.eval.evaluate:run_eval_stage", "decode each problem greedily and sample it k times; report greedy pass@1, pass@1, pass@4/16 and cons@k"),
    "serve": Stage("r1lab.serve.stage:ServeConfig", "r1lab.serve.stage:run_serve", "serve a model folder (or the oracle judge) on an OpenAI-compatible /v1/chat/completions API"),
    "review": Stage("r1lab.review.stage:ReviewConfig", "r1lab.review.stage:run_review", "human verification of cold-start data: accept / reject / edit each trace in a browser page, export the accepted set"),
    "report": Stage("r1lab.tracking.report:ReportConfig", "r1lab.tracking.report:run_report", "compare runs: their metric curves overlaid (report.png) and final metrics side by side (report.md)", ("runs", "RUN")),
}
# fmt: on

OVERRIDES_HELP = """\
overrides:
  key=value sets a config key; nested keys are dotted (sft.lr_max=1e-4). Values are read
  as YAML: 3, 1e-4, true, null, [a, b], {prompt: question}. Later wins: the defaults, then
  --recipe, then the overrides in order. An unknown key is an error that names it.
"""


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one-line UserErrors, like every other bad input.

    (argparse would print the usage block and exit itself; a UserError goes through
    :func:`main`'s single error path instead.) Subparsers inherit the class.
    """

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see '{self.prog} --help')")


def _resolve(ref: str, stage: str) -> Any:
    """Import ``module:attr`` for ``stage``; a missing module or name is a one-line error."""
    module_name, attr = ref.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise UserError(
                f"stage '{stage}' is not available in this install (no module {module_name})"
            ) from None
        # A dependency of the stage is missing, not the stage itself.
        raise UserError(
            f"stage '{stage}' needs the Python package '{e.name}', which is not installed"
        ) from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise UserError(
            f"stage '{stage}' is not available in this install ({module_name} has no {attr})"
        ) from None


class _StageHelp(argparse.Action):
    """``--help`` of a stage: usage, override syntax and every config key.

    The keys need the stage's config class, so they are looked up only when asked for.
    """

    def __init__(self, option_strings: list[str], dest: str, stage: str = "", **kw: Any):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)
        self.stage = stage

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kw: Any) -> None:
        from r1lab.config import describe

        stage = STAGES[self.stage]
        cls = _resolve(stage.config, self.stage)
        bare = ""
        if stage.positional:
            key, metavar = stage.positional
            bare = (
                f"  A bare argument ({metavar}: one without '=', or a path that exists) goes into\n"
                f"  {key}; the bare arguments replace {key} of the recipe and the overrides.\n"
            )
        parser.epilog = (
            OVERRIDES_HELP
            + bare
            + "\nconfig keys (key = default [report: the DeepSeek-R1 report's value]):\n"
            + describe(cls)
        )
        parser.print_help()
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The ``r1lab`` parser: a subcommand per stage of :data:`STAGES`, plus ``verify``."""
    from r1lab import __version__, verify_cli

    parser = _Parser(
        prog="r1lab",
        description="The DeepSeek-R1 training recipe end to end.",
        epilog="'r1lab <command> --help' lists a stage's config keys with their defaults.",
    )
    parser.add_argument("--version", action="version", version=f"r1lab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, stage in STAGES.items():
        bare = f" {stage.positional[1]} [{stage.positional[1]} ...]" if stage.positional else ""
        p = sub.add_parser(
            name,
            help=stage.help,
            description=stage.help,
            usage=f"r1lab {name} [--recipe FILE.yaml] [--resume] [--print-config]{bare} "
            "[key=value ...]",
            add_help=False,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("-h", "--help", action=_StageHelp, stage=name, help="show this help")
        p.add_argument("--recipe", metavar="FILE.yaml", help="YAML recipe (see recipes/)")
        p.add_argument(
            "--resume", action="store_true", help="continue the run from its last checkpoint"
        )
        p.add_argument(
            "--print-config",
            action="store_true",
            help="print the resolved config as YAML and exit",
        )
        p.set_defaults(stage=name)
    verify_cli.add_parser(sub)
    return parser


def _split_bare(stage: Stage, args: list[str]) -> tuple[list[str], list[str]]:
    """The overrides and the bare arguments of a stage that takes them: an argument with no
    '=' is bare, and so is a path that exists (a run folder named ``lr=1e-4``)."""
    if stage.positional is None:
        return args, []
    overrides = [a for a in args if "=" in a and not Path(a).exists()]
    return overrides, [a for a in args if a not in overrides]


def run_stage(name: str, recipe: str | None, overrides: list[str], **flags: bool) -> Any:
    """Resolve the config of stage ``name`` and run it (or print it with ``print_config``)."""
    import yaml

    from r1lab.config import load_config, to_dict

    stage = STAGES[name]
    cls = _resolve(stage.config, name)
    overrides, bare = _split_bare(stage, overrides)
    try:
        cfg = load_config(cls, recipe, overrides)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        # load_config reports the usual cases itself; these are an unreadable recipe file.
        raise UserError(f"{recipe}: cannot read recipe ({e})") from None
    if bare:
        assert stage.positional is not None
        setattr(cfg, stage.positional[0], bare)
    if flags.get("print_config"):
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True), end="")
        return None
    run = _resolve(stage.run, name)
    if "resume" in inspect.signature(run).parameters:
        return run(cfg, resume=flags.get("resume", False))
    if flags.get("resume"):
        raise UserError(f"{name} has no checkpoints to resume (drop --resume)")
    return run(cfg)


def main(argv: list[str] | None = None) -> int:
    """Run the ``r1lab`` command line; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser()
        if not argv:
            parser.print_help()
            return 2
        # Overrides are whatever argparse does not recognise, so they may sit anywhere.
        args, extra = parser.parse_known_args(argv)
        if getattr(args, "stage", None):
            if args.recipe is not None and not isinstance(args.recipe, str):
                # Python 3.11's argparse reads "--recipe=--" as an empty list
                raise UserError(f"--recipe expects a file name (see 'r1lab {args.stage} --help')")
            for item in extra:
                if item.startswith("-"):
                    raise UserError(
                        f"unrecognized option '{item}' (see 'r1lab {args.stage} --help')"
                    )
            run_stage(
                args.stage,
                args.recipe,
                extra,
                resume=args.resume,
                print_config=args.print_config,
            )
            return 0
        if extra:
            parser.parse_args(argv)  # reports the unrecognised arguments as argparse does
        if not hasattr(args, "func"):
            parser.print_help()
            return 2
        return int(args.func(args))
    except UserError as e:
        print(f"r1lab: error: {e}", file=sys.stderr)
        return UserError.exit_code
    except OSError as e:
        # A path the run cannot use (a file where a folder belongs, no permission, a full
        # disk) is the user's to fix: say which path and why rather than print a traceback.
        where = f"{e.filename}: " if e.filename else ""
        print(f"r1lab: error: {where}{e.strerror or e}", file=sys.stderr)
        return UserError.exit_code
    except KeyboardInterrupt:
        print("r1lab: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:  # --help and --version exit through argparse
        return e.code if isinstance(e.code, int) else 0
