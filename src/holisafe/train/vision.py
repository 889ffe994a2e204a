"""A stand-in for CLIP: pre-training a preset's vision tower on HoliSafe-Synth.

Real LLaVAs start from a vision encoder that already knows objects (CLIP, trained on web
images); the tiny preset's tower starts random, and no pretrained tower of its size exists
offline. Learning to see *through* the language model is slow: every step pays for the
language model, and a random tower, projector and head chained together learn for
several epochs before the head moves off the class prior. So, as the first stage of the
demo recipe, the tower learns on its own what each picture shows: the pictogram of every
HoliSafe-Synth training picture (30 objects: 19 harmful pictograms and 11 everyday
objects, read from ``synth_manifest.json``), through a linear probe on the mean of the
features LLaVA reads, which is then thrown away. The tower learns objects, not policy:
that the syringe means "drug related hazards", and what to answer about it, is left to the
SafeLLaVA (or LLaVA) trained on top, whose recipe points at the saved tower with
``model.vision_tower``. Every model of a comparison starts from the same tower, as real
LLaVAs share their CLIP. Each preset has its own tower (``safellava-tiny``: 8 px patches,
width 128; ``safellava-smol``: 16 px patches, width 192), so each needs its own folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from holisafe.data.images import open_image
from holisafe.data.loaders import DataSourceError, load_dataset
from holisafe.train.model import ModelSetupError

#: What a pretrained tower's folder records about how it was made.
RECORD_FILE = "vision_pretraining.json"


@dataclass
class VisionPretraining:
    """What :func:`pretrain_vision_tower` did."""

    out: Path
    classes: list[str]
    epochs: int
    seconds: float
    train_accuracy: float
    #: Accuracy on the pictures of the test split (never trained on), when it has one.
    test_accuracy: float | None


#: The presets whose tower stage 1 can train (``model.init: preset:<name>``).
TOWER_PRESETS = ("safellava-tiny", "safellava-smol")


def _pictures(source: str, split: str, image_processor, manifest: dict,
              classes: dict[str, int]):
    dataset = load_dataset(source, split=split)
    names = sorted({record.image for record in dataset})
    missing = [name for name in names if name not in manifest]
    if missing:
        raise DataSourceError(f"{len(missing)} {split} pictures are not in the manifest, e.g. "
                              f"{missing[0]!r}")
    images = [open_image(dataset.images.locate(name)) for name in names]
    pixels = image_processor(images=images, return_tensors="pt")["pixel_values"]
    labels = torch.tensor([classes[manifest[name]["pictogram"]] for name in names])
    return pixels, labels


def _fresh_tower(preset: str, seed: int) -> tuple[torch.nn.Module, Any, int]:
    """A preset's random vision tower (seeded), its image processor and the layer LLaVA
    reads."""
    if preset == "safellava-smol":
        from transformers import CLIPVisionModel

        from holisafe.models.safellava.smol import (
            SMOL_VISION_FEATURE_LAYER,
            smol_image_processor,
            smol_vision_config,
        )

        # Only the tower: the preset's language model is not needed to train it.
        torch.manual_seed(seed)
        return (CLIPVisionModel(smol_vision_config()), smol_image_processor(),
                SMOL_VISION_FEATURE_LAYER)
    if preset != "safellava-tiny":
        raise ModelSetupError(f"vision pre-training: no tower for preset {preset!r}; presets "
                              f"with one: {', '.join(TOWER_PRESETS)}")
    from holisafe.models.safellava import safellava_tiny

    model, processor = safellava_tiny(["picture"], seed=seed)
    return (model.model.vision_tower, processor.image_processor,
            model.config.vision_feature_layer)


def _features(tower: torch.nn.Module, pixels: torch.Tensor, layer: int) -> torch.Tensor:
    """The mean over patches of the hidden state LLaVA reads (its CLS token dropped)."""
    return tower(pixels, output_hidden_states=True).hidden_states[layer][:, 1:].mean(dim=1)


def shifted(pixels: torch.Tensor, most: int, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by up to ``most`` pixels each way, edges repeated (augmentation:
    the tower should not learn where in the picture a pictogram sits)."""
    if most == 0:
        return pixels
    padded = F.pad(pixels, (most,) * 4, mode="replicate")
    size = pixels.shape[-1]
    offsets = torch.randint(0, 2 * most + 1, (len(pixels), 2), generator=generator)
    return torch.stack([padded[i, :, y:y + size, x:x + size]
                        for i, (y, x) in enumerate(offsets.tolist())])


