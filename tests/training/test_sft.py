import json
import random
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM

from r1lab.config import load_config
from r1lab.errors import UserError
from r1lab.runs import Run, RunConfig
from r1lab.training.sft import (
    SFTConfig,
    SFTStageConfig,
    run_sft_stage,
    tokenize_examples,
    train_sft,
)
from r1lab.world.model import TinyModelConfig, build_model
from r1lab.world.tokenizer import build_tokenizer


def _examples(n=24, seed=0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        steps = " ".join(
            f"{rng.randint(0, 9)}+{rng.randint(0, 9)}" for _ in range(rng.randint(1, 12))
        )
        out.append(
            {
                "prompt": f"What is {a}+{b}?",
                "response": f"<think>{steps}</think><answer>{a + b}</answer>",
            }
        )
    return out


@pytest.fixture(scope="module")
def tokenizer():
    texts = [e["prompt"] + " " + e["response"] for e in _examples(200, seed=1)]
    return build_tokenizer(texts, vocab_size=300)


def _model(tokenizer, seed=0):
    torch.manual_seed(seed)
    cfg = TinyModelConfig(
        hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64
    )
    return build_model(cfg, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)


def _cfg(**kw):
    base = dict(
        lr_max=3e-3,
        lr_min=3e-4,
        warmup_steps=1,
        epochs=2,
        token_budget=128,
        rows_per_micro_batch=1,
        grad_accum=2,
        device="cpu",
    )
    return SFTConfig(**{**base, **kw})


def _run(tmp_path, name, cfg=None):
    return Run.create(RunConfig(name=name, output_dir=str(tmp_path)), "sft", cfg or _cfg())


def test_tokenize_masks_the_prompt_and_ends_with_eos(tokenizer):
    seq = tokenize_examples(tokenizer, [{"prompt": "What is 1+2?", "response": "3"}])[0]
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 1+2?"}], tokenize=False, add_generation_prompt=True
    )
    head = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    body = tokenizer("3", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert seq["input_ids"] == head + body
    assert seq["loss_mask"] == [False] * len(head) + [True] * len(body)
    everything = tokenize_examples(tokenizer, [{"prompt": "What is 1+2?", "response": "3"}], "all")
    assert all(everything[0]["loss_mask"])
    text = tokenize_examples(tokenizer, [{"text": "12+7=19"}])[0]
    assert text["input_ids"][-1] == tokenizer.eos_token_id and all(text["loss_mask"])
    with pytest.raises(UserError, match="example 0"):
        tokenize_examples(tokenizer, [{"question": "x"}])


def test_loss_is_the_token_mean_over_the_step_however_it_is_split(tmp_path, tokenizer):
    # 8 examples fit in one step of 8 rows, taken as 1 micro-batch of 8 or 8 of 1.
    examples = _examples(8)
    logged = []
    for i, (rows, accum) in enumerate([(8, 1), (1, 8), (3, 3)]):
        cfg = _cfg(rows_per_micro_batch=rows, grad_accum=accum, max_steps=1)
        run = _run(tmp_path, f"r{i}", cfg)
        train_sft(_model(tokenizer), tokenizer, examples, cfg, run)
        logged.append(run.metrics()[0])
    # The loss by hand: NLL of every response token (and EOS), each example on its own.
    model = _model(tokenizer)
    nll, count = 0.0, 0
    with torch.no_grad():
        for seq in tokenize_examples(tokenizer, examples):
            ids = torch.tensor([seq["input_ids"]])
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1], -1)
            picked = logp.gather(-1, ids[0, 1:, None])[:, 0]
            mask = torch.tensor(seq["loss_mask"][1:])
            nll -= float(picked[mask].sum())
            count += int(mask.sum())
    for m in logged:
        assert m["loss_tokens"] == count
        assert m["loss"] == pytest.approx(nll / count, rel=1e-5)
        assert m["grad_norm"] == pytest.approx(logged[0]["grad_norm"], rel=1e-5)


