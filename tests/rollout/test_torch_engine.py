"""The PyTorch rollout engine against the model's own full forward pass, on a tiny random Qwen2.

Every completion's log-probs are recomputed by one plain forward over prompt + completion, so
padding, the shared prefill, cache growth and the dropping of finished rows are all checked
against the thing they must not change.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from r1lab.data.varlen import use_varlen
from r1lab.rollout import torch_engine
from r1lab.rollout.base import SamplingParams
from r1lab.rollout.sampling import choose, sample_keys, uniforms
from r1lab.rollout.torch_engine import TorchEngine

torch.set_num_threads(2)

CHARS = "abcdefghijklmnopqrstuvwxyz0123456789 +=?"


@pytest.fixture(scope="module")
def tok() -> PreTrainedTokenizerFast:
    """A character-level tokenizer: one token per character, so texts and token counts line
    up and stop strings can be placed exactly."""
    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, **{c: i + 3 for i, c in enumerate(CHARS)}}
    t = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.Split(Regex("."), "isolated")
    t.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=t, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )


def _qwen(tok, attn: str = "sdpa", seed: int = 0) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=None,
        initializer_range=0.1,  # peakier than the default, so greedy has no near-ties
        attn_implementation=attn,
    )
    return Qwen2ForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def model(tok) -> Qwen2ForCausalLM:
    return _qwen(tok)


@pytest.fixture(scope="module")
def prompts(tok) -> list[list[int]]:
    return [tok.encode(p) for p in ("what is 37+48? ", "1+2=", "x ", "seven plus 9 ")]


def _reference(model, prompt: list[int], completion: list[int], temperature: float) -> torch.Tensor:
    """log_softmax(logits / T) of one plain forward over prompt + completion, at the
    completion's tokens."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt + completion])).logits[0].float()
    t = temperature or 1.0
    logp = torch.log_softmax(logits / t, -1)[len(prompt) - 1 : -1]
    return logp.gather(-1, torch.tensor(completion)[:, None])[:, 0]


def _max_logprob_error(model, prompts, groups, temperature) -> float:
    worst = 0.0
    for prompt, group in zip(prompts, groups, strict=True):
        for c in group:
            ref = _reference(model, prompt, c.token_ids, temperature)
            worst = max(worst, (ref - torch.tensor(c.logprobs)).abs().max().item())
    return worst


def _frequent_token(engine, prompts) -> int:
    """The token the model samples most, to serve as a stand-in EOS that ends rows early."""
    out = engine.generate(
        prompts, SamplingParams(n=4, max_new_tokens=16, ignore_eos=True, seed=123)
    )
    counts = Counter(t for g in out for c in g for t in c.token_ids)
    return counts.most_common(1)[0][0]


# -- log-probs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("temperature", "top_k", "top_p"), [(1.0, 0, 1.0), (0.7, 0, 1.0), (0.7, 5, 0.9)]
)
def test_logprobs_equal_one_full_forward(
    model, tok, prompts, monkeypatch, temperature, top_k, top_p
):
    resizes = []
    real_resize = torch_engine._SlabLayer.resize

    def spy(self, rows, start, capacity):
        resizes.append((rows is not None and len(rows), start))
        real_resize(self, rows, start, capacity)

    monkeypatch.setattr(torch_engine._SlabLayer, "resize", spy)
    plain = TorchEngine(model, tok)
    # A frequent token as EOS ends rows at different steps, so rows get dropped mid-call;
    # a 3-token cache chunk makes the cache grow several times.
    eos = _frequent_token(plain, prompts)
    engine = TorchEngine(model, tok, eos_token_ids=[eos], cache_chunk=3)
    resizes.clear()
    params = SamplingParams(
        n=3, temperature=temperature, top_k=top_k, top_p=top_p, max_new_tokens=40, seed=7
    )
    groups = engine.generate(prompts, params)

    assert [len(g) for g in groups] == [3] * len(prompts)
    lengths = [len(c.token_ids) for g in groups for c in g]
    assert min(lengths) < 40 and len(set(lengths)) > 3  # rows ended at different steps
    assert any(rows and rows < 12 for rows, _ in resizes)  # finished rows were dropped
    assert _max_logprob_error(model, prompts, groups, temperature) <= 1e-4


