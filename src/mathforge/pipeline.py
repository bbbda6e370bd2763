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
from mathforge.synthesis.template_solutions import SolutionRowsResult, solution_samples
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


def read_sources(sources: list[tuple[StageResult, str]], *, include_surplus: bool) -> pa.Table:
    """Concatenate sample outputs of several stages; DART surplus rows only when asked."""
    tables = []
    for result, output in sources:
        table = read_samples(result, output)
        if not include_surplus:
            table = table.filter(pc.invert(table["is_surplus"]))
        tables.append(table)
    return pa.concat_tables(tables) if tables else SAMPLE_SCHEMA.empty_table()


def ingest_stage(config: BuildConfig, exclude_ids: frozenset[str] = frozenset()) -> StageResult:
    """Read seed sources into `ingest/data` (problems) and `ingest/quarantine` (bad rows with reasons).

    Problems whose id is in `exclude_ids` (seen by earlier runs of an
    incremental series) are left out and counted as `seen_in_earlier_run`.
    """
    digests = [_file_digest(s.path) for s in config.ingest.sources if s.format != "hub"]

    def work(stage: Stage) -> StageSummary:
        problems, quarantined = ingest(config.ingest)
        seen = [p for p in problems if p.problem_id in exclude_ids]
        problems = [p for p in problems if p.problem_id not in exclude_ids]
        stage.write_shard(
            0,
            {"data": to_table(problems, PROBLEM_SCHEMA), "quarantine": to_table(quarantined, QUARANTINE_SCHEMA)},
        )
        summary = StageSummary(rows_in=len(problems) + len(seen) + len(quarantined), rows_out=len(problems))
        summary.drop_reasons.update(f"quarantined_{q.reason}" for q in quarantined)
        if seen:
            summary.drop_reasons["seen_in_earlier_run"] = len(seen)
        for q in quarantined:
            log.warning("quarantined %s row %d (%s): %s", q.source_file, q.row_number, q.field, q.reason)
        return summary

    return run_stage(run_dir(config), "ingest", [config.ingest, digests, sorted(exclude_ids)], [], work)


def _generator(config: BuildConfig, problems: list[Problem]) -> CachedGenerator:
    """The build's generator behind the run's generation cache (`<run>/cache/generations.sqlite`)."""
    scripted = [ScriptedProblem(p.problem_id, p.problem, p.answer) for p in problems]
    inner: Generator = shared_generator(config.generation, problems=scripted)
    return CachedGenerator(inner, run_dir(config) / "cache" / "generations.sqlite")


def _generation_fingerprint(config: BuildConfig, prompt_names: list[str]) -> list[object]:
    """What decides generated text: backend, model, engine seed, and the prompt files' contents."""
    prompt_text = [prompts.render(name, **{v: f"<{v}>" for v in prompts.declared_variables(name)}) for name in prompt_names]
    return [config.generation, prompt_text]


