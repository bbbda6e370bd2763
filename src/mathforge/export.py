"""Export a run as an SFT dataset: `datasets.load_from_disk` directory, Parquet, card, manifest.

Each export is a new version directory `<export_dir>/<fingerprint>/` (nothing
is overwritten) and `<export_dir>/latest` points at the newest. Every row is a
Sample plus `messages` ([{role, content}]) that TRL's SFTTrainer takes as is;
the lineage columns stay alongside.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from mathforge import __version__, prompts
from mathforge.records import SFT_SCHEMA, conform
from mathforge.store import package_versions, write_json_atomic


def to_messages(problem: str, response: str, *, prompt: str, system_prompt: str | None, trace_json: str | None = None) -> list[dict[str, str]]:
    """Chat messages of one training row: optional system, the rendered user prompt, the response.

    A tool-integrated trace stored as multi-turn messages (`trace_json` holding
    a list of {role, content}) is used as is after the user turn.
    """
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": prompts.render(prompt, problem=problem)})
    if trace_json:
        turns = json.loads(trace_json)
        if isinstance(turns, list) and turns and isinstance(turns[0], dict) and "role" in turns[0]:
            return messages + [{"role": t["role"], "content": t["content"]} for t in turns]
    messages.append({"role": "assistant", "content": response})
    return messages


def sft_table(
    samples: pa.Table, *, prompt: str, system_prompt: str | None, prompt_by_strategy: Mapping[str, str] | None = None
) -> pa.Table:
    """Add `messages` to a sample table (reads problem, response, strategy, trace_json; adds messages).

    The user turn is the prompt the row was generated with: `prompt_by_strategy`
    maps a row's `strategy` to its prompt template, `prompt` is the default.
    """
    chosen = prompt_by_strategy or {}
    messages = [
        to_messages(
            r["problem"],
            r["response"],
            prompt=chosen.get(r["strategy"], prompt),
            system_prompt=system_prompt,
            trace_json=r.get("trace_json"),
        )
        for r in samples.to_pylist()
    ]
    table = samples.append_column("messages", pa.array(messages, type=SFT_SCHEMA.field("messages").type))
    return conform(table, SFT_SCHEMA)


def _histogram(values: Sequence[float], edges: Sequence[float]) -> list[tuple[str, int]]:
    """Counts of `values` in [edges[i], edges[i+1]) buckets, the last bucket closed."""
    counts = []
    for i in range(len(edges) - 1):
        low, high = edges[i], edges[i + 1]
        last = i == len(edges) - 2
        counts.append((f"{low:g}–{high:g}", sum(low <= v < high or (last and v == high) for v in values)))
    return counts


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def stage_rows(manifests: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """One card row per stage: name, rows in, rows out, dropped, drops by reason."""
    rows = []
    for manifest in manifests:
        entries = [(manifest["stage"], manifest)]
        # A stage made of steps (curation) gets one row per step under its own.
        entries += [(f"{manifest['stage']} / {step['step']}", step) for step in manifest.get("steps", [])]
        for name, counts in entries:
            drops = counts.get("drop_reasons", {})
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted(drops.items(), key=lambda kv: -kv[1])) or "—"
            rows.append([name, counts.get("rows_in", 0), counts.get("rows_out", 0), sum(drops.values()), reasons])
    return rows


def selection_section(manifest: Mapping[str, Any]) -> list[str]:
    """Card lines of the selection stage: who scored GRAPE, and the difficulty distribution before and after."""
    parts = ["## Selection", ""]
    grape = manifest.get("grape")
    if grape:
        per_problem = ", ".join("as many as DART accepted" if p == "dart" else str(p) for p in grape["per_problem"])
        parts += [
            f"GRAPE scored each correct response by its mean log-probability per learned token (the export's "
            f"completion, in its exported context) under `{grape['scorer']}` ({grape['backend']}): the "
            f"**{grape['role']}**. Kept per problem: {per_problem}.",
            "",
        ]
    parts += [
        "Problems and rows by DART pass rate (pooled over sampling models), before and after selection: "
        "a difficulty-aware allocation that selection flattened shows as hard buckets losing rows.",
        "",
        _table(
            ["pass rate", "problems before", "rows before", "problems after", "rows after"],
            [
                [row["pass_rate"], row["problems_before"], row["rows_before"], row["problems_after"], row["rows_after"]]
                for row in manifest["difficulty"]
            ],
        ),
        "",
    ]
    return parts


def dataset_card(
    name: str,
    table: pa.Table,
    query_info: pa.Table | None,
    manifests: Sequence[Mapping[str, Any]],
    meta: Mapping[str, Any],
) -> str:
    """Markdown dataset card: stage table with drop reasons, difficulty and length distributions."""
    rows = table.to_pylist()
    parts = [
        f"# {name}",
        "",
        "Supervised fine-tuning data for mathematical reasoning, built by mathforge "
        f"{__version__} with model `{meta.get('model')}`. Every response's final answer was verified "
        "against the reference answer. Load with `datasets.load_from_disk(<this directory>)`; each row has "
        "`messages` (chat format for TRL's SFTTrainer) and lineage columns.",
        "",
        f"Rows: **{table.num_rows}** from **{len({r['problem_id'] for r in rows})}** problems.",
        "",
        "## From raw samples to exported rows",
        "",
        "Each stage's rows in, rows out and drops by reason (rows in = rows out + dropped).",
        "",
        _table(["stage", "rows in", "rows out", "dropped", "drop reasons"], stage_rows(manifests)),
        "",
    ]
    for manifest in manifests:
        if manifest.get("decontamination"):
            parts += [
                "## Decontamination",
                "",
                "Samples dropped because their problem overlaps a benchmark item (n-gram or exact-substring rule); "
                "which row matched which item is in the run's `curate/rejected` table.",
                "",
                _table(["benchmark", "rows dropped"], sorted(manifest["decontamination"].items())),
                "",
            ]
    for manifest in manifests:
        if manifest.get("difficulty"):
            parts += selection_section(manifest)
    if query_info is not None and query_info.num_rows:
        info = query_info.to_pylist()
        status = Counter(r["status"] for r in info)
        parts += [
            "## Difficulty (per problem)",
            "",
            "Pass rate = verified-correct / trials while sampling; status: solved (reached its target), "
            "capped (hit the trial cap short of it), unsolved (no correct response).",
            "",
            _table(["status", "problems"], sorted(status.items())),
            "",
            _table(["pass rate", "problems"], _histogram([r["pass_rate"] for r in info], [0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0])),
            "",
            f"Trials: {sum(r['n_trials'] for r in info)} in total, "
            f"{sum(r['n_trials'] for r in info) / len(info):.1f} per problem on average.",
            "",
        ]
    if rows:
        answer_lengths = [len(r["answer"]) for r in rows]
        response_tokens = [r["n_completion_tokens"] for r in rows]
        parts += [
            "## Lengths",
            "",
            _table(["answer length (chars)", "rows"], _histogram(answer_lengths, [0, 2, 4, 8, 16, 32, 1_000_000])),
            "",
            _table(["response tokens", "rows"], _histogram(response_tokens, [0, 64, 128, 256, 512, 1024, 1_000_000])),
            "",
        ]
    parts += [
        "## Provenance",
        "",
        _table(["key", "value"], [[k, f"`{v}`"] for k, v in meta.items() if not isinstance(v, (dict, list))]),
        "",
        "The full config, package versions and every stage manifest are in `manifest.json`.",
        "",
    ]
    return "\n".join(parts)


def export_dataset(
    samples: pa.Table,
    *,
    export_dir: Path,
    version: str,
    prompt: str,
    system_prompt: str | None,
    prompt_by_strategy: Mapping[str, str] | None = None,
    query_info: pa.Table | None,
    manifests: Sequence[Mapping[str, Any]],
    meta: Mapping[str, Any],
    extra_tables: Mapping[str, pa.Table] | None = None,
) -> Path:
    """Write a dataset version directory and point `latest` at it; return its path.

    Contents: the `datasets` Arrow files (load_from_disk), `parquet/train.parquet`
    and any extra tables, `README.md` (the card) and `manifest.json`. The
    directory is assembled under a temporary name and renamed into place.
    """
    import datasets

    export_dir = Path(export_dir)
    target = export_dir / version
    if (target / "manifest.json").exists():
        _point_latest(export_dir, version)
        return target
    staging = export_dir / f".{version}.tmp"
    if staging.exists():
        shutil.rmtree(staging)
    table = sft_table(samples, prompt=prompt, system_prompt=system_prompt, prompt_by_strategy=prompt_by_strategy)
    datasets.Dataset(table).save_to_disk(str(staging))
    (staging / "parquet").mkdir()
    pq.write_table(table, staging / "parquet" / "train.parquet")
    tables = dict(extra_tables or {})
    if query_info is not None:
        tables["query_info"] = query_info
    for name, extra in tables.items():
        pq.write_table(extra, staging / "parquet" / f"{name}.parquet")
    (staging / "README.md").write_text(dataset_card(meta.get("name", version), table, query_info, manifests, meta))
    write_json_atomic(
        staging / "manifest.json",
        {
            **meta,
            "rows": table.num_rows,
            "exported_at": datetime.now(timezone.utc).isoformat(),
            "package_versions": package_versions(),
            "stages": list(manifests),
        },
    )
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
    _point_latest(export_dir, version)
    return target


def _point_latest(export_dir: Path, version: str) -> None:
    link = export_dir / "latest"
    tmp = export_dir / ".latest.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(version)
    os.replace(tmp, link)
