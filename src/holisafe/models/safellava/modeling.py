"""SafeLLaVA: LLaVA with a learnable safety meta token and a safety head.

The forward pass is LLaVA's, plus three steps (see ``docs/safellava.md``):

1. **Meta token.** Wherever ``input_ids`` holds ``config.safety_token_id`` (the processor
   puts one right after each image's visual tokens), the input embedding is replaced by
   the learned vector :class:`SafetyMetaToken`. Causal attention lets it read that image,
   and every later token (query, answer) can read it.
2. **Feature.** One feature per image, from the language model's final (post-norm) hidden
   states: at the meta token (``safety_feature="smt"``) or the mean over the image's
   visual tokens (``"pool"``).
3. **Head and loss.** :class:`SafetyHead` maps each feature to logits over the safety
   classes; ``loss = LM loss + λ · CE(safety_logits, safety_labels)``.

Images are counted in input order: row by row, left to right, as LLaVA fills its image
placeholders. ``safety_logits`` has one row per image in that order,
``safety_sample_index`` says which batch row each image belongs to, and ``safety_labels``
must have the same one-per-image shape. Steps without an image (KV-cache decoding,
text-only prompts) return no safety output.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from os import PathLike
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, LlavaForConditionalGeneration, initialization
from transformers.cache_utils import Cache
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.modeling_utils import slice_logits_to_keep
from transformers.models.llava.modeling_llava import (
    LlavaCausalLMOutputWithPast,
    LlavaModel,
    LlavaModelOutputWithPast,
    LlavaMultiModalProjector,
    LlavaPreTrainedModel,
)

from holisafe.models.safellava.configuration import SafeLlavaConfig

IGNORE_INDEX = -100


@dataclass
class SafeLlavaModelOutputWithPast(LlavaModelOutputWithPast):
    """LLaVA's base output plus one safety feature per image.

    safety_features: ``(num_images, hidden_size)``, the head's input.
    safety_sample_index: ``(num_images,)``, the batch row of each image.
    """

    safety_features: torch.Tensor | None = None
    safety_sample_index: torch.Tensor | None = None


@dataclass
class SafeLlavaCausalLMOutputWithPast(LlavaCausalLMOutputWithPast):
    """LLaVA's output plus the safety head's.

    loss: ``lm_loss + λ · safety_loss`` (whichever parts were asked for).
    lm_loss: the language-modelling loss alone, when ``labels`` were given.
    safety_loss: the head's cross-entropy, when ``safety_labels`` were given.
    safety_logits / safety_probs: ``(num_images, num_safety_classes)``; probs are float32.
    safety_sample_index: ``(num_images,)``, the batch row of each image.
    """

    lm_loss: torch.Tensor | None = None
    safety_loss: torch.Tensor | None = None
    safety_logits: torch.Tensor | None = None
    safety_probs: torch.Tensor | None = None
    safety_sample_index: torch.Tensor | None = None


class SafetyMetaToken(nn.Module):
    """The learned input embedding written at every meta-token placeholder.

    A module of its own (not a row of the vocabulary matrix) so that training can update
    it while the embedding matrix stays frozen, e.g. as a PEFT ``modules_to_save`` entry.
    """

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.zeros(hidden_size))

    def forward(self, inputs_embeds: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``inputs_embeds`` with the meta token at the ``positions`` mask (batch, seq)."""
        token = self.embedding.to(inputs_embeds.dtype)
        return torch.where(positions.unsqueeze(-1), token, inputs_embeds)