def test_dropping_the_longest_prompts_trims_their_padding(model, tok, prompts, monkeypatch):
    """When the rows of the longest prompts end first, the padding that only they needed is cut
    from the cache and the mask, twice over here; the rows left must compute exactly what they
    did before."""
    trims = []  # the padding cut at each compaction, once per layer
    real_resize = torch_engine._SlabLayer.resize

    def spy(self, rows, start, capacity):
        if rows is not None:
            trims.append(start)
        real_resize(self, rows, start, capacity)

    monkeypatch.setattr(torch_engine._SlabLayer, "resize", spy)
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=30, ignore_eos=True)
    free = TorchEngine(model, tok).generate(prompts, params)
    a, b, *rest = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    ta, tb = free[a][0].token_ids, free[b][0].token_ids
    # EOS ids that end the longest prompt's completion first, then the second longest's
    e1 = next(t for t in ta if t not in tb and all(t not in free[i][0].token_ids for i in rest))
    k1 = ta.index(e1)
    e2 = next(t for t in tb[k1 + 1 :] if t not in ta[: k1 + 1] + tb[: k1 + 1])
    trims.clear()
    engine = TorchEngine(model, tok, eos_token_ids=[e1, e2])
    groups = engine.generate(prompts, SamplingParams(**{**vars(params), "ignore_eos": False}))

    assert groups[a][0].token_ids == ta[: k1 + 1]
    assert groups[b][0].token_ids == tb[: tb.index(e2) + 1]
    assert len([t for t in trims if t > 0]) >= 2 * model.config.num_hidden_layers
    for i in rest:
        ti = free[i][0].token_ids
        ends = [ti.index(e) + 1 for e in (e1, e2) if e in ti]
        assert groups[i][0].token_ids == ti[: min(ends, default=len(ti))]
    assert _max_logprob_error(model, prompts, groups, 1.0) <= 1e-4


@pytest.mark.parametrize("kind", ["eager", "2d", "llama", "varlen"])
def test_logprobs_with_other_masks_and_models(tok, prompts, kind):
    """Eager attention takes an additive float mask, other implementations a 2-D mask that the
    model expands itself; and any Hugging Face causal LM works, not only Qwen2. A model that
    a packed pass switched to varlen attention is sdpa to the engine."""
    if kind == "llama":
        torch.manual_seed(0)
        cfg = LlamaConfig(
            vocab_size=len(tok),
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=128,
            initializer_range=0.1,
            attn_implementation="sdpa",
        )
        model = LlamaForCausalLM(cfg).eval()
    else:
        model = _qwen(tok, attn="eager" if kind == "eager" else "sdpa")
    if kind == "varlen":
        assert use_varlen(model.base_model)
    engine = TorchEngine(model, tok, cache_chunk=5)
    if kind == "2d":
        engine._mask_kind = "2d"
    assert engine._mask_kind == {"eager": "float", "2d": "2d"}.get(kind, "bool")
    params = SamplingParams(n=2, temperature=1.0, max_new_tokens=12, ignore_eos=True, seed=3)
    groups = engine.generate(prompts, params)
    assert _max_logprob_error(model, prompts, groups, 1.0) <= 1e-4


# -- shared prefill, padding, seeds ----------------------------------------------------------


def test_shared_prefill_gives_the_samples_of_separate_prompts(model, tok, prompts):
    engine = TorchEngine(model, tok)
    params = SamplingParams(n=3, max_new_tokens=20, ignore_eos=True, seed=11)
    p = prompts[0]
    shared = engine.generate([p], params)[0]
    separate = [
        g[0] for g in engine.generate([p, p, p], SamplingParams(**{**vars(params), "n": 1}))
    ]
    in_batch = engine.generate([prompts[1], p, prompts[2]], params)[1]
    for a, b, c in zip(shared, separate, in_batch, strict=True):
        assert a.token_ids == b.token_ids == c.token_ids
        assert np.allclose(a.logprobs, b.logprobs, atol=1e-5)
        assert np.allclose(a.logprobs, c.logprobs, atol=1e-5)
    assert len({tuple(c.token_ids) for c in shared}) == 3  # three different samples


def test_greedy_samples_are_copies_of_greedy_alone(model, tok, prompts):
    engine = TorchEngine(model, tok)
    params = SamplingParams(n=3, temperature=0.0, max_new_tokens=20, ignore_eos=True)
    group = engine.generate([prompts[0]], params)[0]
    alone = engine.generate([prompts[0]], SamplingParams(**{**vars(params), "n": 1}))[0][0]
    assert [c.token_ids for c in group] == [alone.token_ids] * 3
    assert all(c.logprobs == alone.logprobs for c in group)
    group[0].token_ids.append(0)  # copies, not one list three times
    assert group[1].token_ids == alone.token_ids


