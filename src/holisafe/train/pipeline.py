"""One training run from a recipe: data, model, trainer, checkpoints, the saved model.

:func:`run_training` is what ``holisafe train`` and ``python -m holisafe.train`` call, in
one process or in each process of ``accelerate launch`` / ``torchrun`` (the Trainer finds
the process group in the environment and shards the batches). The output folder holds:

* ``train_config.yaml``: the recipe as it ran (overrides applied);
* ``checkpoint-<step>/``: Trainer checkpoints every ``save_steps`` (model, optimiser,
  scheduler, RNG states), the newest ``save_total_limit`` kept; ``resume=True`` continues
  from the newest one and ends exactly where an uninterrupted run ends;
* ``train_log.jsonl`` / ``train_log.csv``: the logged losses and head accuracy;
* ``model/``: the final model and processor in transformers format (LoRA merged), ready
  for ``from_pretrained`` and ``holisafe run --model safellava:<dir>`` (or ``hf:<dir>``
  for a plain LLaVA).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from holisafe.train.config import TrainConfig
from holisafe.train.data import (
    SafetyCollator,
    SafetyDataset,
    TrainExample,
    examples_texts,
    load_general_examples,
    load_holisafe_eval,
    load_holisafe_train,
    mix_examples,
)
from holisafe.train.model import (
    ModelSetupError,
    build_model,
    final_model,
    set_trainable,
    trainable_summary,
)

CONFIG_FILE = "train_config.yaml"
MODEL_DIR = "model"


class TrainingError(RuntimeError):
    """The run cannot start or finish as asked (e.g. resuming with no checkpoint)."""


@dataclass
class TrainingResult:
    """What a run did: where its outputs are and how long its steps took."""

    output_dir: Path
    model_dir: Path
    global_step: int
    resumed_from: str | None
    #: Wall time of the optimisation steps of this session (resumed steps not counted).
    train_seconds: float
    steps_this_session: int
    last_log: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds_per_step(self) -> float | None:
        return self.train_seconds / self.steps_this_session if self.steps_this_session else None


def default_threads() -> int:
    """This process's share of the CPU cores: all of them, divided among local processes."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, (os.cpu_count() or 1) // max(local, 1))


def use_bf16(setting: bool | str) -> bool:
    """bfloat16 mixed precision: as set, or (``auto``) where a GPU supports it."""
    if setting == "auto":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(setting)


def tensorboard_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def training_examples(config: TrainConfig) -> list[TrainExample]:
    """The recipe's training examples: HoliSafe records, plus general data at its ratio."""
    data = config.data
    examples = load_holisafe_train(data.train, split=data.split, images=data.images,
                                   answers=data.answers)
    if data.general is not None:
        general = load_general_examples(data.general, images=data.general_images)
        examples = mix_examples(examples, general, data.general_ratio, seed=config.training.seed)
    return examples


def tokenizer_texts(config: TrainConfig, examples: list[TrainExample]) -> list[str]:
    """The texts a preset's word-level vocabulary is built from.

    Each text is also given with a leading space: chat templates put the answer after
    ``ASSISTANT:`` and a space, and a word-level vocabulary tells ``▁The`` (after a space)
    from ``The`` (at the start of a text), so an answer's first word would otherwise be
    unknown to the model that has to say it.
    """
    if config.model.tokenizer_data:
        from holisafe.models.safellava import dataset_texts

        texts = [text for source in config.model.tokenizer_data
                 for text in dataset_texts(source)]
    else:
        texts = examples_texts(examples)
    return [*texts, *(f" {text}" for text in texts)]


def _training_arguments(config: TrainConfig, *, has_eval: bool) -> Any:
    from transformers import TrainingArguments

    training = config.training
    report_to = "none"
    if training.tensorboard is True or (training.tensorboard == "auto" and tensorboard_available()):
        report_to = "tensorboard"
    evaluate = has_eval and training.eval_steps is not None
    return TrainingArguments(
        output_dir=training.output_dir,
        seed=training.seed,
        max_steps=training.max_steps if training.max_steps is not None else -1,
        num_train_epochs=training.epochs,
        per_device_train_batch_size=training.batch_size,
        per_device_eval_batch_size=training.eval_batch_size,
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        learning_rate=training.learning_rate,
        lr_scheduler_type=training.lr_scheduler,
        warmup_steps=training.warmup,
        weight_decay=training.weight_decay,
        max_grad_norm=training.max_grad_norm,
        optim="adamw_torch",
        bf16=use_bf16(training.bf16),
        activation_checkpointing=training.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        logging_steps=training.logging_steps,
        save_strategy="steps",
        save_steps=training.save_steps,
        save_total_limit=training.save_total_limit,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=training.eval_steps if evaluate else None,
        report_to=report_to,
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_num_workers=training.dataloader_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        # Without a GPU, accelerate forms a multi-process (gloo) group only when told that
        # the run is on CPU; on a GPU machine the same code uses one GPU per process.
        use_cpu=not torch.cuda.is_available(),
        average_tokens_across_devices=True,
        # Text-only batches (general data) leave the vision side and the head unused.
        ddp_find_unused_parameters=config.data.general is not None,
    )


def _resume_checkpoint(output_dir: Path, resume: bool) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if resume and last is None:
        raise TrainingError(f"--resume: no checkpoint-<step> folder in {output_dir} to resume "
                            "from")
    if not resume and last is not None:
        raise TrainingError(f"{output_dir} already holds {Path(last).name}: pass --resume to "
                            "continue that run, or choose another training.output_dir")
    return last


