"""Attention analysis: per-layer shares from generated tokens to the meta token and to the
visual tokens, checked against the attentions `generate` reports while decoding."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from holisafe.analysis import (
    AttentionProfile,
    analyze_attention,
    attention_plot,
    sample_attention,
    write_attention,
)
from holisafe.cli import app
from holisafe.data.loaders import load_dataset
from holisafe.models.safellava import (
    SafeLlavaConfig,
    SafeLlavaForConditionalGeneration,
    SafeLlavaProcessor,
    safellava_tiny,
)
from safellava_data import TEXTS, make_dataset, noise_image, save_tiny

PNG = b"\x89PNG\r\n\x1a\n"
QUERY = "What is shown in this picture?"


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny():
    model, processor = safellava_tiny(TEXTS, seed=0)
    model.set_attn_implementation("eager")
    return model, processor


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"))


def test_shapes_and_values_are_valid_shares(tiny):
    model, processor = tiny
    sample = sample_attention(model, processor, noise_image(0), QUERY, max_new_tokens=5,
                              sample_id=7)
    layers = model.config.text_config.num_hidden_layers
    assert sample.id == 7 and 1 <= sample.generated <= 5
    assert sample.visual_tokens == model.config.image_seq_length == 16
    assert len(sample.smt) == len(sample.visual) == len(sample.visual_total) == layers
    for smt, visual, total in zip(sample.smt, sample.visual, sample.visual_total, strict=True):
        assert 0.0 < smt < 1.0 and 0.0 < visual < 1.0 and 0.0 < total <= 1.0
        assert visual * sample.visual_tokens == pytest.approx(total, rel=1e-9)  # per token
        assert smt + total <= 1.0 + 1e-6  # shares of one softmax row


def test_rows_are_what_each_generated_token_attended_to_while_decoding(tiny):
    model, processor = tiny
    image, steps = noise_image(1), 5
    sample = sample_attention(model, processor, image, QUERY, max_new_tokens=steps)
    assert sample.generated == steps  # no end of sequence in this answer: all rows to compare
    inputs = processor.generation_inputs([image], [QUERY])
    with torch.no_grad():
        decoded = model.generate(**inputs, do_sample=False, max_new_tokens=steps + 1,
                                 output_attentions=True, return_dict_in_generate=True)
    ids = decoded.sequences[0]
    visual = ids == model.config.image_token_id
    smt = ids == model.config.safety_token_id
    # step k feeds the token generated at step k-1: its one attention row per layer
    rows = decoded.attentions[1:steps + 1]
    for layer in range(model.config.text_config.num_hidden_layers):
        per_token = [step[layer][0, :, -1].mean(dim=0) for step in rows]  # mean over heads
        keys = [len(row) for row in per_token]
        expected_smt = sum(float(row[smt[:n]].sum()) for row, n in zip(per_token, keys,
                                                                        strict=True)) / steps
        expected_total = sum(float(row[visual[:n]].sum()) for row, n in zip(per_token, keys,
                                                                            strict=True)) / steps
        assert sample.smt[layer] == pytest.approx(expected_smt, rel=1e-4)
        assert sample.visual_total[layer] == pytest.approx(expected_total, rel=1e-4)
        assert sample.visual[layer] == pytest.approx(expected_total / int(visual.sum()),
                                                     rel=1e-4)


def test_sdpa_attention_is_refused_with_the_fix(tmp_path):
    model, processor = safellava_tiny(TEXTS, seed=0)  # sdpa by default
    with pytest.raises(ValueError, match="attn_implementation='eager'"):
        sample_attention(model, processor, noise_image(0), QUERY)


def test_profile_means_over_samples_and_filters(tiny, data):
    model, processor = tiny
    dataset = load_dataset(data)
    profile = analyze_attention(model, processor, dataset, limit=4, max_new_tokens=3,
                                model_name="tiny")
    assert profile.n == len(profile.samples) == 4 and profile.layers == 2
    assert [s.id for s in profile.samples] == sorted(r.id for r in dataset.records)[:4]
    for layer in range(profile.layers):
        assert profile.smt[layer] == pytest.approx(
            sum(s.smt[layer] for s in profile.samples) / 4, rel=1e-12)
        assert profile.visual[layer] == pytest.approx(
            sum(s.visual[layer] for s in profile.samples) / 4, rel=1e-12)
    unsafe = analyze_attention(model, processor, dataset, types=["UUU"], max_new_tokens=2)
    uuu = {r.id for r in dataset.records if r.type == "UUU"}
    assert {s.id for s in unsafe.samples} == uuu and unsafe.n == len(uuu) == 3


def test_a_missing_image_is_listed_not_fatal(tiny, data, tmp_path):
    broken = tmp_path / "data"
    broken.mkdir()
    (broken / "images").symlink_to(data / "images")
    records = json.loads((data / "holisafe_bench.json").read_text())
    records[0]["image"] = "missing.png"
    (broken / "holisafe_bench.json").write_text(json.dumps(records))
    profile = analyze_attention(*tiny, load_dataset(broken), limit=2, max_new_tokens=2)
    assert profile.n == 1 and profile.failed[0]["id"] == records[0]["id"]
    assert "missing.png" in profile.failed[0]["error"]


def test_a_model_without_the_meta_token_has_no_smt_curve(data):
    model, processor = safellava_tiny(TEXTS, seed=0, safety_feature="pool")
    fields = model.config.to_dict() | {"use_safety_token": False, "safety_token_id": None}
    no_token = SafeLlavaForConditionalGeneration(SafeLlavaConfig.from_dict(fields)).eval()
    no_token.generation_config = model.generation_config
    no_token.set_attn_implementation("eager")
    plain = SafeLlavaProcessor(
        image_processor=processor.image_processor, tokenizer=processor.tokenizer,
        patch_size=processor.patch_size, chat_template=processor.chat_template,
        vision_feature_select_strategy=processor.vision_feature_select_strategy,
        num_additional_image_tokens=processor.num_additional_image_tokens,
        use_safety_token=False,
    )
    profile = analyze_attention(no_token, plain, load_dataset(data), limit=2, max_new_tokens=2)
    assert profile.smt is None and all(s.smt is None for s in profile.samples)
    assert len(profile.visual) == 2
    assert attention_plot(profile).startswith(PNG)


def test_written_files_round_trip(tiny, data, tmp_path):
    profile = analyze_attention(*tiny, load_dataset(data), limit=2, max_new_tokens=2)
    json_path, plot_path = write_attention(profile, tmp_path / "out")
    assert AttentionProfile.model_validate_json(json_path.read_text()) == profile
    assert plot_path.read_bytes().startswith(PNG)
    empty = profile.model_copy(update={"n": 0, "samples": [], "smt": [], "visual": [],
                                       "visual_total": []})
    assert attention_plot(empty).startswith(PNG)


def test_cli_analyze_attention_end_to_end(data, tmp_path):
    model = save_tiny(tmp_path / "model")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["analyze", "attention", "--model", str(model), "--data",
                                      str(data), "--out", str(out), "--limit", "3",
                                      "--max-new-tokens", "3", "--device", "cpu"],
                                terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "meta token" in result.output and "visual (per token)" in result.output
    written = json.loads((out / "attention.json").read_text())
    assert written["n"] == 3 and written["layers"] == 2 and len(written["smt"]) == 2
    assert all(0 < value < 1 for value in written["smt"] + written["visual"])
    assert (out / "attention.png").read_bytes().startswith(PNG)

    refused = CliRunner().invoke(app, ["analyze", "attention", "--model", str(model), "--data",
                                       str(data), "--out", str(out), "--type", "XYZ"])
    assert refused.exit_code == 2 and "unknown --type XYZ" in refused.stderr