def test_left_padded_batch_greedy_equals_each_prompt_alone(model, tok, prompts):
    engine = TorchEngine(model, tok)
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=24, ignore_eos=True)
    batched = engine.generate(prompts, params)
    assert len({len(p) for p in prompts}) == len(prompts)  # every prompt padded differently
    for prompt, group in zip(prompts, batched, strict=True):
        alone = engine.generate([prompt], params)[0][0]
        assert group[0].token_ids == alone.token_ids
        assert np.allclose(group[0].logprobs, alone.logprobs, atol=1e-5)
    assert len({tuple(g[0].token_ids) for g in batched}) > 1


def test_same_seed_same_samples(model, tok, prompts):
    engine = TorchEngine(model, tok)
    params = SamplingParams(n=4, max_new_tokens=16, seed=5)
    a = engine.generate(prompts, params)
    b = engine.generate(prompts, params)
    c = engine.generate(prompts, SamplingParams(**{**vars(params), "seed": 6}))
    assert [[x.token_ids for x in g] for g in a] == [[x.token_ids for x in g] for g in b]
    assert [[x.logprobs for x in g] for g in a] == [[x.logprobs for x in g] for g in b]
    assert [[x.token_ids for x in g] for g in a] != [[x.token_ids for x in g] for g in c]


def test_seed_none_follows_torch_manual_seed(model, tok, prompts):
    engine = TorchEngine(model, tok)
    params = SamplingParams(n=2, max_new_tokens=8, ignore_eos=True)
    torch.manual_seed(1)
    a = engine.generate(prompts, params)
    torch.manual_seed(1)
    b = engine.generate(prompts, params)
    assert [[x.token_ids for x in g] for g in a] == [[x.token_ids for x in g] for g in b]


# -- truncation filters ----------------------------------------------------------------------


def test_top_k_1_and_tiny_top_p_are_greedy(model, tok, prompts):
    engine = TorchEngine(model, tok)
    base = dict(n=2, max_new_tokens=20, ignore_eos=True, seed=9)
    greedy = engine.generate(prompts, SamplingParams(temperature=0.0, **base))
    top1 = engine.generate(prompts, SamplingParams(top_k=1, **base))
    nucleus = engine.generate(prompts, SamplingParams(top_p=1e-6, **base))
    sampled = engine.generate(prompts, SamplingParams(**base))
    ids = lambda groups: [[c.token_ids for c in g] for g in groups]  # noqa: E731
    assert ids(top1) == ids(greedy) == ids(nucleus) != ids(sampled)
    # at T=1 the full-distribution log-probs of the greedy token are greedy's log-probs
    for g, t in zip(greedy, top1, strict=True):
        assert np.allclose(g[0].logprobs, t[0].logprobs, atol=1e-6)


@pytest.mark.parametrize(("top_k", "top_p"), [(3, 1.0), (0, 0.5), (4, 0.6)])
def test_sampled_tokens_stay_inside_the_truncated_support(model, tok, prompts, top_k, top_p):
    engine = TorchEngine(model, tok)
    params = SamplingParams(
        n=4, temperature=1.3, top_k=top_k, top_p=top_p, max_new_tokens=24, ignore_eos=True, seed=2
    )
    groups = engine.generate(prompts, params)
    outside_full = 0
    for prompt, group in zip(prompts, groups, strict=True):
        for c in group:
            with torch.no_grad():
                logits = model(torch.tensor([prompt + c.token_ids])).logits[0, len(prompt) - 1 : -1]
            probs = torch.softmax(logits.float() / 1.3, -1)
            for pos, token in enumerate(c.token_ids):
                order = probs[pos].argsort(descending=True, stable=True).tolist()
                rank = order.index(token)
                kept = order[:top_k] if top_k else order
                mass = probs[pos][kept]
                mass = mass / mass.sum()
                before = mass[:rank].sum().item()
                assert top_k == 0 or rank < top_k
                assert before < top_p + 1e-6, (pos, rank, before)
                outside_full += rank > 0
    assert outside_full > 0  # not greedy: the filters leave room to sample


# -- ending: EOS, length, stop strings -------------------------------------------------------


