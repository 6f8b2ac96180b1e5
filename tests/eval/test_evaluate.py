"""evaluate() and run_eval_stage() wired end to end, with a scripted engine standing in for a model."""

from __future__ import annotations

import json
import re
import sys
import types

import pytest

from r1lab.data.tasks import TaskConfig, load_task
from r1lab.eval.evaluate import EvalConfig, evaluate, format_table, run_eval_stage
from r1lab.rollout.base import Completion, SamplingParams


class ArithmeticEngine:
    """Answers the embedded arithmetic prompts: sample 0 right, the others off by one, so
    pass@1 is 1/k and the vote is right only for k <= 2 (the first answer wins a 1-1 tie)."""

    def __init__(self, model=None, tokenizer=None):
        self.tokenizer = tokenizer
        self.calls: list[tuple[int, SamplingParams]] = []

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Completion]]:
        self.calls.append((len(prompts), params))
        out = []
        for ids in prompts:
            a, op, b = re.search(r"(\d+)([+-])(\d+)", self.tokenizer.decode(ids)).groups()
            value = int(a) + int(b) if op == "+" else int(a) - int(b)
            group = []
            for i in range(params.n):
                text = f"<think>{a}{op}{b}</think>\n<answer>{value + (i > 0)}</answer>"
                finish = "length" if i == params.n - 1 and i > 0 else "stop"
                group.append(
                    Completion(
                        token_ids=[1] * (10 + i),
                        text=text,
                        logprobs=[0.0] * (10 + i),
                        finish_reason=finish,
                    )
                )
            out.append(group)
        return out

    def update_weights(self) -> None:
        pass


@pytest.fixture(scope="module")
def tokenizer():
    from r1lab.world.tokenizer import build_tokenizer

    return build_tokenizer(["What is 347+589? 347+589等于多少？ 0123456789"] * 20, vocab_size=300)


def test_evaluate_batches_samples_and_scores(tokenizer):
    cfg = EvalConfig(
        task=TaskConfig(name="embedded", limit=5, seed=1),
        k=3,
        batch_size=2,
        temperature=0.6,
        top_p=0.95,
    )
    problems = load_task(cfg.task)
    engine = ArithmeticEngine(tokenizer=tokenizer)
    result = evaluate(engine, tokenizer, problems, cfg, progress=False)

    # the k samples in batches of 2 prompts, then the greedy decode in batches of 2 × 3 rows
    assert [(n, p.n, p.temperature) for n, p in engine.calls] == [
        (2, 3, 0.6), (2, 3, 0.6), (1, 3, 0.6), (5, 1, 0.0),
    ]  # fmt: skip
    sampled = [p for _, p in engine.calls if p.temperature > 0]
    assert all(p.top_p == 0.95 and p.max_new_tokens == 320 for p in sampled)
    # one seed for every batch: a sample is a function of its prompt and number only
    assert {p.seed for p in sampled} == {cfg.seed}
    m = result.metrics
    assert m["greedy_pass@1"] == 1.0  # the engine's first (greedy) answer is right
    assert m["pass@1"] == pytest.approx(1 / 3)
    assert m["cons@3"] == 0.0  # two wrong samples share an answer and outvote the right one
    assert m["mean_tokens"] == 11.0
    assert m["truncation_rate"] == pytest.approx(1 / 3)
    assert m["format_rate"] == 1.0
    assert [r["id"] for r in result.records] == [p.id for p in problems]


def test_format_table_has_metrics_and_languages():
    out = {
        "task": "embedded",
        "model": "m",
        "metrics": {"problems": 2, "k": 4, "pass@1": 0.5, "cons@4": 1.0, "mean_tokens": 12.25},
        "by_language": {
            "en": {"problems": 1, "k": 4, "pass@1": 0.25, "cons@4": 1.0, "mean_tokens": 10.0},
            "zh": {"problems": 1, "k": 4, "pass@1": 0.75, "cons@4": 1.0, "mean_tokens": 14.5},
        },
    }
    table = format_table(out)
    assert "2 problems x 4 samples" in table
    assert re.search(r"cons@4\s+1\.000\s+1\.000\s+1\.000", table)
    assert re.search(r"pass@1 \(mean of k\)\s+0\.500\s+0\.250\s+0\.750", table)
    assert re.search(r"mean length \(tokens\)\s+12\.2\s+10\.0\s+14\.5", table)


