"""Stages that sample solutions with the model: DART rejection sampling (in parts) and self-correction traces.

`dart_part` runs one slice of problems and stays a module-level function:
`mathforge.scale` hands it to Ray workers, which pickle it by reference.
`with_model` makes the config of a per-model DART stage (one per
`generation.additional` model).
"""

from __future__ import annotations

import logging
import time

from mathforge import prompts
from mathforge.config import BuildConfig
from mathforge.generation import GenerationConfig, ModelConfig
from mathforge.pipeline.common import _generation_fingerprint, _generator, read_problems, read_samples, run_dir
from mathforge.progress import Progress, set_label, stage_label
from mathforge.records import QUERY_INFO_SCHEMA, SAMPLE_SCHEMA, Problem, Sample, to_table
from mathforge.store import Stage, StageResult, StageSummary, run_stage
from mathforge.synthesis.dart import is_satisfied, replay, run_dart, target_for
from mathforge.verify import VerifierPool, asks_for_decimal, verifier_name

log = logging.getLogger("mathforge")


def with_model(config: BuildConfig, model: ModelConfig) -> BuildConfig:
    """The build with `model` as its only generation model (the config of a per-model DART stage)."""
    return config.model_copy(update={"generation": GenerationConfig.model_validate(model.model_dump())})


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