def pretrain_vision_tower(
    data: str | Path,
    out: str | Path,
    *,
    epochs: int = 20,
    batch_size: int = 32,
    learning_rate: float = 2e-3,
    shift: int = 4,
    seed: int = 0,
    preset: str = "safellava-tiny",
) -> VisionPretraining:
    """Train ``preset``'s vision tower to name HoliSafe-Synth pictograms; save it.

    ``data`` is a HoliSafe-Synth folder (records, images and ``synth_manifest.json``);
    only its train pictures are learned from, each randomly shifted by up to ``shift``
    pixels every time it is seen. The tower is saved in ``out`` as a ``CLIPVisionModel``
    (safetensors). One-cycle AdamW schedule, seeded.
    """
    from holisafe.data.synth import MANIFEST_FILE

    manifest_file = Path(data) / MANIFEST_FILE
    if not manifest_file.is_file():
        raise DataSourceError(f"{data}: no {MANIFEST_FILE}; vision pre-training learns the "
                              "pictograms of a HoliSafe-Synth folder")
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))["images"]
    names = sorted({picture["pictogram"] for picture in manifest.values()})
    classes = {name: index for index, name in enumerate(names)}

    torch.manual_seed(seed)
    tower, image_processor, layer = _fresh_tower(preset, seed)
    pixels, labels = _pictures(str(data), "train", image_processor, manifest, classes)
    probe = torch.nn.Linear(tower.config.hidden_size, len(classes))
    parameters = [*tower.parameters(), *probe.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0)
    steps_per_epoch = max(len(pixels) // batch_size, 1)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=learning_rate, total_steps=epochs * steps_per_epoch, pct_start=0.05)
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    tower.train()
    for _ in range(epochs):
        order = torch.randperm(len(pixels), generator=generator)
        for step in range(steps_per_epoch):
            batch = order[step * batch_size:(step + 1) * batch_size]
            logits = probe(_features(tower, shifted(pixels[batch], shift, generator), layer))
            F.cross_entropy(logits, labels[batch]).backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            optimizer.zero_grad()
            schedule.step()
    seconds = time.perf_counter() - started
    tower.eval()

    def accuracy(x: torch.Tensor, y: torch.Tensor) -> float:
        with torch.no_grad():
            predicted = torch.cat([probe(_features(tower, x[i:i + 256], layer)).argmax(-1)
                                   for i in range(0, len(x), 256)])
        return float((predicted == y).float().mean())

    test_accuracy = None
    try:
        test_pixels, test_labels = _pictures(str(data), "test", image_processor, manifest,
                                             classes)
        test_accuracy = accuracy(test_pixels, test_labels)
    except DataSourceError:
        pass
    out = Path(out)
    tower.save_pretrained(out)
    result = VisionPretraining(out, names, epochs, seconds, accuracy(pixels, labels),
                               test_accuracy)
    (out / RECORD_FILE).write_text(json.dumps({
        "data": str(data), "preset": preset, "classes": names, "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate, "shift": shift, "seed": seed, "seconds": round(seconds, 2),
        "train_accuracy": result.train_accuracy, "test_accuracy": test_accuracy,
    }, indent=2) + "\n", encoding="utf-8")
    return result


def ensure_vision_tower(
    folder: str | Path, data: str | Path, *, epochs: int = 20, batch_size: int = 32,
    learning_rate: float = 2e-3, shift: int = 4, seed: int = 0,
    preset: str = "safellava-tiny",
) -> Path:
    """The pretrained tower in ``folder``: made by :func:`pretrain_vision_tower` when
    missing, reused when it was made from the same data and settings.

    A file lock beside the folder lets several training processes share one tower (the
    first makes it, the others wait and reuse it). A folder made from other data or other
    settings is an error rather than silently replaced.
    """
    from filelock import FileLock

    from holisafe.data.synth import MANIFEST_FILE

    folder = Path(folder)
    manifest = Path(data) / MANIFEST_FILE
    if not manifest.is_file():
        raise DataSourceError(f"model.vision_pretraining: {data} has no {MANIFEST_FILE}; "
                              "stage 1 learns the pictograms of a HoliSafe-Synth folder")
    wanted = {"manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest(),
              "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
              "shift": shift, "seed": seed, "preset": preset}
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        record = folder / RECORD_FILE
        if record.is_file():
            # Towers made before presets had their own were the tiny preset's.
            made = {"preset": "safellava-tiny", **json.loads(record.read_text(encoding="utf-8"))}
            differs = sorted(key for key, value in wanted.items() if made.get(key) != value)
            if differs:
                raise ModelSetupError(
                    f"model.vision_tower: {folder} was pretrained with other "
                    f"{', '.join(differs)}; delete it or choose another folder")
            return folder
        if folder.exists():
            raise ModelSetupError(f"model.vision_tower: {folder} exists but holds no "
                                  f"{RECORD_FILE}; delete it or choose another folder")
        scratch = folder.with_name(f".{folder.name}.partial")
        if scratch.exists():
            shutil.rmtree(scratch)
        pretrain_vision_tower(data, scratch, epochs=epochs, batch_size=batch_size,
                              learning_rate=learning_rate, shift=shift, seed=seed,
                              preset=preset)
        made = json.loads((scratch / RECORD_FILE).read_text(encoding="utf-8"))
        (scratch / RECORD_FILE).write_text(json.dumps({**made, **wanted}, indent=2) + "\n",
                                           encoding="utf-8")
        os.replace(scratch, folder)
    return folder


def load_vision_tower(model: torch.nn.Module, folder: str | Path) -> None:
    """Copy a saved vision tower (``save_pretrained`` folder, safetensors) into ``model``.

    Every weight must match by name and shape; the message lists what does not.
    """
    from safetensors.torch import load_file

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"model.vision_tower: no .safetensors file in {folder}")
    state = {}
    for file in files:
        state.update(load_file(file))
    tower = model.model.vision_tower
    own = tower.state_dict()
    shapes = [key for key, value in state.items()
              if key in own and tuple(own[key].shape) != tuple(value.shape)]
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if shapes or missing or unexpected:
        raise ModelSetupError(
            f"model.vision_tower: {folder} does not fit this model's vision tower (shape "
            f"mismatch {shapes[:5]}, missing {missing[:5]}, unexpected {unexpected[:5]})")
    tower.load_state_dict(state)


__all__ = [
    "RECORD_FILE",
    "TOWER_PRESETS",
    "VisionPretraining",
    "ensure_vision_tower",
    "load_vision_tower",
    "pretrain_vision_tower",
    "shifted",
]
