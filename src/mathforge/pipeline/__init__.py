"""Stage runners: each reads its inputs from the run directory, calls the pure stage
functions, and writes shards and a manifest through `mathforge.store`.

Flows call these as Prefect tasks and pass `StageResult`s (paths and small
summaries) between them; the runners are plain functions, usable without
Prefect in notebooks and tests.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from mathforge import prompts
from mathforge.config import BuildConfig
from mathforge.generation import (
    GenerationConfig,
    ModelConfig,
    ScriptedProblem,
    make_generator,
    release_shared_generators,
    shared_generator,
)
from mathforge.generation.base import Generator, TokenScorer
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
from mathforge.progress import Progress, set_label, stage_label
from mathforge.store import Stage, StageResult, StageSummary, fingerprint, read_output, run_stage
from mathforge.synthesis.dart import is_satisfied, replay, run_dart, target_for
from mathforge.synthesis.template_solutions import SolutionRowsResult, solution_samples
from mathforge.verify import VerifierPool, asks_for_decimal, verifier_name

if TYPE_CHECKING:
    from mathforge.curate import Decontaminator
    from mathforge.select.grape import ConversationFn

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


def _decontamination_fingerprint(config: BuildConfig, point: str) -> list[object] | None:
    """What decides a decontamination check at `point`: its config and the benchmark files' contents."""
    section = config.curation.decontamination if config.curation is not None else None
    if section is None or not section.benchmarks or point not in section.check:
        return None
    return [section, [_file_digest(b) for b in section.benchmarks if Path(b).exists()]]


def _decontaminator(config: BuildConfig, point: str) -> Decontaminator | None:
    """The build's decontamination layers if it checks at `point` ('seeds', 'synthesized', 'samples'), else None."""
    from mathforge.curate import Decontaminator, load_benchmarks

    if _decontamination_fingerprint(config, point) is None:
        return None
    section = config.curation.decontamination
    generator = _generator(config, []) if section.llm.enabled else None
    return Decontaminator(load_benchmarks(section), section, generator=generator)


def _check_problems(config: BuildConfig, point: str, problems: list[Problem], summary: StageSummary) -> tuple[list[Problem], pa.Table, dict]:
    """Drop problems that leak a benchmark item; return the kept ones, their rejected rows and the manifest entry."""
    from mathforge.curate import contamination_summary, decontaminate
    from mathforge.records import REJECTED_SCHEMA

    checker = _decontaminator(config, point)
    if checker is None:
        return problems, REJECTED_SCHEMA.empty_table(), {}
    result = decontaminate(to_table(problems, PROBLEM_SCHEMA), checker, columns=("problem",))
    if checker.generator is not None:
        checker.generator.close()
    summary.drop_reasons.update(result.counts)
    log.info("decontamination of %s: %d of %d problems dropped", point, result.rejected.num_rows, len(problems))
    kept = set(result.kept.column("problem_id").to_pylist())
    entry = contamination_summary(point, checker, result.rejected)
    return [p for p in problems if p.problem_id in kept], result.rejected, {"decontamination": entry}


def ingest_stage(config: BuildConfig, exclude_ids: frozenset[str] = frozenset()) -> StageResult:
    """Read seed sources into `ingest/data` (problems) and `ingest/quarantine` (bad rows with reasons).

    When the build decontaminates seeds (`curation.decontamination.check`
    has 'seeds'), problems that leak a benchmark item go to `ingest/rejected`
    with their benchmark, item id, layer and score.

    Problems whose id is in `exclude_ids` (seen by earlier runs of an
    incremental series) are left out and counted as `seen_in_earlier_run`.
    """
    digests = [_file_digest(s.path) for s in config.ingest.sources if s.format != "hub"]

    def work(stage: Stage) -> tuple[StageSummary, dict]:
        problems, quarantined = ingest(config.ingest)
        seen = [p for p in problems if p.problem_id in exclude_ids]
        problems = [p for p in problems if p.problem_id not in exclude_ids]
        summary = StageSummary(rows_in=len(problems) + len(seen) + len(quarantined))
        problems, leaked, extra = _check_problems(config, "seeds", problems, summary)
        summary.rows_out = len(problems)
        outputs = {"data": to_table(problems, PROBLEM_SCHEMA), "quarantine": to_table(quarantined, QUARANTINE_SCHEMA)}
        if extra:  # the seeds were checked for benchmark items
            outputs["rejected"] = leaked
        stage.write_shard(0, outputs)
        summary.drop_reasons.update(f"quarantined_{q.reason}" for q in quarantined)
        if seen:
            summary.drop_reasons["seen_in_earlier_run"] = len(seen)
        for q in quarantined:
            log.warning("quarantined %s row %d (%s): %s", q.source_file, q.row_number, q.field, q.reason)
        return summary, extra

    stage_config = [config.ingest, digests, sorted(exclude_ids), _decontamination_fingerprint(config, "seeds")]
    return run_stage(run_dir(config), "ingest", stage_config, [], work)


