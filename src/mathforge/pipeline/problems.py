"""Stages that make problems: ingest of seed sources and template synthesis, each checked for benchmark leaks.

Both write `data` in `PROBLEM_SCHEMA`; when the build decontaminates at
'seeds' or 'synthesized' (`curation.decontamination.check`), problems that
leak a benchmark item are dropped by `_check_problems` and written to `rejected`.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pyarrow as pa

from mathforge.config import BuildConfig
from mathforge.ingest import ingest
from mathforge.pipeline.common import (
    _decontamination_fingerprint,
    _decontaminator,
    _file_digest,
    _generation_fingerprint,
    _generator,
    read_problems,
    run_dir,
)
from mathforge.progress import stage_label
from mathforge.records import PROBLEM_SCHEMA, QUARANTINE_SCHEMA, SAMPLE_SCHEMA, Problem, to_table
from mathforge.store import Stage, StageResult, StageSummary, run_stage
from mathforge.synthesis.template_solutions import SolutionRowsResult, code_samples, solution_samples
from mathforge.verify import VerifierPool, verifier_name

log = logging.getLogger("mathforge")


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


def template_stage(config: BuildConfig, seeds_result: StageResult) -> StageResult:
    """Template synthesis: authored templates plus LLM-decoupled seeds, instantiated in the sandbox.

    Reads the seed problems; writes `data` (new problems with answer, program,
    template_id, variables_json, seed_problem_id), `templates` (the templates
    used) and `rejected` (templates, instances and paraphrases dropped, with reasons, and, when the
    build decontaminates synthesized problems, those that leak a benchmark item).
    With `templates.emit_solutions` it also writes `solutions`: Sample rows
    of the problems kept, per `templates.solution_forms`, whose response is an
    instance's rendered solution (strategy 'template-solution') or its code
    solution run in the sandbox (strategy 'template-code'), all verified; instances not used are
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
            # A step of its own in the card: one candidate row per problem and form in, SFT rows out (not problem drops).
            rows_in = len(problems) * len(section.solution_forms)
            steps.append({"step": "solutions", "rows_in": rows_in, "rows_out": len(made_rows.samples), "drop_reasons": drops})
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
    """Verified template Samples of `problems` in each of `templates.solution_forms` (synthesis.template_solutions)."""
    from mathforge.sandbox import SandboxPool

    options: dict = {"verifier": verifier_name(config.verification)}
    if tokenizer_model is not None:
        from mathforge.generation.embedded import load_tokenizer

        tokenizer = load_tokenizer(tokenizer_model)
        options["count_tokens"] = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])
    made = []
    with VerifierPool(config.verification) as pool:
        options["verify_many"] = pool.verify_many
        if "text" in config.templates.solution_forms:
            made.append(solution_samples(problems, prompt=config.output.prompt, **options))
        if "code" in config.templates.solution_forms:
            with SandboxPool(config.sandbox) as sandbox:
                made.append(code_samples(problems, pool=sandbox, **options))
    counts: Counter[str] = Counter()
    for result in made:
        counts.update(result.counts)
    return SolutionRowsResult(
        samples=[s for r in made for s in r.samples], rejected=[x for r in made for x in r.rejected], counts=dict(counts)
    )