def test_run_eval_stage_writes_results_and_samples(tmp_path, monkeypatch, tokenizer, capsys):
    from r1lab.world.model import TinyModelConfig, build_model

    model = build_model(
        TinyModelConfig(
            hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=32
        ),
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    # the scripted engine stands in for TorchEngine, so this checks the stage's wiring only
    fake = types.ModuleType("r1lab.rollout.torch_engine")
    fake.TorchEngine = ArithmeticEngine
    monkeypatch.setitem(sys.modules, "r1lab.rollout.torch_engine", fake)

    output = tmp_path / "out" / "eval.json"
    cfg = EvalConfig(
        model=str(tmp_path / "model"),
        task=TaskConfig(name="embedded", limit=6),
        k=2,
        device="cpu",
        output=str(output),
    )
    out = run_eval_stage(cfg)

    saved = json.loads(output.read_text())
    assert saved["metrics"] == out["metrics"]
    assert saved["metrics"]["pass@1"] == 0.5 and saved["metrics"]["cons@2"] == 1.0
    assert saved["config"]["k"] == 2 and saved["task"] == "embedded"
    records = [
        json.loads(line)
        for line in (tmp_path / "out" / "eval.samples.jsonl").read_text().splitlines()
    ]
    assert len(records) == 6 and len(records[0]["samples"]) == 2
    assert "pass@1" in capsys.readouterr().out


def test_run_eval_stage_needs_a_model():
    from r1lab.errors import UserError

    with pytest.raises(UserError, match="no model to evaluate"):
        run_eval_stage(EvalConfig())


def test_default_output_never_takes_another_models_file(tmp_path, monkeypatch):
    from r1lab.errors import UserError
    from r1lab.eval.evaluate import default_output, model_label

    monkeypatch.chdir(tmp_path)
    assert model_label("runs/zero/checkpoints/step-48") == "zero-step-48"
    assert model_label("runs/zero/final") == "zero-final"
    task = TaskConfig(name="embedded", split="heldout")
    first = default_output(EvalConfig(model="runs/zero/final", task=task))
    assert first == tmp_path.joinpath("runs/eval/zero-final-embedded-heldout.json").relative_to(
        tmp_path
    )
    first.parent.mkdir(parents=True)
    first.write_text(json.dumps({"model": str(tmp_path / "runs/zero/final")}))
    # the same model again: its own file; a model of the same name elsewhere: a new one
    assert default_output(EvalConfig(model="runs/zero/final", task=task)) == first
    other = default_output(EvalConfig(model="elsewhere/zero/final", task=task))
    assert other.name == "zero-final-embedded-heldout-2.json"
    # an explicit output holding another model's results is refused before any sampling
    with pytest.raises(UserError, match="holds the results of"):
        run_eval_stage(EvalConfig(model="elsewhere/zero/final", output=str(first)))


def test_outside_questions_in_the_worlds_form_are_prompted_as_the_embedded_task(tmp_path):
    # The embedded base's folder says it was prompted with bare questions, so a JSONL of
    # embedded-form questions gets the very prompts (and samples, and scores) of the task.
    import torch

    from r1lab.data.io import write_jsonl
    from r1lab.model_card import EMBEDDED_PROMPT, folder_card, prompt_of, set_card
    from r1lab.rollout.torch_engine import TorchEngine
    from r1lab.world.model import TinyModelConfig, build_model

    tok = build_tokenizer_for_world()
    torch.manual_seed(0)
    model = build_model(
        TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                        intermediate_size=64),
        vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
    ).eval()  # fmt: skip
    set_card(model, prompt=EMBEDDED_PROMPT)
    model.save_pretrained(tmp_path / "m")
    assert prompt_of(folder_card(tmp_path / "m")) == EMBEDDED_PROMPT

    embedded = load_task(TaskConfig(name="embedded", limit=12))
    write_jsonl(tmp_path / "q.jsonl", [{"question": p.question, "answer": p.answer}
                                       for p in embedded])  # fmt: skip
    outside = load_task(TaskConfig(name="jsonl", path=str(tmp_path / "q.jsonl")))
    engine = TorchEngine(model, tok)
    cfg = dict(k=4, max_new_tokens=12, seed=3)
    with torch.no_grad():
        a = evaluate(engine, tok, embedded, EvalConfig(task=TaskConfig(), **cfg), progress=False)
        b = evaluate(
            engine, tok, outside, EvalConfig(task=TaskConfig(name="jsonl", path="q"), **cfg),
            progress=False, model_prompt=prompt_of(folder_card(tmp_path / "m")),
        )  # fmt: skip
        c = evaluate(  # a model whose folder does not say: the default instruction
            engine, tok, outside, EvalConfig(task=TaskConfig(name="jsonl", path="q"), **cfg),
            progress=False,
        )  # fmt: skip
    texts = lambda res: [s["text"] for rec in res.records for s in rec["samples"]]  # noqa: E731
    assert texts(a) == texts(b) and a.metrics == b.metrics
    assert texts(c) != texts(a)


def build_tokenizer_for_world():
    from r1lab.world.corpus import CorpusConfig, build_corpus
    from r1lab.world.problems import WorldConfig
    from r1lab.world.tokenizer import build_tokenizer

    docs = build_corpus(CorpusConfig(conversations=300, worked_examples=100, fact_lines=50),
                        WorldConfig())  # fmt: skip
    return build_tokenizer((d.get("text") or d["prompt"] + "\n" + d["response"] for d in docs), 400)
