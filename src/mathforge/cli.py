"""The `mathforge` command: build datasets, prepare the embedded model, inspect runs."""

from __future__ import annotations

import logging
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


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
    )


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
        console.print(f"[red]config error[/red]\n{error}")
        raise typer.Exit(2)
    # flows/ lives beside src/ in the repository (Prefect deploys it from there).
    sys.path.insert(0, str(_repo_root()))
    from flows.build_dataset import build_dataset

    results = build_dataset(str(config), run)
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
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1)
    record = read_checksum(path) or {}
    console.print(f"{model} ready at {path} (weights sha256 {record.get('weights_sha256', '?')[:16]})")


@app.command()
def inspect(run: Path = typer.Argument(..., help="Run directory (data/runs/demo) or export directory.")) -> None:
    """Show each stage of a run: rows in/out, drops by reason, time."""
    from mathforge.inspect import load_run

    try:
        view = load_run(run)
    except FileNotFoundError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1)
    drops = view.drops.groupby("stage").apply(
        lambda group: ", ".join(f"{r}={c}" for r, c in zip(group["reason"], group["count"])), include_groups=False
    )
    manifests = [
        {**row, "drop_text": drops.get(row["stage"], ""), "timings": {"wall_s": row["wall_s"]}}
        for row in view.stages.to_dict("records")
    ]
    _print_stages(manifests)


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
        console.print(f"[red]config error[/red]\n{error}")
        raise typer.Exit(2)
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
        console.print(f"[red]config error[/red]\n{error}")
        raise typer.Exit(2)
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
