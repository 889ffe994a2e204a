"""SafeLLaVA's processor: LLaVA's, with the safety meta token after every image.

LLaVA's processor expands each ``<image>`` of a prompt into one placeholder per visual
token. :class:`SafeLlavaProcessor` appends one ``<safety>`` placeholder to every such
expansion, which is where the model writes its learned meta token, so the token sits
right after its image's visual tokens however many images a prompt has.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from PIL import Image
from tokenizers import AddedToken
from transformers import BatchFeature, CLIPImageProcessorPil, LlavaProcessor

from holisafe.models.safellava.configuration import SAFETY_TOKEN


class SafeLlavaProcessor(LlavaProcessor):
    """A LlavaProcessor that inserts the safety meta token after each image.

    ``safety_token`` must be a special token of the tokenizer (see
    :meth:`from_llava_processor`); ``use_safety_token=False`` makes this processor
    behave exactly like LLaVA's, for models whose meta token is switched off.
    """

    def __init__(
        self,
        image_processor: Any = None,
        tokenizer: Any = None,
        patch_size: int | None = None,
        vision_feature_select_strategy: str | None = None,
        chat_template: str | None = None,
        image_token: str = "<image>",
        num_additional_image_tokens: int = 0,
        safety_token: str = SAFETY_TOKEN,
        use_safety_token: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            image_processor=image_processor,
            tokenizer=tokenizer,
            patch_size=patch_size,
            vision_feature_select_strategy=vision_feature_select_strategy,
            chat_template=chat_template,
            image_token=image_token,
            num_additional_image_tokens=num_additional_image_tokens,
            **kwargs,
        )
        self.safety_token = safety_token
        self.use_safety_token = use_safety_token
        self.safety_token_id: int | None = None
        if use_safety_token:
            if safety_token not in tokenizer.get_vocab():
                raise ValueError(
                    f"the tokenizer has no {safety_token!r} token; add it with "
                    "SafeLlavaProcessor.from_llava_processor(processor)"
                )
            self.safety_token_id = tokenizer.convert_tokens_to_ids(safety_token)

    @classmethod
    def from_llava_processor(
        cls, processor: LlavaProcessor, *, safety_token: str = SAFETY_TOKEN,
        use_safety_token: bool = True,
    ) -> SafeLlavaProcessor:
        """A SafeLlavaProcessor built from a LLaVA one; the input processor is left as it was.

        The meta token is added to a copy of the tokenizer as a special token (so decoding
        with ``skip_special_tokens=True`` drops it); its id is ``safety_token_id``.
        """
        tokenizer = copy.deepcopy(processor.tokenizer)
        if use_safety_token and safety_token not in tokenizer.get_vocab():
            tokenizer.add_tokens([AddedToken(safety_token, special=True, normalized=False)],
                                 special_tokens=True)
        return cls(
            image_processor=processor.image_processor,
            tokenizer=tokenizer,
            patch_size=processor.patch_size,
            vision_feature_select_strategy=processor.vision_feature_select_strategy,
            chat_template=processor.chat_template,
            image_token=processor.image_token,
            num_additional_image_tokens=processor.num_additional_image_tokens,
            safety_token=safety_token,
            use_safety_token=use_safety_token,
        )

    @classmethod
    def for_clip_tower(
        cls, tokenizer: Any, *, image_size: int, patch_size: int, chat_template: str,
        **kwargs: Any,
    ) -> SafeLlavaProcessor:
        """The processor of a preset whose CLIP tower reads square ``image_size`` pictures
        in ``patch_size`` patches (the tiny and smol presets); ``kwargs`` go to the
        constructor (``image_token``, ``safety_token``...)."""
        return cls(
            image_processor=square_image_processor(image_size),
            tokenizer=tokenizer,
            patch_size=patch_size,
            vision_feature_select_strategy="default",
            # CLIP prepends a CLS token that "default" drops; the processor must count it.
            num_additional_image_tokens=1,
            chat_template=chat_template,
            **kwargs,
        )

    def replace_image_token(self, image_inputs: dict, image_idx: int, **kwargs: Any) -> str:
        visual_tokens = super().replace_image_token(image_inputs, image_idx, **kwargs)
        return visual_tokens + self.safety_token if self.use_safety_token else visual_tokens

    def prompt(self, query: str, *, with_image: bool = True) -> str:
        """The chat-template prompt of one user turn (the image first, then the query),
        ending where the assistant's answer starts."""
        content: list[dict[str, str]] = [{"type": "image"}] if with_image else []
        content.append({"type": "text", "text": query})
        messages = [{"role": "user", "content": content}]
        return self.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def generation_inputs(
        self, images: Sequence[Image.Image | None], queries: Sequence[str]
    ) -> BatchFeature:
        """A left-padded batch of prompts, ready for ``generate``.

        ``images[i]`` goes with ``queries[i]``; ``None`` makes a text-only prompt. Left
        padding makes every row's answer start at the same column, so a batch generates
        what its samples generate one by one.
        """
        if len(images) != len(queries):
            raise ValueError(f"{len(images)} images for {len(queries)} queries: give one "
                             "image (or None) per query")
        texts = [self.prompt(query, with_image=image is not None)
                 for image, query in zip(images, queries, strict=True)]
        present = [image.convert("RGB") for image in images if image is not None]
        return self(images=present or None, text=texts, padding=True, padding_side="left",
                    return_tensors="pt")


def square_image_processor(size: int) -> CLIPImageProcessorPil:
    """CLIP's image processing (resize, centre crop, normalise) to ``size`` x ``size``."""
    return CLIPImageProcessorPil(size={"shortest_edge": size},
                                 crop_size={"height": size, "width": size})


__all__ = ["SafeLlavaProcessor", "square_image_processor"]
