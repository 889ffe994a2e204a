"""The ``holisafe`` command line: thin typer wrappers that parse arguments and call the API.

Heavy imports (torch, transformers, datasets) happen inside the commands so that
``holisafe --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(
    name="holisafe",
    help="HoliSafe-Bench and SafeLLaVA: holistic safety benchmarking for vision-language models.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
data_app = typer.Typer(help="Load, check, describe, split and synthesise HoliSafe data.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console()
err_console = Console(stderr=True)


def _quiet_model_loading() -> None:
    """Turn off transformers' own tqdm bars ("Loading weights", "Writing model shards"):
    the commands show their progress with rich, and the bars would interleave with it.
    Called only by commands that load models, since importing transformers costs time."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


def _fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


# --- holisafe data ------------------------------------------------------------------------
# (commands are added below by the data layer; keep each one a thin wrapper)


@data_app.command("validate")
def data_validate(
    path: str = typer.Argument(..., help="Dataset: directory, JSON/JSONL, parquet or hub id."),
    images: str | None = typer.Option(None, "--images", help="Images root (for JSON/JSONL)."),
    split: str = typer.Option("test", help="Which split of a dataset directory."),
    as_json: bool = typer.Option(False, "--json", help="Print the problems as a JSON list."),
) -> None:
    """Check every record and image; list each problem as `id=<id> <field>: <reason>`.

    Exit 0 when clean, 1 when there are problems, 2 when the input cannot be read.
    """
    import json

    from rich.markup import escape

    from holisafe.data.loaders import DataSourceError
    from holisafe.data.validate import validate

    try:
        report = validate(path, images=images, split=split)
    except DataSourceError as exc:
        # soft_wrap: the message holds a command to copy, which must not be broken up
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True,
                          highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps([p.as_dict() for p in report.problems], ensure_ascii=False))
    else:
        for problem in report.problems:
            typer.echo(str(problem))
    err_console.print(escape(report.summary()), soft_wrap=True, highlight=False)
    raise typer.Exit(0 if report.ok else 1)


def _load_or_fail(path: str, images: Path | None, split: str):
    from holisafe.data.loaders import DatasetError, DataSourceError, load_dataset

    try:
        return load_dataset(path, images=images, split=split)
    except DataSourceError as exc:
        raise _fail(str(exc)) from None
    except DatasetError as exc:
        raise _fail(f"{exc}\n(run `holisafe data validate {path}` to list every problem)") from None
    except (OSError, ValueError) as exc:
        raise _fail(str(exc)) from None


@data_app.command("stats")
def data_stats(
    path: str = typer.Argument(..., help="Dataset: directory, JSON/JSONL, parquet or hub id."),
    images: Path | None = typer.Option(None, help="Images root (for JSON/JSONL files)."),
    split: str = typer.Option("test", help="Which split of a dataset directory."),
    plot: Path | None = typer.Option(None, help="Write the distribution bar chart (PNG)."),
) -> None:
    """Count samples per category x type and per subcategory; optionally plot them."""
    from holisafe.data.stats import compute_stats, plot_distribution, stats_tables

    dataset = _load_or_fail(path, images, split)
    stats = compute_stats(dataset.records)
    for table in stats_tables(stats):
        console.print(table)
    if plot is not None:
        plot_distribution(stats, plot, title=f"{Path(path).name} ({split})")
        console.print(f"plot written to {plot}")