def decode_token_bound(config: BuildConfig) -> int | None:
    """Upper bound of the tokens a build generates, from its config alone; None when a seed source has no limit.

    Problems: every source's `limit`, plus template instances. Each problem may
    get up to `n_max` DART trials of `max_tokens`, and self-correction adds its
    attempts. The engine uses it to decide whether compiling pays off.
    """
    limits = [source.limit for source in config.ingest.sources]
    if any(limit is None for limit in limits):
        return None
    problems = sum(limits)
    templates = config.templates
    if templates.enabled:
        authored = templates.templates or list(Path(templates.authored_dir).glob("*.yaml"))
        n_templates = len(authored) + (templates.decouple.max_seeds if templates.decouple.enabled else 0)
        problems += n_templates * templates.n_instances_per_template
    tokens = problems * config.sampling.n_max * config.sampling.max_tokens
    if config.self_correction.enabled:
        tokens += config.self_correction.max_attempts * config.self_correction.max_total_tokens
    return tokens


def _generator(config: BuildConfig, problems: list[Problem]) -> CachedGenerator:
    """The build's generator behind the run's generation cache (`<run>/cache/generations.sqlite`)."""
    scripted = [ScriptedProblem(p.problem_id, p.problem, p.answer) for p in problems]
    inner: Generator = shared_generator(config.generation, problems=scripted, decode_tokens=decode_token_bound(config))
    return CachedGenerator(inner, run_dir(config) / "cache" / "generations.sqlite")


def _prompt_fingerprint(prompt_names: Sequence[str]) -> list[str]:
    """The prompt files' contents (rendered with placeholder variables), so an edited prompt invalidates a stage."""
    return [prompts.render(name, **{v: f"<{v}>" for v in prompts.declared_variables(name)}) for name in prompt_names]


def _generation_fingerprint(config: BuildConfig, prompt_names: list[str]) -> list[object]:
    """What decides generated text: backend, model, engine seed, and the prompt files' contents.

    Only the main model counts: adding `generation.additional` models adds DART
    stages and leaves the others as they were.
    """
    return [config.generation.primary(), _prompt_fingerprint(prompt_names)]


def with_model(config: BuildConfig, model: ModelConfig) -> BuildConfig:
    """The build with `model` as its only generation model (the config of a per-model DART stage)."""
    return config.model_copy(update={"generation": GenerationConfig.model_validate(model.model_dump())})


def row_conversations(config: BuildConfig) -> "ConversationFn":
    """row -> its exported `Conversation`: the export's own rendering (`row_conversation` with this build's prompts).

    GRAPE scores rows in exactly this conversation.
    """
    from mathforge.conversation import row_conversation
    from mathforge.synthesis.self_correction import prompt_by_strategy

    return functools.partial(
        row_conversation,
        prompt_by_strategy=prompt_by_strategy(config.self_correction.attempt_prompt),
        default_prompt=config.output.prompt,
        system_prompt=config.output.system_prompt,
    )