def run_training(config: TrainConfig, *, resume: bool = False) -> TrainingResult:
    """Train as the recipe says and save the final model (see the module docstring).

    Raises :class:`TrainingError`, :class:`~holisafe.train.model.ModelSetupError` or the
    data layer's ``DatasetError`` before any step when the recipe cannot run.
    """
    from transformers import set_seed
    from transformers.trainer_callback import PrinterCallback

    from holisafe.models.safellava import SafeLlavaForConditionalGeneration
    from holisafe.train.trainer import LogFileCallback, RichProgressCallback, SafetyTrainer

    training = config.training
    torch.set_num_threads(training.torch_threads or default_threads())
    output_dir = Path(training.output_dir)
    checkpoint = _resume_checkpoint(output_dir, resume)
    set_seed(training.seed)

    examples = training_examples(config)
    stage_one = config.model.vision_pretraining
    if stage_one is not None:
        from holisafe.train.vision import ensure_vision_tower

        ensure_vision_tower(config.model.vision_tower, config.data.train,
                            seed=training.seed, preset=config.model.preset or "safellava-tiny",
                            **stage_one.model_dump())
    model, processor = build_model(config.model, seed=training.seed,
                                   tokenizer_texts=lambda: tokenizer_texts(config, examples))
    model = set_trainable(model, config.model)
    is_safellava = any(isinstance(m, SafeLlavaForConditionalGeneration) for m in model.modules())
    train_dataset = SafetyDataset(examples, processor, max_length=config.data.max_length)
    eval_dataset = None
    if config.data.eval is not None:
        eval_dataset = SafetyDataset(
            load_holisafe_eval(config.data.eval, split=config.data.eval_split,
                               images=config.data.eval_images, limit=config.data.eval_limit),
            processor, max_length=config.data.max_length)
    tokenizer = processor.tokenizer
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None \
        else tokenizer.eos_token_id
    collator = SafetyCollator(pad_token_id=pad_id, with_safety_labels=is_safellava)

    args = _training_arguments(config, has_eval=eval_dataset is not None)
    trainer = SafetyTrainer(model=model, args=args, train_dataset=train_dataset,
                            eval_dataset=eval_dataset, data_collator=collator,
                            learning_rates=training.learning_rates)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(LogFileCallback(output_dir))
    if training.progress:
        trainer.add_callback(RichProgressCallback())
    _check_lora_export(trainer, config)
    main = trainer.is_world_process_zero()
    if main:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / CONFIG_FILE).write_text(config.to_yaml(), encoding="utf-8")
        if training.progress:
            _print_start(config, model, len(train_dataset), args.world_size)

    started = time.perf_counter()
    outcome = trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.perf_counter() - started

    model_dir = output_dir / MODEL_DIR
    if config.model.language_model == "lora" and config.model.merge_lora:
        if main:
            merged = final_model(trainer.accelerator.unwrap_model(trainer.model))
            merged.save_pretrained(model_dir)
    else:
        trainer.save_model(str(model_dir))  # gathers FSDP / DeepSpeed shards
    if main:
        processor.save_pretrained(model_dir)
        # Trainer.save_model pickles its arguments beside the weights: the run's recipe is
        # already in train_config.yaml, and model/ should hold nothing to unpickle.
        (model_dir / "training_args.bin").unlink(missing_ok=True)
    trainer.accelerator.wait_for_everyone()
    history = [row for row in trainer.state.log_history if "loss" in row]
    first_step = int(Path(checkpoint).name.rsplit("-", 1)[-1]) if checkpoint else 0
    return TrainingResult(
        output_dir=output_dir,
        model_dir=model_dir,
        global_step=outcome.global_step,
        resumed_from=checkpoint,
        train_seconds=seconds,
        steps_this_session=outcome.global_step - first_step,
        last_log=history[-1] if history else {},
    )


def _check_lora_export(trainer: Any, config: TrainConfig) -> None:
    """Merging LoRA needs the whole model in one process: refuse sharded setups early."""
    if config.model.language_model != "lora" or not config.model.merge_lora:
        return
    sharded = trainer.is_fsdp_enabled
    if trainer.is_deepspeed_enabled:
        plugin = trainer.accelerator.state.deepspeed_plugin
        sharded = sharded or getattr(plugin, "zero_stage", 0) == 3
    if sharded:
        raise ModelSetupError(
            "model.language_model: lora with FSDP or DeepSpeed ZeRO-3 cannot merge the "
            "adapters into the saved model; use DDP or ZeRO-2 (LoRA's few trainable "
            "parameters gain little from sharding), or set model.merge_lora: false")


def _print_start(config: TrainConfig, model: torch.nn.Module, samples: int,
                 processes: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{config.model.architecture} from {config.model.init}: "
                        f"{samples:,} training samples, {processes} process(es)")
    table.add_column("part")
    table.add_column("trained", justify="right")
    table.add_column("parameters", justify="right")
    for part, (trained, total) in trainable_summary(model).items():
        table.add_row(part, f"{trained:,}", f"{total:,}")
    Console().print(table)


__all__ = [
    "CONFIG_FILE",
    "MODEL_DIR",
    "TrainingError",
    "TrainingResult",
    "default_threads",
    "run_training",
    "tokenizer_texts",
    "training_examples",
    "use_bf16",
]
