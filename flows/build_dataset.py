"""Build a dataset from one config: ingest → templates → DART (per sampling model) → self-correction → curate → select → export.

Run: `python -m flows.build_dataset configs/demo.yaml [--run NAME] [--incremental]` or `mathforge build`.
Each stage is a task that passes run-directory paths; stages are toggled in the
config, and a stage whose config and inputs are unchanged is skipped by
fingerprint, so a re-run is cheap. In incremental mode (scheduled runs) a run
processes only seeds that earlier runs of its series have not seen and merges
their exported rows into a new dataset version. The run ends with Prefect
artifacts: a markdown summary and tables of difficulty buckets and verifier reasons.
"""

from __future__ import annotations

import argparse

from prefect import flow

from flows import tasks
from flows.artifacts import publish_artifacts
from mathforge import incremental as series
from mathforge import pipeline
from mathforge.config import load_config
from mathforge.store import StageResult


# No log_prints: it turns print() into log lines, and dill (which `datasets` uses to
# fingerprint tables) reads a function's globals from `dis` output it prints to a
# captured stdout; the bytecode then floods the terminal and dill sees no globals.
@flow(name="build-dataset")
def build_dataset(config_path: str, run_name: str | None = None, incremental: bool = False) -> dict[str, StageResult]:
    """Run every enabled stage of the config at `config_path`; return each stage's result."""
    config = load_config(config_path, {"run": {"name": run_name}} if run_name else None)
    series_name = config.run.name
    ledger = series.load_ledger(config.run.runs_dir, series_name) if incremental else []
    if incremental:
        config = config.model_copy(update={"run": config.run.model_copy(update={"name": series.run_name(series_name)})})
    results = {"ingest": tasks.ingest(config, series.seen_problem_ids(ledger))}
    problem_sources = [results["ingest"]]
    if config.templates.enabled:
        results["templates"] = tasks.templates(config, results["ingest"])
        problem_sources.append(results["templates"])
    results["dart"] = tasks.dart(config, problem_sources)
    samples = [(results["dart"], "accepted")]
    if config.templates.enabled and config.templates.emit_solutions:
        samples.append((results["templates"], "solutions"))
    if config.self_correction.enabled:
        results["self_correction"] = tasks.self_correction(config, problem_sources, results["dart"])
        samples.append((results["self_correction"], "data"))
    dart = [results["dart"]]
    # One DART stage per further sampling model, after every stage of the main one: engines load one at a time.
    for index, model in enumerate(config.generation.additional, 1):
        dart.append(tasks.dart(pipeline.with_model(config, model), problem_sources, name=f"dart-{index}"))
        results[f"dart-{index}"] = dart[-1]
        samples.append((dart[-1], "accepted"))
    if config.curation is not None:
        results["curate"] = tasks.curate(config, samples)
        samples = [(results["curate"], "data")]
    if config.selection is not None:
        results["select"] = tasks.select(config, samples, dart=dart)
        samples = [(results["select"], "data")]
    upstream = list(results.values())
    merged = samples + series.earlier_sources(ledger)
    results["export"] = tasks.export(config, merged, upstream=upstream, query_info=results["dart"])
    if incremental:
        series.record_run(
            config.run.runs_dir, series_name, run=config.run.name, seeds=results["ingest"], sources=samples,
            export_path=results["export"].manifest["export_path"],
        )
    publish_artifacts(config, results)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--run", default=None, help="Run name (default: the config's run.name).")
    parser.add_argument("--incremental", action="store_true", help="Process only seeds earlier runs of the series have not seen.")
    args = parser.parse_args()
    for name, result in build_dataset(args.config, args.run, args.incremental).items():
        print(f"{name:16s} {'skipped' if result.skipped else 'ran':8s} {result.stage_dir}")


if __name__ == "__main__":
    main()
