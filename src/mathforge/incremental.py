"""Incremental builds for scheduled runs: each run processes only seeds earlier runs have not seen.

A series (one deployment's runs, named by `run.name`) keeps a ledger at
`<runs_dir>/<series>/ledger.json`: per finished run, its directory, the
problem ids it processed and the sample outputs it exported. A new run
excludes those ids at ingest, and its export merges the earlier runs' rows with
its own into a new dataset version; nothing earlier is overwritten.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mathforge.store import StageResult, write_json_atomic


def ledger_path(runs_dir: str | Path, series: str) -> Path:
    """Where a series' ledger lives."""
    return Path(runs_dir) / series / "ledger.json"


def load_ledger(runs_dir: str | Path, series: str) -> list[dict[str, Any]]:
    """The series' finished runs, oldest first (empty for a new series)."""
    path = ledger_path(runs_dir, series)
    return json.loads(path.read_text()) if path.exists() else []


def seen_problem_ids(ledger: list[dict[str, Any]]) -> frozenset[str]:
    """Problem ids processed by any earlier run of the series."""
    return frozenset(pid for entry in ledger for pid in entry["problem_ids"])


def earlier_sources(ledger: list[dict[str, Any]]) -> list[tuple[StageResult, str]]:
    """The sample outputs earlier runs exported, as (stage result, output) pairs to merge."""
    sources = []
    for entry in ledger:
        for stage_dir, output in entry["sources"]:
            manifest = json.loads((Path(stage_dir) / "manifest.json").read_text())
            sources.append((StageResult(manifest["stage"], stage_dir, manifest["fingerprint"], True, manifest), output))
    return sources


def run_name(series: str, now: datetime | None = None) -> str:
    """A new run's name inside its series: `<series>/<UTC timestamp>`."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{series}/{stamp}"


def record_run(
    runs_dir: str | Path, series: str, *, run: str, seeds: StageResult, sources: list[tuple[StageResult, str]], export_path: str
) -> None:
    """Append a finished run to the series' ledger (atomically): its seeds' ids and exported outputs."""
    from mathforge.pipeline import read_problems

    problem_ids = [p.problem_id for p in read_problems(seeds)]
    ledger = load_ledger(runs_dir, series)
    ledger.append(
        {
            "run": run,
            "problem_ids": sorted(problem_ids),
            "sources": [[result.stage_dir, output] for result, output in sources],
            "export": export_path,
            "finished_at": datetime.now(timezone.utc).isoformat(),
        }
    )
    write_json_atomic(ledger_path(runs_dir, series), ledger)
