"""What every stage runner shares: the run directory, readers of stage outputs, the build's generator and fingerprints.

`decode_token_bound` is here too: the generator's engine is sized by it. The
readers return what a stage wrote (problems, sample tables); the fingerprints
(`_file_digest`, `_prompt_fingerprint`, `_generation_fingerprint`,
`_decontamination_fingerprint`) are what decides a stage's output, so editing
a seed file, a prompt or the model reruns the stages that use them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from mathforge import prompts
from mathforge.config import BuildConfig
from mathforge.generation import ScriptedProblem, shared_generator
from mathforge.generation.base import Generator
from mathforge.generation.cache import CachedGenerator
from mathforge.records import PROBLEM_SCHEMA, SAMPLE_SCHEMA, Problem
from mathforge.store import StageResult, read_output

if TYPE_CHECKING:
    from mathforge.curate import Decontaminator


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
