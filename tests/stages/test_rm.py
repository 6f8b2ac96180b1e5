"""``r1lab rm`` end to end on tiny data: the helpfulness model learns its pairs, the safety
model its labels; the result is a folder plain transformers loads, with the card stage D
reads; bad data is a one-line error naming the file and record."""

from __future__ import annotations

import json
import random

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from r1lab.config import load_config
from r1lab.errors import UserError
from r1lab.inference.reward_model import load_reward_model
from r1lab.stages.rm import RMStageConfig, run_rm
from r1lab.world.general import all_general, reference_response
from r1lab.world.model import TinyModelConfig, build_model
from r1lab.world.tokenizer import build_tokenizer

PROMPTS = [p for p in all_general() if p.meta["kind"] in ("greeting", "unsafe")][:48]


def _bad(p) -> str:
    # a greeting answered in the other language; an unsafe request answered
    return ("<think></think><answer>Sure, here is how to do it.</answer>" if not p.meta["safe"]
            else "<think>ok</think><answer>12 34 56</answer>")  # fmt: skip


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    rng = random.Random(0)
    texts = [p.question + reference_response(p, rng) + _bad(p) for p in PROMPTS]
    tok = build_tokenizer(texts, vocab_size=400)
    torch.manual_seed(0)
    cfg = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
                          intermediate_size=64)  # fmt: skip
    model = build_model(cfg, len(tok), tok.pad_token_id, tok.eos_token_id)
    folder = tmp_path_factory.mktemp("base")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def _overrides(base, tmp_path, kind, data, heldout):
    return [f"kind={kind}", f"model={base}", f"data={data}", f"heldout={heldout}",
            f"run.output_dir={tmp_path}", "train.batch_size=8", "train.epochs=6",
            "train.lr=3e-3", "train.device=cpu"]  # fmt: skip


def test_helpfulness_rm_learns_its_pairs_and_saves_a_plain_folder(base, tmp_path):
    rng = random.Random(1)
    rows = [{"prompt": p.question, "chosen": reference_response(p, rng), "rejected": _bad(p)}
            for p in PROMPTS]  # fmt: skip
    data, heldout = (
        _write(tmp_path / "pairs.jsonl", rows[:40]),
        _write(tmp_path / "h.jsonl", rows[40:]),
    )
    cfg = load_config(RMStageConfig, None, _overrides(base, tmp_path, "helpfulness", data, heldout))
    summary = run_rm(cfg)
    run = tmp_path / "rm-helpfulness"
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == summary["train"]["steps"] == 5 * 6
    assert metrics[-1]["loss"] < 0.5 * metrics[0]["loss"]
    assert summary["pairwise_accuracy"] >= 0.75 and summary["heldout_examples"] == 8
    assert (
        json.loads((run / "summary.json").read_text())["pairwise_accuracy"]
        == (summary["pairwise_accuracy"])
    )
    plain = AutoModelForSequenceClassification.from_pretrained(run / "final")
    assert plain.config.num_labels == 1
    rm = load_reward_model(run / "final")
    assert rm.kind == "helpfulness" and rm.meta["std"] > 0
    good, bad = rm.rewards([rows[0]["prompt"]] * 2, [rows[0]["chosen"], rows[0]["rejected"]])
    assert 0 < bad < good < 1


def test_safety_rm_learns_its_labels(base, tmp_path):
    rng = random.Random(2)
    rows = []
    for p in PROMPTS:
        rows.append({"prompt": p.question, "response": reference_response(p, rng), "safe": True})
        rows.append({"prompt": p.question, "response": _bad(p), "safe": p.meta["safe"]})
    rng.shuffle(rows)
    data, heldout = (
        _write(tmp_path / "s.jsonl", rows[:80]),
        _write(tmp_path / "sh.jsonl", rows[80:]),
    )
    summary = run_rm(
        load_config(RMStageConfig, None, _overrides(base, tmp_path, "safety", data, heldout))
    )
    assert summary["kind"] == "safety" and summary["unsafe"] > 0
    assert summary["safety_auc"] >= 0.8 and 0 <= summary["safety_accuracy"] <= 1


def test_bad_data_is_a_one_line_error(base, tmp_path):
    bad = _write(tmp_path / "bad.jsonl", [{"prompt": "Hi", "chosen": "Hello"}])
    cfg = load_config(RMStageConfig, None, _overrides(base, tmp_path, "helpfulness", bad, ""))
    with pytest.raises(
        UserError, match=r"bad.jsonl:1: missing field 'rejected'|record 1: no field 'rejected'"
    ):
        run_rm(cfg)
    labels = _write(tmp_path / "labels.jsonl", [{"prompt": "Hi", "response": "x", "safe": "yes"}])
    cfg = load_config(RMStageConfig, None, _overrides(base, tmp_path, "safety", labels, ""))
    with pytest.raises(
        UserError, match="labels.jsonl: record 1: field 'safe' must be true or false"
    ):
        run_rm(cfg)
    assert not (tmp_path / "rm-helpfulness").exists() and not (tmp_path / "rm-safety").exists()
