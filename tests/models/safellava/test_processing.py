"""SafeLlavaProcessor: one meta token right after each image, chat prompts, left padding."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoProcessor

from holisafe.models.safellava import SafeLlavaProcessor
from tiny_llava import build_tiny_llava  # tests/ is on sys.path through tests/conftest.py


def runs(ids: list[int], token: int) -> list[tuple[int, int]]:
    """(start, length) of every run of ``token`` in ``ids``."""
    found, start = [], None
    for i, value in enumerate([*ids, None]):
        if value == token and start is None:
            start = i
        elif value != token and start is not None:
            found.append((start, i - start))
            start = None
    return found


@pytest.fixture(scope="module")
def llava_processor(tmp_path_factory):
    _, processor = build_tiny_llava(tmp_path_factory.mktemp("llava"))
    return processor


def test_each_image_is_followed_by_exactly_one_meta_token(tiny, images):
    _, processor = tiny
    content = [{"type": "image"}, {"type": "text", "text": "Compare"}, {"type": "image"}]
    text = processor.apply_chat_template([{"role": "user", "content": content}],
                                         add_generation_prompt=True)
    ids = processor(images=images[:2], text=[text])["input_ids"][0]
    image_runs = runs(ids, processor.image_token_id)
    assert [length for _, length in image_runs] == [16, 16]  # (64 px / 16 px) ** 2 each
    meta = [i for i, token in enumerate(ids) if token == processor.safety_token_id]
    assert meta == [start + length for start, length in image_runs]


def test_text_only_prompt_has_no_meta_token(tiny):
    _, processor = tiny
    ids = processor.generation_inputs([None], ["Describe the image in detail."])["input_ids"]
    assert processor.safety_token_id not in ids.tolist()[0]


def test_prompt_uses_the_chat_template(tiny):
    _, processor = tiny
    assert processor.prompt("Hi?") == "USER: <image>\nHi? ASSISTANT:"
    assert processor.prompt("Hi?", with_image=False) == "USER: Hi? ASSISTANT:"


def test_generation_inputs_are_left_padded(tiny, images):
    _, processor = tiny
    batch = processor.generation_inputs([images[0], None], ["Describe the image in detail.", "Hi"])
    mask = batch["attention_mask"]
    assert mask[:, -1].tolist() == [1, 1]
    assert mask[1, 0] == 0 and mask[0].all()
    pad = processor.tokenizer.pad_token_id
    assert (batch["input_ids"][mask == 0] == pad).all()
    assert batch["pixel_values"].shape == (1, 3, 64, 64)


def test_generation_inputs_need_one_image_slot_per_query(tiny, images):
    _, processor = tiny
    with pytest.raises(ValueError, match="2 images for 1 queries"):
        processor.generation_inputs(images[:2], ["Hi"])


def test_meta_token_decodes_away(tiny, images):
    _, processor = tiny
    ids = processor.generation_inputs([images[0]], ["Describe the image in detail."])["input_ids"]
    text = processor.tokenizer.decode(ids[0], skip_special_tokens=True)
    assert "<safety>" not in text and "<image>" not in text
    assert text.endswith("Describe the image in detail. ASSISTANT:")


def test_switched_off_it_is_exactly_the_llava_processor(llava_processor, images):
    processor = SafeLlavaProcessor.from_llava_processor(llava_processor, use_safety_token=False)
    assert processor.safety_token_id is None
    text = processor.prompt("What is this?")
    ours = processor(images=images[:1], text=[text], return_tensors="pt")
    theirs = llava_processor(images=images[:1], text=[text], return_tensors="pt")
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[key], theirs[key]) for key in ours)


def test_from_llava_processor_adds_the_token_to_a_copy(llava_processor, images):
    before = len(llava_processor.tokenizer)
    processor = SafeLlavaProcessor.from_llava_processor(llava_processor)
    assert len(llava_processor.tokenizer) == before
    assert processor.safety_token_id == before == len(processor.tokenizer) - 1
    text = processor.prompt("What is this?")
    ours = processor(images=images[:1], text=[text])["input_ids"][0]
    theirs = llava_processor(images=images[:1], text=[text])["input_ids"][0]
    at = ours.index(processor.safety_token_id)
    assert ours[:at] + ours[at + 1:] == theirs


def test_a_tokenizer_without_the_token_is_refused(llava_processor):
    with pytest.raises(ValueError, match="has no '<safety>' token"):
        SafeLlavaProcessor(image_processor=llava_processor.image_processor,
                           tokenizer=llava_processor.tokenizer, patch_size=8)


def test_save_and_load_keep_the_token(tiny, images, tmp_path):
    _, processor = tiny
    processor.save_pretrained(tmp_path)
    for loaded in (SafeLlavaProcessor.from_pretrained(tmp_path),
                   AutoProcessor.from_pretrained(tmp_path)):
        assert type(loaded) is SafeLlavaProcessor
        assert (loaded.safety_token, loaded.safety_token_id, loaded.use_safety_token) == (
            processor.safety_token, processor.safety_token_id, True)
        a = processor.generation_inputs(images[:2], ["Hi", "Describe the image in detail."])
        b = loaded.generation_inputs(images[:2], ["Hi", "Describe the image in detail."])
        assert all(torch.equal(a[key], b[key]) for key in a)
