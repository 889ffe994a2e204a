"""safellava-tiny: the calibrated architecture, its offline tokenizer, save/load, seeds."""

from __future__ import annotations

import json
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_safellava import TEXTS
from transformers import AutoModelForImageTextToText, AutoProcessor
from typer.testing import CliRunner

from holisafe.cli import app
from holisafe.data.loaders import DataSourceError
from holisafe.models.safellava import (
    SafeLlavaForConditionalGeneration,
    SafeLlavaProcessor,
    build_word_tokenizer,
    dataset_texts,
    record_texts,
    safellava_tiny,
)
from holisafe.models.safellava.tokenization import SPECIAL_TOKENS


def test_tiny_has_its_documented_shape_and_builds_in_seconds():
    start = time.perf_counter()
    model, processor = safellava_tiny(TEXTS)
    assert time.perf_counter() - start < 5
    config = model.config
    vision, text = config.vision_config, config.text_config
    assert (vision.image_size, vision.patch_size, vision.hidden_size,
            vision.num_hidden_layers) == (64, 16, 128, 2)
    assert (text.hidden_size, text.num_hidden_layers, text.vocab_size) == (
        192, 2, len(processor.tokenizer))
    assert config.vision_feature_layer == -1
    assert config.image_seq_length == 16  # (64 / 16) ** 2 patches
    parameters = sum(p.numel() for p in model.parameters())
    assert 0.9e6 < parameters < 1.6e6
    assert not model.training


def test_tokenizer_knows_every_word_of_its_texts_and_decodes_them_exactly(tiny):
    _, processor = tiny
    tokenizer = processor.tokenizer
    for text in TEXTS:
        ids = tokenizer(text)["input_ids"]
        assert ids[0] == tokenizer.bos_token_id
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert tokenizer.convert_ids_to_tokens(list(range(len(SPECIAL_TOKENS)))) == list(
        SPECIAL_TOKENS)


def test_unknown_words_become_unk(tiny):
    _, processor = tiny
    assert processor.tokenizer("zebra", add_special_tokens=False)["input_ids"] == [
        processor.tokenizer.unk_token_id]


WORDS = ["I", "can't", "help", "with", "that", "sorry", "the", "picture", "3"]
ENDS = ["", ",", ".", "?", "!", "\n", "\n\n"]


@pytest.fixture(scope="module")
def word_tokenizer(tmp_path_factory):
    # Word-level: a word at the start of a text (or line) and after a space are different
    # tokens, so the corpus holds both forms.
    corpus = [*WORDS, " ".join(WORDS * 2), " ".join(ENDS)]
    return build_word_tokenizer(corpus, tmp_path_factory.mktemp("words"))


@settings(max_examples=50, deadline=None)
@given(words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=12),
       ends=st.lists(st.sampled_from(ENDS), min_size=12, max_size=12))
def test_any_text_over_the_vocabulary_round_trips(word_tokenizer, words, ends):
    text = " ".join(word + end for word, end in zip(words, ends, strict=False))
    ids = word_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert word_tokenizer.unk_token_id not in ids
    assert word_tokenizer.decode(ids) == text


def test_vocab_size_caps_the_vocabulary(tmp_path):
    texts = ["a a a a b b b c c d"]
    tokenizer = build_word_tokenizer(texts, tmp_path, vocab_size=len(SPECIAL_TOKENS) + 2)
    assert len(tokenizer) == len(SPECIAL_TOKENS) + 2
    assert {"▁a", "▁b"} <= set(tokenizer.get_vocab())
    assert "▁d" not in tokenizer.get_vocab()


def test_output_dir_saves_a_checkpoint_the_auto_classes_load(tmp_path, images):
    model, _ = safellava_tiny(TEXTS, output_dir=tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "safellava"
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    loaded_processor = AutoProcessor.from_pretrained(tmp_path)
    assert type(loaded) is SafeLlavaForConditionalGeneration
    assert type(loaded_processor) is SafeLlavaProcessor
    assert loaded.generation_config.suppress_tokens == model.generation_config.suppress_tokens
    inputs = loaded_processor.generation_inputs(images[:1], [TEXTS[0]])
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, model(**inputs).logits)


def test_the_seed_fixes_the_weights():
    a, _ = safellava_tiny(TEXTS, seed=5)
    b, _ = safellava_tiny(TEXTS, seed=5)
    c, _ = safellava_tiny(TEXTS, seed=6)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                  b.state_dict().values(), strict=True))
    assert not torch.equal(a.safety_head.layers[0].weight, c.safety_head.layers[0].weight)


def test_record_texts_reads_queries_and_answers():
    records = [
        {"id": 1, "query": "What is this?", "image": "a.png"},
        {"id": 2, "query": "Why?", "response": "Because."},
        {"id": 3, "conversations": [{"from": "human", "value": "<image>\nHow?"},
                                    {"from": "gpt", "value": "Like so."}]},
    ]
    assert record_texts(records) == ["What is this?", "Why?", "Because.", "How?", "Like so."]


def test_tokenizer_trained_on_holisafe_synth_covers_every_record(tmp_path):
    synth = pytest.importorskip("holisafe.data.synth")
    summary = synth.generate_synth(tmp_path / "synth", seed=0, scale="small")
    records = [*json.loads(summary.train_file.read_text()),
               *json.loads(summary.bench_file.read_text())]
    texts = record_texts(records)
    _, processor = safellava_tiny(texts)
    tokenizer = processor.tokenizer
    assert 100 < len(tokenizer) < 1000
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.unk_token_id not in ids, text
        assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_dataset_texts_reads_every_split_of_a_folder_once(tmp_path):
    (tmp_path / "holisafe_train.json").write_text(json.dumps(
        [{"id": 1, "query": "Why?", "response": "Because."}]))
    (tmp_path / "holisafe_bench.json").write_text(json.dumps([{"id": 2, "query": "How?"}]))
    assert dataset_texts(tmp_path) == ["Why?", "Because.", "How?"]
    assert dataset_texts(tmp_path / "holisafe_bench.json") == ["How?"]
    with pytest.raises(DataSourceError, match="no such file"):
        dataset_texts(tmp_path / "missing")


def test_cli_creates_a_tiny_checkpoint(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "holisafe_bench.json").write_text(json.dumps(
        [{"id": 1, "query": text} for text in TEXTS]))
    result = CliRunner().invoke(app, ["safellava", "tiny", str(tmp_path / "tiny"),
                                      "--data", str(tmp_path / "data"), "--feature", "pool"])
    assert result.exit_code == 0, result.output
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path / "tiny")
    assert loaded.config.safety_feature == "pool"
    missing = CliRunner().invoke(app, ["safellava", "tiny", str(tmp_path / "x"),
                                       "--data", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2
    assert not (tmp_path / "x").exists()
