"""The `mathforge` command: build datasets, prepare the embedded model, inspect runs."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

app = typer.Typer(help="Build verified math-reasoning SFT datasets.", no_args_is_help=True)
models_app = typer.Typer(help="Manage the embedded default model.", no_args_is_help=True)
app.add_typer(models_app, name="models")
console = Console()


def _fail(message: str, code: int = 2) -> typer.Exit:
    """Print an error and return the exit to raise.

    Not wrapped at the terminal width: errors name files and rows, and a path
    broken across lines cannot be copied.
    """
    console.print(message, soft_wrap=True)
    return typer.Exit(code)


def _logging(verbose: bool) -> None:
    """Our own INFO lines (stages, progress) and other libraries' warnings; everything with --verbose.

    Libraries left at INFO talk about their plumbing: Prefect's client logs
    every API call through httpx ("HTTP Request: POST .../api/logs/"), dill
    prints bytecode while `datasets` fingerprints a function, vLLM its start-up.
    Prefect's own flow and task lines go through its own handlers.
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
    )
    logging.getLogger("mathforge").setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose:
        # vLLM configures its loggers (also in its engine processes) from the environment;
        # its start-up warnings (no Triton on CPU, V1 model runner) are not the user's business.
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
        logging.getLogger("vllm").setLevel(logging.ERROR)  # its import-time warnings reach our handler
        os.environ.setdefault("TQDM_DISABLE", "1")
        # In the engine's processes: torch's NUMA-binding notice, a deprecation vLLM triggers.
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
        os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning:vllm.triton_utils.dispatcher")


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived during a build (a KeyboardInterrupt: Prefect then crashes the run, no retry)."""


def _stop_on_signals() -> None:
    """Turn SIGINT/SIGTERM into an orderly stop: engines first, then unwind so pools and servers close.

    The engine is shut down inside the handler because it is the one that
    keeps burning CPU; unwinding then closes sandbox and verifier pools
    (context managers) and Prefect's temporary server (atexit). Prefect
    replaces the SIGTERM handler while a flow runs with one that raises its
    own TerminationSignal: the flow then crashes, unwinds the same way, and
    the engines stop at interpreter exit.
    """

    def handler(signum: int, frame: object) -> None:
        signal.signal(signum, signal.SIG_DFL)  # a second signal ends the process at once
        engines = sys.modules.get("mathforge.generation.vllm_backend")
        if engines is not None:
            engines.shutdown_engines()
        raise Interrupted(signum)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


@app.command()
def build(
    config: Path = typer.Argument(..., help="Job config (YAML), e.g. configs/demo.yaml."),
    run: Optional[str] = typer.Option(None, "--run", help="Run name (default: the config's run.name)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Build a dataset: run the build-dataset Prefect flow on CONFIG."""
    from mathforge.config import ConfigError, load_config

    _logging(verbose)
    try:
        load_config(config)  # fail fast, before Prefect starts, on a bad config
    except ConfigError as error:
        raise _fail(f"[red]config error[/red]\n{error}")
    # flows/ lives beside src/ in the repository (Prefect deploys it from there).
    sys.path.insert(0, str(_repo_root()))
    from flows.build_dataset import build_dataset
    from prefect.exceptions import TerminationSignal

    _stop_on_signals()
    try:
        results = build_dataset(str(config), run)
    except (TerminationSignal, KeyboardInterrupt) as stop:
        engines = sys.modules.get("mathforge.generation.vllm_backend")
        if engines is not None:
            engines.shutdown_engines()
        signum = getattr(stop, "signal", None) or (stop.args[0] if isinstance(stop, Interrupted) else signal.SIGINT)
        console.print(f"[yellow]build stopped by {signal.Signals(signum).name}; run the same command again to resume[/yellow]")
        raise typer.Exit(128 + signum)
    _print_stages([r.manifest | {"skipped": r.skipped} for r in results.values()])


@models_app.command("prepare")
def models_prepare(
    model: str = typer.Argument("embedded:smollm2-135m-instruct", help="Embedded model to prepare."),
    force: bool = typer.Option(False, "--force", help="Convert again even if prepared."),
) -> None:
    """Convert the bundled GGUF model into a safetensors directory vLLM loads (once)."""
    from mathforge.generation.embedded import ModelNotAvailable, prepare_model, read_checksum

    _logging(False)
    try:
        path = prepare_model(model, force=force)
    except ModelNotAvailable as error:
        raise _fail(f"[red]{error}[/red]", 1)
    record = read_checksum(path) or {}
    console.print(f"{model} ready at {path} (weights sha256 {record.get('weights_sha256', '?')[:16]})")


