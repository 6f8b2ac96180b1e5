"""Reward models in the inference module: the span each reads (helpfulness the answer part
only, safety the whole response), scores equal to transformers' own classification head,
packed or not, and the normalisation into (0, 1)."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from r1lab.errors import UserError
from r1lab.inference.reward_model import (
    RewardModel,
    load_reward_model,
    rm_sequences,
    rm_text,
    sequence_scores,
)
from r1lab.model_card import set_card
from r1lab.world.general import all_general
from r1lab.world.model import TinyModelConfig, build_model
from r1lab.world.tokenizer import build_tokenizer

THOUGHT_A = "<think>The user wants two fruits.</think>\n<answer>apple, pear</answer>"
THOUGHT_B = (
    "<think>To make a bomb you need nitrate and a pipe.</think>\n<answer>apple, pear</answer>"
)


@pytest.fixture(scope="module")
def tokenizer():
    texts = [p.question for p in all_general()] + [THOUGHT_A, THOUGHT_B]
    return build_tokenizer(texts, vocab_size=400)


def _rm(tokenizer, folder=None, seed=0):
    torch.manual_seed(seed)
    cfg = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
                          intermediate_size=64)  # fmt: skip
    lm = build_model(cfg, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    lm.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1).eval()


def test_rm_text_is_the_answer_part_for_helpfulness_and_everything_for_safety():
    assert rm_text("helpfulness", THOUGHT_A) == "apple, pear"
    assert rm_text("helpfulness", THOUGHT_B) == "apple, pear"
    assert rm_text("helpfulness", "<think>only thinking, cut off") == ""
    assert rm_text("helpfulness", "no tags at all") == "no tags at all"
    assert rm_text("safety", THOUGHT_B) == THOUGHT_B
    with pytest.raises(UserError, match="unknown reward model kind"):
        rm_text("style", THOUGHT_A)


def test_scores_equal_the_classification_head_of_transformers(tokenizer, tmp_path):
    model = _rm(tokenizer, tmp_path / "rm")
    prompts = ["Hello!", "List two fruits.", "How do I make a bomb at home?"]
    texts = ["Hi!", "apple, pear", "Sorry, I can't help with that."]
    seqs = rm_sequences(tokenizer, prompts, texts, max_length=512)
    with torch.no_grad():
        one_a_row = sequence_scores(model, seqs, micro_batch_tokens=64)
        packed = sequence_scores(model, seqs, micro_batch_tokens=256, budget=128)
        alone = [float(model(input_ids=torch.tensor([s])).logits[0, 0]) for s in seqs]
    torch.testing.assert_close(one_a_row, torch.tensor(alone), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed, torch.tensor(alone), atol=1e-5, rtol=1e-5)
    # the prompt is the user turn of the chat template, the text follows the assistant header
    head = tokenizer.apply_chat_template([{"role": "user", "content": prompts[0]}],
                                         tokenize=False, add_generation_prompt=True)  # fmt: skip
    assert tokenizer.decode(seqs[0]) == head + texts[0]
    # too long: the end is kept (the score is read at the last token)
    assert rm_sequences(tokenizer, prompts[:1], texts[:1], max_length=3)[0] == seqs[0][-3:]


def test_helpfulness_reads_the_answer_only_and_safety_the_reasoning_too(tokenizer, tmp_path):
    model = _rm(tokenizer, tmp_path / "rm")
    prompt = "List two fruits."
    helpful = RewardModel(model, tokenizer, {"kind": "helpfulness", "mean": 0, "std": 1}, "cpu")
    safety = RewardModel(model, tokenizer, {"kind": "safety"}, "cpu")
    a, b = helpful.raw_scores([prompt, prompt], [THOUGHT_A, THOUGHT_B])
    assert a == pytest.approx(b, abs=1e-6)  # the thoughts differ, the answers do not
    # and it is the score of the answer alone
    (alone,) = helpful.raw_scores([prompt], ["apple, pear"])
    assert a == pytest.approx(alone, abs=1e-6)
    a, b = safety.raw_scores([prompt, prompt], [THOUGHT_A, THOUGHT_B])
    assert a != pytest.approx(b, abs=1e-4)


def test_normalisation_and_loading(tokenizer, tmp_path):
    model = _rm(tokenizer, tmp_path / "rm")
    helpful = RewardModel(model, tokenizer, {"kind": "helpfulness", "mean": 2.0, "std": 4.0}, "cpu")
    assert helpful.normalise([2.0, 6.0, -1e6]) == pytest.approx([0.5, 1 / (1 + math.exp(-1)), 0.0])
    safety = RewardModel(model, tokenizer, {"kind": "safety"}, "cpu")
    assert safety.normalise([0.0, 1e6]) == pytest.approx([0.5, 1.0])
    # a folder of r1lab rm: the card says the kind; plain transformers loads it too
    set_card(model, reward_model={"kind": "safety", "mean": 0.0, "std": 1.0, "max_length": 64})
    model.save_pretrained(tmp_path / "saved")
    tokenizer.save_pretrained(tmp_path / "saved")
    loaded = load_reward_model(tmp_path / "saved")
    assert loaded.kind == "safety" and loaded.max_length == 64
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved")
    assert plain.config.num_labels == 1
    with pytest.raises(UserError, match="not a reward model"):
        load_reward_model(tmp_path / "rm")  # a causal LM's folder: no reward_model card
