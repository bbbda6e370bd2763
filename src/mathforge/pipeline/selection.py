"""From the pool of samples to the dataset: curation, selection (GRAPE, k-means, S2L) and export.

Each reads the union of earlier stages' sample outputs. GRAPE scores rows in
the conversation the export writes (`row_conversations`), with the scorer of
`_scorer`; `export_stage` writes the dataset version and its card.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from mathforge.config import BuildConfig
from mathforge.generation import ModelConfig, make_generator, release_shared_generators, shared_generator
from mathforge.generation.base import TokenScorer
from mathforge.pipeline.common import _decontaminator, _file_digest, _prompt_fingerprint, read_sources, run_dir
from mathforge.progress import stage_label
from mathforge.records import QUARANTINE_SCHEMA, QUERY_INFO_SCHEMA
from mathforge.store import Stage, StageResult, StageSummary, fingerprint, read_output, run_stage

if TYPE_CHECKING:
    from mathforge.select.grape import ConversationFn

log = logging.getLogger("mathforge")


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
