"""The ``r1lab`` command line: help, config resolution, recipes, and bad input.

Every bad input must end in one line on stderr that names the file (and line) or the key and
what was expected, exit code 2, no traceback, and no existing file changed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

from r1lab import cli
from r1lab.cli import STAGES, main
from r1lab.config import load_config, option, to_dict
from r1lab.training.sft import SFTStageConfig

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = [
    {"prompt": f"What is {a}+{b}?", "response": f"<think>{a}+{b}</think><answer>{a + b}</answer>"}
    for a, b in [(1, 2), (13, 29), (7, 8), (120, 5), (44, 4), (9, 90)]
]


# --- fixtures and helpers -----------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen2 (hidden 32, one layer) with the embedded tokenizer, saved as an HF folder."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from r1lab.world.tokenizer import build_tokenizer

    tok = build_tokenizer([e["prompt"] + " " + e["response"] for e in EXAMPLES * 20], 300)
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=True,
    )
    folder = tmp_path_factory.mktemp("cli") / "model"
    Qwen2ForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder holding an earlier run, ``runs/old/``, that no failure may touch."""
    monkeypatch.chdir(tmp_path)
    old = tmp_path / "runs" / "old"
    old.mkdir(parents=True)
    (old / "metrics.jsonl").write_text('{"step": 1, "loss": 2.5}\n{"step": 2, "loss": 2.1}\n')
    (old / "config.yaml").write_text("model: base\n")
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(e) + "\n" for e in EXAMPLES))
    return tmp_path


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _fails(
    capsys: pytest.CaptureFixture, root: Path, argv: list[str], *needles: str, new_ok: bool = False
) -> str:
    """Run ``r1lab argv``; check exit 2, one stderr line naming ``needles``, and that no file
    under ``root`` was changed (or added, unless ``new_ok``). Returns the message."""
    capsys.readouterr()
    before = _snapshot(root)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("r1lab: error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    after = _snapshot(root)
    assert {k: after.get(k) for k in before} == before
    assert new_ok or after.keys() == before.keys()
    return lines[0]


def _no_weights(root: Path) -> Path:
    folder = root / "noweights"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    return folder


SFT_FAST = ["sft.max_steps=1", "sft.token_budget=64", "sft.grad_accum=1", "sft.device=cpu"]


# --- help, config, recipes ----------------------------------------------------------------


def test_help_lists_every_command_without_importing_stages(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    modules = {ref.split(":")[0] for stage in STAGES.values() for ref in stage[:2]}
    for name in modules:
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in [*STAGES, "verify"]:
        assert re.search(rf"\n    {name}\s", out)  # a long name's help starts a line below
    assert not modules & set(sys.modules)  # --help stays quick: no torch, no stage module


def test_stage_help_lists_keys_defaults_and_report_values(capsys: pytest.CaptureFixture) -> None:
    assert main(["sft", "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: r1lab sft [--recipe FILE.yaml] [--resume] [--print-config] [key=value" in out
    assert "sft.lr_max=1e-4" in out  # the override syntax is explained
    assert "sft.lr_max = 0.0005 [report: 5e-05]" in out
    assert "sft.token_budget = 1024 [report: 32768]" in out
    assert "run.overwrite = False" in out
    assert main(["eval", "-h"]) == 0
    assert "k = 16 [report: 64]" in capsys.readouterr().out


def test_print_config_round_trips_overrides(work: Path, capsys: pytest.CaptureFixture) -> None:
    overrides = ["sft.lr_max=1e-4", "data.fields={prompt: q, response: a}", "run.name=x"]
    assert main(["sft", "--print-config", *overrides]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["sft"]["lr_max"] == 1e-4 and printed["run"]["name"] == "x"
    assert printed == to_dict(load_config(SFTStageConfig, overrides=overrides))
    # the printed config is itself a recipe that resolves to the same config
    (work / "printed.yaml").write_text(yaml.safe_dump(printed))
    assert main(["sft", "--recipe", "printed.yaml", "--print-config", "sft.epochs=3"]) == 0
    again = yaml.safe_load(capsys.readouterr().out)
    assert again == {**printed, "sft": {**printed["sft"], "epochs": 3}}
    assert not (work / "runs" / "x").exists()  # --print-config runs nothing


def test_every_recipe_loads_against_its_stage(capsys: pytest.CaptureFixture) -> None:
    recipes = sorted((REPO / "recipes").glob("*.yaml"))
    assert {"sft.yaml", "eval-gsm8k.yaml", "eval-embedded.yaml"} <= {r.name for r in recipes}
    for recipe in recipes:
        # the naming rule of recipes/README.md: the command of the first line, else the name
        first = re.match(r"# r1lab (\S+) --recipe", recipe.read_text().splitlines()[0])
        stage = first.group(1) if first else recipe.name.split("-")[0].split(".")[0]
        assert stage in STAGES, f"{recipe.name}: no stage '{stage}'"
        assert main([stage, "--recipe", str(recipe), "--print-config"]) == 0, capsys.readouterr()
        assert yaml.safe_load(capsys.readouterr().out)


# --- stages that are missing, resume, interrupts ------------------------------------------


@dataclasses.dataclass
class _FakeConfig:
    n: int = option(1, "a number", report=64)


@pytest.fixture
def fake_stages(monkeypatch: pytest.MonkeyPatch) -> list:
    """Stages backed by a fake module: ``fake`` (resumable), ``plain`` (no resume), ``ctrlc``
    (interrupted), ``ghost`` (module missing) and ``half`` (run function missing)."""
    calls: list = []
    module = types.ModuleType("r1lab_fake_stage")
    module.Config = _FakeConfig
    module.run = lambda cfg, resume=False: calls.append((cfg.n, resume))
    module.plain = lambda cfg: calls.append((cfg.n, None))

    def ctrlc(cfg: _FakeConfig) -> None:
        raise KeyboardInterrupt

    module.ctrlc = ctrlc
    monkeypatch.setitem(sys.modules, "r1lab_fake_stage", module)
    stages = {
        "fake": cli.Stage("r1lab_fake_stage:Config", "r1lab_fake_stage:run", "a fake stage"),
        "plain": cli.Stage("r1lab_fake_stage:Config", "r1lab_fake_stage:plain", "no resume"),
        "ctrlc": cli.Stage("r1lab_fake_stage:Config", "r1lab_fake_stage:ctrlc", "interrupted"),
        "ghost": cli.Stage("r1lab.no_such_stage:Config", "r1lab.no_such_stage:run", "missing"),
        "half": cli.Stage("r1lab_fake_stage:Config", "r1lab_fake_stage:nope", "half written"),
    }
    monkeypatch.setattr(cli, "STAGES", {**STAGES, **stages})
    return calls


def test_resume_goes_only_to_run_functions_that_take_it(
    work: Path, capsys: pytest.CaptureFixture, fake_stages: list
) -> None:
    assert main(["fake", "n=3", "--resume"]) == 0  # options and overrides mix in any order
    assert main(["fake", "n=4"]) == 0
    assert main(["plain", "n=5"]) == 0
    assert fake_stages == [(3, True), (4, False), (5, None)]
    _fails(capsys, work, ["plain", "--resume"], "plain has no checkpoints to resume")


def test_a_missing_stage_module_is_listed_and_fails_only_when_run(
    work: Path, capsys: pytest.CaptureFixture, fake_stages: list
) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "ghost" in out and "half" in out
    _fails(capsys, work, ["ghost"], "stage 'ghost' is not available", "r1lab.no_such_stage")
    _fails(capsys, work, ["ghost", "--help"], "stage 'ghost' is not available")
    _fails(capsys, work, ["half", "n=2"], "r1lab_fake_stage has no nope")


def test_ctrl_c_exits_130_with_one_line(capsys: pytest.CaptureFixture, fake_stages: list) -> None:
    assert main(["ctrlc"]) == 130
    assert capsys.readouterr().err == "r1lab: interrupted\n"


def test_verify_runs_through_the_main_command(capsys: pytest.CaptureFixture) -> None:
    assert main(["verify", "math", "--pred", "<answer>0.5</answer>", "--gold", "1/2"]) == 0
    assert json.loads(capsys.readouterr().out)["passed"] is True
    code = main(["verify", "math", "--pred", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--gold" in err


# --- bad input: one line, exit 2, nothing overwritten -------------------------------------


def test_malformed_jsonl_line_names_file_and_line(
    work: Path, capsys: pytest.CaptureFixture, model_dir: Path
) -> None:
    bad = work / "bad.jsonl"
    bad.write_text(json.dumps(EXAMPLES[0]) + "\n" + '{"prompt": "1+1", "response": \n')
    _fails(
        capsys,
        work,
        ["sft", f"model={model_dir}", f"data.path={bad}", "run.name=old"],
        f"{bad}:2: malformed JSON",
    )


def test_missing_field_names_field_file_and_line(
    work: Path, capsys: pytest.CaptureFixture, model_dir: Path
) -> None:
    bad = work / "nofield.jsonl"
    rows = [{"q": "1+1", "a": "2"}, {"q": "2+2", "a": "4"}, {"q": "3+3"}]
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["sft", f"model={model_dir}", f"data.path={bad}"]
    _fails(capsys, work, argv, f"{bad}:1: missing field 'prompt'")
    mapped = [*argv, "data.fields={prompt: q, response: a}"]
    _fails(capsys, work, mapped, f"{bad}:3: missing field 'a' (mapped to 'response')")


def test_unknown_key_on_the_command_line_suggests_the_right_one(
    work: Path, capsys: pytest.CaptureFixture
) -> None:
    msg = _fails(capsys, work, ["sft", "sft.lr_mx=1"], "unknown config key 'sft.lr_mx'")
    assert "did you mean 'sft.lr_max'?" in msg
    _fails(capsys, work, ["eval", "modle=x"], "'modle'", "did you mean 'model'?")
    _fails(capsys, work, ["sft", "sft.lr_max=fast"], "'sft.lr_max' expects float, got 'fast'")
    _fails(capsys, work, ["sft", "lr_max"], "override 'lr_max': expected section.field=value")
    _fails(capsys, work, ["sft", "--recpie", "x.yaml"], "unrecognized option '--recpie'")
    _fails(capsys, work, ["sfx"], "invalid choice: 'sfx'")


def test_unknown_key_in_a_recipe_names_the_file_and_key(
    work: Path, capsys: pytest.CaptureFixture
) -> None:
    recipe = work / "typo.yaml"
    recipe.write_text("model: base\nsft:\n  lr_mx: 1.0e-4\n")
    _fails(
        capsys,
        work,
        ["sft", "--recipe", str(recipe)],
        f"{recipe}: unknown config key 'sft.lr_mx'",
        "did you mean 'sft.lr_max'?",
    )
    broken = work / "broken.yaml"
    broken.write_text("sft:\n  lr_max: [1\n")
    _fails(capsys, work, ["sft", "--recipe", str(broken)], str(broken), "not valid YAML")
    # argparse reads "--recipe=--" as an empty list: refused, not run without a recipe
    _fails(capsys, work, ["sft", "--recipe=--"], "--recipe expects a file name")


def test_model_folder_without_weights(
    work: Path, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    folder = _no_weights(tmp_path)
    _fails(capsys, work, ["eval", f"model={folder}"], f"{folder}: model folder has no weights")
    argv = ["sft", f"model={folder}", "data.path=data.jsonl", "run.name=new"]
    _fails(capsys, work, argv, f"{folder}: model folder has no weights")


def test_a_failed_sft_start_leaves_no_run_folder(work: Path, capsys: pytest.CaptureFixture) -> None:
    folder = _no_weights(work)
    _fails(capsys, work, ["sft", f"model={folder}", "data.path=data.jsonl", "run.name=new"])


def test_missing_paths(work: Path, capsys: pytest.CaptureFixture, model_dir: Path) -> None:
    _fails(capsys, work, ["eval", "model=nowhere"], "nowhere: model folder not found")
    argv = ["sft", "model=nowhere", "data.path=data.jsonl"]
    _fails(capsys, work, [*argv, "run.name=new"], "nowhere: model folder not found")
    # into the earlier run's folder: refused, the old run untouched
    argv = ["sft", f"model={model_dir}", "data.path=data.jsonl", "run.name=old"]
    _fails(capsys, work, argv, f"{Path('runs') / 'old'}: run folder exists")
    _fails(capsys, work, ["sft", f"model={model_dir}", "data.path=nope.jsonl"], "nope.jsonl")
    _fails(capsys, work, ["sft", "--recipe", "nope.yaml"], "nope.yaml: recipe file not found")
    _fails(capsys, work, ["eval", "--recipe", "nope.yaml", "model=x"], "nope.yaml")
    _fails(capsys, work, ["eval"], "no model to evaluate: give its folder with model=<path>")
    _fails(
        capsys,
        work,
        ["eval", f"model={model_dir}", "task.name=jsonl", "task.path=gone.jsonl"],
        "gone.jsonl: file not found",
    )


def test_an_unusable_output_path_is_one_line(
    work: Path, capsys: pytest.CaptureFixture, model_dir: Path
) -> None:
    (work / "afile").write_text("not a folder")
    argv = ["sft", f"model={model_dir}", "data.path=data.jsonl", "run.output_dir=afile"]
    _fails(capsys, work, argv, f"{Path('afile') / 'sft'}: Not a directory")


def test_a_second_sft_run_never_overwrites_the_first(
    work: Path, capsys: pytest.CaptureFixture, model_dir: Path
) -> None:
    argv = ["sft", f"model={model_dir}", "data.path=data.jsonl", "run.name=demo", *SFT_FAST]
    assert main(argv) == 0, capsys.readouterr().err
    run = work / "runs" / "demo"
    assert (run / "metrics.jsonl").is_file() and (run / "final" / "model.safetensors").is_file()
    _fails(capsys, work, argv, f"{Path('runs') / 'demo'}: run folder exists", "--resume")
    assert main([*argv, "run.overwrite=true"]) == 0  # only when asked for


def test_the_installed_command_exits_2_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(
        [sys.executable, "-m", "r1lab", "eval", f"model={tmp_path / 'missing'}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr == f"r1lab: error: {tmp_path / 'missing'}: model folder not found\n"
    assert "Traceback" not in proc.stdout + proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


# --- values that mean nothing, and starts that fail: refused before a run folder exists ----


@pytest.mark.parametrize(
    ("stage", "override", "needle"),
    [
        ("grpo", "grpo.temperature=-1", "'grpo.temperature' must be > 0"),
        ("grpo", "grpo.steps=0", "'grpo.steps' must be >= 1"),
        ("grpo", "grpo.group_size=1", "'grpo.group_size' must be >= 2"),
        ("grpo", "grpo.top_p=0", "'grpo.top_p' must be in (0, 1]"),
        ("grpo", "loss.loss_agg=sum", "'loss.loss_agg' must be one of token-mean"),
        ("grpo", "rewards.timeout_s=0", "'rewards.timeout_s' must be > 0"),
        ("grpo", "rewards.weights={nosuch: 1.0}", "unknown reward 'nosuch'"),
        ("grpo", "task.split=heldout", "evaluation split"),
        ("grpo", "task.limit=2000000", "the train split holds"),
        ("zero", "task.split=heldout", "evaluation split"),
        ("sft", "sft.lr_max=-1", "'sft.lr_max' must be > 0"),
        ("sft", "sft.max_steps=-3", "'sft.max_steps' must be >= 0"),
        ("sft", "sft.epochs=0", "'sft.epochs' must be >= 1"),
        ("pretrain", "sft.epochs=0", "'sft.epochs' must be >= 1"),
        ("eval", "k=0", "'k' must be >= 1"),
        ("eval", "temperature=-0.5", "'temperature' must be >= 0"),
    ],
)
def test_a_meaningless_value_is_refused_before_anything_is_written(
    work: Path,
    capsys: pytest.CaptureFixture,
    model_dir: Path,
    stage: str,
    override: str,
    needle: str,
) -> None:
    model = "base" if stage == "zero" else "model"
    argv = [stage, f"{model}={model_dir}", "run.name=new", override]
    if stage == "sft":
        argv.append("data.path=data.jsonl")
    if stage in ("pretrain", "eval"):
        argv.remove("run.name=new")
        if stage == "pretrain":
            argv.remove(f"model={model_dir}")
    _fails(capsys, work, argv, needle)
    assert not (work / "runs" / "new").exists()


def test_the_fixed_command_runs_after_a_refused_start(
    work: Path, capsys: pytest.CaptureFixture, model_dir: Path
) -> None:
    argv = ["sft", f"model={model_dir}", "data.path=data.jsonl", "run.name=fix", *SFT_FAST]
    _fails(capsys, work, [*argv, "sft.lr_max=-1"], "'sft.lr_max' must be > 0")
    assert main(argv) == 0, capsys.readouterr().err


def test_eval_refuses_a_folder_as_output_before_sampling(
    work: Path, capsys: pytest.CaptureFixture, model_dir: Path
) -> None:
    (work / "out").mkdir()
    argv = ["eval", f"model={model_dir}", "output=out", "task.limit=2", "k=1"]
    _fails(capsys, work, argv, "out: output is a folder")
    assert list((work / "out").iterdir()) == []


def test_resume_with_fewer_steps_than_done_is_refused(
    work: Path, capsys: pytest.CaptureFixture, model_dir: Path
) -> None:
    argv = ["sft", f"model={model_dir}", "data.path=data.jsonl", "run.name=r"]
    fast = ["sft.token_budget=64", "sft.grad_accum=1", "sft.device=cpu"]
    assert main([*argv, *fast, "sft.max_steps=3"]) == 0, capsys.readouterr().err
    _fails(capsys, work, [*argv, *fast, "sft.max_steps=2", "--resume"], "done 3 steps")
    _fails(capsys, work, [*argv, *fast, "sft.max_steps=3", "sft.token_budget=96", "--resume"],
           "another batch layout", "token_budget 64 -> 96")  # fmt: skip


# --- one writer per run folder --------------------------------------------------------------


def test_a_second_writer_is_refused_while_the_first_holds_the_folder(
    work: Path, capsys: pytest.CaptureFixture, model_dir: Path
) -> None:
    run = work / "runs" / "busy"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom r1lab.runs import Run, RunConfig\n"
         "Run.create(RunConfig(name='busy'), 'x', RunConfig())\nprint('held', flush=True)\n"
         "time.sleep(120)"],
        cwd=work, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "held\n"
        argv = ["sft", f"model={model_dir}", "data.path=data.jsonl", "run.name=busy", *SFT_FAST]
        for extra in (["--resume"], ["run.overwrite=true"], []):
            msg = _fails(
                capsys, work, [*argv, *extra], f"in use by another r1lab process (PID {holder.pid})"
            )
            assert "--resume" not in msg
        assert (run / "config.yaml").is_file()  # the holder's folder is intact
    finally:
        holder.kill()
        holder.wait()
    # the OS released the lock with the process: resuming works at once
    assert main([*argv, "--resume"]) == 0, capsys.readouterr().err


# --- a full disk and a damaged checkpoint ---------------------------------------------------


def test_a_full_disk_while_saving_is_one_line_and_leaves_no_partial_checkpoint(
    work: Path, capsys: pytest.CaptureFixture, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import r1lab.runs

    argv = ["sft", f"model={model_dir}", "data.path=data.jsonl", "run.name=full",
            "sft.token_budget=64", "sft.grad_accum=1", "sft.device=cpu", "run.save_every=1",
            "sft.max_steps=3"]  # fmt: skip
    save = r1lab.runs.save_model

    def save_until_full(model, tokenizer, folder):
        if folder.name == ".tmp-step-2":  # half a file written, then the disk is full
            (folder).mkdir(parents=True, exist_ok=True)
            (folder / "model.safetensors").write_bytes(b"partial")
            raise OSError(
                errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder / "model.safetensors")
            )
        save(model, tokenizer, folder)

    monkeypatch.setattr(r1lab.runs, "save_model", save_until_full)
    msg = _fails(
        capsys, work, argv, "cannot save checkpoint step-2", "No space left on device", new_ok=True
    )
    assert "model.safetensors" in msg
    ckpts = work / "runs" / "full" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-1"]  # no .tmp-step-2 left
    monkeypatch.setattr(r1lab.runs, "save_model", save)
    assert main([*argv, "--resume"]) == 0, capsys.readouterr().err
    steps = [
        json.loads(x)["step"] for x in (work / "runs/full/metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [1, 2, 3]


def test_resume_falls_back_from_a_damaged_newest_checkpoint(
    work: Path, capsys: pytest.CaptureFixture, model_dir: Path
) -> None:
    argv = ["sft", f"model={model_dir}", "data.path=data.jsonl", "run.name=dmg",
            "sft.token_budget=64", "sft.grad_accum=1", "sft.device=cpu", "run.save_every=1"]  # fmt: skip
    assert main([*argv, "sft.max_steps=2"]) == 0, capsys.readouterr().err
    weights = work / "runs/dmg/checkpoints/step-2/model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    capsys.readouterr()
    assert main([*argv, "sft.max_steps=3", "--resume"]) == 0
    err = capsys.readouterr().err
    assert "step-2 cannot be loaded" in err and "resuming" in err and "from step-1" in err
    steps = [
        json.loads(x)["step"] for x in (work / "runs/dmg/metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [1, 2, 3]
    assert "Traceback" not in err