def template_stage(config: BuildConfig, seeds_result: StageResult) -> StageResult:
    """Template synthesis: authored templates plus LLM-decoupled seeds, instantiated in the sandbox.

    Reads the seed problems; writes `data` (new problems with answer, program,
    template_id, variables_json, seed_problem_id), `templates` (the templates
    used) and `rejected` (templates, instances and paraphrases dropped, with reasons).
    With `templates.emit_solutions` it also writes `solutions`: Sample rows
    whose response is an instance's rendered solution (verified, strategy
    'template-solution'); instances not used are `rejected` rows of stage
    'template_solution', counted in the manifest's 'solutions' step (they are
    not problem drops).
    """
    from mathforge.records import REJECTED_SCHEMA, TEMPLATE_SCHEMA
    from mathforge.sandbox import SandboxPool
    from mathforge.synthesis.template_files import load_authored_templates
    from mathforge.synthesis.templates import decouple, instantiate, paraphrase

    section = config.templates
    authored_digest = _file_digest(section.authored_dir)
    prompt_names = ["decouple_numbers", "paraphrase_problem"]
    stage_config = [section, authored_digest, config.sandbox, config.verification, _generation_fingerprint(config, prompt_names)]
    # Template solutions' token counts use the export's tokenizer, when there is one.
    tokenizer_model = config.output.tokenizer_model(config.generation.backend, config.generation.model)
    if section.emit_solutions:
        stage_config += [config.output.prompt, tokenizer_model]

    def work(stage: Stage) -> tuple[StageSummary, dict]:
        seeds = read_problems(seeds_result)
        templates = load_authored_templates(Path(section.authored_dir), ids=section.templates)
        rejected = []
        counts: dict[str, int] = {}
        with SandboxPool(config.sandbox) as sandbox:
            if section.decouple.enabled:
                generator = _generator(config, seeds)
                decoupled = decouple(seeds, generator, config=section, pool=sandbox, verify_config=config.verification)
                generator.close()
                templates += decoupled.templates
                rejected += decoupled.rejected
                counts.update({f"decouple_{k}": v for k, v in decoupled.counts.items()})
            made = instantiate(templates, n_per_template=section.n_instances_per_template, seed=section.seed, pool=sandbox, config=section)
            rejected += made.rejected
            counts.update({f"instantiate_{k}": v for k, v in made.counts.items()})
            problems = list(made.problems)
            if section.paraphrase.enabled:
                generator = _generator(config, problems)
                rewritten = paraphrase(problems, generator, pool=sandbox, config=section, verify_config=config.verification)
                generator.close()
                problems += rewritten.problems
                rejected += rewritten.rejected
                counts.update({f"paraphrase_{k}": v for k, v in rewritten.counts.items()})
        outputs = {
            "data": to_table(problems, PROBLEM_SCHEMA),
            "templates": to_table(templates, TEMPLATE_SCHEMA),
        }
        solution_rejected, steps = [], []
        if section.emit_solutions:
            made_rows = _template_solution_rows(config, problems, tokenizer_model)
            outputs["solutions"] = to_table(made_rows.samples, SAMPLE_SCHEMA)
            solution_rejected = made_rows.rejected
            drops = {k: v for k, v in made_rows.counts.items() if k != "kept"}
            # A step of its own in the card: problems in, SFT rows out (not problem drops).
            steps.append({"step": "solutions", "rows_in": len(problems), "rows_out": len(made_rows.samples), "drop_reasons": drops})
        outputs["rejected"] = to_table(rejected + solution_rejected, REJECTED_SCHEMA)
        stage.write_shard(0, outputs)
        summary = StageSummary(rows_in=len(problems) + len(rejected), rows_out=len(problems))
        summary.drop_reasons.update(f"{r.stage}:{r.reason}" for r in rejected)
        summary.counts.update({k: v for k, v in counts.items() if isinstance(v, (int, float))})
        summary.counts["templates"] = len(templates)
        log.info("templates: %d templates, %d problems, %d rejected", len(templates), len(problems), len(rejected))
        return summary, {"steps": steps}

    return run_stage(run_dir(config), "templates", stage_config, [seeds_result], work)


def _template_solution_rows(config: BuildConfig, problems: list[Problem], tokenizer_model: str | None) -> SolutionRowsResult:
    """Verified template-solution Samples of `problems` (synthesis.template_solutions)."""
    options = {}
    if tokenizer_model is not None:
        from mathforge.conversation import load_tokenizer

        tokenizer = load_tokenizer(tokenizer_model)
        options["count_tokens"] = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])
    with VerifierPool(config.verification) as pool:
        return solution_samples(
            problems,
            verify_many=pool.verify_many,
            prompt=config.output.prompt,
            verifier=verifier_name(config.verification),
            **options,
        )


