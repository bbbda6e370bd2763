"""Evaluate a model on benchmarks: greedy accuracy, unbiased pass@k, maj@k, by subject and level.

A model (any `Generator`: in-process vLLM, an OpenAI-compatible server, the
scripted fake) answers each benchmark item with the prompt rendering used for
training, so what is trained is what is evaluated; the verifier pool judges
every response against the reference answer.

Metrics, per benchmark and per subject / level where the benchmark has them:

- **greedy accuracy** (pass@1 of temperature-0 decoding): share of items whose
  greedy response verifies; an unjudgeable response (no answer, truncated
  before one) counts as wrong.
- **pass@k**, the unbiased estimator of Chen et al. (2021, "Evaluating Large
  Language Models Trained on Code"): with n samples of which c are correct,
  ``1 - C(n-c, k) / C(n, k)``, averaged over items.
- **maj@k** (self-consistency, Wang et al., 2023): the most frequent answer of
  the first k samples is the model's answer. Samples vote by answer: all
  correct samples form one class (the verifier found them equal to the
  reference); wrong answers are grouped by their normalized text; samples
  without an answer do not vote. When the correct class ties with t-1
  others for the most votes the item earns 1/t (the expected score of a
  random tie-break) rather than an arbitrary 0 or 1.
- **Wilson 95 % intervals** over items. For greedy accuracy they are exact
  Wilson score intervals of a binomial share; for pass@k and maj@k (means of
  per-item scores in [0, 1]) the same formula is applied to the mean, an
  approximation that treats each item as one trial.

With a `tools` section the model may write Python: each response is a
tool-integrated trace (`synthesis.tool_loop`) whose code runs in the sandbox,
the outputs shown to the model as `tool` turns, the layout of exported tool
rows (template code rows, tool-integrated traces); the verifier judges the
trace's final answer. Sampled traces use seeds `sampling.seed + j`.

Per-item results are `records.EvalResult` rows; `summarize` computes every
metric from those rows alone, so a report can be rebuilt from the Parquet file.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, model_validator

from mathforge.benchmark_sets import BenchmarkSet, load_benchmark_set
from mathforge.config_files import load_config_file
from mathforge.generation import (
    GenerationConfig,
    GenerationParams,
    Generator,
    Prompt,
    ScriptedProblem,
    TokenUsage,
    prompt_hash,
)
from mathforge.generation.cache import CachedGenerator
from mathforge.generation.base import Completion
from mathforge.records import EVAL_RESULT_SCHEMA, BenchmarkItem, EvalResult, to_table
from mathforge.sandbox import SandboxConfig, SandboxPool
from mathforge.section import Section
from mathforge.synthesis.dart import wilson_interval
from mathforge.synthesis.tool_loop import ToolLoopConfig, TraceTask, generate_traces
from mathforge.verify import VerifierPool, VerifyConfig, verifier_name


class BenchmarkSource(Section):
    """One benchmark to evaluate on."""

    source: str = Field(description="Local .jsonl/.parquet file, save_to_disk directory, or a registry name (gsm8k, math500, ...).")
    limit: int | None = Field(default=None, ge=1, description="Evaluate only the first `limit` items; None: all.")
    name: str | None = Field(default=None, description="Name in results and reports (default: derived from the source).")


class SamplingSection(Section):
    """Sampled responses for pass@k and maj@k (besides greedy decoding)."""

    n: int = Field(default=0, ge=0, description="Samples per item; 0: greedy decoding only.")
    k: tuple[int, ...] = Field(default=(1,), min_length=1, description="k values of pass@k and maj@k (each <= n).")
    temperature: float = Field(default=0.7, ge=0.0, description="Sampling temperature.")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, description="Nucleus sampling.")
    seed: int = Field(default=0, description="Per-call seed (honoured by backends that can; vLLM on CPU seeds its engine).")

    @model_validator(mode="after")
    def _k_fits_n(self) -> SamplingSection:
        if self.n and max(self.k) > self.n:
            raise ValueError(f"every k must be <= n ({self.n}), got k={list(self.k)}")
        if min(self.k) < 1:
            raise ValueError(f"k values must be >= 1, got {list(self.k)}")
        return self


class PromptSection(Section):
    """How a problem becomes a prompt: the training rendering (export's `output.prompt`/`system_prompt`)."""

    name: str = Field(default="solve_cot", description="Prompt template (prompts/<name>.jinja) rendered as the user turn.")
    system_prompt: str | None = Field(default=None, description="Optional system message, as in the export.")


class EvaluateConfig(Section):
    """An evaluation job: which model, which benchmarks, which metrics; one YAML file in configs/."""

    name: str = Field(default="eval", description="Evaluation name (report title, artifact keys).")
    benchmarks: tuple[BenchmarkSource, ...] = Field(min_length=1, description="Benchmarks to evaluate on.")
    generation: GenerationConfig = Field(description="Backend and model that answer.")
    prompt: PromptSection = Field(default_factory=PromptSection, description="Prompt rendering (same as training).")
    greedy: bool = Field(default=True, description="Decode each item greedily (temperature 0) for greedy accuracy.")
    max_tokens: int = Field(default=512, ge=1, description="Longest response, tokens.")
    sampling: SamplingSection = Field(default_factory=SamplingSection, description="Samples for pass@k / maj@k.")
    batch_size: int = Field(
        default=64, ge=1, description="Items per generate call; each finished batch is cached, the unit of resume."
    )
    verification: VerifyConfig = Field(default_factory=VerifyConfig, description="Verifier policy and pool.")
    tools: ToolLoopConfig | None = Field(
        default=None,
        description="Let the model run Python (tool-integrated traces, outputs as tool turns); `max_tokens` is then "
        "the budget of a whole trace. Its temperature/top_p/seed are replaced by greedy and `sampling`. None: plain text.",
    )
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig, description="Sandbox of the model's code (with `tools`).")
    output_dir: str = Field(default="data/evals/eval", description="Where results, report and generation cache go.")

    @model_validator(mode="after")
    def _something_to_do(self) -> EvaluateConfig:
        if not self.greedy and not self.sampling.n:
            raise ValueError("nothing to evaluate: greedy is false and sampling.n is 0")
        return self


