"""The model a recipe trains: where it starts, which parts learn, how it is saved.

Starting points (``model.init``):

* ``preset:safellava-tiny``: random weights from scratch, with a word-level tokenizer built
  from the training texts (:func:`holisafe.models.safellava.safellava_tiny`);
* ``preset:safellava-smol``: SmolLM2-135M-Instruct's language model and tokenizer with a
  random vision tower, projector, meta token and head
  (:func:`holisafe.models.safellava.safellava_smol`);
* a llava-hf checkpoint folder: trained as is (``architecture: llava``) or converted to
  SafeLLaVA on the fly (meta token and head added, every LLaVA weight kept);
* a SafeLLaVA checkpoint folder: trained further.

``architecture: llava`` is the baseline without meta token and head: the same trainer on
the same data, so that the safety token's contribution can be measured.

Freezing: the vision tower is frozen by default; the projector, the meta token and the
head always learn; the language model learns fully, through LoRA adapters (``peft``, the
token and head as ``modules_to_save``) or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoProcessor,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)

from holisafe.models.safellava import (
    SafeLlavaConfig,
    SafeLlavaForConditionalGeneration,
    SmolNotInstalledError,
    convert_llava_checkpoint,
    safellava_smol,
    safellava_tiny,
)
from holisafe.train.config import PARTS, ModelSettings

#: SafeLLaVA's own parts, trained in every mode (PEFT ``modules_to_save`` under LoRA).
SAFETY_MODULES: tuple[str, ...] = ("safety_token", "safety_head")
PROJECTOR = "multi_modal_projector"
VISION_TOWER = "vision_tower"
_SAFETY_FIELDS = tuple(SafeLlavaConfig.__annotations__)


class ModelSetupError(ValueError):
    """The recipe's model cannot be built; the message says which field to change."""


def build_model(
    settings: ModelSettings, *, seed: int, tokenizer_texts: Callable[[], list[str]]
) -> tuple[torch.nn.Module, Any]:
    """The model (float32, train mode, nothing frozen yet) and its processor.

    ``tokenizer_texts`` is called only for a preset, whose vocabulary is built from them.
    """
    if settings.preset == "safellava-smol":
        try:
            model, processor = safellava_smol(seed=seed, safety_feature=settings.safety_feature)
        except SmolNotInstalledError as error:
            raise ModelSetupError(f"model.init: preset:safellava-smol: {error}") from None
        if settings.architecture == "llava":
            model, processor = plain_llava(model, processor, seed=seed, keep_weights=True)
    elif settings.preset is not None:
        model, processor = safellava_tiny(tokenizer_texts(), seed=seed,
                                          safety_feature=settings.safety_feature)
        if settings.architecture == "llava":
            model, processor = plain_llava(model, processor, seed=seed)
    else:
        model, processor = _from_checkpoint(settings)
    if settings.vision_tower is not None:
        from holisafe.train.vision import load_vision_tower

        load_vision_tower(model, settings.vision_tower)
    if isinstance(model, SafeLlavaForConditionalGeneration):
        model.config.safety_loss_weight = settings.safety_loss_weight
        if settings.safety_head_dropout is not None:
            model.config.safety_head_dropout = settings.safety_head_dropout
            for module in model.safety_head.modules():
                if isinstance(module, torch.nn.Dropout):
                    module.p = settings.safety_head_dropout
    return model.float().train(), processor


