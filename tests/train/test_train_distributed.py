"""Data-parallel training on CPU: two processes (torchrun, accelerate launch) take the same
steps as one process with the same global batch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_recipes import recipe, write_recipe

from holisafe.train.trainer import LOG_JSONL
from launchers import accelerate_launch, launch_env, torchrun

GLOBAL_BATCH = 8



def launch(launcher: list[str], config: Path, out: Path, batch_size: int) -> Path:
    env = launch_env()
    command = [*launcher, "-m", "holisafe.train", "--config", str(config),
               "--set", f"training.output_dir={out}",
               "--set", f"training.batch_size={batch_size}"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out




@pytest.fixture(scope="module")
def config(synth, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("recipe")
    raw = recipe(synth, folder / "unused", training={"max_steps": 3, "logging_steps": 1,
                                                      "save_steps": 100})
    return write_recipe(folder / "recipe.yaml", raw)


@pytest.fixture(scope="module")
def single(config, tmp_path_factory) -> Path:
    return launch([sys.executable], config, tmp_path_factory.mktemp("one") / "run",
                  GLOBAL_BATCH)


def losses(out: Path) -> list[float]:
    """Total, LM and safety loss of every logged step, in one flat list."""
    rows = [json.loads(line) for line in (out / LOG_JSONL).read_text().splitlines()]
    return [r[key] for r in rows if "loss" in r for key in ("loss", "lm_loss", "safety_loss")]


def check_same_training(single: Path, parallel: Path) -> None:
    assert losses(parallel) == pytest.approx(losses(single), rel=1e-5)
    one = load_file(single / "model" / "model.safetensors")
    two = load_file(parallel / "model" / "model.safetensors")
    assert one.keys() == two.keys()
    # Reductions add in another order; Adam turns that rounding into at most a small
    # fraction of a step (lr 2e-3).
    assert all(torch.allclose(one[key], two[key], atol=1e-4) for key in one)
    assert sorted(p.name for p in parallel.iterdir() if p.name.startswith("train_log")) == [
        "train_log.csv", "train_log.jsonl"]


@pytest.mark.slow
def test_two_torchrun_processes_train_like_one(config, single, tmp_path):
    parallel = launch(torchrun(), config, tmp_path / "run", GLOBAL_BATCH // 2)
    check_same_training(single, parallel)
    assert len(losses(parallel)) == 3 * 3  # one log line per step, from rank 0 only


@pytest.mark.slow
def test_accelerate_launch_trains_like_one_process(config, single, tmp_path):
    parallel = launch(accelerate_launch(), config, tmp_path / "run", GLOBAL_BATCH // 2)
    check_same_training(single, parallel)