def template_stage(config: BuildConfig, seeds_result: StageResult) -> StageResult:
    """Template synthesis: authored templates plus LLM-decoupled seeds, instantiated in the sandbox.

    Reads the seed problems; writes `data` (new problems with answer, program,
    template_id, variables_json, seed_problem_id), `templates` (the templates
    used) and `rejected` (templates, instances and paraphrases dropped, with reasons, and, when the
    build decontaminates synthesized problems, those that leak a benchmark item).
    With `templates.emit_solutions` it also writes `solutions`: Sample rows
    whose response is an instance's rendered solution (verified, strategy
    'template-solution') of the problems kept; instances not used are
    `rejected` rows of stage 'template_solution', counted in the manifest's
    'solutions' step (they are not problem drops).
    """
    from mathforge.records import REJECTED_SCHEMA, TEMPLATE_SCHEMA
    from mathforge.sandbox import SandboxPool
    from mathforge.synthesis.template_files import load_authored_templates
    from mathforge.synthesis.templates import decouple, instantiate, paraphrase

    section = config.templates
    authored_digest = _file_digest(section.authored_dir)
    prompt_names = ["decouple_numbers", "paraphrase_problem", "solve_program"]
    stage_config = [section, authored_digest, config.sandbox, config.verification, _generation_fingerprint(config, prompt_names)]
    stage_config.append(_decontamination_fingerprint(config, "synthesized"))
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
                with stage_label("templates: decouple seeds"):
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
                with stage_label("templates: paraphrase"):
                    rewritten = paraphrase(problems, generator, pool=sandbox, config=section, verify_config=config.verification)
                generator.close()
                problems += rewritten.problems
                rejected += rewritten.rejected
                counts.update({f"paraphrase_{k}": v for k, v in rewritten.counts.items()})
                counts.update(paraphrase_solutions=rewritten.n_solutions, paraphrase_reproducing=rewritten.n_reproducing)
        summary = StageSummary(rows_in=len(problems) + len(rejected))
        problems, leaked, extra = _check_problems(config, "synthesized", problems, summary)
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
        outputs["rejected"] = pa.concat_tables([to_table(rejected + solution_rejected, REJECTED_SCHEMA), leaked])
        stage.write_shard(0, outputs)
        summary.rows_out = len(problems)
        summary.drop_reasons.update(f"{r.stage}:{r.reason}" for r in rejected)
        summary.counts.update({k: v for k, v in counts.items() if isinstance(v, (int, float))})
        summary.counts["templates"] = len(templates)
        log.info("templates: %d templates, %d problems, %d rejected", len(templates), len(problems), len(rejected))
        return summary, {**extra, "steps": steps}

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
    `negatives`, `query_info` and `reference_audit` (every trial's answer
    against the reference, `synthesis.reference_audit`); returns the part's
    stats for the parent's shard marker. Runs in-process or on a Ray worker
    (mathforge.scale).
    """
    from mathforge.records import REFERENCE_AUDIT_SCHEMA
    from mathforge.synthesis.reference_audit import AuditResult, audit_references

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
    progress = Progress(f"dart {part.name}", len(problems), every_s=0.0)
    committed = list(rounds_done)
    n_resumed = sum(len(samples) for samples in rounds_done)

    def commit(index: int, samples: list[Sample]) -> None:
        part.write_shard(index, {"rounds": to_table(samples, SAMPLE_SCHEMA)})
        committed.append(samples)
        states = replay(problems, committed, sampling)
        usage = generator.usage
        n_trials = sum(state.n_trials for state in states.values())
        # Unsatisfied queries may still take every trial up to n_max.
        trials_left = sum(sampling.n_max - s.n_trials for s in states.values() if not is_satisfied(s, sampling))
        progress.update(
            sum(is_satisfied(state, sampling) for state in states.values()),
            left_s=(time.perf_counter() - progress.started) / max(n_trials - n_resumed, 1) * trials_left,
            round=index,
            accepted=sum(min(state.n_correct, target_for(state, sampling)) for state in states.values()),
            samples=n_trials,
            **{"tok/s": f"{usage.completion_tokens / usage.wall_s:.0f}" if usage.wall_s else "-"},
        )
        set_label(f"dart {part.name} round {index + 1}")

    with stage_label(f"dart {part.name} round {len(rounds_done)}"), VerifierPool(config.verification) as pool:
        result = run_dart(
            problems,
            generator,
            pool.verify_many,
            sampling,
            prompt_fn=lambda p: prompts.chat(sampling.prompt, problem=p.problem),
            verifier=verifier_name(config.verification),
            rounds_done=rounds_done,
            on_round=commit,
            decimal_requested=lambda problem: asks_for_decimal(problem.problem),
        )
        audit = AuditResult(rows=[])
        if sampling.reference_audit.enabled:
            trials = part.read("rounds", SAMPLE_SCHEMA)
            audit = audit_references(problems, trials, sampling.reference_audit, compare_many=pool.compare_many)
    generator.close()
    n_samples = sum(v for k, v in result.counts.items() if k.startswith(("accepted", "surplus", "rejected_")))
    summary = StageSummary(rows_in=n_samples, rows_out=result.counts.get("accepted", 0))
    summary.counts.update({k: v for k, v in result.counts.items() if not k.startswith("rejected_")})
    summary.counts["rounds"] = result.n_rounds
    summary.counts.update({f"audit_{status}": n for status, n in audit.counts.items()})
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
        "reference_audit": to_table(audit.rows, REFERENCE_AUDIT_SCHEMA),
    }
    part.write_shard(result.n_rounds, outputs, summary.as_dict())
    return summary.as_dict()


def dart_stage(config: BuildConfig, problem_results: list[StageResult], *, name: str = "dart") -> StageResult:
    """DART sampling over the problems of `problem_results` (seeds, templates), in parts of `run.shard_size` problems.

    Outputs `accepted` (correct responses; surplus flagged), `negatives`,
    `query_info` and `reference_audit`; the manifest lists the suspect
    references (`suspect_references`) for the card and the export. Parts run in-process one after another, or on a Ray cluster
    when `scale.backend` is 'ray'; a finished part is never redone.
    """
    from mathforge.records import REFERENCE_AUDIT_SCHEMA, ReferenceAudit
    from mathforge.synthesis.reference_audit import suspect_entries

    sampling = config.sampling
    stage_config = [sampling, config.verification, config.run.shard_size, _generation_fingerprint(config, [sampling.prompt])]

    def work(stage: Stage) -> tuple[StageSummary, dict]:
        problems = [p for result in problem_results for p in read_problems(result)]
        size = config.run.shard_size
        slices = [problems[i : i + size] for i in range(0, len(problems), size)] or [[]]
        pending = [i for i in range(len(slices)) if not stage.shard_done(i)]
        if config.scale.backend == "ray":
            from mathforge.scale import run_parts_on_ray

            run_parts_on_ray(config, stage, {i: slices[i] for i in pending}, dart_part)
        else:
            for i in pending:
                dart_part(config, slices[i], stage.part(i))
        for i in pending:
            part = stage.part(i)
            (stats,) = [s for s in part.shard_stats() if "rows_in" in s]
            outputs = {output: part.read(output) for output in ("accepted", "negatives", "query_info", "reference_audit")}
            stage.write_shard(i, outputs, stats)
        summary = StageSummary()
        for stats in stage.shard_stats():
            summary.add(stats)
        audit = stage.read("reference_audit", REFERENCE_AUDIT_SCHEMA).to_pylist()
        suspects = suspect_entries([ReferenceAudit(**row) for row in audit])
        return summary, {"model": config.generation.model, "n_parts": len(slices), "suspect_references": suspects}

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
        with stage_label("self-correction"), VerifierPool(config.verification) as verifier, SandboxPool(config.sandbox) as sandbox:
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
    from mathforge.curate import contamination_summary, curate
    from mathforge.records import REJECTED_SCHEMA

    section = config.curation
    benchmark_digests = [_file_digest(b) for b in section.decontamination.benchmarks if Path(b).exists()]
    stage_config = [section, benchmark_digests, config.output.include_surplus]

    def work(stage: Stage) -> tuple[StageSummary, dict]:
        pool = read_sources(sample_results, include_surplus=config.output.include_surplus)
        checker = _decontaminator(config, "samples")
        result = curate(pool, section, benchmarks=checker or [])
        if checker is not None and checker.generator is not None:
            checker.generator.close()
        stage.write_shard(0, {"data": result.kept, "rejected": result.rejected.cast(REJECTED_SCHEMA)})
        summary = StageSummary(rows_in=pool.num_rows, rows_out=result.kept.num_rows)
        summary.drop_reasons.update(result.counts)
        steps = [{"step": s.step, "rows_in": s.n_in, "rows_out": s.n_out, "drop_reasons": s.dropped} for s in result.steps]
        log.info("curate: %d -> %d rows (%s)", pool.num_rows, result.kept.num_rows, result.counts)
        extra: dict = {"steps": steps}
        if checker is not None:
            extra["decontamination"] = contamination_summary("samples", checker, result.rejected)
        return summary, extra

    return run_stage(run_dir(config), "curate", stage_config, [r for r, _ in sample_results], work)


def select_stage(config: BuildConfig, sources: list[tuple[StageResult, str]], *, dart: Sequence[StageResult] = ()) -> StageResult:
    """Selection steps (GRAPE, k-means diversity, S2L) over the union of sample outputs.

    Reads each (stage, output) of `sources` and the `query_info` of the DART
    stages in `dart` (one per sampling model: GRAPE's per-problem counts and the
    difficulty buckets); writes `data` (selected rows with cluster_id,
    selection_score, selected_by, loglik_per_token) and `rejected`, and puts the
    difficulty distribution before/after and the GRAPE scorer in the manifest
    for the dataset card. GRAPE scores with `target_model`, loaded after the
    generation engine is released and released itself afterwards; without one
    it falls back to the generation model and says so.
    """
    from mathforge.records import REJECTED_SCHEMA
    from mathforge.select import select
    from mathforge.synthesis.self_correction import prompt_by_strategy

    section = config.selection
    has_grape = bool(section.grape_steps())
    target = section.target_model()
    scoring_model = target or config.generation.primary()
    conversations = row_conversations(config)
    export_prompts = sorted({*prompt_by_strategy(config.self_correction.attempt_prompt).values(), config.output.prompt})
    grape_fingerprint = [scoring_model, _prompt_fingerprint(export_prompts), config.output.system_prompt] if has_grape else None
    stage_config = [section, grape_fingerprint]

    def work(stage: Stage) -> tuple[StageSummary, dict]:
        table = read_sources(sources, include_surplus=config.output.include_surplus)
        infos = [read_output(Path(r.stage_dir), "query_info", QUERY_INFO_SCHEMA) for r in dart]
        query_info = pa.concat_tables(infos) if infos else None
        scorer = _scorer(scoring_model) if has_grape else None
        with stage_label("selection"):
            result = select(table, section, scorer=scorer, conversation=conversations, query_info=query_info)
        if scorer is not None and scoring_model.model_key() != config.generation.model_key():
            # The target is not needed again in this build: free its engine now.
            release_shared_generators()
        stage.write_shard(0, {"data": result.table, "rejected": result.rejected.cast(REJECTED_SCHEMA)})
        summary = StageSummary(rows_in=table.num_rows, rows_out=result.table.num_rows)
        summary.drop_reasons.update({k: v for k, v in result.counts.items() if k != "kept"})
        summary.counts.update(result.stats)
        extra: dict = {"difficulty": result.difficulty}
        if has_grape:
            extra["grape"] = {
                "scorer": scoring_model.model,
                "backend": scoring_model.backend,
                "role": "target model" if target is not None else "generation model, not a separate target",
                "per_problem": [step.per_problem for step in section.grape_steps()],
            }
        return summary, extra

    return run_stage(run_dir(config), "select", stage_config, [*(r for r, _ in sources), *dart], work)


def _scorer(model: ModelConfig) -> TokenScorer:
    """The GRAPE scoring model: this process's shared engine for it (releasing any other first)."""
    scorer = make_generator(model) if model.backend == "scripted" else shared_generator(model)
    if not isinstance(scorer, TokenScorer):
        raise TypeError(f"the {model.backend} backend cannot score tokens")
    return scorer


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
    whether rows are also pre-tokenized (input_ids, completion_mask). Rows of
    problems the reference audit quarantined (listed in `query_info`'s
    manifest) are not exported.
    """
    from mathforge.export import export_dataset
    from mathforge.generation.embedded import model_checksum
    from mathforge.synthesis.reference_audit import quarantined_problem_ids
    from mathforge.synthesis.self_correction import prompt_by_strategy

    version = fingerprint([config.output, [r.fingerprint for r in upstream], [r.fingerprint for r, _ in sources]])
    export_dir = Path(config.output.export_dir)
    # The model to be fine-tuned: GRAPE's target when one is named, else the generation model.
    trained = (config.selection.target_model() if config.selection else None) or config.generation

    def work(stage: Stage) -> tuple[StageSummary, dict]:
        samples = read_sources(sources, include_surplus=config.output.include_surplus)
        n_read = samples.num_rows
        quarantined = quarantined_problem_ids(query_info.manifest.get("suspect_references", []) if query_info else [])
        samples = samples.filter(pc.invert(pc.is_in(samples["problem_id"], pa.array(sorted(quarantined), pa.string()))))
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
            tokenizer=config.output.tokenizer_model(trained.backend, trained.model),
        )
        log.info("exported %d rows to %s", samples.num_rows, path)
        summary = StageSummary(rows_in=n_read, rows_out=samples.num_rows)
        if n_read > samples.num_rows:
            summary.drop_reasons["quarantined_suspect_reference"] = n_read - samples.num_rows
        return summary, {"export_path": str(path)}

    inputs = [*upstream, *(r for r, _ in sources)]
    result = run_stage(run_dir(config), "export", [config.output, version], inputs, work)
    if not (export_dir / version / "manifest.json").exists():
        # The export directory was removed by hand after a finished build: write it again.
        (Path(result.stage_dir) / "manifest.json").unlink(missing_ok=True)
        result = run_stage(run_dir(config), "export", [config.output, version], inputs, work)
    return result