def plain_llava(
    model: SafeLlavaForConditionalGeneration, processor: Any, *, seed: int,
    keep_weights: bool = False,
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """A plain LLaVA of the same architecture and tokenizer as ``model``: random (seeded),
    or with ``keep_weights`` every weight of ``model`` but the meta token and head (a
    preset with a pretrained language model keeps it).

    The meta-token placeholder stays in the vocabulary (unused), so the SafeLLaVA and its
    baseline see the same token ids for every text.
    """
    fields = model.config.to_dict()
    for key in (*_SAFETY_FIELDS, "model_type", "architectures", "transformers_version"):
        fields.pop(key, None)
    torch.manual_seed(seed)
    llava = LlavaForConditionalGeneration(LlavaConfig(**fields))
    if keep_weights:
        state = {key: value for key, value in model.state_dict().items()
                 if not key.startswith(model.safety_weight_prefixes)}
        llava.load_state_dict(state)
        llava.tie_weights()
    llava.generation_config = model.generation_config
    plain = LlavaProcessor(
        image_processor=processor.image_processor,
        tokenizer=processor.tokenizer,
        patch_size=processor.patch_size,
        vision_feature_select_strategy=processor.vision_feature_select_strategy,
        chat_template=processor.chat_template,
        num_additional_image_tokens=processor.num_additional_image_tokens,
    )
    return llava, plain


def checkpoint_type(folder: str | Path) -> str:
    """The ``model_type`` in a checkpoint folder's ``config.json``."""
    config_file = Path(folder) / "config.json"
    if not config_file.is_file():
        raise ModelSetupError(f"model.init: {folder} is neither a preset (preset:safellava-tiny) "
                              "nor a checkpoint folder with a config.json")
    try:
        return json.loads(config_file.read_text(encoding="utf-8"))["model_type"]
    except (OSError, ValueError, KeyError) as error:
        raise ModelSetupError(f"model.init: {config_file} has no readable model_type "
                              f"({error})") from None


def _from_checkpoint(settings: ModelSettings) -> tuple[torch.nn.Module, Any]:
    folder = Path(settings.init).expanduser()
    kind = checkpoint_type(folder)
    if kind == "llava" and settings.architecture == "llava":
        model = LlavaForConditionalGeneration.from_pretrained(folder, use_safetensors=True,
                                                              dtype=torch.float32)
        return model, AutoProcessor.from_pretrained(folder)
    if kind == "llava":
        return convert_llava_checkpoint(folder, safety_feature=settings.safety_feature)
    if kind == "safellava" and settings.architecture == "safellava":
        from holisafe.models.safellava.guard import load_safellava

        return load_safellava(folder, device="cpu", dtype="float32")
    if kind == "safellava":
        raise ModelSetupError(f"model.init: {folder} is a SafeLLaVA; architecture llava trains "
                              "a plain LLaVA: start it from a LLaVA checkpoint or the preset")
    raise ModelSetupError(f"model.init: {folder} holds a {kind!r} model; expected a LLaVA "
                          "(llava-hf) or SafeLLaVA checkpoint")


def parameter_part(name: str) -> str:
    """Which part of the model a parameter belongs to (one of :data:`PARTS`)."""
    if f"{VISION_TOWER}." in name:
        return "vision_tower"
    if f"{PROJECTOR}." in name:
        return "projector"
    if any(f"{module}." in name or name.startswith(module) for module in SAFETY_MODULES):
        return "safety"
    return "language_model"


def is_unread_pooling(name: str) -> bool:
    """Whether a vision-tower parameter belongs to its pooling output, which LLaVA never
    reads (it takes ``hidden_states[vision_feature_layer]``): CLIP's and SigLIP's
    ``post_layernorm`` and SigLIP's attention-pooling ``head``. Training them would only
    leave parameters without gradients, which DDP rejects."""
    return f"{VISION_TOWER}." in name and (".post_layernorm." in name or ".head." in name)


def set_trainable(model: torch.nn.Module, settings: ModelSettings) -> torch.nn.Module:
    """Freeze and wrap the model as the recipe says; returns the model to train.

    Under LoRA the result is a ``peft`` model whose adapters sit on the language model's
    linear layers only, with the projector, meta token and head (and the vision tower,
    when it learns) as ``modules_to_save``.
    """
    if settings.language_model == "lora":
        return _with_lora(model, settings)
    for name, parameter in model.named_parameters():
        part = parameter_part(name)
        if part == "vision_tower":
            parameter.requires_grad_(not settings.freeze_vision_tower
                                     and not is_unread_pooling(name))
        elif part == "language_model":
            parameter.requires_grad_(settings.language_model == "full")
        else:
            parameter.requires_grad_(True)
    return model


def _with_lora(model: torch.nn.Module, settings: ModelSettings) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    names = "|".join(settings.lora.target_modules)
    modules_to_save = [PROJECTOR]
    if isinstance(model, SafeLlavaForConditionalGeneration):
        modules_to_save += SAFETY_MODULES
    if not settings.freeze_vision_tower:
        modules_to_save.append(VISION_TOWER)
    config = LoraConfig(
        r=settings.lora.r,
        lora_alpha=settings.lora.alpha,
        lora_dropout=settings.lora.dropout,
        # A regular expression, so that the vision tower's own q_proj/k_proj... stay out.
        target_modules=rf".*language_model.*\.({names})",
        modules_to_save=modules_to_save,
    )
    return get_peft_model(model, config)


def trainable_summary(model: torch.nn.Module) -> dict[str, tuple[int, int]]:
    """Part -> (trainable parameters, all parameters), for the start-of-run report."""
    counts = {part: [0, 0] for part in PARTS}
    for name, parameter in model.named_parameters():
        part = parameter_part(name)
        counts[part][1] += parameter.numel()
        if parameter.requires_grad:
            counts[part][0] += parameter.numel()
    return {part: (trained, total) for part, (trained, total) in counts.items() if total}


def final_model(model: torch.nn.Module, *, merge_lora: bool = True) -> torch.nn.Module:
    """The plain transformers model to save: LoRA adapters merged in (when asked)."""
    from peft import PeftModel

    if isinstance(model, PeftModel) and merge_lora:
        return model.merge_and_unload()
    return model


__all__ = [
    "ModelSetupError",
    "build_model",
    "checkpoint_type",
    "final_model",
    "is_unread_pooling",
    "parameter_part",
    "plain_llava",
    "set_trainable",
    "trainable_summary",
]