def test_run_folder_metrics_and_checkpoints(tmp_path, tokenizer):
    cfg = _cfg()
    run = _run(tmp_path, "sft", cfg)
    summary = train_sft(
        _model(tokenizer),
        tokenizer,
        _examples(),
        cfg,
        run,
        run_cfg=RunConfig(save_every=2, keep_last=10),
    )
    metrics = run.metrics()
    steps = summary["steps"]
    assert [m["step"] for m in metrics] == list(range(1, steps + 1))
    for key in (
        "loss",
        "lr",
        "grad_norm",
        "tokens",
        "padding_efficiency",
        "step_seconds",
        "tokens_per_s",
    ):
        assert key in metrics[0]
    assert metrics[0]["lr"] == pytest.approx(3e-3 / 2)  # 1 warm-up step: half the peak
    assert metrics[-1]["lr"] == pytest.approx(3e-4)  # the cosine ends at lr_min
    assert summary["loss_last"] < summary["loss_first"]
    assert 0 < summary["padding_efficiency"] <= 1
    assert (run.path / "config.yaml").is_file()
    assert json.loads((run.path / "summary.json").read_text())["steps"] == steps
    last = run.path / "checkpoints" / f"step-{steps}"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "trainer_state.pt"):
        assert (last / name).is_file()
    assert (run.path / "checkpoints" / "step-2").is_dir()
    AutoModelForCausalLM.from_pretrained(last)  # plain transformers loads it


def test_resume_reproduces_an_uninterrupted_run(tmp_path, tokenizer):
    cfg = _cfg(max_steps=6, epochs=3)
    run_cfg = RunConfig(save_every=3, keep_last=10)
    straight = _model(tokenizer)
    run = _run(tmp_path, "a", cfg)
    train_sft(straight, tokenizer, _examples(), cfg, run, run_cfg=run_cfg)
    want_metrics = run.metrics()

    # A crash after step 3's checkpoint, with a few lines logged past it.
    shutil.rmtree(run.path / "checkpoints" / "step-6")
    run.truncate_metrics(4)
    resumed = _model(tokenizer, seed=123)  # the weights must come from the checkpoint
    summary = train_sft(resumed, tokenizer, _examples(), cfg, run, resume=True, run_cfg=run_cfg)

    assert summary["resumed_from"] == 3
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    got = run.metrics()
    assert [m["step"] for m in got] == [1, 2, 3, 4, 5, 6]
    assert [m["loss"] for m in got] == [m["loss"] for m in want_metrics]


def test_overlong_examples_are_truncated_or_dropped(tmp_path, tokenizer):
    short = {"prompt": "What is 1+2?", "response": "3"}
    long_response = {"prompt": "What is 1+1?", "response": "1+1 " * 60 + "= 2"}
    long_prompt = {"prompt": "1+1 " * 60, "response": "2"}  # truncation leaves no target
    examples = [short, long_response, long_prompt]
    for mode, truncated, dropped in [("truncate", 1, 1), ("drop", 0, 2)]:
        cfg = _cfg(token_budget=64, overlong=mode, max_steps=1)
        summary = train_sft(_model(tokenizer), tokenizer, examples, cfg, _run(tmp_path, mode, cfg))
        assert (summary["truncated"], summary["dropped"]) == (truncated, dropped)


def test_run_sft_stage_end_to_end(tmp_path, tokenizer):
    base = tmp_path / "base"
    _model(tokenizer).save_pretrained(base)
    tokenizer.save_pretrained(base)
    data = tmp_path / "data.jsonl"
    data.write_text(
        "".join(json.dumps({"q": e["prompt"], "a": e["response"]}) + "\n" for e in _examples())
    )
    cfg = load_config(
        SFTStageConfig,
        overrides=[
            f"model={base}",
            f"data.path={data}",
            "data.fields={prompt: q, response: a}",
            f"run.output_dir={tmp_path / 'runs'}",
            "sft.max_steps=2",
            "sft.token_budget=128",
            "sft.device=cpu",
        ],
    )
    summary = run_sft_stage(cfg)
    final = tmp_path / "runs" / "sft" / "final"
    assert summary["model"] == str(final)
    AutoModelForCausalLM.from_pretrained(final)
    assert json.loads((final.parent / "summary.json").read_text())["steps"] == 2

    missing = load_config(SFTStageConfig, overrides=[f"model={base}", f"data.path={data}"])
    with pytest.raises(UserError, match="missing field 'prompt'"):
        run_sft_stage(missing)