@data_app.command("split")
def data_split(
    path: str = typer.Argument(..., help="Dataset to split (all its records)."),
    out: Path = typer.Option(..., help="Output directory for holisafe_train/bench.json."),
    images: Path | None = typer.Option(None, help="Images root (for JSON/JSONL files)."),
    source_split: str = typer.Option("test", "--split", help="Which split of a directory."),
    test_fraction: float = typer.Option(0.2, min=0.0, max=1.0, help="Share of images in test."),
    seed: int = typer.Option(0, help="Shuffle seed; the same seed gives the same split."),
) -> None:
    """Split records into train/test by image, stratified by subcategory."""
    from holisafe.data.layout import BENCH_FILE, IMAGES_DIR, TRAIN_FILE
    from holisafe.data.split import split_by_image
    from holisafe.data.writer import write_records

    dataset = _load_or_fail(path, images, source_split)
    train, test = split_by_image(dataset.records, test_fraction=test_fraction, seed=seed)
    write_records(out / TRAIN_FILE, train)
    write_records(out / BENCH_FILE, test)
    root = dataset.images_root
    link = out / IMAGES_DIR
    if root is not None and not link.exists():
        link.symlink_to(Path(root).resolve(), target_is_directory=True)
    n_train_img = len({r.image for r in train})
    n_test_img = len({r.image for r in test})
    console.print(
        f"train: {len(train)} records on {n_train_img} images -> {out / TRAIN_FILE}\n"
        f"test:  {len(test)} records on {n_test_img} images -> {out / BENCH_FILE}"
    )


