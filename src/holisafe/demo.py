"""``holisafe demo``: the whole HoliSafe story, end to end, on a laptop CPU in minutes.

The pipeline, each stage writing files a user can open under one folder ``DIR``::

    DIR/demo.json                       preset, and per stage: seconds, or skipped
    DIR/data/                           1. HoliSafe-Synth in the official layout
    DIR/train/<model>/model/            2. the preset's models, trained from the
                                           training package's demo recipes
    DIR/runs/<model>/responses.jsonl    3. each model (and const:refuse) on the test split
    DIR/scores/<model>/string-match/    4. verdicts and metrics of the official judge
    DIR/guard/                          5. the SafeLLaVA's safety head as an image guard
    DIR/report/index.html               6. leaderboard, per-type and per-category plots,
                                           guard section, data distribution: one page

A second call reuses every stage whose outputs exist and are newer than its inputs (a run
left half-done continues where it stopped); ``fresh=True`` starts over. The demo only ever
deletes the folders it writes, and only inside a folder that holds its ``demo.json``.

The three trained models answer the question the paper asks: SafeLLaVA-tiny (safety
data, meta token and head), LLaVA-tiny trained on the same safety data without token or
head, and an unaligned LLaVA-tiny trained on helpful answers only (it never learnt to
refuse). ``const:refuse`` is the sanity row: it refuses everything. The ``smol`` preset
swaps in SmolLM2-135M-Instruct as the language model: an unaligned VLM (vision side aligned
on helpful answers) and SafeLLaVA-smol safety-tuned from it, on the small synth scale.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from holisafe.bench.guard_eval import CONFUSION_PLOT, GuardReport
from holisafe.bench.guard_eval import METRICS_FILE as GUARD_METRICS
from holisafe.bench.report import Board, Plot, Section, build_boards, write_report
from holisafe.bench.runner import RESPONSES_FILE, RUN_FILE
from holisafe.bench.scoring import METRICS_FILE, judge_dirname
from holisafe.data.synth import MANIFEST_FILE

DEMO_FILE = "demo.json"
DATA_DIR, TRAIN_DIR, RUNS_DIR, SCORES_DIR, GUARD_DIR, REPORT_DIR = (
    "data", "train", "runs", "scores", "guard", "report")
#: The folders the demo writes; ``fresh`` removes exactly these.
OWNED = (DATA_DIR, TRAIN_DIR, RUNS_DIR, SCORES_DIR, GUARD_DIR, REPORT_DIR, DEMO_FILE)
REPORT_FILE = "index.html"
JUDGE = "string-match"
SEED = 0
#: Prompts per generation batch: tiny models answer about 5x faster in left-padded
#: batches than one by one (docs: ENVIRONMENT), and the runner's results do not depend
#: on it.
BATCH_SIZE = 32

#: The training recipes live in the repository's ``configs/demo/`` (the training
#: package's demo recipes); ``holisafe demo`` runs from a clone.
CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs" / "demo"


class DemoError(RuntimeError):
    """The demo cannot run as asked; the message says why and what to do."""


@dataclass(frozen=True)
class DemoModel:
    """One leaderboard row of the demo and how to make it."""

    name: str  # as shown in the leaderboard
    folder: str  # under train/, runs/ and scores/
    backend: str  # backend kind: safellava, hf or const
    recipe: str | None  # training recipe (file stem in configs/demo/); None: untrained
    about: str  # one line for the report

    @property
    def trained(self) -> bool:
        return self.recipe is not None


@dataclass(frozen=True)
class Preset:
    """A size of the demo: which synth scale and which recipes."""

    name: str
    scale: str
    models: tuple[DemoModel, ...]
    #: Torch threads for answering and guard-eval in the demo's process (None: torch's
    #: default). Tiny models gain nothing from a second thread, and threads that share
    #: cores with other work stall each other: on a loaded 2-core machine one thread
    #: answered 300 samples in 23 s, two threads took 98 s.
    threads: int | None = None
    #: Cap on generated tokens (None: the official protocol's 512). A model that rambles
    #: makes its whole batch wait for the cap, which a 30-layer model pays for on a CPU.
    max_new_tokens: int | None = None

    @property
    def guarded(self) -> DemoModel:
        """The model whose safety head is evaluated as an image guard."""
        return next(m for m in self.models if m.backend == "safellava")

    @property
    def unaligned(self) -> DemoModel:
        return next(m for m in self.models if m.folder.endswith("unaligned"))


def _preset(name: str, prefix: str, base: str, threads: int | None) -> Preset:
    plain = "the same LLaVA without meta token or head, trained on the same"
    return Preset(name=name, scale="default", threads=threads, models=(
        DemoModel(f"SafeLLaVA-{name}", f"safellava-{name}", "safellava", f"{prefix}safellava",
                  f"{base} plus the safety meta token and head, trained on the safety data "
                  "(reference answers, refusals included)"),
        DemoModel(f"LLaVA-{name}-safe", f"llava-{name}-safe", "hf", f"{prefix}llava",
                  f"{plain} safety data (data-only safety tuning)"),
        DemoModel(f"LLaVA-{name}-unaligned", f"llava-{name}-unaligned", "hf",
                  f"{prefix}llava_unaligned",
                  f"{plain} images with helpful answers only: it never learnt to refuse"),
        DemoModel("const:refuse", "const-refuse", "const", None,
                  "refuses everything: the sanity row (mASR 0, RR 100)"),
    ))


def _smol_preset() -> Preset:
    """Two stages on SmolLM2-135M-Instruct, which does not refuse harmful requests: the
    unaligned VLM (vision side aligned on helpful answers, language model frozen), then
    SafeLLaVA-smol safety-tuned from it. Scale small and answers of at most 64 tokens
    (the synth answers take about 25; the judge reads their start): every sample costs
    the 30-layer language model on a CPU."""
    return Preset(name="smol", scale="small", threads=None, max_new_tokens=64, models=(
        DemoModel("SafeLLaVA-smol", "safellava-smol", "safellava", "smol_safellava",
                  "LLaVA-smol-unaligned plus the safety meta token and head, safety-tuned "
                  "with LoRA on the safety data (reference answers, refusals included)"),
        DemoModel("LLaVA-smol-unaligned", "llava-smol-unaligned", "hf",
                  "smol_llava_unaligned",
                  "SmolLM2-135M-Instruct (frozen, never safety-tuned here) with a vision tower "
                  "and projector trained on helpful answers only: the unaligned VLM"),
        DemoModel("const:refuse", "const-refuse", "const", None,
                  "refuses everything: the sanity row (mASR 0, RR 100)"),
    ))


PRESETS: dict[str, Preset] = {
    "tiny": _preset("tiny", "", "a LLaVA of about 1.3 M parameters (from scratch)", 1),
    "smol": _smol_preset(),
}


@dataclass
class StageRecord:
    """How one stage went: seconds it took this time, or skipped (outputs were there)."""

    name: str
    seconds: float
    skipped: bool


@dataclass
class DemoResult:
    """What the demo produced: the report, the leaderboard rows and the guard figures."""

    out: Path
    preset: str
    report: Path
    boards: list[Board]  # one per judge
    guard: GuardReport
    stages: list[StageRecord] = field(default_factory=list)
    seconds: float = 0.0

    def masr(self, model: str) -> float | None:
        """A model's mASR in percent (string-match judge)."""
        for board in self.boards:
            for row in board.rows:
                if row.model == model:
                    return row.values.get("mASR")
        raise KeyError(model)