def test_ignore_eos_generates_exactly_max_new_tokens(model, tok, prompts):
    eos = _frequent_token(TorchEngine(model, tok), prompts)
    engine = TorchEngine(model, tok, eos_token_ids=[eos])
    params = SamplingParams(n=3, max_new_tokens=30, ignore_eos=True, seed=4)
    groups = engine.generate(prompts, params)
    completions = [c for g in groups for c in g]
    assert all(len(c.token_ids) == 30 and len(c.logprobs) == 30 for c in completions)
    assert all(c.finish_reason == "length" for c in completions)
    assert any(eos in c.token_ids[:-1] for c in completions)  # EOS was sampled and ignored


def test_eos_ends_a_completion_with_stop(model, tok, prompts):
    eos = _frequent_token(TorchEngine(model, tok), prompts)
    engine = TorchEngine(model, tok, eos_token_ids=[eos])
    params = SamplingParams(n=3, max_new_tokens=30, seed=4)
    free = engine.generate(prompts, SamplingParams(**{**vars(params), "ignore_eos": True}))
    ended = engine.generate(prompts, params)
    stopped = 0
    for g_free, g_end in zip(free, ended, strict=True):
        for f, e in zip(g_free, g_end, strict=True):
            if eos in f.token_ids:
                cut = f.token_ids.index(eos) + 1
                assert e.token_ids == f.token_ids[:cut]  # the same sample, ended at EOS
                assert e.finish_reason == "stop"
                # EOS is not in the text
                assert e.text == tok.decode(f.token_ids[: cut - 1], skip_special_tokens=True)
                stopped += 1
            else:
                assert e.token_ids == f.token_ids and e.finish_reason == "length"
    assert 0 < stopped < 3 * len(prompts)


def test_eos_ids_come_from_tokenizer_and_generation_config(model, tok):
    model.generation_config.eos_token_id = [tok.eos_token_id, 5]
    try:
        assert TorchEngine(model, tok).eos_token_ids == [tok.eos_token_id, 5]
    finally:
        model.generation_config.eos_token_id = tok.eos_token_id
    assert TorchEngine(model, tok, eos_token_ids=[7]).eos_token_ids == [7]


def test_stop_strings_cut_the_text(model, tok, prompts):
    engine = TorchEngine(model, tok)
    params = SamplingParams(n=3, max_new_tokens=30, ignore_eos=True, seed=8)
    free = engine.generate(prompts, params)
    stop = free[0][0].text[6:8]
    cut = engine.generate(prompts, SamplingParams(**{**vars(params), "stop": [stop, "zzzz"]}))
    hits = 0
    for g_free, g_cut in zip(free, cut, strict=True):
        for f, c in zip(g_free, g_cut, strict=True):
            at = f.text.find(stop)
            if at >= 0:
                hits += 1
                # the completion ends with the token that completes the stop string
                k = next(
                    k
                    for k in range(1, len(f.token_ids) + 1)
                    if stop in tok.decode(f.token_ids[:k], skip_special_tokens=True)
                )
                assert c.text == f.text[:at]
                assert c.token_ids == f.token_ids[:k]
                assert c.logprobs == pytest.approx(f.logprobs[:k], abs=1e-6)
                assert c.finish_reason == "stop"
            else:
                assert c.token_ids == f.token_ids and c.finish_reason == "length"
    assert hits >= 1


def test_stop_strings_need_a_tokenizer(model):
    with pytest.raises(ValueError, match="tokenizer"):
        TorchEngine(model).generate([[3, 4]], SamplingParams(stop=["a"], max_new_tokens=2))


# -- the rest of the contract ----------------------------------------------------------------


def test_model_mode_is_restored_and_no_grad_is_kept(model, tok, prompts):
    model.train()
    try:
        out = TorchEngine(model, tok).generate(prompts[:1], SamplingParams(max_new_tokens=4))
        assert model.training
    finally:
        model.eval()
    assert len(out[0][0].token_ids) <= 4
    assert all(p.grad is None for p in model.parameters())


def test_edge_cases_and_bad_params(model, tok, prompts):
    engine = TorchEngine(model, tok)
    assert engine.generate([], SamplingParams()) == []
    empty = engine.generate(prompts[:2], SamplingParams(n=2, max_new_tokens=0))
    assert [[c.token_ids for c in g] for g in empty] == [[[], []], [[], []]]
    assert empty[0][0].finish_reason == "length"
    for bad in (
        dict(n=0),
        dict(temperature=-1.0),
        dict(top_p=0.0),
        dict(top_k=-1),
        dict(stop=[""]),
    ):
        with pytest.raises(ValueError):
            engine.generate(prompts, SamplingParams(**bad))
    with pytest.raises(ValueError, match="at least one token"):
        engine.generate([[]], SamplingParams())
    engine.update_weights()  # a no-op, callable