def load_evaluate_config(path: str | Path, overrides: dict[str, Any] | None = None) -> EvaluateConfig:
    """Load and validate an evaluation config; raise ConfigError naming the file and the key."""
    return load_config_file(path, EvaluateConfig.model_validate, overrides)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al., 2021), computed as a stable product.

    >>> pass_at_k(4, 1, 1), pass_at_k(4, 1, 2), pass_at_k(4, 0, 3), pass_at_k(4, 3, 2)
    (0.25, 0.5, 0.0, 1.0)
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


_SPACE = re.compile(r"\s+")


def vote_key(extracted: str) -> str:
    r"""The text by which wrong answers vote together: no spaces, `$`, trailing period or `\!`.

    >>> vote_key(" $1{,}000$. ") == vote_key("1{,}000")
    True
    """
    return _SPACE.sub("", extracted).replace("$", "").replace("\\!", "").rstrip(".")


def majority_credit(samples: Sequence[dict[str, Any]]) -> tuple[str | None, float]:
    """maj@len(samples): the winning answer and the item's credit (1, 1/t on a t-way tie, or 0).

    Each sample is a dict with `extracted` and `verdict`; see the module docstring.

    >>> s = [{"extracted": "5", "verdict": "correct"}, {"extracted": "6", "verdict": "incorrect"}]
    >>> majority_credit(s)
    ('5', 0.5)
    >>> majority_credit(s + [{"extracted": "5.0", "verdict": "correct"}])
    ('5', 1.0)
    """
    votes: Counter[str] = Counter()
    shown: dict[str, str] = {}
    correct = "\x00correct"
    for sample in samples:
        if sample["verdict"] == "unjudgeable" or not sample.get("extracted"):
            continue
        key = correct if sample["verdict"] == "correct" else vote_key(sample["extracted"])
        votes[key] += 1
        shown.setdefault(key, sample["extracted"])
    if not votes:
        return None, 0.0
    top = max(votes.values())
    leaders = [key for key, count in votes.items() if count == top]
    winner = correct if correct in leaders else leaders[0]
    return shown[winner], (1.0 / len(leaders) if correct in leaders else 0.0)