@app.command()
def inspect(run: Path = typer.Argument(..., help="Run directory (data/runs/demo) or export directory.")) -> None:
    """Show each stage of a run: rows in/out, drops by reason, time."""
    from mathforge.inspect import load_run

    try:
        view = load_run(run)
    except FileNotFoundError as error:
        raise _fail(f"[red]{error}[/red]", 1)
    drops = view.drops.groupby("stage").apply(
        lambda group: ", ".join(f"{r}={c}" for r, c in zip(group["reason"], group["count"])), include_groups=False
    )
    manifests = [
        {**row, "drop_text": drops.get(row["stage"], ""), "timings": {"wall_s": row["wall_s"]}}
        for row in view.stages.to_dict("records")
    ]
    _print_stages(manifests)


@app.command()
def decontaminate(
    input: Path = typer.Argument(..., help="Dataset to check: .jsonl or .parquet."),
    benchmark: list[str] = typer.Option(..., "--benchmark", "-b", help="Benchmark: a local file/directory or hub name (repeatable)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output JSONL: one verdict line per input row."),
    field: str = typer.Option("problem", "--field", help="Text field of the input rows to check."),
    id_field: str = typer.Option("id", "--id-field", help="Input id field copied to the output when present."),
    layers: Optional[list[str]] = typer.Option(None, "--layer", help="Layers to run (repeatable; default: all)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Embedding cosine threshold (default: the config's)."),
    batch_rows: int = typer.Option(20_000, "--batch-rows", help="Input rows read and checked at a time (bounds memory)."),
) -> None:
    """Check any dataset for benchmark contamination: exact, n-gram, numbers-masked n-gram, embedding layers."""
    import time

    from mathforge.benchmark_sets import BenchmarkSetError
    from mathforge.curate import DecontaminationConfig, Decontaminator, load_benchmarks
    from mathforge.curate.scan import ScanInputError, scan_file

    _logging(False)
    started = time.perf_counter()
    try:
        config = DecontaminationConfig(benchmarks=tuple(benchmark), **({"layers": tuple(layers)} if layers else {}))
        if threshold is not None:
            config = config.model_copy(update={"embedding": config.embedding.model_copy(update={"threshold": threshold})})
        checker = Decontaminator(load_benchmarks(config), config)
        result = scan_file(input, out, checker, text_field=field, id_field=id_field, batch_rows=batch_rows)
    except (BenchmarkSetError, ScanInputError, ValueError) as error:
        raise _fail(f"[red]{error}[/red]")
    table = Table(title=f"{input.name}: {result.n_contaminated} of {result.n_rows} rows contaminated")
    for column in ("benchmark", "layer", "rows"):
        table.add_column(column)
    for (name, layer), count in sorted(result.by_benchmark_layer.items()):
        table.add_row(name, layer, str(count))
    console.print(table)
    console.print(f"wrote {out} in {time.perf_counter() - started:.1f} s")


@app.command()
def evaluate(
    config: Path = typer.Argument(..., help="Evaluation config (YAML), e.g. configs/eval_gsm8k.yaml."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Evaluate a model on benchmarks: run the evaluate Prefect flow on CONFIG, print the report."""
    from mathforge.benchmark_sets import BenchmarkSetError
    from mathforge.config import ConfigError
    from mathforge.evaluate import load_benchmarks, load_evaluate_config

    _logging(verbose)
    try:
        load_benchmarks(load_evaluate_config(config))  # fail fast, before Prefect or a model starts
    except (ConfigError, BenchmarkSetError) as error:
        raise _fail(f"[red]config error[/red]\n{error}")
    sys.path.insert(0, str(_repo_root()))
    from flows.evaluate import evaluate as evaluate_flow

    results = evaluate_flow(str(config))
    report = Path(results[0].results_path).parents[1] / "report.md"
    console.print(report.read_text())


@app.command()
def train(
    config: Path = typer.Argument(..., help="Training config (YAML), e.g. configs/train_sft.yaml."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Fine-tune a model on an export with TRL's SFTTrainer; save a directory vLLM and `evaluate` load."""
    from mathforge.config import ConfigError
    from mathforge.finetune import load_train_config, train as run_training

    _logging(verbose)
    try:
        result = run_training(load_train_config(config))
    except ConfigError as error:
        raise _fail(f"[red]config error[/red]\n{error}")
    console.print(
        f"trained {result.n_steps} steps on {result.n_rows} rows in {result.train_s:.0f} s "
        f"(bf16={result.bf16}, final loss {result.final_loss}); model in {result.model_dir}"
    )


def _print_stages(manifests: list[dict]) -> None:
    table = Table(title="stages")
    for column in ("stage", "status", "rows in", "rows out", "drops by reason", "wall s"):
        table.add_column(column)
    for m in manifests:
        drops = m.get("drop_text") or ", ".join(f"{k}={v}" for k, v in sorted(m.get("drop_reasons", {}).items(), key=lambda kv: -kv[1]))
        status = "skipped" if m.get("skipped") else m.get("status", "?")
        table.add_row(
            m.get("stage", "?"),
            status,
            str(m.get("rows_in", "")),
            str(m.get("rows_out", "")),
            drops or "—",
            str(m.get("timings", {}).get("wall_s", "")),
        )
    console.print(table)


if __name__ == "__main__":
    app()
