"""SafeLLaVA as a transformers model: LLaVA plus a safety meta token and a safety head.

Importing this package registers ``safellava`` with transformers' Auto classes
(``AutoConfig``, ``AutoModel``, ``AutoModelForImageTextToText``, ``AutoProcessor``), so
saved SafeLLaVA checkpoints load through them without remote code. Design notes:
``docs/safellava.md``.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageTextToText,
    AutoProcessor,
)

from holisafe.models.safellava.configuration import SAFETY_TOKEN, SafeLlavaConfig
from holisafe.models.safellava.conversion import convert_llava_checkpoint
from holisafe.models.safellava.generation import (
    SafeAnswer,
    SafetyGeneration,
    answer_with_safety,
    generate_with_safety,
)
from holisafe.models.safellava.guard import GuardPrediction, SafetyGuard, load_safellava
from holisafe.models.safellava.modeling import (
    SafeLlavaCausalLMOutputWithPast,
    SafeLlavaForConditionalGeneration,
    SafeLlavaModel,
    SafetyHead,
    SafetyMetaToken,
)
from holisafe.models.safellava.presets import dataset_texts, record_texts, safellava_tiny
from holisafe.models.safellava.processing import SafeLlavaProcessor
from holisafe.models.safellava.smol import SmolNotInstalledError, load_smollm2, safellava_smol
from holisafe.models.safellava.tokenization import build_word_tokenizer

AutoConfig.register(SafeLlavaConfig.model_type, SafeLlavaConfig, exist_ok=True)
AutoModel.register(SafeLlavaConfig, SafeLlavaModel, exist_ok=True)
AutoModelForImageTextToText.register(
    SafeLlavaConfig, SafeLlavaForConditionalGeneration, exist_ok=True
)
AutoProcessor.register(SafeLlavaConfig, SafeLlavaProcessor, exist_ok=True)

__all__ = [
    "SAFETY_TOKEN",
    "GuardPrediction",
    "SafeAnswer",
    "SafeLlavaCausalLMOutputWithPast",
    "SafeLlavaConfig",
    "SafeLlavaForConditionalGeneration",
    "SafeLlavaModel",
    "SafeLlavaProcessor",
    "SafetyGeneration",
    "SafetyGuard",
    "SafetyHead",
    "SafetyMetaToken",
    "SmolNotInstalledError",
    "answer_with_safety",
    "build_word_tokenizer",
    "convert_llava_checkpoint",
    "dataset_texts",
    "generate_with_safety",
    "load_safellava",
    "load_smollm2",
    "record_texts",
    "safellava_smol",
    "safellava_tiny",
]