def evaluation_prompt(problem: str, prompt: PromptSection) -> Prompt:
    """The chat prompt of a problem: the context of a training row (`conversation.row_conversation`)."""
    from mathforge.conversation import row_conversation

    row = {"problem": problem, "response": "", "strategy": ""}
    return row_conversation(row, prompt_by_strategy={}, default_prompt=prompt.name, system_prompt=prompt.system_prompt).prompt


def _batches(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _generate(generator: Generator, prompts: Sequence[Prompt], params: GenerationParams, batch_size: int) -> list[list[Any]]:
    completions: list[list[Any]] = []
    for batch in _batches(prompts, batch_size):
        completions.extend(generator.generate(list(batch), params))
    return completions


def _generate_with_tools(
    generator: Generator, prompts: Sequence[Prompt], params: GenerationParams, tools: ToolLoopConfig, sandbox: SandboxPool
) -> list[list[Completion]]:
    """`params.n` tool-integrated traces per prompt, each as one Completion (the fenced trace text).

    Trace j of every prompt is generated with seed `params.seed + j`;
    `params.max_tokens` bounds a whole trace. finish_reason is 'stop' for an
    answered trace, 'length' for a truncated one, else why the loop cut it.
    """
    ends = {"answered": "stop", "truncated": "length"}
    budget = {"temperature": params.temperature, "top_p": params.top_p, "max_total_tokens": params.max_tokens}
    budget["max_tokens_per_round"] = min(tools.max_tokens_per_round, params.max_tokens)
    tasks = [TraceTask(str(index), tuple(prompt)) for index, prompt in enumerate(prompts)]
    rows: list[list[Completion]] = [[] for _ in prompts]
    for j in range(params.n):
        loop = tools.model_copy(update={**budget, "seed": (params.seed or 0) + j})
        traces, _ = generate_traces(tasks, generator, pool=sandbox, config=loop, outputs_as_turns=True)
        for row, trace in zip(rows, traces, strict=True):
            row.append(Completion(text=trace.text, n_tokens=trace.n_tokens, finish_reason=ends.get(trace.end, trace.end)))
    return rows


def evaluate_items(
    items: Sequence[BenchmarkItem],
    generator: Generator,
    pool: VerifierPool,
    config: EvaluateConfig,
    sandbox: SandboxPool | None = None,
) -> list[EvalResult]:
    """Answer and judge every item: greedy (if configured) and `sampling.n` samples.

    Reads the items; returns one EvalResult per item, in input order. With
    `config.tools`, the model's code runs in `sandbox` (required then).
    """
    if config.tools is not None and sandbox is None:
        raise ValueError("evaluation with tools needs a sandbox pool")
    prompts = [evaluation_prompt(item.problem, config.prompt) for item in items]

    def answer(params: GenerationParams) -> list[list[Any]]:
        if config.tools is None:
            return _generate(generator, prompts, params, config.batch_size)
        return _generate_with_tools(generator, prompts, params, config.tools, sandbox)

    greedy: list[Any] = [None] * len(items)
    if config.greedy:
        greedy = [row[0] for row in answer(GenerationParams(n=1, temperature=0.0, max_tokens=config.max_tokens))]
    sampled: list[list[Any]] = [[] for _ in items]
    if config.sampling.n:
        s = config.sampling
        sampled = answer(GenerationParams(n=s.n, temperature=s.temperature, top_p=s.top_p, max_tokens=config.max_tokens, seed=s.seed))
    pairs = [(item.answer, c.text) for item, c in zip(items, greedy) if c is not None]
    pairs += [(item.answer, c.text) for item, row in zip(items, sampled) for c in row]
    verdicts = iter(pool.verify_many(pairs))
    greedy_verdicts = [next(verdicts) if c is not None else None for c in greedy]
    results = []
    for item, prompt, completion, verdict, row in zip(items, prompts, greedy, greedy_verdicts, sampled):
        samples = []
        for c in row:
            v = next(verdicts)
            samples.append(
                {"text": c.text, "extracted": v.extracted, "verdict": v.label, "reason": v.reason, "finish_reason": c.finish_reason}
            )
        majority = majority_credit(samples) if samples else (None, None)
        results.append(
            EvalResult(
                **item.model_dump(),
                model=generator.model_id,
                prompt_hash=prompt_hash(prompt),
                greedy_response=completion.text if completion else None,
                greedy_extracted=verdict.extracted if verdict else None,
                greedy_verdict=verdict.label if verdict else None,
                greedy_reason=verdict.reason if verdict else None,
                greedy_finish_reason=completion.finish_reason if completion else None,
                n_samples=len(samples),
                n_correct=sum(s["verdict"] == "correct" for s in samples),
                majority_answer=majority[0],
                majority_credit=majority[1],
                samples_json=json.dumps(samples, ensure_ascii=False) if samples else None,
            )
        )
    return results


@dataclass(frozen=True)
class Metric:
    """One metric over a group of items: mean score and its Wilson 95 % interval."""

    value: float
    low: float
    high: float

    @classmethod
    def of(cls, scores: Sequence[float]) -> Metric:
        low, high = wilson_interval(round(sum(scores)), len(scores)) if scores else (0.0, 0.0)
        if scores and sum(scores) != round(sum(scores)):
            low, high = _wilson_mean(sum(scores) / len(scores), len(scores))
        return cls(value=sum(scores) / len(scores) if scores else 0.0, low=low, high=high)

    def text(self) -> str:
        """'0.420 [0.352, 0.491]'."""
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _wilson_mean(mean: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a (possibly fractional) mean over n items."""
    denominator = 1 + z * z / n
    centre = (mean + z * z / (2 * n)) / denominator
    half = z * math.sqrt(mean * (1 - mean) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class GroupSummary:
    """Metrics of one group of items (a whole benchmark, a subject or a level)."""

    group: str
    n_items: int
    metrics: dict[str, Metric] = field(default_factory=dict)
    n_unjudgeable: int = 0
    n_truncated: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Flat dict: group, n_items, <metric>, <metric>_low, <metric>_high, counts."""
        row: dict[str, Any] = {"group": self.group, "n_items": self.n_items}
        for name, metric in self.metrics.items():
            row |= {name: metric.value, f"{name}_low": metric.low, f"{name}_high": metric.high}
        return row | {"n_unjudgeable": self.n_unjudgeable, "n_truncated": self.n_truncated}


def summarize_group(group: str, rows: Sequence[dict[str, Any]], ks: Sequence[int]) -> GroupSummary:
    """Metrics of EvalResult rows (dicts): greedy accuracy, pass@k and maj@k for each k <= samples."""
    summary = GroupSummary(group=group, n_items=len(rows))
    if any(r["greedy_verdict"] is not None for r in rows):
        summary.metrics["greedy"] = Metric.of([float(r["greedy_verdict"] == "correct") for r in rows])
        summary.n_unjudgeable = sum(r["greedy_verdict"] == "unjudgeable" for r in rows)
        summary.n_truncated = sum(r["greedy_finish_reason"] == "length" for r in rows)
    n_samples = min((r["n_samples"] for r in rows), default=0)
    for k in ks:
        if not 1 <= k <= n_samples:
            continue
        summary.metrics[f"pass@{k}"] = Metric.of([pass_at_k(r["n_samples"], r["n_correct"], k) for r in rows])
        summary.metrics[f"maj@{k}"] = Metric.of([majority_credit(json.loads(r["samples_json"])[:k])[1] for r in rows])
    return summary


def summarize(results: pa.Table | Sequence[EvalResult], ks: Sequence[int] = (1,)) -> list[GroupSummary]:
    """Summaries of one benchmark's results: 'all', then 'subject=...' and 'level=...' groups when present."""
    rows = results.to_pylist() if isinstance(results, pa.Table) else [r.model_dump() for r in results]
    groups = [summarize_group("all", rows, ks)]
    for column in ("subject", "level"):
        values = sorted({r[column] for r in rows if r[column] is not None}, key=_natural)
        for value in values:
            groups.append(summarize_group(f"{column}={value}", [r for r in rows if r[column] == value], ks))
    return groups


def _natural(text: str) -> tuple[int, str]:
    return (int(text), "") if text.isdigit() else (10**9, text)


def report_markdown(title: str, model: str, benchmarks: dict[str, list[GroupSummary]], seconds: dict[str, float]) -> str:
    """A markdown report: one table per benchmark, a row per group, a column per metric."""
    lines = [f"# {title}", "", f"Model: `{model}`", ""]
    for name, groups in benchmarks.items():
        metric_names = list(groups[0].metrics)
        lines += [f"## {name}", "", f"{groups[0].n_items} items, {seconds.get(name, 0.0):.1f} s.", ""]
        header = ["group", "items", *metric_names, "unjudgeable", "truncated"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for group in groups:
            cells = [group.group, str(group.n_items)]
            cells += [group.metrics[m].text() if m in group.metrics else "—" for m in metric_names]
            cells += [str(group.n_unjudgeable), str(group.n_truncated)]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("Intervals: Wilson 95 % over items (for pass@k and maj@k applied to the mean score).")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class BenchmarkEvaluation:
    """One evaluated benchmark: where its results are and what they say."""

    name: str
    results_path: str
    groups: list[GroupSummary]
    seconds: float


def model_fingerprint(model: str) -> str:
    """A cache-safe identity of a model: its name, plus size and mtime of a local directory's weights.

    A directory retrained in place gets a new fingerprint, so the generation
    cache never serves the old model's completions.
    """
    from mathforge.records import stable_id

    path = Path(model)
    weights = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")) if path.is_dir() else []
    return stable_id(model, [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in weights])


class LazyGenerator:
    """A backend built on its first call, so a fully cached re-run never starts an engine or opens a connection."""

    def __init__(self, config: GenerationConfig, problems: Sequence[ScriptedProblem]) -> None:
        self.config = config
        self.problems = list(problems)
        self.model_id = f"scripted:{config.model}" if config.backend == "scripted" else config.model
        self.usage = TokenUsage()
        self._built: Generator | None = None
        if config.backend == "vllm":
            # Tool-integrated evaluation continues assistant turns from the chat text (VLLMGenerator.render);
            # the tokenizer alone renders it, so a cached re-run still starts no engine.
            self.render = self._render_chat

    def _render_chat(self, prompt: Prompt) -> str:
        from mathforge.generation.embedded import load_tokenizer

        if isinstance(prompt, str):
            return prompt
        return load_tokenizer(self.config.model).apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)

    @property
    def is_built(self) -> bool:
        """Whether the backend has been built (a fully cached run never builds it)."""
        return self._built is not None

    def _backend(self) -> Generator:
        from mathforge.generation import make_generator

        if self._built is None:
            self._built = make_generator(self.config, problems=self.problems)
            self._built.usage = self.usage  # one running account, whichever object counts
        return self._built

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[list[Any]]:
        """Build the backend if needed and generate."""
        return self._backend().generate(prompts, params)

    def loglikelihood(self, pairs: Sequence[tuple[Prompt, str]]) -> list[Any]:
        """Build the backend if needed and score."""
        return self._backend().loglikelihood(pairs)

    def close(self) -> None:
        """Shut the backend down if it was built and can be."""
        if self._built is not None and hasattr(self._built, "close"):
            self._built.close()


def open_generator(config: EvaluateConfig, items: Sequence[BenchmarkItem]) -> CachedGenerator:
    """The configured backend, built lazily, behind the generation cache in `output_dir/cache/` (a re-run is free)."""
    problems = [ScriptedProblem(item.item_id, item.problem, item.answer) for item in items]
    cache = Path(config.output_dir) / "cache" / f"generations-{model_fingerprint(config.generation.model)}.sqlite"
    return CachedGenerator(LazyGenerator(config.generation, problems), cache)


def close_generator(generator: CachedGenerator) -> None:
    """Close the cache and the backend (a vLLM engine's worker processes end now, not at exit)."""
    generator.close()
    generator.inner.close()


def load_benchmarks(config: EvaluateConfig) -> list[BenchmarkSet]:
    """Every configured benchmark, read and checked (fails before any model starts)."""
    return [load_benchmark_set(b.source, limit=b.limit, name=b.name) for b in config.benchmarks]


def evaluate_benchmark(
    bench: BenchmarkSet, generator: Generator, pool: VerifierPool, config: EvaluateConfig, sandbox: SandboxPool | None = None
) -> BenchmarkEvaluation:
    """Evaluate one benchmark and write `output_dir/<name>/results.parquet` (EVAL_RESULT_SCHEMA)."""
    started = time.perf_counter()
    results = evaluate_items(bench.items, generator, pool, config, sandbox)
    table = to_table(results, EVAL_RESULT_SCHEMA)
    path = Path(config.output_dir) / bench.name / "results.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return BenchmarkEvaluation(bench.name, str(path), summarize(table, config.sampling.k), time.perf_counter() - started)


def write_report(config: EvaluateConfig, evaluations: Sequence[BenchmarkEvaluation]) -> tuple[Path, str]:
    """Write `report.md` and `summary.json` into `output_dir`; return the report's path and text."""
    output = Path(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    markdown = report_markdown(
        config.name,
        config.generation.model,
        {e.name: e.groups for e in evaluations},
        {e.name: e.seconds for e in evaluations},
    )
    (output / "report.md").write_text(markdown)
    summary = {
        "name": config.name,
        "model": config.generation.model,
        "verifier": verifier_name(config.verification),
        "config": config.model_dump(mode="json"),
        "benchmarks": {
            e.name: {"results": e.results_path, "seconds": e.seconds, "groups": [g.as_dict() for g in e.groups]}
            for e in evaluations
        },
    }
    (output / "summary.json").write_text(json.dumps(summary, indent=2))
    return output / "report.md", markdown


EvaluateOne = Callable[[BenchmarkSet, Generator, VerifierPool, EvaluateConfig, SandboxPool | None], BenchmarkEvaluation]


def run_evaluation(
    config: EvaluateConfig, *, evaluate_one: EvaluateOne = evaluate_benchmark
) -> tuple[list[BenchmarkEvaluation], Path, str]:
    """Evaluate every configured benchmark with one generator and one verifier pool; write the report.

    `evaluate_one` runs one benchmark (the flow passes it as a Prefect task).
    Returns the evaluations, the report's path and its markdown.
    """
    benches = load_benchmarks(config)
    generator = open_generator(config, [item for bench in benches for item in bench.items])
    sandbox = SandboxPool(config.sandbox) if config.tools is not None else None
    try:
        with VerifierPool(config.verification) as pool:
            evaluations = [evaluate_one(bench, generator, pool, config, sandbox) for bench in benches]
    finally:
        if sandbox is not None:
            sandbox.close()
        close_generator(generator)
    path, markdown = write_report(config, evaluations)
    return evaluations, path, markdown
