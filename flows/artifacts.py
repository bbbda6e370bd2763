"""Publish a run's summary as Prefect artifacts (markdown and tables), visible in the Prefect UI."""

from __future__ import annotations

from typing import Mapping

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from mathforge import report
from mathforge.config import BuildConfig
from mathforge.store import StageResult


def publish_artifacts(config: BuildConfig, results: Mapping[str, StageResult]) -> None:
    """Create the run-summary markdown artifact and the difficulty / verifier-reason table artifacts."""
    key = "".join(c if c.isalnum() else "-" for c in config.run.name.lower())
    create_markdown_artifact(markdown=report.summary_markdown(config.run.name, results), key=f"{key}-summary", description="Stages, drops, tokens, time")
    create_table_artifact(table=report.difficulty_table(results["dart"]), key=f"{key}-difficulty", description="Problems per pass-rate bucket")
    create_table_artifact(table=report.verifier_reasons_table(results["dart"]), key=f"{key}-verifier-reasons", description="Verdicts by reason")
