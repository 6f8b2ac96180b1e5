"""The embedded tokenizer: byte-level BPE built with ``tokenizers``, digits split one by one.

Digits are single tokens (as in Qwen2 and Llama 3) so that column arithmetic is learnable by
a tiny model. ``<think>``, ``</think>``, ``<answer>`` and ``</answer>`` are atomic added tokens
that survive decoding (they are not "special"), so rewards can parse them from text.
The saved folder loads with plain ``transformers.AutoTokenizer.from_pretrained``.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [PAD, IM_START, IM_END]
TAG_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]

# ChatML, as Qwen2 uses: the assistant turn ends with <|im_end|>, which is the EOS token.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts`` and wrap it as a Hugging Face fast tokenizer."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token=IM_END,
        pad_token=PAD,
        additional_special_tokens=[IM_START],
        clean_up_tokenization_spaces=False,
    )
    # Tags are atomic but not special: decode(skip_special_tokens=True) keeps them.
    hf.add_tokens(TAG_TOKENS)
    hf.chat_template = CHAT_TEMPLATE
    hf.model_max_length = 4096
    return hf