def dart_part(config: BuildConfig, problems: list[Problem], part: Stage) -> dict:
    """Run DART over one slice of problems in its part directory, resuming committed rounds.

    Writes `rounds` shards (every sample: the resume state), then `accepted`,
    `negatives` and `query_info`; returns the part's stats for the parent's
    shard marker. Runs in-process or on a Ray worker (mathforge.scale).
    """
    sampling = config.sampling
    part.open()
    done = part.read("rounds", SAMPLE_SCHEMA)
    rounds: dict[int, list[Sample]] = {}
    for row in done.to_pylist():
        rounds.setdefault(row["round"], []).append(Sample(**row))
    rounds_done = [rounds[i] for i in sorted(rounds)]
    if rounds_done:
        log.info("%s: resuming after %d committed rounds", part.name, len(rounds_done))
    generator = _generator(config, problems)

    def commit(index: int, samples: list[Sample]) -> None:
        part.write_shard(index, {"rounds": to_table(samples, SAMPLE_SCHEMA)})
        n_correct = sum(s.verdict == "correct" for s in samples)
        log.info("dart %s round %d: %d samples, %d correct", part.name, index, len(samples), n_correct)

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
    n_samples = sum(v for k, v in result.counts.items() if k.startswith(("accepted", "surplus", "rejected_")))
    summary = StageSummary(rows_in=n_samples, rows_out=result.counts.get("accepted", 0))
    summary.counts.update({k: v for k, v in result.counts.items() if not k.startswith("rejected_")})
    summary.counts["rounds"] = result.n_rounds
    summary.counts["problems"] = len(problems)
    for key, value in generator.usage.as_dict().items():
        summary.counts[f"usage_{key}"] = value
    summary.drop_reasons.update({k.removeprefix("rejected_"): v for k, v in result.counts.items() if k.startswith("rejected_")})
    if result.counts.get("surplus"):
        summary.drop_reasons["surplus_beyond_target"] = result.counts["surplus"]
    outputs = {
        "accepted": to_table(result.accepted, SAMPLE_SCHEMA),
        "negatives": to_table(result.negatives, SAMPLE_SCHEMA),
        "query_info": to_table(result.query_info, QUERY_INFO_SCHEMA),
    }
    part.write_shard(result.n_rounds, outputs, summary.as_dict())
    return summary.as_dict()


def dart_stage(config: BuildConfig, problem_results: list[StageResult], *, name: str = "dart") -> StageResult:
    """DART sampling over the problems of `problem_results` (seeds, templates), in parts of `run.shard_size` problems.

    Outputs `accepted` (correct responses; surplus flagged), `negatives` and
    `query_info`. Parts run in-process one after another, or on a Ray cluster
    when `scale.backend` is 'ray'; a finished part is never redone.
    """
    sampling = config.sampling
    stage_config = [sampling, config.verification, config.run.shard_size, _generation_fingerprint(config, [sampling.prompt])]

    def work(stage: Stage) -> tuple[StageSummary, dict]:
        problems = [p for result in problem_results for p in read_problems(result)]
        size = config.run.shard_size
        slices = [problems[i : i + size] for i in range(0, len(problems), size)] or [[]]
        pending = [i for i in range(len(slices)) if not stage.shard_done(i)]
        if config.scale.backend == "ray":
            from mathforge.scale import run_parts_on_ray

            run_parts_on_ray(config, stage, {i: slices[i] for i in pending})
        else:
            for i in pending:
                dart_part(config, slices[i], stage.part(i))
        for i in pending:
            part = stage.part(i)
            (stats,) = [s for s in part.shard_stats() if "rows_in" in s]
            outputs = {output: part.read(output) for output in ("accepted", "negatives", "query_info")}
            stage.write_shard(i, outputs, stats)
        summary = StageSummary()
        for stats in stage.shard_stats():
            summary.add(stats)
        return summary, {"model": config.generation.model, "n_parts": len(slices)}

    return run_stage(run_dir(config), name, stage_config, problem_results, work)


