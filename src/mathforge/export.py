"""Export a run as an SFT dataset: `datasets.load_from_disk` directory, Parquet, card, manifest.

Each export is a new version directory `<export_dir>/<fingerprint>/` (nothing
is overwritten) and `<export_dir>/latest` points at the newest. Every row is a
Sample plus its training contract (`mathforge.conversation`): `prompt` (context)
and `completion` (learned), TRL's conversational prompt–completion format, and
`messages` (the whole conversation). With a tokenizer, rows also carry
`input_ids` and `completion_mask`, which mask sandbox outputs inside a
completion; TRL's SFTTrainer uses them as they are. The lineage columns stay
alongside.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from mathforge import __version__
from mathforge.conversation import TRAIN_ON, row_conversation, row_kind, tokenize_conversation
from mathforge.generation.embedded import load_tokenizer
from mathforge.records import SFT_SCHEMA, TOKENIZED_SFT_SCHEMA, conform
from mathforge.store import package_versions, write_json_atomic


def sft_table(
    samples: pa.Table,
    *,
    prompt: str,
    system_prompt: str | None,
    prompt_by_strategy: Mapping[str, str] | None = None,
    tokenizer: Any | None = None,
) -> pa.Table:
    """Add each row's training contract to a sample table (`mathforge.conversation`).

    Reads problem, response, strategy, trace_json; adds row_kind, messages,
    prompt, completion and, with a `tokenizer` (a transformers tokenizer with a
    chat template), input_ids and completion_mask. The first user turn is the
    prompt the row was generated with: `prompt_by_strategy` maps a row's
    `strategy` to its prompt template, `prompt` is the default.
    """
    rows = samples.to_pylist()
    chosen = prompt_by_strategy or {}
    conversations = [
        row_conversation(row, prompt_by_strategy=chosen, default_prompt=prompt, system_prompt=system_prompt) for row in rows
    ]
    columns: dict[str, list[Any]] = {
        "row_kind": [row_kind(row["strategy"]) for row in rows],
        "messages": [c.messages for c in conversations],
        "prompt": [c.prompt for c in conversations],
        "completion": [c.completion for c in conversations],
    }
    schema = SFT_SCHEMA
    if tokenizer is not None:
        tokenized = [tokenize_conversation(tokenizer, c) for c in conversations]
        columns["input_ids"] = [t.input_ids for t in tokenized]
        columns["completion_mask"] = [t.completion_mask for t in tokenized]
        schema = TOKENIZED_SFT_SCHEMA
    table = samples
    for name, values in columns.items():
        table = table.append_column(name, pa.array(values, type=schema.field(name).type))
    return conform(table, schema)


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


#: Suspects listed by name in the card; the rest are counted (all are in the run's dart/reference_audit table).
MAX_LISTED_SUSPECTS = 50


def suspect_reference_section(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """Card lines for the reference audit: how many problems are suspect, and which."""
    quarantined = sum(entry["is_quarantined"] for entry in entries)
    lines = [
        "## Suspect reference answers",
        "",
        f"**{len(entries)}** problems have a suspect reference answer: a majority of their judged "
        f"responses (above the audit's threshold) agree on another value. {quarantined} of them were quarantined (their rows are not "
        "exported); the others are exported as sampled. Every problem's answer distribution is in the run's "
        "`dart/reference_audit` table.",
        "",
    ]
    if entries:
        listed = [
            [e["problem_id"], f"`{e['reference']}`", f"`{e['majority_answer']}`", f"{e['majority_count']}/{e['n_judged']}",
             e["n_reference"], "quarantined" if e["is_quarantined"] else "reported"]
            for e in entries[:MAX_LISTED_SUSPECTS]
        ]
        lines += [_table(["problem", "reference", "majority answer", "majority", "agree with reference", "action"], listed), ""]
        if len(entries) > MAX_LISTED_SUSPECTS:
            lines += [f"... and {len(entries) - MAX_LISTED_SUSPECTS} more.", ""]
    return lines


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


def _contract_section(rows: Sequence[Mapping[str, Any]], tokenizer: str | None) -> list[str]:
    """Card lines: rows and what they train on, by row kind, and how tool outputs are masked."""
    counts = Counter(row["row_kind"] for row in rows)
    has_tool_turns = any(m["role"] == "tool" for row in rows for m in row["completion"])
    if tokenizer:
        masking = (
            f"`input_ids` and `completion_mask` are pre-tokenized for `{tokenizer}` (its chat template): the mask "
            "is 0 on the prompt and on every tool turn, so TRL's SFTTrainer, which uses pre-tokenized columns as "
            "they are, trains on exactly the learned text. To train another model, re-export with its tokenizer "
            "(`output.tokenizer`), or drop those two columns: TRL then tokenizes `prompt`/`completion` itself and "
            "labels the tool turns too."
        )
    elif has_tool_turns:
        masking = (
            "**No pre-tokenized columns** (no `output.tokenizer` for this build): trained from `prompt`/`completion`, TRL "
            "labels the tool turns inside completions too. Re-export with `output.tokenizer` set to mask them."
        )
    else:
        masking = "No row has tool turns in its completion."
    return [
        "## What is learned",
        "",
        "Each row kind's `prompt` is context (no loss); its `completion` is learned, with sandbox outputs as "
        "`tool` turns, never inside assistant text. " + masking,
        "",
        _table(["row kind", "rows", "train_on"], [[kind, counts[kind], TRAIN_ON[kind]] for kind in sorted(counts)]),
        "",
    ]


#: Flagged rows listed per benchmark in the card; the rejected tables hold them all.
CARD_LISTED_PER_BENCHMARK = 50


def decontamination_section(manifests: Sequence[Mapping[str, Any]]) -> list[str]:
    """Card lines on decontamination: drops per benchmark and check point, then each flagged row per benchmark.

    Reads the `decontamination` entry of stage manifests (see
    `mathforge.curate.contamination_summary`); no lines when no stage checked.
    """
    checks = [(m["stage"], m["decontamination"]) for m in manifests if m.get("decontamination")]
    if not checks:
        return []
    points = [entry["point"] for _, entry in checks]
    benchmarks = list(dict.fromkeys(name for _, entry in checks for name in entry["benchmarks"]))
    counts = [
        [name, *(entry["benchmarks"].get(name, 0) for _, entry in checks), sum(e["benchmarks"].get(name, 0) for _, e in checks)]
        for name in benchmarks
    ]
    lines = [
        "## Decontamination",
        "",
        "Rows checked against benchmark test sets, in layers: exact normalized match, 13-gram overlap, 13-gram "
        "overlap with numbers masked, nearest benchmark item by embedding cosine, and optionally an LLM's "
        "confirmation. A flagged row is dropped; each one is in its stage's `rejected` table with the benchmark, "
        "item id, layer and score (share of n-grams matched, or cosine).",
        "",
        _table(["benchmark", *(f"{point} ({stage})" for stage, point in zip([s for s, _ in checks], points)), "total"], counts),
        "",
    ]
    for _, entry in checks:
        if entry.get("llm"):
            lines += [f"LLM check of {entry['point']}: " + ", ".join(f"{k} {v}" for k, v in sorted(entry["llm"].items())), ""]
    for name in benchmarks:
        flagged = [(entry["point"], row) for _, entry in checks for row in entry["flagged"] if row["benchmark"] == name]
        if not flagged:
            continue
        shown = flagged[:CARD_LISTED_PER_BENCHMARK]
        lines += [
            f"### {name}",
            "",
            _table(
                ["checked", "row id", "benchmark item", "layer", "score"],
                [[point, f"`{r['row_id']}`", f"`{r['benchmark_item_id']}`", r["layer"], f"{r['score']:.3f}"] for point, r in shown],
            ),
            "",
        ]
        total = sum(entry["benchmarks"].get(name, 0) for _, entry in checks)
        if total > len(shown):
            lines += [f"... and {total - len(shown)} more in the rejected tables.", ""]
    return lines


def dataset_card(
    name: str,
    table: pa.Table,
    query_info: pa.Table | None,
    manifests: Sequence[Mapping[str, Any]],
    meta: Mapping[str, Any],
) -> str:
    """Markdown dataset card: what is learned by row kind, stage table with drop reasons, difficulty and lengths."""
    rows = table.to_pylist()
    parts = [
        f"# {name}",
        "",
        "Supervised fine-tuning data for mathematical reasoning, built by mathforge "
        f"{__version__} with model `{meta.get('model')}`. The final answer of every learned completion was "
        "verified against the reference answer (template solutions: the answer their program computed, "
        "checked by the same verifier). Correction rows also carry the model's wrong attempt and the "
        "verifier's feedback in their `prompt`: context, which carries no loss. Load with "
        "`datasets.load_from_disk(<this directory>)`; each row has `prompt` and `completion` "
        "(conversational prompt–completion, which TRL's SFTTrainer trains on the completion only), "
        "`messages` (the whole conversation) and lineage columns.",
        "",
        f"Rows: **{table.num_rows}** from **{len({r['problem_id'] for r in rows})}** problems.",
        "",
        *_contract_section(rows, meta.get("tokenizer")),
        "## From raw samples to exported rows",
        "",
        "Each stage's rows in, rows out and drops by reason (rows in = rows out + dropped).",
        "",
        _table(["stage", "rows in", "rows out", "dropped", "drop reasons"], stage_rows(manifests)),
        "",
    ]
    parts += decontamination_section(manifests)
    for manifest in manifests:
        if "suspect_references" in manifest:
            parts += suspect_reference_section(manifest["suspect_references"])
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
    tokenizer: str | None = None,
) -> Path:
    """Write a dataset version directory and point `latest` at it; return its path.

    Contents: the `datasets` Arrow files (load_from_disk), `parquet/train.parquet`
    and any extra tables, `README.md` (the card) and `manifest.json`. With
    `tokenizer` (a model id: 'embedded:<name>', a local directory or a hub id)
    rows are also pre-tokenized with its chat template. The directory is
    assembled under a temporary name and renamed into place.
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
    meta = {**meta, "tokenizer": tokenizer}
    table = sft_table(
        samples,
        prompt=prompt,
        system_prompt=system_prompt,
        prompt_by_strategy=prompt_by_strategy,
        tokenizer=load_tokenizer(tokenizer) if tokenizer else None,
    )
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
