"""``python -m holisafe.train --config FILE.yaml [--set key=value ...] [--resume]``.

The same run as ``holisafe train``, as a module so that ``accelerate launch -m
holisafe.train`` and ``torchrun -m holisafe.train`` can start one copy per process.
"""

from __future__ import annotations

import argparse
import sys

from holisafe.train.config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m holisafe.train",
                                     description="Train SafeLLaVA (or a plain LLaVA) from a "
                                                 "YAML recipe; see docs/training.md.")
    parser.add_argument("--config", required=True, help="The YAML recipe.")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="Override a recipe field by its dotted "
                        "path, e.g. training.max_steps=100 (repeatable).")
    parser.add_argument("--resume", action="store_true",
                        help="Continue from the newest checkpoint in training.output_dir.")
    args = parser.parse_args(argv)
    from transformers.utils import logging as transformers_logging

    from holisafe.data.loaders import DatasetError
    from holisafe.train.model import ModelSetupError
    from holisafe.train.pipeline import TrainingError, run_training

    # transformers' tqdm bars ("Loading weights"...) would interleave with the rich progress.
    transformers_logging.disable_progress_bar()
    try:
        config = load_config(args.config, args.overrides)
        result = run_training(config, resume=args.resume)
    except (ConfigError, DatasetError, ModelSetupError, TrainingError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    per_step = result.seconds_per_step
    timing = f", {per_step:.3f} s a step" if per_step is not None else ""
    print(f"trained {result.global_step} steps{timing}; model saved to {result.model_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
