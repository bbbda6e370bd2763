"""Stage runners: each reads its inputs from the run directory, calls the pure stage
functions, and writes shards and a manifest through `mathforge.store`.

Flows call these as Prefect tasks and pass `StageResult`s (paths and small
summaries) between them; the runners are plain functions, usable without
Prefect in notebooks and tests.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from mathforge import prompts
from mathforge.config import BuildConfig
from mathforge.generation import ScriptedProblem, shared_generator
from mathforge.generation.base import Generator
from mathforge.generation.cache import CachedGenerator
from mathforge.ingest import ingest
from mathforge.records import (
    PROBLEM_SCHEMA,
    QUARANTINE_SCHEMA,
    QUERY_INFO_SCHEMA,
    SAMPLE_SCHEMA,
    Problem,
    Sample,
    to_table,
)
from mathforge.store import Stage, StageResult, StageSummary, fingerprint, read_output, run_stage
from mathforge.synthesis.dart import run_dart
from mathforge.verify import VerifierPool, verifier_name

log = logging.getLogger("mathforge")


def run_dir(config: BuildConfig) -> Path:
    """The run directory of a build: `<runs_dir>/<run name>`."""
    return Path(config.run.runs_dir) / config.run.name


def _file_digest(path: str) -> str:
    """Content hash of a file, or of a directory's files, so edited seeds invalidate the stage."""
    target = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in target.rglob("*") if p.is_file()) if target.is_dir() else [target]
    for file in files:
        if file.exists():
            digest.update(file.name.encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def read_problems(result: StageResult, output: str = "data") -> list[Problem]:
    """Problems written by a stage (ingest or template synthesis)."""
    table = read_output(Path(result.stage_dir), output, PROBLEM_SCHEMA)
    return [Problem(**row) for row in table.to_pylist()]


def read_samples(result: StageResult, output: str) -> pa.Table:
    """A stage's sample-shaped output as a table."""
    return read_output(Path(result.stage_dir), output, SAMPLE_SCHEMA)


def ingest_stage(config: BuildConfig) -> StageResult:
    """Read seed sources into `ingest/data` (problems) and `ingest/quarantine` (bad rows with reasons)."""
    digests = [_file_digest(s.path) for s in config.ingest.sources if s.format != "hub"]

    def work(stage: Stage) -> StageSummary:
        problems, quarantined = ingest(config.ingest)
        stage.write_shard(
            0,
            {"data": to_table(problems, PROBLEM_SCHEMA), "quarantine": to_table(quarantined, QUARANTINE_SCHEMA)},
        )
        summary = StageSummary(rows_in=len(problems) + len(quarantined), rows_out=len(problems))
        summary.drop_reasons.update(f"quarantined_{q.reason}" for q in quarantined)
        for q in quarantined:
            log.warning("quarantined %s row %d (%s): %s", q.source_file, q.row_number, q.field, q.reason)
        return summary

    return run_stage(run_dir(config), "ingest", [config.ingest, digests], [], work)


def _generator(config: BuildConfig, problems: list[Problem], stage_dir: Path) -> CachedGenerator:
    scripted = [ScriptedProblem(p.problem_id, p.problem, p.answer) for p in problems]
    inner: Generator = shared_generator(config.generation, problems=scripted)
    return CachedGenerator(inner, stage_dir.parent / "cache" / "generations.sqlite")


def _generation_fingerprint(config: BuildConfig, prompt_names: list[str]) -> list[object]:
    """What decides generated text: backend, model, engine seed, and the prompt files' contents."""
    prompt_text = [prompts.render(name, **{v: f"<{v}>" for v in prompts.declared_variables(name)}) for name in prompt_names]
    return [config.generation, prompt_text]


def dart_stage(config: BuildConfig, problems_result: StageResult, *, name: str = "dart") -> StageResult:
    """DART sampling over the problems of `problems_result`.

    Writes `rounds` (every sample of every round: the resume state), then
    `accepted` (correct responses; surplus flagged), `negatives` and
    `query_info` once the loop ends.
    """
    sampling = config.sampling
    stage_config = [sampling, config.verification, _generation_fingerprint(config, [sampling.prompt])]

    def work(stage: Stage) -> tuple[StageSummary, dict]:
        problems = read_problems(problems_result)
        done = stage.read("rounds", SAMPLE_SCHEMA)
        rounds: dict[int, list[Sample]] = {}
        for row in done.to_pylist():
            rounds.setdefault(row["round"], []).append(Sample(**row))
        rounds_done = [rounds[i] for i in sorted(rounds)]
        if rounds_done:
            log.info("%s: resuming after %d committed rounds", name, len(rounds_done))
        generator = _generator(config, problems, stage.dir)

        def commit(index: int, samples: list[Sample]) -> None:
            n_correct = sum(s.verdict == "correct" for s in samples)
            stage.write_shard(index, {"rounds": to_table(samples, SAMPLE_SCHEMA)}, {"counts": {"samples": len(samples)}})
            log.info("%s round %d: %d samples, %d correct", name, index, len(samples), n_correct)

        with VerifierPool(config.verification) as pool:
            result = run_dart(
                problems,
                generator,
                pool.verify_many,
                sampling,
                prompt_fn=lambda p: prompts.chat(sampling.prompt, problem=p.problem),
                verifier=verifier_name(config.verification),
                rounds_done=rounds_done,
                on_round=commit,
            )
        generator.close()
        stage.write_shard(
            result.n_rounds,
            {
                "accepted": to_table(result.accepted, SAMPLE_SCHEMA),
                "negatives": to_table(result.negatives, SAMPLE_SCHEMA),
                "query_info": to_table(result.query_info, QUERY_INFO_SCHEMA),
            },
        )
        n_samples = sum(result.counts.get(k, 0) for k in result.counts if k.startswith(("accepted", "surplus", "rejected_")))
        summary = StageSummary(rows_in=n_samples, rows_out=result.counts.get("accepted", 0))
        summary.counts.update(result.counts)
        summary.counts["rounds"] = result.n_rounds
        summary.counts["problems"] = len(problems)
        summary.drop_reasons.update(
            {k.removeprefix("rejected_"): v for k, v in result.counts.items() if k.startswith("rejected_")}
        )
        if result.counts.get("surplus"):
            summary.drop_reasons["surplus_beyond_target"] = result.counts["surplus"]
        return summary, {"usage": generator.usage.as_dict(), "model": config.generation.model}

    return run_stage(run_dir(config), name, stage_config, [problems_result], work)


def export_stage(
    config: BuildConfig,
    final: StageResult,
    *,
    output: str,
    upstream: list[StageResult],
    query_info: StageResult | None = None,
) -> StageResult:
    """Export `final`'s `output` table as a dataset version; skipped when that version exists.

    `upstream` lists every stage of the build in order: their manifests make
    the card's raw → exported table.
    """
    from mathforge.export import export_dataset
    from mathforge.generation.embedded import model_checksum

    version = fingerprint([config.output, [r.fingerprint for r in upstream], final.fingerprint])
    export_dir = Path(config.output.export_dir)
    target = export_dir / version

    def work(stage: Stage) -> tuple[StageSummary, dict]:
        samples = read_samples(final, output)
        if not config.output.include_surplus:
            samples = samples.filter(pc.invert(samples["is_surplus"]))
        info = read_output(Path(query_info.stage_dir), "query_info", QUERY_INFO_SCHEMA) if query_info else None
        quarantine = read_output(Path(upstream[0].stage_dir), "quarantine", QUARANTINE_SCHEMA)
        manifests = [r.manifest for r in upstream]
        meta = {
            "name": f"mathforge-{config.run.name}",
            "version": version,
            "run": config.run.name,
            "model": config.generation.model,
            "model_checksum": model_checksum(config.generation.model),
            "backend": config.generation.backend,
            "engine_seed": config.generation.engine.seed,
            "sampling_seed": config.sampling.seed,
            "config": config.model_dump(mode="json"),
        }
        path = export_dataset(
            samples,
            export_dir=export_dir,
            version=version,
            prompt=config.output.prompt,
            system_prompt=config.output.system_prompt,
            query_info=info,
            manifests=manifests,
            meta=meta,
            extra_tables={"quarantine": quarantine} if quarantine.num_rows else None,
        )
        log.info("exported %d rows to %s", samples.num_rows, path)
        return StageSummary(rows_in=samples.num_rows, rows_out=samples.num_rows), {"export_path": str(path)}

    result = run_stage(run_dir(config), "export", [config.output, version], [final, *upstream], work)
    if not (target / "manifest.json").exists():
        # The export directory was removed by hand after a finished build: write it again.
        Stage(run_dir(config), "export", config_fingerprint="", input_fingerprint="").manifest_path.unlink(missing_ok=True)
        result = run_stage(run_dir(config), "export", [config.output, version], [final, *upstream], work)
    return result
