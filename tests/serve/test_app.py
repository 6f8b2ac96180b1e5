"""The chat API under a real uvicorn server, called with the real ``openai`` client: the oracle
judge's verdicts, the model list, OpenAI-style errors, and a tiny model folder."""

from __future__ import annotations

import openai
import pytest

from r1lab.judge import prompts
from r1lab.judge.oracle import OracleConfig
from r1lab.serve.app import create_app
from r1lab.serve.backends import ModelBackend, OracleBackend, _cut
from r1lab.serve.server import Server

QUESTION = "What is 2+3?"
RIGHT = "<think>\n2+3=5\n</think>\n<answer>\n5\n</answer>"
WRONG = "<think>\n2+3=6\n</think>\n<answer>\n6\n</answer>"


@pytest.fixture(scope="module")
def oracle():
    with Server(create_app(OracleBackend(OracleConfig(error_rate=0)), "oracle")) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0)
        yield client
        client.close()


def _ask(client, messages, **kw):
    return client.chat.completions.create(model=kw.pop("model", "oracle"), messages=messages, **kw)


def test_server_picks_a_free_port_and_says_where():
    with (
        Server(create_app(OracleBackend(), "x")) as a,
        Server(create_app(OracleBackend(), "y")) as b,
    ):
        assert a.port > 0 and b.port > 0 and a.port != b.port
        assert a.base_url == f"http://127.0.0.1:{a.port}/v1"


def test_oracle_verdicts_over_http(oracle):
    right = _ask(oracle, prompts.correctness_messages(QUESTION, "5", RIGHT))
    wrong = _ask(oracle, prompts.correctness_messages(QUESTION, "5", WRONG))
    assert prompts.parse_verdict(right.choices[0].message.content) is True
    assert prompts.parse_verdict(wrong.choices[0].message.content) is False
    assert right.model == "oracle"
    assert right.choices[0].finish_reason == "stop"
    assert right.usage.prompt_tokens > 0 and right.usage.completion_tokens == 3  # VERDICT : correct


def test_models_lists_the_served_name(oracle):
    assert [m.id for m in oracle.models.list().data] == ["oracle"]


def test_errors_are_openai_errors(oracle):
    messages = prompts.correctness_messages(QUESTION, "5", RIGHT)
    with pytest.raises(openai.NotFoundError, match="not served here"):
        _ask(oracle, messages, model="gpt-4o")
    with pytest.raises(openai.BadRequestError, match="n=1"):
        _ask(oracle, messages, n=2)
    with pytest.raises(openai.BadRequestError, match="an r1lab-judge request"):
        _ask(oracle, [{"role": "user", "content": "hello"}])
    with pytest.raises(openai.BadRequestError, match="temperature"):
        _ask(oracle, messages, temperature=3)


def test_developer_role_is_the_system_prompt(oracle):
    system, user = prompts.correctness_messages(QUESTION, "5", RIGHT)
    reply = _ask(oracle, [{**system, "role": "developer"}, user])
    assert prompts.parse_verdict(reply.choices[0].message.content) is True


def test_max_tokens_and_stop_cut_the_reply(oracle):
    messages = prompts.correctness_messages(QUESTION, "5", RIGHT)
    cut = _ask(oracle, messages, max_tokens=2)
    assert (cut.choices[0].message.content, cut.choices[0].finish_reason) == ("VERDICT:", "length")
    stopped = _ask(oracle, messages, stop=[": "])
    assert stopped.choices[0].message.content == "VERDICT"
    assert stopped.choices[0].finish_reason == "stop"


def test_cut_takes_whichever_comes_first():
    assert _cut("a b c d. e", 2, ["."]) == ("a b", "length")
    assert _cut("a b. c d e", 3, ["."]) == ("a b", "stop")
    assert _cut("答案是5", 2, []) == ("答案", "length")
    assert _cut("x答案", 2, []) == ("x答", "length")  # Han characters are pieces of their own


# --- a model folder -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny random Qwen2 with the embedded tokenizer (and its chat template), saved."""
    import torch

    from r1lab.world.model import TinyModelConfig, build_model
    from r1lab.world.tokenizer import build_tokenizer

    tok = build_tokenizer([f"What is {a}+{b}? <answer>{a + b}</answer>" for a in range(20)
                           for b in range(10)], vocab_size=300)  # fmt: skip
    torch.manual_seed(0)
    cfg = TinyModelConfig(
        hidden_size=32, num_layers=1, num_heads=4, num_kv_heads=2, intermediate_size=64
    )
    folder = tmp_path_factory.mktemp("serve") / "tiny"
    build_model(cfg, len(tok), tok.pad_token_id, tok.eos_token_id).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_model_folder_answers_and_greedy_is_deterministic(model_dir):
    import torch

    torch.set_num_threads(2)
    with Server(create_app(ModelBackend(model_dir, device="cpu"), "tiny")) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0)
        messages = [{"role": "user", "content": "What is 2+3?"}]
        first = _ask(client, messages, model="tiny", temperature=0, max_tokens=8)
        second = _ask(client, messages, model="tiny", temperature=0, max_tokens=8)
        sampled = _ask(client, messages, model="tiny", temperature=1.0, max_tokens=8, seed=1)
        client.close()
    choice = first.choices[0]
    assert choice.finish_reason in {"stop", "length"}
    assert 1 <= first.usage.completion_tokens <= 8
    assert first.usage.prompt_tokens > 5
    assert choice.message.content == second.choices[0].message.content
    assert sampled.choices[0].finish_reason in {"stop", "length"}