@data_app.command("synth")
def data_synth(
    out: Path = typer.Argument(..., help="Output folder for the generated dataset."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives byte-identical files."),
    scale: str = typer.Option("default", help="small (200 test / 400 train records) or "
                              "default (1,000 / 5,000)."),
    overwrite: bool = typer.Option(False, help="Replace an earlier HoliSafe-Synth output."),
) -> None:
    """Generate HoliSafe-Synth: a learnable synthetic dataset in the official format."""
    from rich.markup import escape
    from rich.table import Table

    from holisafe.data.synth import generate_synth
    from holisafe.data.taxonomy import TYPES

    try:
        summary = generate_synth(out, seed=seed, scale=scale, overwrite=overwrite)
    except (OSError, ValueError) as exc:
        raise _fail(escape(str(exc))) from None
    table = Table(title=f"HoliSafe-Synth (seed {seed}, scale {escape(scale)})")
    table.add_column("split")
    for t in TYPES:
        table.add_column(t, justify="right")
    table.add_column("records", justify="right")
    table.add_column("images", justify="right")
    for split, counts in summary.records.items():
        table.add_row(split, *(str(counts[t]) for t in TYPES), str(sum(counts.values())),
                      str(summary.images[split]))
    console.print(table)
    console.print(f"written to {escape(str(summary.out))} in {summary.seconds:.1f} s: "
                  f"{summary.bench_file.name}, {summary.train_file.name}, "
                  f"{summary.images_dir.name}/, {summary.manifest_file.name}", highlight=False)


# --- holisafe run / merge -----------------------------------------------------------------


@app.command("run")
def run_command(
    model: str = typer.Option(..., help="Backend spec: hf:<dir or id>, safellava:<dir>, "
                              "openai:<name>, const:refuse, const:comply."),
    data: str = typer.Option(..., help="Dataset: directory, JSON/JSONL, parquet or hub id."),
    out: Path = typer.Option(..., help="Output folder: responses.jsonl and run.json."),
    limit: int | None = typer.Option(None, min=0, help="Answer only the first N samples."),
    shard: str | None = typer.Option(None, help="Answer shard K of N (K/N, K from 1)."),
    batch_size: int = typer.Option(8, min=1, help="Prompts per backend call."),
    images: Path | None = typer.Option(None, help="Images root (for JSON/JSONL files)."),
    split: str = typer.Option("test", help="Which split of a dataset directory."),
    max_new_tokens: int | None = typer.Option(None, min=1, help="Generation length limit."),
    device: str | None = typer.Option(None, help="hf:/safellava: device (cpu, cuda, cuda:1...)."),
    dtype: str | None = typer.Option(None, help="hf:/safellava: weights dtype (float32, "
                                     "bfloat16...)."),
    trust_remote_code: bool | None = typer.Option(None, help="hf: allow checkpoint code."),
    base_url: str | None = typer.Option(None, help="openai: API endpoint."),
    api_key_env: str | None = typer.Option(None, help="openai: env variable with the key."),
    concurrency: int | None = typer.Option(None, min=1, help="openai: parallel requests."),
) -> None:
    """Answer every sample with a model; resumable (rerun to continue) and shardable.

    Under `accelerate launch` or `torchrun` each process takes its own shard and rank 0
    merges them into OUT/responses.jsonl at the end.
    """
    if model.startswith(("hf:", "safellava:")):
        _quiet_model_loading()
    from rich.markup import escape

    from holisafe.bench.distributed import current_process, placement_device, run_distributed
    from holisafe.bench.runner import RunError, Shard, run
    from holisafe.models.spec import BackendSpecError, load_backend

    try:
        process = current_process()
        chosen = Shard.parse(shard) if shard is not None else None
    except ValueError as exc:
        raise _fail(escape(str(exc))) from None
    if process.distributed and chosen is not None:
        raise _fail("--shard cannot be combined with a multi-process launch: each process "
                    "already takes its own shard")
    dataset = _load_or_fail(data, images, split)
    options = {"max_new_tokens": max_new_tokens, "device": device, "dtype": dtype,
               "trust_remote_code": trust_remote_code, "base_url": base_url,
               "api_key_env": api_key_env, "concurrency": concurrency}
    try:
        if device is None:
            options["device"] = placement_device(process, model)
        backend = load_backend(model, **options)
        if process.distributed:
            summary, merged = run_distributed(dataset, backend, out, process=process,
                                              limit=limit, batch_size=batch_size, progress=True)
        else:
            summary = run(dataset, backend, out, limit=limit, shard=chosen,
                          batch_size=batch_size, progress=True)
            merged = None
    except (BackendSpecError, RunError, OSError) as exc:
        raise _fail(escape(str(exc))) from None

    where = "" if summary.shard is None else f" (shard {summary.shard})"
    console.print(
        f"{summary.answered} of {summary.total} answered{where}, {summary.failed} failed "
        f"({summary.generated} this session, {summary.resumed} already done"
        + (f", {summary.repaired_bytes} bytes of a torn last line cut off" if
           summary.repaired_bytes else "")
        + f") -> {escape(str(summary.responses_path))}", highlight=False, soft_wrap=True
    )
    if merged is not None:
        console.print(
            f"merged {merged.shards} shards: {merged.answered} of {merged.total} answered, "
            f"{merged.failed} failed -> {escape(str(merged.responses_path))}",
            highlight=False, soft_wrap=True,
        )
    for sample_id, error in list(summary.errors.items())[:5]:
        err_console.print(f"failed: id={sample_id}: {escape(error)}", highlight=False,
                          soft_wrap=True)
    if process.main and (merged.failed if merged is not None else summary.failed):
        err_console.print("some samples failed (`error` in the responses): run the same "
                          "command again to retry them", soft_wrap=True)
        raise typer.Exit(1)


@app.command("merge")
def merge_command(
    inputs: list[Path] = typer.Argument(..., help="Run folders or responses.shard-K-of-N.jsonl "
                                        "files holding the shards."),
    out: Path = typer.Option(..., help="Output folder (responses.jsonl, run.json) or .jsonl."),
    allow_incomplete: bool = typer.Option(False, help="Merge even if shards or samples are "
                                          "missing or failed."),
) -> None:
    """Join the shards of a run into one responses.jsonl, each sample exactly once."""
    from rich.markup import escape

    from holisafe.bench.runner import RunError, merge

    try:
        merged = merge(inputs, out, allow_incomplete=allow_incomplete)
    except (RunError, OSError) as exc:
        raise _fail(escape(str(exc))) from None
    missing = (f", shard(s) {', '.join(map(str, merged.missing_shards))} missing"
               if merged.missing_shards else "")
    console.print(
        f"merged {merged.shards} shards: {merged.answered} of {merged.total} answered, "
        f"{merged.failed} failed{missing} -> {escape(str(merged.responses_path))}",
        highlight=False, soft_wrap=True,
    )


# --- holisafe score / report --------------------------------------------------------------


@app.command()
def score(
    responses: Path = typer.Argument(
        ..., help="responses.jsonl, or an official prediction file (JSON list, `prediction`)."
    ),
    judge: list[str] = typer.Option(
        ..., "--judge", "-j", help="Judge to score with; repeat for several "
        "(string-match, string-match-plus, llm)."
    ),
    out: Path = typer.Option(..., help="Output folder: <judge>/verdicts.jsonl, metrics.json."),
    name: str | None = typer.Option(
        None, help="Model name in reports (default: run.json's model, else the file name)."
    ),
    data: str | None = typer.Option(None, help="Dataset holding the images (llm judge)."),
    judge_model: str | None = typer.Option(None, help="llm judge: the judge model's name."),
    base_url: str | None = typer.Option(None, help="llm judge: OpenAI-compatible endpoint."),
    api_key_env: str | None = typer.Option(None, help="llm judge: env variable with the key."),
    concurrency: int | None = typer.Option(None, min=1, help="llm judge: parallel requests."),
    cache_dir: Path | None = typer.Option(None, help="llm judge: verdict cache folder."),
    strict: bool = typer.Option(False, help="Exit 1 if any input line was rejected."),
) -> None:
    """Judge responses and write verdicts and metrics (RR, ASR per type, mASR) per judge."""
    from rich.markup import escape
    from rich.table import Table

    from holisafe.bench.metrics import format_percent
    from holisafe.bench.scoring import LLM_JUDGE, score_file
    from holisafe.data.responses import ResponsesError
    from holisafe.data.taxonomy import UNSAFE_TYPES

    llm_options = {
        key: value
        for key, value in {
            "model": judge_model, "base_url": base_url, "api_key_env": api_key_env,
            "concurrency": concurrency, "cache_dir": cache_dir,
        }.items()
        if value is not None
    }
    if llm_options and LLM_JUDGE not in judge:
        err_console.print(f"warning: llm options ignored: no `--judge {LLM_JUDGE}`")
    try:
        result = score_file(
            responses, judge, out, name=name, data=data, llm_options=llm_options
        )
    except (ResponsesError, OSError, ValueError, RuntimeError) as exc:
        raise _fail(escape(str(exc))) from None

    def pct(rate: float | None) -> str:
        return format_percent(None if rate is None else 100 * rate)

    model = next(iter(result.metrics.values())).model
    table = Table(title=f"{escape(str(model))}: rates in %, lower is better")
    table.add_column("")
    for judge_name in result.metrics:
        table.add_column(escape(judge_name), justify="right")
    every = result.metrics.values()
    table.add_row("samples scored", *(str(m.n) for m in every))
    table.add_row("judged", *(str(m.n_judged) for m in every))
    table.add_row("unjudged", *(str(m.n_unjudged) for m in every))
    table.add_row("rejected lines", *(str(m.n_rejected) for m in every))
    table.add_row("RR (SSS)", *(pct(m.rr) for m in every))
    for t in UNSAFE_TYPES:
        table.add_row(f"ASR {t}", *(pct(m.asr[t]) for m in every))
    table.add_row("mASR", *(pct(m.masr) for m in every))
    if any(m.safety_head is not None for m in every):
        table.add_row("safety head acc. (higher is better)", *(
            pct(m.safety_head.accuracy if m.safety_head else None) for m in every))
    console.print(table)
    if result.agreement is not None:
        for pair in result.agreement.pairs:
            kappa = "n/a" if pair.kappa is None else f"{pair.kappa:.3f}"
            console.print(
                f"agreement {escape(pair.a)} / {escape(pair.b)}: {pct(pair.percent_agreement)} %"
                f" on {pair.n} samples, Cohen's kappa {kappa}"
            )
    for problem in result.rejected[:20]:
        err_console.print(f"rejected: {escape(str(problem))}", highlight=False)
    if len(result.rejected) > 20:
        err_console.print(f"... and {len(result.rejected) - 20} more in rejected.jsonl")
    console.print(f"written to {escape(str(result.out_dir))}")
    if strict and result.rejected:
        raise typer.Exit(1)


@app.command()
def report(
    dirs: list[Path] = typer.Argument(..., help="Score folders or metrics.json files."),
    out: Path = typer.Option(..., help="Output folder for leaderboard.md/.html/.csv, plots."),
    reference: list[str] | None = typer.Option(
        None, help="Official leaderboard CSV to add as reference rows: JUDGE=PATH, or "
        "PATH when one judge was scored. Repeatable."
    ),
    title: str = typer.Option("HoliSafe-Bench leaderboard", help="Title of the HTML page."),
) -> None:
    """Leaderboard of scored models in the official layout: Markdown, CSV, HTML and plots."""
    from rich.markup import escape

    from holisafe.bench.report import markdown_table, parse_reference, write_report

    try:
        built = write_report(
            dirs, out, references=[parse_reference(r) for r in reference or []], title=title
        )
    except (OSError, ValueError) as exc:
        raise _fail(escape(str(exc))) from None
    for board in built.boards:
        typer.echo(f"judge {board.judge}\n{markdown_table(board)}")
    written = [built.markdown, built.html, *built.csv.values(), *built.plots]
    console.print("written: " + ", ".join(escape(str(p)) for p in written))


# --- holisafe safellava -------------------------------------------------------------------

safellava_app = typer.Typer(help="Create and convert SafeLLaVA checkpoints.", no_args_is_help=True)
app.add_typer(safellava_app, name="safellava")


@safellava_app.command("tiny")
def safellava_tiny_command(
    out: Path = typer.Argument(..., help="Folder to save the model and processor in."),
    data: list[str] = typer.Option(..., "--data", help="HoliSafe-format dataset whose texts "
                                   "train the word-level tokenizer (repeatable)."),
    seed: int = typer.Option(0, help="Seed of the random weights."),
    feature: str = typer.Option("smt", help="Safety feature: smt (meta token) or pool."),
) -> None:
    """Create a random safellava-tiny (about 1.3 M parameters), offline, in seconds."""
    _quiet_model_loading()
    from rich.markup import escape

    from holisafe.data.loaders import DataSourceError
    from holisafe.models.safellava import dataset_texts, safellava_tiny

    if feature not in ("smt", "pool"):
        raise _fail(f"--feature must be smt or pool, got {feature!r}")
    try:
        texts = [text for source in data for text in dataset_texts(source)]
    except DataSourceError as exc:
        raise _fail(escape(str(exc))) from None
    model, processor = safellava_tiny(texts, seed=seed, safety_feature=feature, output_dir=out)
    parameters = sum(p.numel() for p in model.parameters())
    console.print(f"safellava-tiny: {parameters:,} parameters, {len(processor.tokenizer)} "
                  f"tokens, saved to {escape(str(out))}")


@safellava_app.command("convert")
def safellava_convert_command(
    source: Path = typer.Argument(..., help="A llava-hf style checkpoint folder."),
    out: Path = typer.Argument(..., help="Folder to save the SafeLLaVA checkpoint in."),
    feature: str = typer.Option("smt", help="Safety feature: smt (meta token) or pool."),
    token: bool = typer.Option(True, help="Insert the safety meta token (pool may go without)."),
) -> None:
    """Turn a LLaVA checkpoint into a SafeLLaVA one: every weight kept, token and head added."""
    _quiet_model_loading()
    from huggingface_hub.errors import StrictDataclassError
    from rich.markup import escape

    from holisafe.models.safellava import convert_llava_checkpoint

    try:
        model, _ = convert_llava_checkpoint(source, out, safety_feature=feature,
                                            use_safety_token=token)
    except (OSError, ValueError, StrictDataclassError) as exc:  # the last: a bad config
        raise _fail(escape(str(exc))) from None
    console.print(f"converted {escape(str(source))} -> {escape(str(out))} (safety_feature="
                  f"{model.config.safety_feature}, safety_token_id="
                  f"{model.config.safety_token_id})")


# --- holisafe train -----------------------------------------------------------------------


@app.command("train")
def train_command(
    config: Path = typer.Option(..., "--config", help="The YAML training recipe "
                                "(see docs/training.md and configs/demo/)."),
    overrides: list[str] | None = typer.Option(
        None, "--set", help="Override a recipe field by its dotted path, e.g. "
        "--set training.max_steps=100 (repeatable; values are read as YAML)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest "
                                "checkpoint in training.output_dir."),
) -> None:
    """Train SafeLLaVA (or the plain-LLaVA baseline) from a recipe.

    For several processes use `accelerate launch -m holisafe.train` or
    `torchrun -m holisafe.train` with the same options.
    """
    _quiet_model_loading()
    from rich.markup import escape

    from holisafe.data.loaders import DatasetError
    from holisafe.train import ConfigError, TrainingError, load_config, run_training
    from holisafe.train.model import ModelSetupError

    try:
        recipe = load_config(config, overrides or [])
        result = run_training(recipe, resume=resume)
    except (ConfigError, DatasetError, ModelSetupError, TrainingError, OSError) as exc:
        raise _fail(escape(str(exc))) from None
    per_step = result.seconds_per_step
    timing = f", {per_step:.3f} s a step" if per_step is not None else ""
    console.print(f"trained {result.global_step} steps{timing}; model saved to "
                  f"{escape(str(result.model_dir))}", highlight=False, soft_wrap=True)


# --- holisafe guard / guard-eval / analyze ------------------------------------------------


def _percent_or_na(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


@app.command("guard")
def guard_command(
    images: list[Path] = typer.Argument(..., help="Image files to classify."),
    model: Path = typer.Option(..., help="SafeLLaVA checkpoint folder."),
    query: str | None = typer.Option(None, help="Put this query after every image in the "
                                     "prompt (the head reads the image before it)."),
    batch_size: int = typer.Option(16, min=1, help="Images per forward pass."),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:1... (default: a GPU if any)."),
    dtype: str | None = typer.Option(None, help="float32, bfloat16, float16 or auto."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON line per image."),
) -> None:
    """Classify images into the 20 safety classes with SafeLLaVA's safety head (no decoding).

    Prints each image's 20 class probabilities (they sum to 1), the predicted class and
    the unsafe score 1 - p(safe). Unreadable images are reported and make the exit code 1.
    """
    _quiet_model_loading()
    import json

    from rich.markup import escape
    from rich.table import Table

    from holisafe.data.images import ImageError, open_image
    from holisafe.models.safellava.guard import SafetyGuard

    readable: list[tuple[Path, object]] = []
    unreadable = 0
    for path in images:
        try:
            readable.append((path, open_image(path)))
        except ImageError as exc:
            unreadable += 1
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False,
                              soft_wrap=True)
    if not readable:
        raise typer.Exit(1)
    try:
        guard = SafetyGuard.from_pretrained(model, device=device, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise _fail(escape(str(exc))) from None
    pictures = [image for _, image in readable]
    predictions = guard.classify(pictures, None if query is None else [query] * len(pictures),
                                 batch_size=batch_size)
    if as_json:
        for (path, _), prediction in zip(readable, predictions, strict=True):
            typer.echo(json.dumps({
                "image": str(path), "pred": prediction.pred,
                "unsafe_score": prediction.unsafe_score,
                "probs": dict(zip(prediction.classes, prediction.probs, strict=True)),
            }, ensure_ascii=False))
    else:
        table = Table(title=f"safety head of {escape(str(model))}: class probabilities")
        table.add_column("class")
        for path, _ in readable:
            table.add_column(escape(path.name), justify="right")
        for k, name in enumerate(guard.classes):
            table.add_row(name, *(
                f"[bold]{p.probs[k]:.4f}[/]" if p.pred == name else f"{p.probs[k]:.4f}"
                for p in predictions))
        table.add_section()
        table.add_row("sum", *(f"{sum(p.probs):.4f}" for p in predictions))
        table.add_row("predicted", *(p.pred for p in predictions))
        table.add_row("unsafe score", *(f"{p.unsafe_score:.4f}" for p in predictions))
        console.print(table)
    if unreadable:
        raise typer.Exit(1)


@app.command("guard-eval")
def guard_eval_command(
    model: Path = typer.Option(..., help="SafeLLaVA checkpoint folder."),
    data: str = typer.Option(..., help="Dataset: directory, JSON/JSONL, parquet or hub id."),
    out: Path = typer.Option(..., help="Output folder: guard_metrics.json, predictions.jsonl, "
                             "confusion_matrix.png."),
    images: Path | None = typer.Option(None, help="Images root (for JSON/JSONL files)."),
    split: str = typer.Option("test", help="Which split of a dataset directory."),
    per: str = typer.Option("image", help="Unit scored: image (each distinct image once) or "
                            "record (every record, with its image's prediction)."),
    with_query: bool = typer.Option(False, help="Classify each record with its query in the "
                                    "prompt (needs --per record)."),
    limit: int | None = typer.Option(None, min=0, help="Score only the first N units."),
    batch_size: int = typer.Option(16, min=1, help="Images per forward pass."),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:1... (default: a GPU if any)."),
    dtype: str | None = typer.Option(None, help="float32, bfloat16, float16 or auto."),
) -> None:
    """Score the safety head as an image guard against image_safety_label.

    Writes accuracy, macro-F1, the binary safe-vs-unsafe accuracy / precision / recall /
    F1 / AUROC (the paper's guard table), a per-class table and a confusion-matrix plot.
    """
    _quiet_model_loading()
    from rich.markup import escape
    from rich.progress import Progress
    from rich.table import Table

    from holisafe.bench.guard_eval import GuardError, evaluate_guard
    from holisafe.models.safellava.guard import SafetyGuard

    if per not in ("image", "record"):
        raise _fail(f"--per must be image or record, got {escape(per)!r}")
    if with_query and per != "record":
        raise _fail("--with-query classifies each record with its own query: add --per record")
    dataset = _load_or_fail(data, images, split)
    try:
        guard = SafetyGuard.from_pretrained(model, device=device, dtype=dtype)
        with Progress(console=err_console, transient=True) as bar:
            task = bar.add_task("classifying images", total=None)
            evaluation = evaluate_guard(
                guard, dataset, out, model=str(model), per=per, with_query=with_query,
                batch_size=batch_size, limit=limit,
                progress=lambda done: bar.advance(task, done),
            )
    except (GuardError, OSError, ValueError) as exc:
        raise _fail(escape(str(exc))) from None
    report = evaluation.report
    binary = report.binary
    summary = Table(title=f"safety head of {escape(str(model))} as an image guard (%)")
    summary.add_column("")
    summary.add_column("value", justify="right")
    summary.add_row(f"{per}s scored", str(report.n))
    summary.add_row("failed (left out)", str(report.n_failed))
    summary.add_row("prompts classified", str(evaluation.prompts))
    summary.add_row("accuracy (20 classes)", _percent_or_na(report.accuracy))
    summary.add_row("macro-F1 (20 classes)", _percent_or_na(report.macro_f1))
    summary.add_section()
    summary.add_row("unsafe vs safe: accuracy", _percent_or_na(binary.accuracy))
    summary.add_row("precision", _percent_or_na(binary.precision))
    summary.add_row("recall", _percent_or_na(binary.recall))
    summary.add_row("F1", _percent_or_na(binary.f1))
    summary.add_row("AUROC", _percent_or_na(binary.auroc))
    console.print(summary)
    per_class = Table(title="per class (%)")
    for header in ("class", "support", "predicted", "precision", "recall", "F1"):
        per_class.add_column(header, justify="left" if header == "class" else "right")
    for row in report.per_class:
        per_class.add_row(row.name, str(row.support), str(row.predicted),
                          _percent_or_na(row.precision), _percent_or_na(row.recall),
                          _percent_or_na(row.f1))
    console.print(per_class)
    for failure in report.failed[:5]:
        err_console.print(f"failed: ids {failure['ids']}: {escape(failure['error'])}",
                          highlight=False, soft_wrap=True)
    console.print("written: " + ", ".join(escape(str(p)) for p in (
        evaluation.metrics_path, evaluation.predictions_path, evaluation.plot_path)))
    if report.n_failed:
        raise typer.Exit(1)


analyze_app = typer.Typer(help="Analyses of SafeLLaVA's internals.", no_args_is_help=True)
app.add_typer(analyze_app, name="analyze")


@analyze_app.command("attention")
def analyze_attention_command(
    model: Path = typer.Option(..., help="SafeLLaVA checkpoint folder."),
    data: str = typer.Option(..., help="Dataset: directory, JSON/JSONL, parquet or hub id."),
    out: Path = typer.Option(..., help="Output folder: attention.json and attention.png."),
    images: Path | None = typer.Option(None, help="Images root (for JSON/JSONL files)."),
    split: str = typer.Option("test", help="Which split of a dataset directory."),
    limit: int | None = typer.Option(32, min=1, help="Analyse the first N samples (id order)."),
    sample_type: list[str] | None = typer.Option(None, "--type", help="Only samples of this "
                                                 "type (SSS, SSU, USU, UUU, SUU); repeatable."),
    max_new_tokens: int = typer.Option(32, min=1, help="Length limit of each answer."),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:1... (default: a GPU if any)."),
    dtype: str | None = typer.Option(None, help="float32, bfloat16, float16 or auto."),
) -> None:
    """Per decoder layer, the mean attention from generated tokens to the safety meta token
    and to the visual tokens (average per visual token); plots both curves."""
    _quiet_model_loading()
    from rich.markup import escape
    from rich.progress import Progress
    from rich.table import Table

    from holisafe.analysis.attention import analyze_attention, write_attention
    from holisafe.data.taxonomy import TYPES
    from holisafe.models.safellava.guard import load_safellava

    unknown = sorted(set(sample_type or ()) - set(TYPES))
    if unknown:
        raise _fail(f"unknown --type {', '.join(unknown)}: use {', '.join(TYPES)}")
    dataset = _load_or_fail(data, images, split)
    try:
        safellava, processor = load_safellava(model, device=device, dtype=dtype,
                                              attn_implementation="eager")
        with Progress(console=err_console, transient=True) as bar:
            task = bar.add_task("answering and measuring", total=None)
            profile = analyze_attention(
                safellava, processor, dataset, limit=limit, types=sample_type,
                max_new_tokens=max_new_tokens, model_name=str(model),
                progress=lambda done: bar.advance(task, done),
            )
        written = write_attention(profile, out)
    except (OSError, ValueError) as exc:
        raise _fail(escape(str(exc))) from None
    table = Table(title=f"attention from generated tokens, mean over {profile.n} samples")
    for header in ("layer", "meta token", "visual (per token)", "visual (total)"):
        table.add_column(header, justify="right")
    for layer in range(len(profile.visual)):
        smt = "n/a" if profile.smt is None else f"{profile.smt[layer]:.4g}"
        table.add_row(str(layer + 1), smt, f"{profile.visual[layer]:.4g}",
                      f"{profile.visual_total[layer]:.4g}")
    console.print(table)
    for failure in profile.failed[:5]:
        err_console.print(f"failed: id={failure['id']}: {escape(str(failure['error']))}",
                          highlight=False, soft_wrap=True)
    console.print("written: " + ", ".join(escape(str(p)) for p in written))


# --- holisafe demo ------------------------------------------------------------------------


@app.command("demo")
def demo_command(
    out: Path | None = typer.Option(None, help="Folder for everything the demo writes "
                                    "(data, models, runs, scores, guard, report/index.html); "
                                    "default out/demo, out/demo-<preset> for other presets."),
    fresh: bool = typer.Option(False, help="Start over instead of reusing finished steps."),
    preset: str = typer.Option("tiny", help="tiny (models trained from scratch, minutes) or "
                               "smol (a LLaVA on SmolLM2-135M-Instruct, longer)."),
) -> None:
    """Synth data -> train SafeLLaVA and LLaVA baselines -> benchmark -> guard -> report.

    Prints the leaderboard and the guard figures and writes OUT/report/index.html. A second
    run reuses every finished step unless --fresh.
    """
    _quiet_model_loading()
    from rich.markup import escape

    from holisafe.data.loaders import DatasetError
    from holisafe.demo import DemoError, print_summary, run_demo

    if out is None:
        out = Path("out/demo" if preset == "tiny" else f"out/demo-{preset}")
    try:
        result = run_demo(out, preset, fresh=fresh, console=console)
    except (DemoError, DatasetError, OSError, ValueError) as exc:
        raise _fail(escape(str(exc))) from None
    print_summary(result, console)


@app.command()
def version() -> None:
    """Print the package version."""
    from holisafe import __version__

    console.print(__version__)


if __name__ == "__main__":
    app()