def self_correction_stage(config: BuildConfig, problem_results: list[StageResult], dart_result: StageResult) -> StageResult:
    """Self-correction or tool-integrated traces (CoSC/DotaMath) with real execution.

    Reads DART `negatives` (correction mode, source 'negatives') or the
    problems (tool/cosc modes, or fresh attempts); writes `data` (kept traces,
    verdict correct) and `rejected` (dropped attempts with reasons).
    """
    from mathforge.records import REJECTED_SCHEMA
    from mathforge.sandbox import SandboxPool
    from mathforge.synthesis.self_correction import run_self_correction

    section = config.self_correction
    prompt_names = ["solve_cot", "solve_with_code", "cosc_verify", "correct_attempt", "correct_attempt_with_code"]
    stage_config = [section, config.sandbox, config.verification, _generation_fingerprint(config, prompt_names)]

    def work(stage: Stage) -> StageSummary:
        problems = [p for result in problem_results for p in read_problems(result)]
        negatives = read_samples(dart_result, "negatives")
        generator = _generator(config, problems)
        with VerifierPool(config.verification) as verifier, SandboxPool(config.sandbox) as sandbox:
            result = run_self_correction(
                problems,
                negatives,
                generator,
                pool=sandbox,
                verify_many=verifier.verify_many,
                config=section,
                verifier=verifier_name(config.verification),
            )
        generator.close()
        stage.write_shard(0, {"data": to_table(result.kept, SAMPLE_SCHEMA), "rejected": to_table(result.rejected, REJECTED_SCHEMA)})
        summary = StageSummary(rows_in=result.counts.get("attempted", 0), rows_out=len(result.kept))
        summary.drop_reasons.update(r.reason for r in result.rejected)
        summary.counts.update({k: v for k, v in result.counts.items() if isinstance(v, (int, float))})
        log.info("self-correction: %s", result.counts)
        return summary

    return run_stage(run_dir(config), "self_correction", stage_config, [*problem_results, dart_result], work)


def curate_stage(config: BuildConfig, sample_results: list[tuple[StageResult, str]]) -> StageResult:
    """Curation over the union of sample outputs: filters, decontamination, dedup, fair capping.

    Reads each (stage, output) of `sample_results` (e.g. DART `accepted`
    without surplus, self-correction `data`); writes `data` (kept samples),
    `rejected` (every dropped row with its step, reason and detail) and puts the
    per-step counts in the manifest (`steps`) for the dataset card.
    """
    from mathforge.curate import count_by_benchmark, curate
    from mathforge.records import REJECTED_SCHEMA

    section = config.curation
    benchmark_digests = [_file_digest(b) for b in section.decontamination.benchmarks if Path(b).exists()]
    stage_config = [section, benchmark_digests, config.output.include_surplus]

    def work(stage: Stage) -> tuple[StageSummary, dict]:
        pool = read_sources(sample_results, include_surplus=config.output.include_surplus)
        result = curate(pool, section)
        stage.write_shard(0, {"data": result.kept, "rejected": result.rejected.cast(REJECTED_SCHEMA)})
        summary = StageSummary(rows_in=pool.num_rows, rows_out=result.kept.num_rows)
        summary.drop_reasons.update(result.counts)
        steps = [{"step": s.step, "rows_in": s.n_in, "rows_out": s.n_out, "drop_reasons": s.dropped} for s in result.steps]
        log.info("curate: %d -> %d rows (%s)", pool.num_rows, result.kept.num_rows, result.counts)
        # Benchmarks are named like load_benchmark names them (file stem, directory or hub name).
        names = [
            Path(b).stem if Path(b).is_file() else Path(b).name if Path(b).exists() else b
            for b in section.decontamination.benchmarks
        ]
        benchmarks = dict.fromkeys(names, 0) | count_by_benchmark(result.rejected)
        return summary, {"steps": steps, "decontamination": benchmarks}

    return run_stage(run_dir(config), "curate", stage_config, [r for r, _ in sample_results], work)


