"""``safellava-tiny``: a SafeLLaVA small enough to build and train on a CPU.

About 1.3 M parameters: 64 px images cut into 16 px patches (16 visual tokens), a 2-layer
CLIP vision tower of width 128, a 2-layer LLaMA of width 192, and a word-level tokenizer
trained on the texts of a HoliSafe-format dataset (a few hundred words for HoliSafe-Synth).
The weights are random (seeded); training, tests and the demo start from it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel
from transformers import CLIPVisionConfig, LlamaConfig

from holisafe.models.safellava.configuration import SAFETY_TOKEN, SafeLlavaConfig, SafetyFeature
from holisafe.models.safellava.modeling import SafeLlavaForConditionalGeneration
from holisafe.models.safellava.processing import SafeLlavaProcessor
from holisafe.models.safellava.tokenization import (
    BOS,
    CHAT_TEMPLATE,
    EOS,
    IMAGE,
    PAD,
    build_word_tokenizer,
)

TINY_IMAGE_SIZE = 64
TINY_PATCH_SIZE = 16


def record_texts(records: Iterable[Mapping[str, Any] | BaseModel]) -> list[str]:
    """Every query and answer of HoliSafe-format records (bench or train), for a tokenizer.

    Takes raw record dicts or parsed records; reads ``query``, ``response`` and the values
    of LLaVA-style ``conversations``; ``<image>`` placeholders are dropped.
    """
    texts: list[str] = []
    for item in records:
        record = item.model_dump() if isinstance(item, BaseModel) else item
        for key in ("query", "response"):
            if isinstance(record.get(key), str):
                texts.append(record[key])
        for turn in record.get("conversations") or ():
            if isinstance(turn, Mapping) and isinstance(turn.get("value"), str):
                texts.append(turn["value"].replace(IMAGE, "").strip())
    return texts


def dataset_texts(source: str | Path, splits: Iterable[str] = ("train", "test")) -> list[str]:
    """The texts of every record of a HoliSafe-format dataset, over the splits it has.

    ``source`` is anything :func:`holisafe.data.loaders.read_raw` reads (an official-layout
    folder, a JSON/JSONL/Parquet file...); records are read as they are, unvalidated,
    since a tokenizer only needs their words. Raises ``DataSourceError`` when no split
    can be read.
    """
    from holisafe.data.loaders import DataSourceError, read_raw

    texts: list[str] = []
    read: set[str] = set()
    failures: list[str] = []
    for split in splits:
        try:
            raw = read_raw(source, split=split)
        except DataSourceError as error:
            failures.append(str(error))
            continue
        if raw.source not in read:  # a single file holds one split, whatever is asked
            read.add(raw.source)
            texts += record_texts(item for item in raw.items if isinstance(item, Mapping))
    if not read:
        raise DataSourceError("; ".join(dict.fromkeys(failures)))
    return texts


def tiny_config(vocab_size: int, *, image_token_id: int, safety_token_id: int,
                bos_token_id: int, eos_token_id: int, pad_token_id: int,
                safety_feature: SafetyFeature = "smt") -> SafeLlavaConfig:
    """The ``safellava-tiny`` architecture for a vocabulary of ``vocab_size`` tokens."""
    vision = CLIPVisionConfig(
        hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
        image_size=TINY_IMAGE_SIZE, patch_size=TINY_PATCH_SIZE, projection_dim=128,
    )
    text = LlamaConfig(
        vocab_size=vocab_size, hidden_size=192, intermediate_size=384, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
        bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=pad_token_id,
        tie_word_embeddings=False,
    )
    return SafeLlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=image_token_id,
        image_seq_length=(TINY_IMAGE_SIZE // TINY_PATCH_SIZE) ** 2,
        # The last layer of a 2-layer tower; CLIP's CLS token is dropped ("default").
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        safety_token_id=safety_token_id,
        safety_feature=safety_feature,
    )


def safellava_tiny(
    texts: Iterable[str],
    *,
    seed: int = 0,
    safety_feature: SafetyFeature = "smt",
    vocab_size: int | None = None,
    output_dir: str | Path | None = None,
) -> tuple[SafeLlavaForConditionalGeneration, SafeLlavaProcessor]:
    """A random ``safellava-tiny`` model and its processor, with a tokenizer trained on ``texts``.

    ``seed`` fixes the weights. With ``output_dir`` both are saved there, loadable with
    ``from_pretrained`` (and the Auto classes once ``holisafe.models.safellava`` is
    imported). The model is returned in eval mode.
    """
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = build_word_tokenizer(texts, scratch, vocab_size=vocab_size)
    processor = SafeLlavaProcessor.for_clip_tower(
        tokenizer, image_size=TINY_IMAGE_SIZE, patch_size=TINY_PATCH_SIZE,
        chat_template=CHAT_TEMPLATE, safety_token=SAFETY_TOKEN,
    )
    ids = tokenizer.convert_tokens_to_ids
    config = tiny_config(
        len(tokenizer), image_token_id=ids(IMAGE), safety_token_id=ids(SAFETY_TOKEN),
        bos_token_id=ids(BOS), eos_token_id=ids(EOS), pad_token_id=ids(PAD),
        safety_feature=safety_feature,
    )
    torch.manual_seed(seed)
    model = SafeLlavaForConditionalGeneration(config).eval()
    generation = model.generation_config
    generation.bos_token_id, generation.eos_token_id = ids(BOS), ids(EOS)
    generation.pad_token_id = ids(PAD)
    # Placeholders are inputs only: a generated <image> or <safety> would mean nothing.
    generation.suppress_tokens = [ids(IMAGE), ids(SAFETY_TOKEN)]
    if output_dir is not None:
        model.save_pretrained(output_dir)
        processor.save_pretrained(output_dir)
    return model, processor


__all__ = [
    "TINY_IMAGE_SIZE",
    "TINY_PATCH_SIZE",
    "dataset_texts",
    "record_texts",
    "safellava_tiny",
    "tiny_config",
]
