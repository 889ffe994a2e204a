"""``holisafe demo --preset smol``'s pipeline: a recipe that starts from another demo model's
output waits for that model and is pointed at it inside the demo folder.

SmolLM2 is not needed: the preset's two recipes are replaced by stand-ins of the same
shape on the tiny preset (stage A a plain LLaVA on helpful answers, stage B a SafeLLaVA
whose ``model.init`` is stage A's output), two steps each.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from holisafe.demo import PRESETS, run_demo

pytestmark = pytest.mark.slow

SMOL = PRESETS["smol"]
TRAINING = {"max_steps": 2, "batch_size": 8, "learning_rate": 2.0e-3, "save_steps": 1000,
            "logging_steps": 1, "torch_threads": 1}
STAGE_A = {
    "model": {"architecture": "llava", "init": "preset:safellava-tiny",
              "vision_tower": "runs/demo/stand-in-tower", "vision_pretraining": {"epochs": 1}},
    "data": {"train": "runs/demo/synth", "answers": "helpful_only"},
    "training": {"output_dir": "runs/demo/unaligned", **TRAINING},
}
STAGE_B = {
    "model": {"architecture": "safellava", "init": "runs/demo/unaligned/model",
              "language_model": "lora"},
    "data": {"train": "runs/demo/synth", "answers": "reference"},
    "training": {"output_dir": "runs/demo/safe", **TRAINING},
}
OPTIONS = {"max_new_tokens": 4, "limit": 10}


def quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("configs")
    names = {m.folder: m.recipe for m in SMOL.models if m.trained}
    (folder / f"{names['llava-smol-unaligned']}.yaml").write_text(yaml.safe_dump(STAGE_A))
    (folder / f"{names['safellava-smol']}.yaml").write_text(yaml.safe_dump(STAGE_B))
    return folder


def test_stage_b_trains_from_stage_a_after_it_and_again_when_it_changes(tmp_path, configs):
    out = tmp_path / "demo"
    result = run_demo(out, "smol", console=quiet(), configs_dir=configs, **OPTIONS)
    unaligned, safe = out / "train" / "llava-smol-unaligned", out / "train" / "safellava-smol"
    ran = yaml.safe_load((safe / "train_config.yaml").read_text())
    assert ran["model"]["init"] == str(unaligned / "model")
    # B was built (its recipe written) only once A's final model was saved.
    assert (safe / "train_config.yaml").stat().st_mtime >= \
        (unaligned / "model" / "model.safetensors").stat().st_mtime
    assert [row.model for row in result.boards[0].rows] == [m.name for m in SMOL.models]
    assert result.guard.model == "SafeLLaVA-smol"
    state = json.loads((out / "demo.json").read_text())
    assert state["preset"] == "smol" and state["scale"] == "small"

    again = run_demo(out, "smol", console=quiet(), configs_dir=configs, **OPTIONS)
    assert all(stage.skipped for stage in again.stages if stage.name != "write the report")

    # A newer stage-A recipe retrains A, and so B, which starts from it.
    before = (safe / "model" / "model.safetensors").stat().st_mtime
    later = time.time() + 1
    os.utime(configs / f"{SMOL.unaligned.recipe}.yaml", (later, later))
    third = run_demo(out, "smol", console=quiet(), configs_dir=configs, **OPTIONS)
    assert not third.stages[1].skipped
    assert (safe / "model" / "model.safetensors").stat().st_mtime > before
