"""Evaluate a model on benchmarks: load them → answer and judge each (a task per benchmark) → report and artifacts.

Run: `python -m flows.evaluate configs/eval_gsm8k.yaml` or `mathforge evaluate CONFIG`.
One generator and one verifier pool serve every benchmark; results land in
`output_dir/<benchmark>/results.parquet`, the report in `output_dir/report.md`,
and the generation cache in `output_dir/cache/` makes a re-run free.
"""

from __future__ import annotations

import sys

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from mathforge import evaluate as evaluation

evaluate_benchmark = task(evaluation.evaluate_benchmark, name="evaluate-benchmark", cache_policy=NONE)


def _key(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower())


# No log_prints: it breaks dill's captured `dis` output (see flows/build_dataset.py).
@flow(name="evaluate")
def evaluate(config_path: str) -> list[evaluation.BenchmarkEvaluation]:
    """Evaluate the config's model on each of its benchmarks; publish the report as Prefect artifacts."""
    config = evaluation.load_evaluate_config(config_path)
    results, path, markdown = evaluation.run_evaluation(config, evaluate_one=evaluate_benchmark)
    create_markdown_artifact(markdown=markdown, key=f"{_key(config.name)}-report", description=f"Evaluation report ({path})")
    for result in results:
        create_table_artifact(
            table=[group.as_dict() for group in result.groups],
            key=f"{_key(config.name)}-{_key(result.name)}",
            description=f"{result.name}: metrics by group (Wilson 95 % intervals)",
        )
    return results


if __name__ == "__main__":
    for result in evaluate(sys.argv[1]):
        print(result.results_path)
