"""The training recipe as one validated object, read from YAML with command-line overrides.

A recipe is a YAML file of three sections, ``model``, ``data`` and ``training``; every field
is checked here (unknown keys included) before anything is built, so a typo fails in a
second with its key named rather than an hour into a run. ``--set key=value`` overrides
any field by its dotted path (``--set training.learning_rate=1e-3``); the value is read as
YAML, so numbers, booleans, ``null`` and lists (``[a, b]``) work as they do in the file.
See ``docs/training.md`` for every field.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

#: The presets a model can start from (``init: preset:<name>``): ``safellava-tiny`` (from
#: scratch) and ``safellava-smol`` (SmolLM2-135M-Instruct, an optional extra).
PRESETS: tuple[str, ...] = ("safellava-tiny", "safellava-smol")
PRESET_PREFIX = "preset:"

#: The parts of a LLaVA whose learning rate can be set on its own.
PARTS: tuple[str, ...] = ("vision_tower", "projector", "language_model", "safety")


class ConfigError(ValueError):
    """A recipe that cannot be used; the message names the file, the key and the reason."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoraSettings(_Section):
    """LoRA adapters on the language model's linear layers (via ``peft``)."""

    r: int = Field(16, ge=1)
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    #: Names of linear layers inside the language model to adapt (vision tower excluded).
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                       "up_proj", "down_proj")


class VisionPretrainingSettings(_Section):
    """Stage 1 for a from-scratch preset: the vision tower first learns to name the
    HoliSafe-Synth pictograms on its own (see :mod:`holisafe.train.vision`)."""

    epochs: int = Field(20, ge=1)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(2e-3, gt=0)
    #: Random shift of every picture, in pixels (augmentation).
    shift: int = Field(4, ge=0)


class ModelSettings(_Section):
    """What to train and which of its parts learn."""

    #: ``safellava``: LLaVA plus the safety meta token and head; ``llava``: the plain LLaVA
    #: baseline (no token, no head), trained by the same code on the same data.
    architecture: Literal["safellava", "llava"] = "safellava"
    #: ``preset:safellava-tiny`` (random weights, built from scratch),
    #: ``preset:safellava-smol`` (SmolLM2-135M-Instruct with a from-scratch vision tower), a
    #: llava-hf checkpoint folder (converted to SafeLLaVA on the fly) or a SafeLLaVA
    #: checkpoint folder.
    init: str = "preset:safellava-tiny"
    #: ``safellava-tiny`` only: datasets whose texts train the word-level tokenizer
    #: (default: the training data).
    tokenizer_data: tuple[str, ...] = ()
    #: A saved vision tower (a ``save_pretrained`` folder, e.g. from
    #: :func:`holisafe.train.vision.pretrain_vision_tower`) to start the preset's tower from.
    vision_tower: str | None = None
    #: When set, ``vision_tower`` is made by stage 1 on ``data.train`` if it does not exist
    #: yet (and reused, by every recipe pointing at it, once it does).
    vision_pretraining: VisionPretrainingSettings | None = None
    safety_feature: Literal["smt", "pool"] = "smt"
    #: λ in ``loss = LM loss + λ · safety loss``.
    safety_loss_weight: float = Field(1.0, ge=0)
    #: Replaces the head's dropout (0.1) when set.
    safety_head_dropout: float | None = Field(None, ge=0, lt=1)
    freeze_vision_tower: bool = True
    #: How the language model learns: all weights, LoRA adapters, or not at all.
    language_model: Literal["full", "lora", "frozen"] = "full"
    lora: LoraSettings = LoraSettings()
    #: LoRA only: merge the adapters into the saved final model (a plain checkpoint).
    merge_lora: bool = True

    @property
    def preset(self) -> str | None:
        """The preset name when ``init`` names one, else None (a checkpoint folder)."""
        return self.init.removeprefix(PRESET_PREFIX) if self.init.startswith(PRESET_PREFIX) \
            else None

    @model_validator(mode="after")
    def _pretraining_has_a_place(self) -> ModelSettings:
        if self.vision_pretraining is not None and self.vision_tower is None:
            raise ValueError("vision_pretraining needs vision_tower: the folder to save the "
                             "pretrained tower in (and share it between recipes)")
        return self

    @model_validator(mode="after")
    def _known_preset(self) -> ModelSettings:
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"init: unknown preset {self.preset!r}; known presets: "
                             f"{', '.join(PRESET_PREFIX + p for p in PRESETS)}")
        return self


class DataSettings(_Section):
    """Where the training samples come from and how they are turned into targets."""

    #: HoliSafe-format training data: a dataset folder, JSON/JSONL or Parquet file.
    train: str
    split: str = "train"
    #: Images root for JSON/JSONL files (default: ``images/`` beside the file).
    images: str | None = None
    #: ``reference``: each record's reference answer. ``helpful_only``: refusals replaced
    #: by a compliant answer (HoliSafe-Synth only), to train an unaligned twin.
    answers: Literal["reference", "helpful_only"] = "reference"
    #: General instruction data in LLaVA format (JSON list or JSONL of ``{id, image,
    #: conversations}``), mixed in at ``general_ratio``.
    general: str | None = None
    general_images: str | None = None
    #: Share of general samples in the mixed training set, in [0, 1).
    general_ratio: float = Field(0.0, ge=0, lt=1)
    #: Longest tokenized sample; longer ones are cut at the end (never inside an image).
    max_length: int = Field(2048, ge=8)
    #: Optional held-out data for the evaluation loss and head accuracy during training.
    eval: str | None = None
    eval_split: str = "test"
    eval_images: str | None = None
    #: Evaluate on the first N held-out records only (None: all).
    eval_limit: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _general_needs_ratio(self) -> DataSettings:
        if self.general is None and self.general_ratio > 0:
            raise ValueError("general_ratio > 0 needs `general` (LLaVA-format instruction data)")
        if self.general is not None and self.general_ratio == 0:
            raise ValueError("`general` data is given but general_ratio is 0: set the share "
                             "of general samples, e.g. 0.2")
        return self


