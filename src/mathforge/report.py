"""Run summaries for Prefect artifacts and logs: stage table, token and time totals, difficulty, verifier reasons."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Mapping

from mathforge.export import stage_rows
from mathforge.records import QUERY_INFO_SCHEMA, SAMPLE_SCHEMA
from mathforge.store import StageResult, read_output

DIFFICULTY_BUCKETS = [(0.0, 0.1), (0.1, 0.3), (0.3, 0.5), (0.5, 0.7), (0.7, 0.9), (0.9, 1.01)]


def summary_markdown(run_name: str, results: Mapping[str, StageResult]) -> str:
    """Markdown summary of a run: per stage rows in/out and drops by reason, then totals."""
    manifests = [r.manifest for r in results.values()]
    lines = [f"# mathforge run `{run_name}`", "", "| stage | status | rows in | rows out | dropped | drop reasons |", "|---|---|---|---|---|---|"]
    for manifest_row, result_name in zip(stage_rows(manifests), _expanded_names(results)):
        name, rows_in, rows_out, dropped, reasons = manifest_row
        status = "skipped" if results[result_name].skipped else "ran"
        lines.append(f"| {name} | {status} | {rows_in} | {rows_out} | {dropped} | {reasons} |")
    tokens = Counter()
    wall = 0.0
    for manifest in manifests:
        wall += manifest.get("timings", {}).get("wall_s", 0.0)
        for key, value in manifest.get("counts", {}).items():
            if key.startswith("usage_") and key.endswith("tokens"):
                tokens[key.removeprefix("usage_")] += value
    lines += ["", f"Stage time: {wall:.1f} s (as recorded when each stage ran)."]
    if tokens:
        lines.append("Tokens: " + ", ".join(f"{k} {int(v)}" for k, v in sorted(tokens.items())) + ".")
    export = results.get("export")
    if export is not None and "export_path" in export.manifest:
        lines.append(f"Export: `{export.manifest['export_path']}`.")
    return "\n".join(lines)


def _expanded_names(results: Mapping[str, StageResult]) -> list[str]:
    """The result name each row of `stage_rows` belongs to (a stage with steps has several rows)."""
    names = []
    for name, result in results.items():
        names += [name] * (1 + len(result.manifest.get("steps", [])))
    return names


def difficulty_table(dart: StageResult) -> list[dict]:
    """Problems, trials and accepted rows per pass-rate bucket (from DART's query_info)."""
    info = read_output(Path(dart.stage_dir), "query_info", QUERY_INFO_SCHEMA).to_pylist()
    rows = []
    for low, high in DIFFICULTY_BUCKETS:
        members = [q for q in info if low <= q["pass_rate"] < high]
        rows.append(
            {
                "pass_rate": f"[{low:.1f}, {min(high, 1.0):.1f}{']' if high > 1 else ')'}",
                "problems": len(members),
                "trials": sum(q["n_trials"] for q in members),
                "correct": sum(q["n_correct"] for q in members),
                "unsolved": sum(q["status"] == "unsolved" for q in members),
            }
        )
    return rows


def verifier_reasons_table(dart: StageResult) -> list[dict]:
    """Verdicts and reasons over every sample DART generated."""
    table = read_output(Path(dart.stage_dir), "accepted", SAMPLE_SCHEMA)
    negatives = read_output(Path(dart.stage_dir), "negatives", SAMPLE_SCHEMA)
    counts = Counter()
    for part in (table, negatives):
        counts.update(zip(part["verdict"].to_pylist(), part["verdict_reason"].to_pylist()))
    return [{"verdict": v, "reason": r, "samples": n} for (v, r), n in counts.most_common()]
