"""Notebook helpers: load a run or an export as pandas DataFrames, and draw its figures.

`load_run(path)` takes a run directory (`data/runs/<run>/`: every stage is found
by its `manifest.json`, ordered by `finished_at`, and any output is readable by
name, committed shards only) or an export (`data/exports/<name>/<version>/`, or
`data/exports/<name>/` whose `latest` link is followed). The view is a snapshot:
load again to follow a build that is still running.

The plotting functions take DataFrames and return matplotlib Figures built
without pyplot, so they need no backend and leave no global state; `figures`
draws all six from a view and `save_figures` writes them as PNG files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from matplotlib.figure import Figure

from mathforge.records import PROBLEM_SCHEMA, QUERY_INFO_SCHEMA, REJECTED_SCHEMA, SAMPLE_SCHEMA
from mathforge.report import DIFFICULTY_BUCKETS
from mathforge.store import Stage, StageSummary

#: Outputs that hold the rows a stage keeps: the store's main output, DART's accepted samples, an export's rows.
KEPT_OUTPUTS = ("data", "accepted", "train")
#: Names of the figures `figures` draws, in notebook order (also their PNG file names).
FIGURE_NAMES = (
    "pass_rate_histogram",
    "kept_vs_difficulty",
    "verifier_reasons",
    "drop_waterfall",
    "cluster_sizes",
    "token_lengths",
)
VERDICT_COLORS = {"correct": "tab:green", "incorrect": "tab:red", "unjudgeable": "tab:orange", "unverified": "tab:gray"}
STATUS_COLORS = {"solved": "tab:green", "capped": "tab:orange", "unsolved": "tab:red", "pending": "tab:gray"}


@dataclass(frozen=True)
class _Output:
    """One readable table of a view: its Parquet schema, how to read it, whether its stage finished."""

    stage: str
    name: str
    schema: pa.Schema
    reader: Callable[[], pa.Table]
    is_complete: bool

    def has(self, schema: pa.Schema) -> bool:
        """Whether this table carries every column of `schema`."""
        return set(schema.names) <= set(self.schema.names)

    def read(self) -> pa.Table:
        """The table; empty with its schema while no shard is committed."""
        table = self.reader()
        return table if table.num_columns else self.schema.empty_table()


SUSPECT_COLUMNS = ["problem_id", "reference", "majority_answer", "majority_count", "n_judged", "n_reference", "is_quarantined"]


@dataclass(frozen=True)
class RunView:
    """A run or an export, read-only, as pandas DataFrames.

    Attributes:
        path: the run directory or export version directory.
        kind: 'run' or 'export'.
        stages: one row per stage in `finished_at` order: stage, status, rows_in,
            rows_out, dropped (sum of drop reasons), wall_s. An unfinished stage
            (status 'incomplete') comes last with its committed shards' counts.
        drops: stage, reason, count; the stages' drop reasons in stage order, largest first.
        outputs: stage, output, rows; every table `read` accepts as '<stage>/<output>',
            with the row count its manifest recorded (None while the stage runs).
    """

    path: Path
    kind: Literal["run", "export"]
    stages: pd.DataFrame
    drops: pd.DataFrame
    outputs: pd.DataFrame
    _manifests: dict[str, dict[str, Any]] = field(repr=False)
    _outputs: dict[str, _Output] = field(repr=False)

    def manifest(self, stage: str) -> dict[str, Any]:
        """Return a stage's manifest (an export holds every upstream stage's)."""
        try:
            return self._manifests[stage]
        except KeyError:
            raise KeyError(f"no stage {stage!r} in {self.path}; stages: {list(self._manifests)}") from None

    def read(self, output: str) -> pd.DataFrame:
        """Return the table '<stage>/<output>' (e.g. 'dart/negatives', 'export/train') as a DataFrame."""
        if output not in self._outputs:
            raise KeyError(f"no output {output!r} in {self.path}; outputs: {list(self._outputs)}")
        return self._outputs[output].read().to_pandas()

    def samples(self, output: str | None = None) -> pd.DataFrame:
        """Return sample rows: `output` ('<stage>/<output>'), or by default the rows the run kept last.

        The default is the kept output (`data`, `accepted` or an export's
        `train`) of the last finished stage that writes samples: what the export
        holds (DART's surplus rows included when DART is that stage; see `is_surplus`).
        """
        if output is not None:
            return self.read(output)
        kept = [o for o in self._outputs.values() if o.is_complete and o.name in KEPT_OUTPUTS and o.has(SAMPLE_SCHEMA)]
        return kept[-1].read().to_pandas() if kept else _empty(SAMPLE_SCHEMA)

    def judged_samples(self) -> pd.DataFrame:
        """Return every distinct sample any stage wrote (first copy of each sample_id, stage order).

        In a run that is every generated response (DART accepted and
        negatives, kept traces); in an export only the exported rows.
        """
        tables = [o.read() for o in self._outputs.values() if o.has(SAMPLE_SCHEMA)]
        frame = _concat(tables, SAMPLE_SCHEMA)
        return frame.drop_duplicates("sample_id", ignore_index=True)

    def query_info(self) -> pd.DataFrame:
        """Return per-problem difficulty (QUERY_INFO_SCHEMA) from the last `query_info` output; empty if none."""
        found = [o for o in self._outputs.values() if o.name == "query_info" and o.has(QUERY_INFO_SCHEMA)]
        return found[-1].read().to_pandas() if found else _empty(QUERY_INFO_SCHEMA)

    def problems(self) -> pd.DataFrame:
        """Return the problems: every problem-shaped output (seeds, templates) of a run.

        An export keeps no problem table: its exported rows' distinct problems
        are returned, with the PROBLEM_SCHEMA columns the rows carry.
        """
        if self.kind == "export":
            rows = self.samples()
            columns = [c for c in PROBLEM_SCHEMA.names if c in rows.columns]
            return rows[columns].drop_duplicates("problem_id", ignore_index=True)
        return _concat([o.read() for o in self._outputs.values() if o.has(PROBLEM_SCHEMA)], PROBLEM_SCHEMA)

    def suspect_references(self) -> pd.DataFrame:
        """Return the problems whose reference answer the audit after DART found suspect, one row each.

        Columns: problem_id, reference, majority_answer (what most judged
        responses answered instead), majority_count, n_judged, n_reference
        (responses agreeing with the reference) and is_quarantined (rows kept
        out of the export). Read from the DART manifest, so a run and an export
        show the same list; a run's full per-problem answer distribution is
        `read('dart/reference_audit')`.
        """
        entries = [entry for m in self._manifests.values() for entry in m.get("suspect_references", [])]
        return pd.DataFrame(entries, columns=SUSPECT_COLUMNS)

    def rejected(self) -> pd.DataFrame:
        """Return every row the stages wrote aside (REJECTED_SCHEMA: stage, row_id, problem_id, reason, detail)."""
        return _concat([o.read() for o in self._outputs.values() if o.has(REJECTED_SCHEMA)], REJECTED_SCHEMA)

    def contamination(self) -> pd.DataFrame:
        """Return the rows decontamination flagged, one per row: where it was checked and what it matched.

        Columns: checked_in (the stage: ingest for seeds, templates for
        synthesized problems, curate for samples), row_id, problem_id,
        benchmark, benchmark_item_id, layer, score, reason. A run's rows come
        from its `rejected` tables (plus `detail`, the layer's evidence); an
        export has none, so its stage manifests' lists are used (up to
        `mathforge.curate.decontaminate.MAX_LISTED` rows per check).
        """
        columns = ["checked_in", "row_id", "problem_id", "benchmark", "benchmark_item_id", "layer", "score", "reason"]
        if self.kind == "export":
            rows = [
                {"checked_in": stage, **{c: row.get(c) for c in columns[1:]}}
                for stage, manifest in self._manifests.items()
                for row in (manifest.get("decontamination") or {}).get("flagged", [])
            ]
            return pd.DataFrame(rows, columns=columns)
        frames = []
        for output in self._outputs.values():
            if output.has(REJECTED_SCHEMA):
                table = output.read()
                flagged = table.filter(pc.equal(table.column("stage"), "decontaminate")).to_pandas()
                frames.append(flagged.assign(checked_in=output.stage)[[*columns, "detail"]])
        frames = [frame for frame in frames if len(frame)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*columns, "detail"])


def _empty(schema: pa.Schema) -> pd.DataFrame:
    return schema.empty_table().to_pandas()


def _concat(tables: list[pa.Table], schema: pa.Schema) -> pd.DataFrame:
    """Concatenate tables on `schema`'s columns (outputs of several stages may carry more)."""
    tables = [t.select(schema.names).cast(schema) for t in tables if t.num_rows]
    return pa.concat_tables(tables).to_pandas() if tables else _empty(schema)


def load_run(path: str | Path) -> RunView:
    """Load a run directory or an export directory as a RunView.

    Raises:
        FileNotFoundError: `path` is neither (no `<stage>/manifest.json`, no export `manifest.json`).
    """
    path = Path(path)
    if (path / "latest" / "manifest.json").exists():
        path = (path / "latest").resolve()
    if (path / "manifest.json").exists() and (path / "parquet").is_dir():
        return _load_export(path)
    if path.is_dir() and any((d / "manifest.json").exists() or (d / "_stage.json").exists() for d in path.iterdir()):
        return _load_run_dir(path)
    raise FileNotFoundError(
        f"{path}: neither a run directory (<stage>/manifest.json) nor an export (manifest.json and parquet/); "
        "build one first, e.g. `make demo`"
    )


def _load_run_dir(path: Path) -> RunView:
    stages = [
        # Fingerprints only matter when a stage writes; reading its committed shards needs none.
        Stage(path, d.name, config_fingerprint="", input_fingerprint="")
        for d in sorted(path.iterdir())
        if (d / "manifest.json").exists() or (d / "_stage.json").exists()
    ]
    manifests = sorted(
        (stage.manifest() or _progress(stage) for stage in stages),
        key=lambda m: (m["status"] != "complete", m.get("finished_at", "")),
    )
    by_name = {stage.name: stage for stage in stages}
    outputs = {}
    output_rows = []
    for manifest in manifests:
        stage = by_name[manifest["stage"]]
        for directory in sorted(p for p in stage.dir.iterdir() if p.is_dir() and not p.name.startswith("_")):
            parts = sorted(directory.glob("part-*.parquet"))
            if not parts:
                continue
            schema = pq.read_schema(parts[0])
            is_complete = manifest["status"] == "complete"
            reader = partial(stage.read, directory.name)
            outputs[f"{stage.name}/{directory.name}"] = _Output(stage.name, directory.name, schema, reader, is_complete)
            rows = manifest.get("outputs", {}).get(directory.name)
            output_rows.append({"stage": stage.name, "output": directory.name, "rows": rows})
    return _view(path, "run", manifests, outputs, output_rows)


def _progress(stage: Stage) -> dict[str, Any]:
    """A manifest-like summary of an unfinished stage from its committed shards' markers."""
    summary = StageSummary()
    for stats in stage.shard_stats():
        summary.add(stats)
    return {"stage": stage.name, "status": "incomplete", **summary.as_dict()}


def _load_export(path: Path) -> RunView:
    manifest = json.loads((path / "manifest.json").read_text())
    manifests = sorted(manifest.get("stages", []), key=lambda m: m.get("finished_at", ""))
    outputs = {}
    output_rows = []
    for file in sorted((path / "parquet").glob("*.parquet")):
        schema = pq.read_schema(file)
        outputs[f"export/{file.stem}"] = _Output("export", file.stem, schema, partial(pq.read_table, file), True)
        output_rows.append({"stage": "export", "output": file.stem, "rows": pq.read_metadata(file).num_rows})
    return _view(path, "export", manifests, outputs, output_rows)


def _view(
    path: Path,
    kind: Literal["run", "export"],
    manifests: list[dict[str, Any]],
    outputs: dict[str, _Output],
    output_rows: list[dict[str, Any]],
) -> RunView:
    """Assemble a RunView: the stage and drop tables from the ordered manifests."""
    stages = pd.DataFrame(
        [
            {
                "stage": m["stage"],
                "status": m.get("status", "complete"),
                "rows_in": m.get("rows_in", 0),
                "rows_out": m.get("rows_out", 0),
                "dropped": sum(m.get("drop_reasons", {}).values()),
                "wall_s": m.get("timings", {}).get("wall_s"),
            }
            for m in manifests
        ],
        columns=["stage", "status", "rows_in", "rows_out", "dropped", "wall_s"],
    )
    drops = pd.DataFrame(
        [
            {"stage": m["stage"], "reason": reason, "count": count}
            for m in manifests
            for reason, count in sorted(m.get("drop_reasons", {}).items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        columns=["stage", "reason", "count"],
    )
    table = pd.DataFrame(output_rows, columns=["stage", "output", "rows"])
    return RunView(path, kind, stages, drops, table, {m["stage"]: m for m in manifests}, outputs)


def _placeholder(title: str, message: str) -> Figure:
    """A figure that says why there is nothing to draw (so every figure file always exists)."""
    fig = Figure(figsize=(6, 3), layout="constrained")
    ax = fig.subplots()
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, color="dimgray", transform=ax.transAxes)
    ax.set_axis_off()
    return fig


def _bucket_labels() -> list[str]:
    return [f"[{low:.1f}, {min(high, 1.0):.1f}{']' if high > 1 else ')'}" for low, high in DIFFICULTY_BUCKETS]


def _bucket_index(pass_rates: pd.Series) -> pd.Series:
    """Index into DIFFICULTY_BUCKETS of each pass rate (-1 when unknown)."""
    lows = np.array([low for low, _ in DIFFICULTY_BUCKETS])
    values = pass_rates.astype("float64").to_numpy()
    index = np.searchsorted(lows, np.nan_to_num(values, nan=0.0), side="right") - 1
    return pd.Series(np.where(np.isnan(values), -1, index), index=pass_rates.index)


def pass_rate_histogram(query_info: pd.DataFrame) -> Figure:
    """Draw the per-problem pass rate (verified-correct / trials), stacked by status.

    Reads query_info's `pass_rate` and `status`.
    """
    title = "Per-problem pass rate"
    if query_info.empty:
        return _placeholder(title, "no query info in this run")
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    statuses = [s for s in STATUS_COLORS if s in set(query_info["status"])]
    statuses += sorted(set(query_info["status"]) - set(statuses))
    ax.hist(
        [query_info.loc[query_info["status"] == s, "pass_rate"].to_numpy(dtype=float) for s in statuses],
        bins=np.linspace(0, 1, 11),
        stacked=True,
        label=statuses,
        color=[STATUS_COLORS.get(s, "tab:purple") for s in statuses],
    )
    ax.set_xlabel("pass rate (verified-correct / trials)")
    ax.set_ylabel("problems")
    ax.set_title(f"{title} ({len(query_info)} problems)")
    ax.legend(title="status")
    return fig


def kept_vs_difficulty(kept: pd.DataFrame, query_info: pd.DataFrame) -> Figure:
    """Draw problems and kept samples per difficulty bucket (DIFFICULTY_BUCKETS of pass rate).

    A kept row's difficulty is its problem's pass rate in `query_info`, or the
    row's own `pass_rate` when the problem is not there; rows with neither
    count as 'unknown'. Reads kept `problem_id`, `pass_rate`; query_info `problem_id`, `pass_rate`.
    """
    title = "Kept samples vs difficulty"
    if kept.empty and query_info.empty:
        return _placeholder(title, "no samples and no query info in this run")
    by_problem = query_info.set_index("problem_id")["pass_rate"]
    rates = kept["problem_id"].map(by_problem).astype("float64").fillna(kept["pass_rate"].astype("float64"))
    labels = _bucket_labels()
    kept_counts = _bucket_index(rates).value_counts()
    problem_counts = _bucket_index(query_info["pass_rate"]).value_counts()
    if kept_counts.get(-1, 0):
        labels.append("unknown")
    indices = list(range(len(DIFFICULTY_BUCKETS))) + ([-1] if "unknown" in labels else [])
    x = np.arange(len(labels))
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.subplots()
    ax.bar(x - 0.2, [problem_counts.get(i, 0) for i in indices], width=0.4, label="problems", color="tab:gray")
    ax.bar(x + 0.2, [kept_counts.get(i, 0) for i in indices], width=0.4, label="kept samples", color="tab:blue")
    ax.set_xticks(x, labels)
    ax.set_xlabel("problem pass rate (low = hard)")
    ax.set_ylabel("count")
    ax.set_title(f"{title} ({len(kept)} kept from {kept['problem_id'].nunique()} problems)")
    ax.legend()
    return fig


def verifier_reasons(judged: pd.DataFrame) -> Figure:
    """Draw samples per (verdict, verdict_reason), colored by verdict.

    Reads `verdict` (null: 'unverified') and `verdict_reason`.
    """
    title = "Verifier verdicts and reasons"
    if judged.empty:
        return _placeholder(title, "no samples in this run")
    pairs = pd.DataFrame(
        {
            "verdict": judged["verdict"].astype("object").fillna("unverified"),
            "reason": judged["verdict_reason"].astype("object").fillna("none"),
        }
    )
    counts = pairs.value_counts().sort_values()
    fig = Figure(figsize=(8, max(2.5, 1.2 + 0.35 * len(counts))), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(counts))
    ax.barh(y, counts.to_numpy(), color=[VERDICT_COLORS.get(v, "tab:purple") for v, _ in counts.index])
    ax.set_yticks(y, [f"{v}: {r}" for v, r in counts.index])
    for i, value in enumerate(counts.to_numpy()):
        ax.text(value, i, f" {value}", va="center")
    ax.set_xlabel("samples")
    ax.set_title(f"{title} ({len(judged)} samples)")
    return fig


def drop_waterfall(stages: pd.DataFrame, drops: pd.DataFrame) -> Figure:
    """Draw each stage as a waterfall: rows in, minus each drop reason, rows out.

    Reads stages `stage`, `rows_in`, `rows_out`; drops `stage`, `reason`, `count`.
    Rows in and out are in each stage's own unit (problems, samples).
    """
    title = "Rows through the stages"
    if stages.empty:
        return _placeholder(title, "no stages in this run")
    bars = []  # (label, left, width, color)
    for row in stages.itertuples():
        bars.append((f"{row.stage}: in", 0, row.rows_in, "tab:gray"))
        level = row.rows_in
        own = drops[drops["stage"] == row.stage]
        for reason, count in zip(own["reason"], own["count"]):
            level -= count
            bars.append((f"  − {reason}", level, count, "tab:red"))
        bars.append((f"{row.stage}: out", 0, row.rows_out, "tab:blue"))
    fig = Figure(figsize=(9, 1.2 + 0.3 * len(bars)), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(bars))
    ax.barh(y, [b[2] for b in bars], left=[b[1] for b in bars], color=[b[3] for b in bars])
    for i, (_, left, width, _) in enumerate(bars):
        ax.text(left + width, i, f" {width}", va="center", fontsize=8)
    ax.set_yticks(y, [b[0] for b in bars], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("rows")
    ax.set_title(title)
    return fig


def cluster_sizes(kept: pd.DataFrame) -> Figure:
    """Draw kept rows per cluster, largest first; a placeholder when no selector set `cluster_id`.

    Reads `cluster_id`.
    """
    title = "Kept rows per cluster"
    clusters = kept["cluster_id"].dropna() if "cluster_id" in kept else pd.Series(dtype="float64")
    if clusters.empty:
        return _placeholder(title, "no clusters in this run")
    counts = clusters.astype("int64").value_counts()
    fig = Figure(figsize=(max(6, 0.25 * len(counts)), 4), layout="constrained")
    ax = fig.subplots()
    ax.bar(np.arange(len(counts)), counts.to_numpy(), color="tab:blue")
    ax.set_xticks(np.arange(len(counts)), [str(c) for c in counts.index], fontsize=8 if len(counts) > 20 else 10)
    ax.set_xlabel("cluster_id")
    ax.set_ylabel("kept rows")
    ax.set_title(f"{title} ({len(counts)} clusters, {len(clusters)} rows)")
    return fig


def token_lengths(judged: pd.DataFrame, kept: pd.DataFrame) -> Figure:
    """Draw response lengths in tokens of every judged sample and of the kept ones, on shared bins.

    Reads `n_completion_tokens` of both.
    """
    title = "Response length"
    if judged.empty and kept.empty:
        return _placeholder(title, "no samples in this run")
    judged_tokens = judged["n_completion_tokens"].to_numpy(dtype=float)
    kept_tokens = kept["n_completion_tokens"].to_numpy(dtype=float)
    everything = np.concatenate([judged_tokens, kept_tokens])
    bins = np.histogram_bin_edges(everything, bins=min(30, max(1, len(np.unique(everything)))))
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    ax.hist(judged_tokens, bins=bins, color="tab:gray", alpha=0.6, label=f"all judged samples ({len(judged)})")
    ax.hist(kept_tokens, bins=bins, color="tab:blue", alpha=0.8, label=f"kept ({len(kept)})")
    ax.set_xlabel("completion tokens")
    ax.set_ylabel("samples")
    ax.set_title(title)
    ax.legend()
    return fig


def figures(view: RunView) -> dict[str, Figure]:
    """Draw the six figures of a view, keyed by FIGURE_NAMES."""
    kept = view.samples()
    judged = view.judged_samples()
    query_info = view.query_info()
    return {
        "pass_rate_histogram": pass_rate_histogram(query_info),
        "kept_vs_difficulty": kept_vs_difficulty(kept, query_info),
        "verifier_reasons": verifier_reasons(judged),
        "drop_waterfall": drop_waterfall(view.stages, view.drops),
        "cluster_sizes": cluster_sizes(kept),
        "token_lengths": token_lengths(judged, kept),
    }


def save_figures(view: RunView, directory: str | Path) -> list[Path]:
    """Write the six figures of `view` as `<directory>/<name>.png`; return their paths in FIGURE_NAMES order."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figures(view).items():
        path = directory / f"{name}.png"
        fig.savefig(path, dpi=100)
        paths.append(path)
    return paths