def select_stage(config: BuildConfig, sources: list[tuple[StageResult, str]]) -> StageResult:
    """Selection steps (GRAPE, k-means diversity, S2L) over the union of sample outputs.

    Reads each (stage, output) of `sources`; writes `data` (selected rows with
    cluster_id, selection_score, selected_by, loglik_per_token) and `rejected`.
    """
    from mathforge.records import REJECTED_SCHEMA
    from mathforge.select import GrapeStep, select

    section = config.selection
    needs_model = any(isinstance(step, GrapeStep) for step in section.steps)
    stage_config = [section, _generation_fingerprint(config, [config.sampling.prompt]) if needs_model else None]

    def work(stage: Stage) -> StageSummary:
        table = read_sources(sources, include_surplus=config.output.include_surplus)
        generator = None
        if needs_model:
            problems = [Problem(problem_id=r["problem_id"], problem=r["problem"], answer=r["answer"], source=r["source"]) for r in table.select(["problem_id", "problem", "answer", "source"]).to_pylist()]
            generator = _generator(config, problems)
        result = select(
            table, section, generator=generator, prompt_fn=lambda text: prompts.chat(config.sampling.prompt, problem=text)
        )
        if generator is not None:
            generator.close()
        stage.write_shard(0, {"data": result.table, "rejected": result.rejected.cast(REJECTED_SCHEMA)})
        summary = StageSummary(rows_in=table.num_rows, rows_out=result.table.num_rows)
        summary.drop_reasons.update({k: v for k, v in result.counts.items() if k != "kept"})
        summary.counts.update(result.stats)
        return summary

    return run_stage(run_dir(config), "select", stage_config, [r for r, _ in sources], work)


def export_stage(
    config: BuildConfig,
    sources: list[tuple[StageResult, str]],
    *,
    upstream: list[StageResult],
    query_info: StageResult | None = None,
) -> StageResult:
    """Export the union of `sources` (stage, output) as a dataset version; skipped when it exists.

    `upstream` lists every stage of the build in order: their manifests make
    the card's raw → exported table. The user turn of each row's `prompt` is
    the prompt its strategy was generated with; `output.tokenizer` decides
    whether rows are also pre-tokenized (input_ids, completion_mask).
    """
    from mathforge.export import export_dataset
    from mathforge.generation.embedded import model_checksum
    from mathforge.synthesis.self_correction import prompt_by_strategy

    version = fingerprint([config.output, [r.fingerprint for r in upstream], [r.fingerprint for r, _ in sources]])
    export_dir = Path(config.output.export_dir)

    def work(stage: Stage) -> tuple[StageSummary, dict]:
        samples = read_sources(sources, include_surplus=config.output.include_surplus)
        info = read_output(Path(query_info.stage_dir), "query_info", QUERY_INFO_SCHEMA) if query_info else None
        quarantine = read_output(Path(upstream[0].stage_dir), "quarantine", QUARANTINE_SCHEMA)
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
            prompt_by_strategy=prompt_by_strategy(config.self_correction.attempt_prompt),
            query_info=info,
            manifests=[r.manifest for r in upstream],
            meta=meta,
            extra_tables={"quarantine": quarantine} if quarantine.num_rows else None,
            tokenizer=config.output.tokenizer_model(config.generation.backend, config.generation.model),
        )
        log.info("exported %d rows to %s", samples.num_rows, path)
        return StageSummary(rows_in=samples.num_rows, rows_out=samples.num_rows), {"export_path": str(path)}

    inputs = [*upstream, *(r for r, _ in sources)]
    result = run_stage(run_dir(config), "export", [config.output, version], inputs, work)
    if not (export_dir / version / "manifest.json").exists():
        # The export directory was removed by hand after a finished build: write it again.
        (Path(result.stage_dir) / "manifest.json").unlink(missing_ok=True)
        result = run_stage(run_dir(config), "export", [config.output, version], inputs, work)
    return result
