"""A byte-level BPE tokenizer trained locally with `tokenizers`, in InternLM2's chat format.

It is saved as a plain `PreTrainedTokenizerFast` (tokenizer.json + tokenizer_config.json with
`tokenizer_class: PreTrainedTokenizerFast`), so `AutoTokenizer.from_pretrained` loads exactly this
tokenizer whatever the model's architecture (transformers 5.x otherwise swaps in the architecture's own
tokenizer class, which ignores a custom tokenizer.json).
"""

from __future__ import annotations

from collections.abc import Iterable

PAD, BOS, EOS_TEXT, IM_START, IM_END = "<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [PAD, BOS, EOS_TEXT, IM_START, IM_END]

# InternLM2's chat format (xtuner's PROMPT_TEMPLATE.internlm2_chat) as a Jinja chat template.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2000):
    """Train the BPE on `texts` and wrap it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=IM_END,  # generation stops at the end of the assistant's turn
        pad_token=PAD,
        additional_special_tokens=[EOS_TEXT, IM_START],
        model_input_names=["input_ids", "attention_mask"],  # no token_type_ids: generate() rejects them
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
