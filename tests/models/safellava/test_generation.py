"""One-pass generation with safety: same texts as generate, safety from the same prefill."""

from __future__ import annotations

import pytest
import torch

from holisafe.models.safellava import answer_with_safety, generate_with_safety

QUERIES = ["What is shown in this picture?", "How can I use this to hurt my neighbour?",
           "Describe the image in detail."]


class ForwardCounter:
    """Counts the model's top-level forward calls while active."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def __enter__(self):
        self.handle = self.model.register_forward_hook(self._count)
        return self

    def _count(self, *_):
        self.calls += 1

    def __exit__(self, *_):
        self.handle.remove()


@pytest.mark.parametrize("fixture", ["tiny", "tiny_pool"])
def test_one_pass_equals_generate_and_adds_no_forward_pass(fixture, images, request):
    model, processor = request.getfixturevalue(fixture)
    inputs = processor.generation_inputs(images, QUERIES)
    settings = {"max_new_tokens": 6, "do_sample": False}
    with ForwardCounter(model) as plain:
        expected = model.generate(**inputs, **settings)
    with ForwardCounter(model) as one_pass:
        result = generate_with_safety(model, **inputs, **settings)
    assert torch.equal(result.sequences, expected)
    assert one_pass.calls == plain.calls
    with torch.no_grad():
        prefill = model(**inputs)
    torch.testing.assert_close(result.safety_probs, prefill.safety_probs)
    assert result.safety_sample_index.tolist() == [0, 1, 2]


def test_kv_cache_generation_equals_generation_without_cache(tiny, images):
    model, processor = tiny
    inputs = processor.generation_inputs(images, QUERIES)
    cached = generate_with_safety(model, **inputs, max_new_tokens=8, do_sample=False)
    uncached = generate_with_safety(model, **inputs, max_new_tokens=8, do_sample=False,
                                    use_cache=False)
    assert torch.equal(cached.sequences, uncached.sequences)
    torch.testing.assert_close(cached.safety_probs, uncached.safety_probs)


@pytest.mark.parametrize("fixture", ["tiny", "tiny_pool"])
def test_batch_answers_equal_answers_one_by_one(fixture, images, request):
    model, processor = request.getfixturevalue(fixture)
    prompts_images = [images[0], None, images[1], images[2]]
    queries = ["Describe the image in detail.", "Hi", "What?", QUERIES[1]]
    batched = answer_with_safety(model, processor, prompts_images, queries, max_new_tokens=8,
                                 batch_size=4)
    single = answer_with_safety(model, processor, prompts_images, queries, max_new_tokens=8,
                                batch_size=1)
    assert [a.text for a in batched] == [a.text for a in single]
    assert [a.safety_pred for a in batched] == [a.safety_pred for a in single]
    assert batched[1].safety_probs is None and batched[1].safety_pred is None
    for a, b in zip(batched, single, strict=True):
        if a.safety_probs is not None:
            torch.testing.assert_close(torch.tensor(a.safety_probs), torch.tensor(b.safety_probs))


def test_answers_decode_the_new_tokens_of_generate(tiny, images):
    model, processor = tiny
    answers = answer_with_safety(model, processor, images[:2], QUERIES[:2], max_new_tokens=5)
    inputs = processor.generation_inputs(images[:2], QUERIES[:2])
    expected = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    new = expected[:, inputs["input_ids"].shape[1]:]
    eos = model.generation_config.eos_token_id
    for answer, tokens in zip(answers, new.tolist(), strict=True):
        # A random model may stop early: the answer ends where generate's first EOS is.
        stop = tokens.index(eos) if eos in tokens else None
        kept = tokens if stop is None else tokens[:stop + 1]
        assert answer.text == processor.tokenizer.decode(kept, skip_special_tokens=True).strip()
        assert (answer.new_tokens, answer.finish_reason) == (
            len(kept), "length" if stop is None else "stop")
        probs = torch.tensor(answer.safety_probs)
        assert model.config.safety_classes[int(probs.argmax())] == answer.safety_pred


def test_an_end_of_sequence_token_stops_the_answer(tiny, images):
    model, processor = tiny
    inputs = processor.generation_inputs(images[:1], QUERIES[:1])
    generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    first_token = int(generated[0, inputs["input_ids"].shape[1]])
    first = answer_with_safety(model, processor, images[:1], QUERIES[:1], max_new_tokens=3)[0]
    stopped = answer_with_safety(model, processor, images[:1], QUERIES[:1], max_new_tokens=3,
                                 eos_token_id=first_token)[0]
    assert (stopped.new_tokens, stopped.finish_reason) == (1, "stop")
    assert first.text.startswith(stopped.text)


def test_generated_text_never_holds_placeholders(tiny, images):
    model, processor = tiny
    inputs = processor.generation_inputs(images, QUERIES)
    out = model.generate(**inputs, max_new_tokens=30, do_sample=False)
    new = out[:, inputs["input_ids"].shape[1]:]
    assert not torch.isin(new, torch.tensor([model.config.safety_token_id,
                                             model.config.image_token_id])).any()


def test_chunked_prefill_is_refused(tiny, images):
    model, processor = tiny
    inputs = processor.generation_inputs(images[:1], QUERIES[:1])
    with pytest.raises(ValueError, match="prefill_chunk_size"):
        generate_with_safety(model, **inputs, max_new_tokens=2, prefill_chunk_size=16)


def test_mismatched_inputs_are_refused(tiny, images):
    model, processor = tiny
    with pytest.raises(ValueError, match="3 images for 2 queries"):
        answer_with_safety(model, processor, images, QUERIES[:2])
    with pytest.raises(ValueError, match="batch_size"):
        answer_with_safety(model, processor, images, QUERIES, batch_size=0)


def test_one_pass_works_through_a_lora_wrapper(images):
    from peft import LoraConfig, get_peft_model
    from tiny_safellava import TEXTS

    from holisafe.models.safellava import safellava_tiny

    model, processor = safellava_tiny(TEXTS, seed=2)
    wrapped = get_peft_model(model, LoraConfig(
        r=4, target_modules=r".*language_model.*\.(q_proj|v_proj)",
        modules_to_save=["safety_token", "safety_head"])).eval()
    inputs = processor.generation_inputs(images[:2], QUERIES[:2])
    result = generate_with_safety(wrapped, **inputs, max_new_tokens=4, do_sample=False)
    assert torch.equal(result.sequences,
                       wrapped.generate(**inputs, max_new_tokens=4, do_sample=False))
    assert result.safety_probs.shape == (2, 20)


def test_a_model_without_safellava_is_refused(images):
    with pytest.raises(TypeError, match="holds no SafeLlavaForConditionalGeneration"):
        generate_with_safety(torch.nn.Linear(2, 2))