class TrainingSettings(_Section):
    """The optimisation: steps, batch, learning rates, precision, checkpoints, logs."""

    output_dir: str
    seed: int = 0
    #: Optimiser steps; when None, ``epochs`` passes over the data.
    max_steps: int | None = Field(None, ge=1)
    epochs: float = Field(1.0, gt=0)
    #: Samples per process per forward pass.
    batch_size: int = Field(8, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    learning_rate: float = Field(2e-5, gt=0)
    #: Per-part learning rates overriding ``learning_rate`` (keys: vision_tower, projector,
    #: language_model, safety).
    learning_rates: dict[str, float] = Field(default_factory=dict)
    lr_scheduler: Literal["constant", "constant_with_warmup", "linear", "cosine"] = "cosine"
    #: Warm-up: a number of steps (>= 1) or a share of all steps (< 1).
    warmup: float = Field(0.03, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, ge=0)
    #: bfloat16 mixed precision: ``auto`` uses it where the GPU supports it.
    bf16: bool | Literal["auto"] = "auto"
    gradient_checkpointing: bool = False
    #: Torch CPU threads per process (default: the cores divided among local processes).
    torch_threads: int | None = Field(None, ge=1)
    save_steps: int = Field(500, ge=1)
    save_total_limit: int | None = Field(2, ge=1)
    logging_steps: int = Field(10, ge=1)
    eval_steps: int | None = Field(None, ge=1)
    eval_batch_size: int = Field(32, ge=1)
    #: Log to TensorBoard (``auto``: when the ``tensorboard`` package is installed).
    tensorboard: bool | Literal["auto"] = "auto"
    #: The rich progress bar and log lines in the terminal.
    progress: bool = True
    dataloader_workers: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _known_parts(self) -> TrainingSettings:
        unknown = sorted(set(self.learning_rates) - set(PARTS))
        if unknown:
            raise ValueError(f"learning_rates: unknown part(s) {', '.join(unknown)}; parts are "
                             f"{', '.join(PARTS)}")
        bad = {part: lr for part, lr in self.learning_rates.items() if lr < 0}
        if bad:
            raise ValueError(f"learning_rates must be non-negative, got {bad}")
        return self


class TrainConfig(_Section):
    """A whole training recipe (see ``docs/training.md``)."""

    model: ModelSettings = ModelSettings()
    data: DataSettings
    training: TrainingSettings

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` as (["a", "b", "c"], value read as YAML)."""
    key, equals, value = text.partition("=")
    key = key.strip()
    if not equals or not key:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. training.max_steps=100")
    path = key.split(".")
    if any(not part for part in path):
        raise ConfigError(f"--set {text!r}: empty part in key {key!r}")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"--set {text!r}: value is not valid YAML: {error}") from None
    return path, parsed


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of ``raw`` with each ``key=value`` override written at its dotted path."""
    result = _deep_copy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for depth, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(path[:depth + 1])
                raise ConfigError(f"--set {text!r}: {where} is a value, not a section")
            node = child
        node[path[-1]] = value
    return result


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _deep_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_deep_copy(item) for item in value]
    return value


def config_from_dict(raw: Mapping[str, Any], *, source: str = "<config>") -> TrainConfig:
    """Validate a recipe; :class:`ConfigError` lists every wrong key of ``source``."""
    try:
        return TrainConfig.model_validate(dict(raw))
    except ValidationError as error:
        lines = []
        for problem in error.errors():
            key = ".".join(str(part) for part in problem["loc"]) or "(top level)"
            message = problem["msg"].removeprefix("Value error, ")
            if problem["type"] == "extra_forbidden":
                message = "unknown key"
            elif problem["type"] == "missing":
                message = "missing required key"
            lines.append(f"  {key}: {message}")
        raise ConfigError(f"{source}: invalid training config:\n" + "\n".join(lines)) from None


def load_config(path: str | os.PathLike[str], overrides: Iterable[str] = ()) -> TrainConfig:
    """Read a YAML recipe, apply ``--set`` overrides and validate the result.

    Relative data, tokenizer and model paths stay relative to the working directory, as on
    the command line (recipes in ``configs/`` are written to run from the repository root).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with model, data and training sections")
    return config_from_dict(apply_overrides(raw, overrides), source=str(path))


__all__ = [
    "PARTS",
    "PRESETS",
    "ConfigError",
    "DataSettings",
    "LoraSettings",
    "ModelSettings",
    "TrainConfig",
    "TrainingSettings",
    "VisionPretrainingSettings",
    "apply_overrides",
    "config_from_dict",
    "load_config",
    "parse_override",
]