class SafetyHead(nn.Module):
    """MLP from a feature to safety-class logits.

    ``depth`` linear layers; each hidden layer is ``hidden_ratio`` times the input width
    and followed by GELU and dropout. The paper's head (depth 2, ratio 0.5):
    ``Linear(H, H/2) → GELU → Dropout(0.1) → Linear(H/2, 20)``.
    """

    def __init__(self, hidden_size: int, num_classes: int, *, hidden_ratio: float = 0.5,
                 depth: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        width = max(1, round(hidden_size * hidden_ratio))
        layers: list[nn.Module] = []
        in_features = hidden_size
        for _ in range(depth - 1):
            layers += [nn.Linear(in_features, width), nn.GELU(), nn.Dropout(dropout)]
            in_features = width
        layers.append(nn.Linear(in_features, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


class SafeLlavaPreTrainedModel(LlavaPreTrainedModel):
    config: SafeLlavaConfig
    config_class = SafeLlavaConfig

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, SafetyMetaToken):
            # Like any embedding row of a freshly built model; from_llava re-initialises it
            # from the trained vocabulary (see docs/safellava.md).
            std = self.config.text_config.initializer_range
            initialization.normal_(module.embedding, mean=0.0, std=std)


class SafeLlavaModel(SafeLlavaPreTrainedModel, LlavaModel):
    """LLaVA's vision tower, projector and language model, plus the meta token.

    Returns the final hidden states and one safety feature per image; no LM head.
    """

    def __init__(self, config: SafeLlavaConfig) -> None:
        # LlavaModel.__init__ would run weight initialisation before the meta token exists,
        # so build the same modules here and initialise once.
        LlavaPreTrainedModel.__init__(self, config)
        if config.use_safety_token and config.safety_token_id is None:
            raise ValueError("use_safety_token=True needs config.safety_token_id, the vocabulary "
                             "id of the meta token placeholder")
        self.vision_tower = AutoModel.from_config(config.vision_config)
        self.multi_modal_projector = LlavaMultiModalProjector(config)
        self.language_model = AutoModel.from_config(config.text_config)
        self.safety_token = SafetyMetaToken(config.text_config.hidden_size)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        image_sizes: torch.Tensor | None = None,
        mm_encoder_outputs: dict[str, BaseModelOutputWithPooling] | None = None,
        **kwargs,
    ) -> SafeLlavaModelOutputWithPast:
        """LLaVA's forward with the meta token inserted and the safety features read out.

        The meta token is found by its id, so pass ``input_ids``: with ``inputs_embeds``
        alone the caller owns the embeddings and no ``"smt"`` feature is produced.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        if pixel_values is not None and mm_encoder_outputs:
            raise ValueError("Pass pixel_values or mm_encoder_outputs, not both")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)

        # 1. LLaVA: the projected visual features replace the image placeholders.
        image = (mm_encoder_outputs or {}).get("image")
        if image is None and pixel_values is not None:
            image = self.get_image_features(
                pixel_values=pixel_values,
                vision_feature_layer=vision_feature_layer,
                vision_feature_select_strategy=vision_feature_select_strategy,
                image_sizes=image_sizes,
                return_dict=True,
            )
        per_image_features = image.pooler_output if image is not None else None
        image_features = image_mask = None
        if per_image_features is not None:
            image_features = torch.cat(per_image_features, dim=0).to(
                inputs_embeds.device, inputs_embeds.dtype
            )
            image_mask = self.get_placeholder_mask(input_ids, inputs_embeds, image_features)
            inputs_embeds = inputs_embeds.masked_scatter(image_mask, image_features)

        # 2. SafeLLaVA: the learned meta token replaces its placeholders.
        token_mask = None
        if self.config.use_safety_token and input_ids is not None:
            token_mask = input_ids == self.config.safety_token_id
            inputs_embeds = self.safety_token(inputs_embeds, token_mask)
            if per_image_features is not None:
                self._check_one_token_per_image(token_mask, len(per_image_features))

        outputs = self.language_model(
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )

        # 3. One safety feature per image from the final hidden states.
        hidden = outputs.last_hidden_state
        if self.config.safety_feature == "smt":
            features, sample_index = _gather_meta_token(hidden, token_mask)
        else:
            features, sample_index = _pool_visual_tokens(hidden, image_mask, per_image_features)

        return SafeLlavaModelOutputWithPast(
            last_hidden_state=hidden,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_hidden_states=image_features,
            safety_features=features,
            safety_sample_index=sample_index,
        )

    @staticmethod
    def _check_one_token_per_image(token_mask: torch.Tensor, num_images: int) -> None:
        num_tokens = int(token_mask.sum())
        if num_tokens != num_images:
            raise ValueError(
                f"found {num_tokens} safety meta tokens for {num_images} images; SafeLLaVA "
                "needs one right after each image's visual tokens: build the inputs with "
                "SafeLlavaProcessor"
            )


def _gather_meta_token(
    hidden: torch.Tensor, token_mask: torch.Tensor | None
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The hidden state at each meta token, row-major, and its batch row."""
    if token_mask is None or not token_mask.any():
        return None, None
    return hidden[token_mask], token_mask.nonzero()[:, 0]


def _pool_visual_tokens(
    hidden: torch.Tensor, image_mask: torch.Tensor | None,
    per_image_features: list[torch.Tensor] | None,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The mean hidden state over each image's visual tokens, and the image's batch row.

    Visual tokens are taken in the order LLaVA filled them, so the first ``n_1`` belong to
    the first image, the next ``n_2`` to the second, and so on.
    """
    if image_mask is None:
        return None, None
    positions = image_mask[..., 0]
    lengths = [len(features) for features in per_image_features]
    visual = hidden[positions].split(lengths)
    features = torch.stack([tokens.mean(dim=0) for tokens in visual])
    first_token = torch.tensor([0, *lengths[:-1]], device=hidden.device).cumsum(0)
    return features, positions.nonzero()[:, 0][first_token]


class SafeLlavaForConditionalGeneration(SafeLlavaPreTrainedModel, LlavaForConditionalGeneration):
    """LLaVA that also classifies each input image into the safety classes.

    ``forward`` returns LLaVA's outputs plus ``safety_logits``, ``safety_probs`` and (with
    ``safety_labels``) ``safety_loss``; ``generate`` is LLaVA's, unchanged. For the answer
    and the safety probabilities from one pass, see
    :func:`holisafe.models.safellava.generation.generate_with_safety`.
    """

    #: Where SafeLLaVA's own weights (meta token, head) sit in its state dict: every other
    #: weight is a LLaVA's.
    safety_weight_prefixes: ClassVar[tuple[str, ...]] = ("model.safety_token.", "safety_head.")

    def __init__(self, config: SafeLlavaConfig) -> None:
        # Not LlavaForConditionalGeneration.__init__: it would build a plain LlavaModel.
        LlavaPreTrainedModel.__init__(self, config)
        self.model = SafeLlavaModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size,
                                 bias=False)
        self.safety_head = SafetyHead(
            config.text_config.hidden_size,
            config.num_safety_classes,
            hidden_ratio=config.safety_head_hidden_ratio,
            depth=config.safety_head_depth,
            dropout=config.safety_head_dropout,
        )
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        labels: torch.LongTensor | None = None,
        safety_labels: torch.LongTensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        image_sizes: torch.Tensor | None = None,
        mm_encoder_outputs: dict[str, BaseModelOutputWithPooling] | None = None,
        **kwargs,
    ) -> SafeLlavaCausalLMOutputWithPast | tuple:
        """LLaVA's forward plus the safety head.

        ``safety_labels``: one class id per image in input order (``-100`` = no label),
        e.g. each record's ``image_safety_label`` for one image per sample.
        """
        return_dict = kwargs.pop("return_dict", None) is not False
        outputs = self.model(
            input_ids=input_ids,
            pixel_values=pixel_values,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            vision_feature_layer=vision_feature_layer,
            vision_feature_select_strategy=vision_feature_select_strategy,
            image_sizes=image_sizes,
            mm_encoder_outputs=mm_encoder_outputs,
            **kwargs,
        )
        hidden_states = slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep)
        logits = self.lm_head(hidden_states)
        lm_loss = None
        if labels is not None:
            lm_loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size,
                **kwargs
            )

        safety_logits = safety_probs = None
        if outputs.safety_features is not None:
            safety_logits = self.safety_head(outputs.safety_features)
            safety_probs = safety_logits.float().softmax(dim=-1)
        safety_loss = None
        if safety_labels is not None:
            safety_loss = self.safety_loss(safety_logits, safety_labels)

        loss = lm_loss
        if safety_loss is not None:
            weighted = self.config.safety_loss_weight * safety_loss
            loss = weighted if loss is None else loss + weighted

        output = SafeLlavaCausalLMOutputWithPast(
            loss=loss,
            lm_loss=lm_loss,
            safety_loss=safety_loss,
            logits=logits,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_hidden_states=outputs.image_hidden_states,
            safety_logits=safety_logits,
            safety_probs=safety_probs,
            safety_sample_index=outputs.safety_sample_index,
        )
        return output if return_dict else output.to_tuple()

    def safety_loss(
        self, safety_logits: torch.Tensor | None, safety_labels: torch.Tensor
    ) -> torch.Tensor | None:
        """Mean cross-entropy over the labelled images (labels ``-100`` are ignored).

        A batch whose labels are all ``-100`` gives a zero that still depends on the head,
        so distributed training sees every parameter used; a text-only batch (no image)
        gives ``None`` as long as it carries no real label.
        """
        labels = safety_labels.reshape(-1)
        if safety_logits is None and bool((labels == IGNORE_INDEX).all()):
            return None
        num_images = 0 if safety_logits is None else safety_logits.shape[0]
        if labels.numel() != num_images:
            raise ValueError(
                f"safety_labels has {labels.numel()} entries but the batch has {num_images} "
                "images: give one label per image, in input order (-100 for none)"
            )
        labels = labels.to(safety_logits.device)
        labelled = labels != IGNORE_INDEX
        if not bool(labelled.any()):
            return safety_logits.sum() * 0.0
        num_classes = safety_logits.shape[-1]
        out_of_range = labelled & ((labels < 0) | (labels >= num_classes))
        if bool(out_of_range.any()):
            bad = labels[out_of_range].tolist()
            raise ValueError(f"safety_labels {bad} out of range: class ids are "
                             f"0..{num_classes - 1} (or -100 for no label)")
        return F.cross_entropy(safety_logits.float(), labels, ignore_index=IGNORE_INDEX)

    @classmethod
    def from_llava(
        cls,
        llava: str | PathLike | LlavaForConditionalGeneration,
        *,
        safety_token_id: int | None = None,
        **safety_fields,
    ) -> SafeLlavaForConditionalGeneration:
        """A SafeLLaVA holding a copy of every weight of a LLaVA, plus the new parts.

        ``llava`` is a ``LlavaForConditionalGeneration`` or a checkpoint directory (loaded
        from safetensors). ``safety_fields`` are :class:`SafeLlavaConfig` fields
        (``safety_feature``, ``use_safety_token``...). With the token on and no
        ``safety_token_id``, the token gets the first id past the vocabulary; a
        ``safety_token_id`` past the vocabulary grows the embeddings and the LM head by
        zero rows. Either way the token is added to ``generation_config.suppress_tokens``
        so it is never generated, and its learned embedding starts at the mean of the
        vocabulary's input embeddings. To convert the processor too, use
        :func:`holisafe.models.safellava.conversion.convert_llava_checkpoint`.
        """
        if not isinstance(llava, LlavaForConditionalGeneration):
            llava = LlavaForConditionalGeneration.from_pretrained(llava, use_safetensors=True)
        vocab_size = llava.config.text_config.vocab_size
        use_token = safety_fields.get("use_safety_token", True)
        if use_token and safety_token_id is None:
            safety_token_id = vocab_size
        config = SafeLlavaConfig.from_llava_config(
            llava.config, safety_token_id=safety_token_id if use_token else None, **safety_fields
        )
        with torch.device(llava.device):
            model = cls._from_config(config, dtype=llava.dtype)
        missing, unexpected = model.load_state_dict(llava.state_dict(), strict=False)
        if unexpected or any(not key.startswith(cls.safety_weight_prefixes) for key in missing):
            raise ValueError(f"LLaVA weights do not fit: missing {missing}, "
                             f"unexpected {unexpected}")
        model.tie_weights()
        model.generation_config = copy.deepcopy(llava.generation_config)

        embeddings = model.get_input_embeddings().weight
        with torch.no_grad():
            model.model.safety_token.embedding.copy_(embeddings.mean(dim=0))
        if use_token:
            model._reserve_token(safety_token_id)
        return model.train(llava.training)

    def _reserve_token(self, token_id: int) -> None:
        """Make ``token_id`` a valid vocabulary id that generation never picks."""
        old_size = self.get_input_embeddings().weight.shape[0]
        if token_id >= old_size:
            self.resize_token_embeddings(token_id + 1, mean_resizing=False)
            with torch.no_grad():
                self.get_input_embeddings().weight[old_size:].zero_()
                self.get_output_embeddings().weight[old_size:].zero_()
        suppressed = list(self.generation_config.suppress_tokens or [])
        if token_id not in suppressed:
            self.generation_config.suppress_tokens = [*suppressed, token_id]


__all__ = [
    "SafeLlavaCausalLMOutputWithPast",
    "SafeLlavaForConditionalGeneration",
    "SafeLlavaModel",
    "SafeLlavaModelOutputWithPast",
    "SafeLlavaPreTrainedModel",
    "SafetyHead",
    "SafetyMetaToken",
]