def test_works_with_the_embedded_world_tokenizer_and_model():
    """``r1lab eval`` builds ``TorchEngine(model, tokenizer)`` from the embedded world."""
    from r1lab.world.model import TinyModelConfig, build_model
    from r1lab.world.tokenizer import build_tokenizer

    tokenizer = build_tokenizer(["What is 12+34? <think>1+3</think><answer>46</answer>"] * 5, 300)
    torch.manual_seed(0)
    cfg = TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1)
    model = build_model(cfg, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    engine = TorchEngine(model, tokenizer)
    assert engine.eos_token_ids == [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 12+34?"}], add_generation_prompt=True, tokenize=False
    )
    prompt = tokenizer.encode(text)
    groups = engine.generate([prompt, prompt[:-2]], SamplingParams(n=2, max_new_tokens=10, seed=0))
    for group in groups:
        for c in group:
            assert 1 <= len(c.token_ids) <= 10
            ended = c.token_ids[-1] in engine.eos_token_ids
            assert c.finish_reason == ("stop" if ended else "length")
            assert c.text == tokenizer.decode(
                c.token_ids[: -1 if ended else None], skip_special_tokens=True
            )


# -- sampling math, by hand ------------------------------------------------------------------


def test_inverse_cdf_draw_by_hand():
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]])).repeat(4, 1)
    u = torch.tensor([0.05, 0.15, 0.35, 0.65])
    tokens, logprobs = choose(logits, 1.0, 0, 1.0, u)
    assert tokens.tolist() == [0, 1, 2, 3]  # cumulative 0.1, 0.3, 0.6, 1.0
    assert torch.allclose(logprobs, torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4])))
    # top-k 2 keeps tokens 3, 2 (0.4, 0.3): renormalised cumulative 4/7, 1
    tokens, logprobs = choose(logits[:2], 1.0, 2, 1.0, torch.tensor([0.5, 0.6]))
    assert tokens.tolist() == [3, 2]
    assert torch.allclose(logprobs, torch.log(torch.tensor([0.4, 0.3])))  # untruncated
    # top-p 0.5: mass before 3, 2, 1, 0 is 0, 0.4, 0.7, 0.9, so 3 and 2 are kept (cut at 4/7)
    tokens, _ = choose(logits[:3], 1.0, 0, 0.5, torch.tensor([0.0, 0.58, 0.99]))
    assert tokens.tolist() == [3, 2, 2]
    # temperature 0.5 squares the odds: p ∝ 1, 4, 9, 16 (sum 30)
    tokens, logprobs = choose(logits[:1], 0.5, 0, 1.0, torch.tensor([1 / 30 + 1e-3]))
    assert tokens.tolist() == [1]
    assert logprobs.item() == pytest.approx(np.log(4 / 30), abs=1e-6)
    # greedy ignores u; its log-prob is at T=1
    tokens, logprobs = choose(logits[:1], 0.0, 0, 1.0, None)
    assert tokens.tolist() == [3] and logprobs.item() == pytest.approx(np.log(0.4), abs=1e-6)


def test_counter_based_random_numbers():
    keys = sample_keys(0, [[1, 2], [3], [1, 2]], n=2)
    assert keys[:4].tolist() == sample_keys(0, [[1, 2], [3]], n=2).tolist()
    # a repeated prompt continues its sample numbering: [1, 2] twice with n=2 is n=4 once
    assert keys[[0, 1, 4, 5]].tolist() == sample_keys(0, [[1, 2]], n=4).tolist()
    assert len(set(keys.tolist())) == 6
    assert sample_keys(1, [[1, 2]], n=1)[0] != keys[0]
    u = uniforms(sample_keys(0, [[5]], n=2000), 0, 50)
    assert u.dtype == np.float32 and u.shape == (2000, 50)
    assert u.min() >= 0 and u.max() <= 1 - 2**-23
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.std() - 12**-0.5) < 0.01
    assert np.array_equal(uniforms(sample_keys(0, [[5]], n=2000), 10, 5), u[:, 10:15])