def _newest(paths: Sequence[Path]) -> float:
    return max(p.stat().st_mtime for p in paths)


def up_to_date(outputs: Sequence[Path], inputs: Sequence[Path] = ()) -> bool:
    """Whether every output exists and none is older than any (existing) input, as make
    decides; a stage whose inputs were redone after it ran is redone too."""
    if not all(p.exists() for p in outputs):
        return False
    present = [p for p in inputs if p.exists()]
    return not present or min(p.stat().st_mtime for p in outputs) >= _newest(present)


class _TrainingJob:
    """One ``python -m holisafe.train`` process of the demo, its log and its progress."""

    def __init__(self, model: DemoModel, output: Path, recipe: Path, overrides: list[str],
                 steps: int | None, resume: bool) -> None:
        self.model, self.output, self.steps = model, output, steps
        self.argv = [sys.executable, "-m", "holisafe.train", "--config", str(recipe)]
        self.argv += [arg for override in overrides for arg in ("--set", override)]
        self.argv += ["--resume"] if resume else []
        self.log = output.parent / f"{output.name}.log"
        self.process: subprocess.Popen | None = None
        self.returncode: int | None = None
        #: Jobs whose trained model this one starts from: it starts once they succeed.
        self.after: list[_TrainingJob] = []

    def ready(self) -> bool:
        """Not started yet, and every job it starts from has finished successfully."""
        return self.process is None and all(job.returncode == 0 for job in self.after)

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("w", encoding="utf-8") as handle:
            self.process = subprocess.Popen(self.argv, stdout=handle, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)

    def running(self) -> bool:
        if self.process is None:
            return False
        self.returncode = self.process.poll()
        return self.returncode is None

    def step(self) -> int:
        """The last step the run logged (train_log.jsonl), 0 before the first log."""
        from holisafe.train.trainer import LOG_JSONL

        path = self.output / LOG_JSONL
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        steps = [json.loads(line).get("step", 0) for line in lines if line.endswith("}")]
        return max(steps, default=0)

    def stop(self) -> None:
        """End the process if it still runs (the demo was interrupted or another failed)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self.process is not None:
            self.returncode = self.process.wait()

    def tail(self, lines: int = 25) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class Demo:
    """One demo folder; :meth:`run` takes it from nothing (or where it stopped) to the report.

    ``train_overrides`` are ``key=value`` recipe overrides added to every training run
    (the tests shorten training with them); ``max_new_tokens`` and ``limit`` bound the
    generation the same way. None keeps the recipes' and the official protocol's values.
    """

    def __init__(
        self,
        out: str | Path,
        preset: str = "tiny",
        *,
        fresh: bool = False,
        console: Console | None = None,
        scale: str | None = None,
        train_overrides: Sequence[str] = (),
        max_new_tokens: int | None = None,
        limit: int | None = None,
        configs_dir: str | Path | None = None,
    ) -> None:
        if preset not in PRESETS:
            raise DemoError(f"unknown preset {preset!r}: use one of {', '.join(PRESETS)}")
        self.out = Path(out)
        self.preset = PRESETS[preset]
        self.fresh = fresh
        self.console = console or Console()
        self.scale = scale or self.preset.scale
        self.train_overrides = list(train_overrides)
        self.max_new_tokens = max_new_tokens if max_new_tokens is not None \
            else self.preset.max_new_tokens
        self.limit = limit
        self.configs_dir = Path(configs_dir) if configs_dir is not None else CONFIGS_DIR
        self.stages: list[StageRecord] = []
        # synth, training, answering and scoring each model, guard-eval, report
        self._stage_count = 2 + 2 * len(self.preset.models) + 2

    # --- paths ----------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.out / DATA_DIR

    def model_dir(self, model: DemoModel) -> Path:
        from holisafe.train.pipeline import MODEL_DIR

        return self.out / TRAIN_DIR / model.folder / MODEL_DIR

    def weights(self, model: DemoModel) -> Path:
        """The trained model's weights file, written last by training."""
        return self.model_dir(model) / "model.safetensors"

    def responses(self, model: DemoModel) -> Path:
        return self.out / RUNS_DIR / model.folder / RESPONSES_FILE

    def metrics(self, model: DemoModel) -> Path:
        return self.out / SCORES_DIR / model.folder / judge_dirname(JUDGE) / METRICS_FILE

    def recipe(self, model: DemoModel) -> Path:
        return self.configs_dir / f"{model.recipe}.yaml"

    # --- the pipeline ---------------------------------------------------------------------

    def run(self) -> DemoResult:
        """Every stage that is not done yet, then the result (leaderboard, guard figures)."""
        import torch
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # the demo draws its own progress
        threads = torch.get_num_threads()
        if self.preset.threads is not None:
            torch.set_num_threads(self.preset.threads)
        try:
            return self._run()
        finally:
            torch.set_num_threads(threads)

    def _run(self) -> DemoResult:
        started = time.monotonic()
        self._check_recipes()
        self._claim_folder()
        data = self.data_dir / MANIFEST_FILE
        self._stage("generate HoliSafe-Synth", [data], [], self._synth)
        trained = [m for m in self.preset.models if m.trained]
        pending = self._pending(trained, data)
        self._stage(f"train {', '.join(m.name for m in trained)}", [], [],
                    lambda: self._train(pending), done=not pending)
        for model in self.preset.models:
            self._stage(f"answer the test split: {model.name}", [self.responses(model)], [],
                        lambda m=model: self._answer(m), done=self._answered(model))
        for model in self.preset.models:
            self._stage(f"score {model.name} ({JUDGE})", [self.metrics(model)],
                        [self.responses(model)], lambda m=model: self._score(m))
        self._stage(f"guard-eval the safety head of {self.preset.guarded.name}",
                    [self.out / GUARD_DIR / GUARD_METRICS],
                    [data, self.weights(self.preset.guarded)], self._guard)
        self._stage("write the report", [], [], self._report, always=True)
        result = self._result(time.monotonic() - started)
        self._save_state(result)
        return result

    def _claim_folder(self) -> None:
        """Use DIR only if it is empty or a demo folder; with ``fresh``, clear our part."""
        state = self.out / DEMO_FILE
        if self.out.exists() and not self.out.is_dir():
            raise DemoError(f"{self.out} is a file; give a folder with --out")
        if self.out.is_dir() and any(self.out.iterdir()) and not state.exists():
            raise DemoError(f"{self.out} is not empty and holds no {DEMO_FILE}: it is not a "
                            "demo folder, so the demo will not write into it; choose another "
                            "--out")
        if state.exists():
            previous = json.loads(state.read_text(encoding="utf-8"))
            differ = [f"{key} {previous.get(key)!r} (asked: {value!r})"
                      for key, value in self._settings().items() if previous.get(key) != value]
            if differ and not self.fresh:
                raise DemoError(f"{self.out} holds a demo made with other settings: "
                                f"{'; '.join(differ)}; add --fresh to replace it or choose "
                                "another --out")
            if self.fresh:
                for name in OWNED:
                    path = self.out / name
                    if path.is_dir():
                        shutil.rmtree(path)
                    elif path.exists():
                        path.unlink()
        self.out.mkdir(parents=True, exist_ok=True)
        self._save_state(None)

    def _check_recipes(self) -> None:
        missing = [self.recipe(m) for m in self.preset.models
                   if m.trained and not self.recipe(m).is_file()]
        if missing:
            raise DemoError(
                f"preset {self.preset.name!r} needs the training recipe(s) "
                f"{', '.join(str(p) for p in missing)}, which are missing; holisafe demo "
                "runs from a clone of the repository (its configs/demo/ folder)")

    def _stage(self, name: str, outputs: Sequence[Path], inputs: Sequence[Path],
               action: Callable[[], None], *, always: bool = False,
               done: bool | None = None) -> None:
        number = len(self.stages) + 1
        heading = f"[bold]\\[{number}/{self._stage_count}][/] {escape(name)}"
        finished = done if done is not None else up_to_date(outputs, inputs)
        if not always and finished:
            self.console.print(f"{heading}: [green]done before[/], reused", highlight=False)
            self.stages.append(StageRecord(name, 0.0, skipped=True))
            return
        self.console.rule(heading, align="left")
        started = time.monotonic()
        action()
        seconds = time.monotonic() - started
        self.console.print(f"  {escape(name)}: {seconds:.1f} s", highlight=False)
        self.stages.append(StageRecord(name, seconds, skipped=False))

    def _synth(self) -> None:
        from holisafe.data.synth import generate_synth

        if self.data_dir.exists():  # an interrupted generation: it is ours, start over
            shutil.rmtree(self.data_dir)
        with self.console.status(f"drawing pictures and writing records (scale {self.scale})"):
            summary = generate_synth(self.data_dir, seed=SEED, scale=self.scale)
        counts = {split: sum(c.values()) for split, c in summary.records.items()}
        self.console.print(f"  {counts['train']} training and {counts['test']} test records "
                           f"on {sum(summary.images.values())} images", highlight=False)

    def _train(self, models: Sequence[DemoModel]) -> None:
        """Train the models at once, one ``python -m holisafe.train`` process each; a model
        whose recipe starts from another demo model's output starts when that one is done.

        Tiny models barely gain from a second thread, and threads that share cores with
        other work stall each other (on a loaded 2-core machine 2 threads ran a step 7x
        slower than 1). So the cores are split between the processes that run at once (one
        thread each on 2 cores): together they keep every core busy with no thread ever
        waiting.
        """
        import torch
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        from holisafe.train import load_config

        # A model started from another's output waits for it, so fewer run at once; the
        # cores are those torch uses here (all of them, or OMP_NUM_THREADS).
        at_once = sum(self._starts_from(m) not in models for m in models)
        threads = max(1, torch.get_num_threads() // max(at_once, 1))
        if self.preset.threads is not None:
            threads = min(threads, self.preset.threads)
        jobs: list[_TrainingJob] = []
        for model in models:
            output = self.model_dir(model).parent
            resume = output.is_dir() and not self.model_dir(model).exists() and any(
                output.glob("checkpoint-*"))
            if output.is_dir() and not resume:
                shutil.rmtree(output)  # an older model, or a run that died before a checkpoint
            overrides = [
                f"data.train={self.data_dir}",
                f"training.output_dir={output}",
                f"training.seed={SEED}",
                f"training.torch_threads={threads}",
                "training.progress=false",
                *self._data_overrides(model),
                *self.train_overrides,
            ]
            steps = load_config(self.recipe(model), overrides).training.max_steps
            jobs.append(_TrainingJob(model, output, self.recipe(model), overrides, steps,
                                     resume))
        by_model = {job.model: job for job in jobs}
        for job in jobs:
            start = self._starts_from(job.model)
            job.after = [by_model[start]] if start in by_model else []
        self.console.print(f"  {len(jobs)} processes, {threads} torch thread(s) each; their "
                           f"output: {escape(str(self.out / TRAIN_DIR))}/<model>.log",
                           highlight=False)
        with Progress(*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=self.console) as bar:
            tasks = {job.model.name: bar.add_task(f"  {job.model.name}", total=job.steps,
                                                  start=False) for job in jobs}
            try:
                while True:
                    for job in jobs:
                        if job.ready():
                            job.start()
                            bar.start_task(tasks[job.model.name])
                    if not any(job.running() for job in jobs) and not any(
                            job.ready() for job in jobs):
                        break
                    for job in jobs:
                        tower = self._vision_tower(job.model)
                        note = ""
                        if job.process is None:
                            note = f" (waits for {', '.join(j.model.name for j in job.after)})"
                        elif tower is not None and not tower.exists() and not job.step():
                            note = " (the vision tower first)"
                        bar.update(tasks[job.model.name], completed=job.step(),
                                   description=f"  {job.model.name}{note}")
                    time.sleep(0.5)
                for job in jobs:
                    bar.update(tasks[job.model.name], completed=job.step())
            finally:
                for job in jobs:
                    job.stop()
        # A job that never started waited for one of these.
        failed = [job for job in jobs if job.process is not None and job.returncode != 0]
        if failed:
            job = failed[0]
            raise DemoError(f"training {job.model.name} failed (exit {job.returncode}); the "
                            f"end of {job.log}:\n{job.tail()}")
        for job in jobs:
            self.console.print(f"  {escape(job.model.name)}: {job.step()} steps", highlight=False)

    def _pending(self, trained: Sequence[DemoModel], data: Path) -> list[DemoModel]:
        """The models to (re)train, in the preset's order: those whose weights are missing
        or older than their data, recipe or starting model, and every model that starts
        from one of them."""
        pending: set[DemoModel] = set()

        def visit(model: DemoModel, path: tuple[DemoModel, ...]) -> None:
            if model in path:
                raise DemoError("the demo recipes start from each other in a circle: "
                                + " -> ".join(m.recipe or m.name for m in (*path, model)))
            start = self._starts_from(model)
            inputs = [data, self.recipe(model)]
            if start is not None:
                visit(start, (*path, model))
                inputs.append(self.weights(start))
            if start in pending or not up_to_date([self.weights(model)], inputs):
                pending.add(model)

        for model in trained:
            visit(model, ())
        return [m for m in trained if m in pending]

    def _starts_from(self, model: DemoModel) -> DemoModel | None:
        """The demo model whose trained output this model's recipe starts from
        (``model.init`` naming another recipe's ``training.output_dir``/model), or None."""
        from holisafe.train.pipeline import MODEL_DIR

        init = (self._raw_recipe(model).get("model") or {}).get("init") or ""
        if not init or init.startswith("preset:"):
            return None
        for other in self.preset.models:
            output = (self._raw_recipe(other).get("training") or {}).get("output_dir") \
                if other.trained and other != model else None
            if output and os.path.normpath(init) == os.path.normpath(Path(output) / MODEL_DIR):
                return other
        return None

    def _data_overrides(self, model: DemoModel) -> list[str]:
        """Point the recipe's other paths (held-out data, tokenizer texts, the shared
        pretrained vision tower, the demo model it starts from) into DIR."""
        raw = self._raw_recipe(model)
        data, settings = raw.get("data") or {}, raw.get("model") or {}
        overrides = []
        start = self._starts_from(model)
        if start is not None:
            overrides.append(f"model.init={self.model_dir(start)}")
        if data.get("eval"):
            overrides.append(f"data.eval={self.data_dir}")
        if settings.get("tokenizer_data"):
            overrides.append(f"model.tokenizer_data=[{self.data_dir}]")
        if settings.get("vision_tower"):
            overrides.append(f"model.vision_tower={self._vision_tower(model)}")
        return overrides

    def _raw_recipe(self, model: DemoModel) -> dict[str, Any]:
        import yaml

        return yaml.safe_load(self.recipe(model).read_text(encoding="utf-8")) or {}

    def _vision_tower(self, model: DemoModel) -> Path | None:
        """Where the recipe's pretrained vision tower goes in DIR (recipes naming the same
        folder share it, as they do in configs/demo/), or None if it names none."""
        folder = (self._raw_recipe(model).get("model") or {}).get("vision_tower")
        return None if not folder else self.out / TRAIN_DIR / Path(folder).name

    def _answer_inputs(self, model: DemoModel) -> list[Path]:
        data = [self.data_dir / MANIFEST_FILE]
        return [*data, self.weights(model)] if model.trained else data

    def _backend_spec(self, model: DemoModel) -> str:
        if model.backend == "const":
            return model.name
        return f"{model.backend}:{self.model_dir(model)}"

    def _answered(self, model: DemoModel) -> bool:
        """Whether the run of this model finished every sample (run.json says so)."""
        info = self.responses(model).parent / RUN_FILE
        if not up_to_date([info], self._answer_inputs(model)):
            return False
        return bool(json.loads(info.read_text(encoding="utf-8")).get("complete"))

    def _answer(self, model: DemoModel) -> None:
        from holisafe.bench.runner import RunError, run
        from holisafe.data.loaders import load_dataset
        from holisafe.models.spec import load_backend

        run_dir = self.responses(model).parent
        if run_dir.exists() and not up_to_date([run_dir / RUN_FILE],
                                               self._answer_inputs(model)):
            shutil.rmtree(run_dir)  # answers of an older model or older data
        options = {} if model.backend == "const" else {"max_new_tokens": self.max_new_tokens}
        backend = load_backend(self._backend_spec(model), **options)
        dataset = load_dataset(self.data_dir, split="test")
        try:
            summary = run(dataset, backend, run_dir, limit=self.limit, batch_size=BATCH_SIZE,
                          progress=True)
        except RunError as error:
            raise DemoError(f"answering with {model.name}: {error}; rerun with --fresh") \
                from None
        if summary.failed:
            first = next(iter(summary.errors.items()))
            raise DemoError(f"{model.name}: {summary.failed} samples failed (first: id="
                            f"{first[0]}: {first[1]}); run the demo again to retry them")
        self.console.print(f"  {summary.answered} answers in {summary.seconds:.1f} s",
                           highlight=False)

    def _score(self, model: DemoModel) -> None:
        from holisafe.bench.scoring import score_file

        result = score_file(self.responses(model), [JUDGE], self.metrics(model).parent.parent,
                            name=model.name)
        if result.rejected:
            raise DemoError(f"{model.name}: {len(result.rejected)} response lines rejected: "
                            f"{result.rejected[0]}")

    def _guard(self) -> None:
        from rich.progress import Progress

        from holisafe.bench.guard_eval import evaluate_guard
        from holisafe.data.loaders import load_dataset
        from holisafe.models.safellava.guard import SafetyGuard

        model = self.preset.guarded
        guard = SafetyGuard.from_pretrained(self.model_dir(model))
        dataset = load_dataset(self.data_dir, split="test")
        with Progress(console=self.console, transient=True) as bar:
            task = bar.add_task("classifying test images", total=None)
            evaluate_guard(guard, dataset, self.out / GUARD_DIR, model=model.name, per="image",
                           batch_size=BATCH_SIZE, progress=lambda n: bar.advance(task, n))

    def _report(self) -> None:
        models = Section(
            title="The models",
            note="Each trained model comes from its recipe in configs/demo/, on the train "
                 "split below; head = accuracy of the safety head (20 classes) over the "
                 "answered samples.",
            columns=("model", "what it is", "recipe"),
            rows=tuple((m.name, m.about, f"configs/demo/{m.recipe}.yaml" if m.trained
                        else "") for m in self.preset.models))
        sections = [models, *guard_sections(self._guard_report(), self.out / GUARD_DIR),
                    self._data_section()]
        write_report([self.metrics(m) for m in self.preset.models], self.out / REPORT_DIR,
                     title=f"HoliSafe demo ({self.preset.name}): HoliSafe-Synth test split",
                     sections=sections, html_name=REPORT_FILE)

    def _guard_report(self) -> GuardReport:
        path = self.out / GUARD_DIR / GUARD_METRICS
        return GuardReport.model_validate_json(path.read_bytes())

    def _data_section(self) -> Section:
        from holisafe.data.layout import BENCH_FILE, TRAIN_FILE
        from holisafe.data.loaders import load_dataset
        from holisafe.data.records import TrainRecord
        from holisafe.data.stats import compute_stats, plot_distribution

        plots = []
        for split, kind, file in (("test", None, BENCH_FILE), ("train", TrainRecord,
                                                                 TRAIN_FILE)):
            options = {} if kind is None else {"kind": kind}
            records = load_dataset(self.data_dir, split=split, **options).records
            path = plot_distribution(compute_stats(records),
                                     self.out / REPORT_DIR / "plots" / f"data_{split}.png",
                                     title=f"HoliSafe-Synth {split} split")
            plots.append(Plot(f"Samples per category and type, {split} split ({file})",
                              path.read_bytes()))
        return Section(title="Data: HoliSafe-Synth",
                       note=f"Procedurally generated data in the official HoliSafe format "
                            f"(seed {SEED}, scale {self.scale}); models train on the train "
                            "split and are scored on the test split, which shares no image "
                            "with it.", plots=tuple(plots))

    # --- results --------------------------------------------------------------------------

    def _result(self, seconds: float) -> DemoResult:
        boards = build_boards([self.metrics(m) for m in self.preset.models])
        return DemoResult(out=self.out, preset=self.preset.name,
                          report=self.out / REPORT_DIR / REPORT_FILE, boards=boards,
                          guard=self._guard_report(), stages=list(self.stages),
                          seconds=seconds)

    def _settings(self) -> dict[str, Any]:
        """What makes two demo folders comparable; a folder is only continued with its own."""
        return {"preset": self.preset.name, "scale": self.scale,
                "train_overrides": self.train_overrides,
                "max_new_tokens": self.max_new_tokens, "limit": self.limit}

    def _save_state(self, result: DemoResult | None) -> None:
        state = self._settings()
        if result is not None:
            state["seconds"] = round(result.seconds, 1)
            state["stages"] = [{"name": s.name, "seconds": round(s.seconds, 1),
                                "skipped": s.skipped} for s in result.stages]
            state["mASR"] = {m.name: result.masr(m.name) for m in self.preset.models}
        (self.out / DEMO_FILE).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")


def guard_rows(report: GuardReport) -> tuple[tuple[str, str], ...]:
    """The guard figures of a ``GuardReport`` as (name, percent) pairs."""
    binary = report.binary
    return (
        ("accuracy (20 classes)", _percent(report.accuracy)),
        ("macro-F1 (20 classes)", _percent(report.macro_f1)),
        ("unsafe vs safe: accuracy", _percent(binary.accuracy)),
        ("unsafe vs safe: precision", _percent(binary.precision)),
        ("unsafe vs safe: recall", _percent(binary.recall)),
        ("unsafe vs safe: F1", _percent(binary.f1)),
        ("unsafe vs safe: AUROC", _percent(binary.auroc)),
    )


def guard_sections(report: GuardReport, guard_dir: Path) -> list[Section]:
    """The guard part of the demo page: the paper's binary figures and the 20-class ones
    with the confusion matrix, then the per-class table."""
    summary = Section(
        title=f"Safety head of {report.model} as an image guard",
        note=f"The head alone classifies each of the {report.n} distinct test images (no "
             f"decoding; {report.n_failed} failed) into the 20 safety classes; labels are "
             "image_safety_label. Unsafe is the positive class of the binary figures, as in "
             "the paper's guard table. Percent, higher is better.",
        columns=("metric", "value"), rows=guard_rows(report),
        plots=(Plot("Safety head: confusion matrix on the test images",
                    (guard_dir / CONFUSION_PLOT).read_bytes()),),
    )
    per_class = Section(
        title="Safety head per class",
        note="Support: test images of the class; predicted: images the head put in it.",
        columns=("class", "support", "predicted", "precision", "recall", "F1"),
        rows=tuple((row.name, str(row.support), str(row.predicted), _percent(row.precision),
                    _percent(row.recall), _percent(row.f1)) for row in report.per_class),
    )
    return [summary, per_class]


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def leaderboard_table(board: Board) -> Table:
    """One judge's leaderboard for the terminal: the official columns under their type
    codes, one decimal as the official leaderboard prints them, best in bold."""
    from rich import box

    from holisafe.bench.report.leaderboard import COLUMNS, MODEL_HEADER

    table = Table(title=f"HoliSafe leaderboard on the synth test split, judge {board.judge}",
                  caption="percent; SSS = 100 - RR, ↑ higher is better, ↓ lower is better",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column(MODEL_HEADER, no_wrap=True)
    for column in COLUMNS:
        arrow = "↑" if column.higher_is_better else "↓"
        table.add_column(column.key + arrow, justify="right", no_wrap=True)
    if board.has_head:
        table.add_column("head↑", justify="right")
    for row in board.rows:
        cells = []
        for column in COLUMNS:
            value = row.values.get(column.key)
            text = "n/a" if value is None else f"{value:.1f}"
            cells.append(f"[bold]{text}[/]" if board.rank(row, column.key) == "best" else text)
        if board.has_head:
            head = row.head_accuracy
            cells.append("" if head is None else f"{head:.1f}")
        table.add_row(escape(row.model), *cells)
    return table


def guard_table(report: GuardReport) -> Table:
    """The guard figures for the terminal."""
    from rich import box

    table = Table(title=f"image guard: safety head of {escape(report.model)}\n"
                        f"{report.n} test images, percent", box=box.SIMPLE_HEAD)
    table.add_column("")
    table.add_column("value", justify="right")
    for name, value in guard_rows(report):
        table.add_row(name, value)
    return table


def print_summary(result: DemoResult, console: Console) -> None:
    """The leaderboard, the guard figures and where the report is."""
    for board in result.boards:
        console.print(leaderboard_table(board))
    console.print(guard_table(result.guard))
    preset = PRESETS[result.preset]
    ours, unaligned = preset.guarded.name, preset.unaligned.name
    a, b = result.masr(ours), result.masr(unaligned)
    if a is not None and b is not None:
        verdict = "lower" if a < b else "NOT lower"
        console.print(f"{escape(ours)} mASR {a:.2f} % is {verdict} than {escape(unaligned)}'s "
                      f"{b:.2f} %", highlight=False)
    spent = sum(s.seconds for s in result.stages)
    reused = sum(s.skipped for s in result.stages)
    console.print(f"report: {escape(str(result.report))}  ({spent:.0f} s of work"
                  + (f", {reused} stages reused" if reused else "") + ")", highlight=False)


def run_demo(out: str | Path, preset: str = "tiny", *, fresh: bool = False,
             console: Console | None = None, **options: Any) -> DemoResult:
    """Run (or finish) the demo in ``out``; see :class:`Demo` for the options."""
    return Demo(out, preset, fresh=fresh, console=console, **options).run()


__all__ = [
    "PRESETS",
    "Demo",
    "DemoError",
    "DemoModel",
    "DemoResult",
    "Preset",
    "guard_rows",
    "guard_sections",
    "guard_table",
    "leaderboard_table",
    "print_summary",
    "run_demo",
    "up_to_date",
]
