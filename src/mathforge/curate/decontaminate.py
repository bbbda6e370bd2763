"""Find and drop rows that leak benchmark test items, verbatim or rewritten, in layers with evidence.

A row is checked by these layers in order; the first that flags it decides,
and the rejected row carries the benchmark, the item id, the layer and its
score (`Rejected.benchmark`, `benchmark_item_id`, `layer`, `score`) plus the
evidence in `detail`:

1. ``exact`` (reason ``benchmark_exact_match``, score 1): the row's whole
   normalized token sequence (NFKC, lowercase, letters and digits) equals an
   item's.
2. ``ngram`` (``benchmark_ngram_overlap`` / ``benchmark_exact_substring``):
   GPT-3's 13-gram overlap test with exact substrings for short texts
   (`mathforge.curate.ngram_overlap`); score = share of the row's windows
   found in the benchmark, evidence = the first matching span.
3. ``ngram_masked`` (``benchmark_ngram_overlap_numbers_masked``): the same
   n-gram test with every number masked on both sides: copies whose numbers
   were changed (template synthesis) match again. No short-text rule here:
   "Compute $\\dbinom{0}{0}$" would match every binomial question.
4. ``embedding`` (``benchmark_embedding_match``): the nearest benchmark item
   by sentence-embedding cosine (`mathforge.curate.retrieval`), flagged at or
   above a threshold; catches reworded copies. Score = cosine.
5. ``llm`` (``benchmark_llm_confirmed``), optional: embedding candidates above
   a lower cosine go to the build's generator with `prompts/decontam_check`
   (`mathforge.curate.llm_check`); its True/False decides. Score = cosine.

Layers run cheapest first, each on the rows the earlier ones left, and on
distinct texts only (a problem shared by many samples is checked once).
`Decontaminator` holds the built indexes (build once, check many batches:
the `mathforge decontaminate` command streams a file through it);
`decontaminate` is the curation step over a table.

Measured (`benchmarks/decontam_quality.py`: 150 MATH-500 and 150 GSM8K test
items planted four ways among the 7,473 GSM8K train questions): the stack
recalls 1.00 of verbatim and number-changed copies and 0.99 of reworded ones
(rule-based rewrites, see `mathforge.curate.rewrites`), and flags 0.5 % of
GSM8K train, some of which are real near-copies of GSM8K test items.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from mathforge.benchmark_sets import BenchmarkSet, load_benchmark_set
from mathforge.section import Section
from mathforge.curate.llm_check import LLMCheckConfig, confirm_pairs
from mathforge.curate.ngram_overlap import NgramIndex, exact_keys, mask_numbers, match_ngrams
from mathforge.curate.result import CurateResult, detail_json, require_columns, split_rows
from mathforge.curate.retrieval import EmbeddingIndex, EmbeddingLayerConfig
from mathforge.generation.base import Generator

Layer = Literal["exact", "ngram", "ngram_masked", "embedding"]
ALL_LAYERS: tuple[Layer, ...] = ("exact", "ngram", "ngram_masked", "embedding")
CheckPoint = Literal["seeds", "synthesized", "samples"]
STEP = "decontaminate"
#: Flagged rows listed per check in a stage manifest (and so in the dataset card).
MAX_LISTED = 500
# Characters of a benchmark item quoted in a rejected row's detail.
_QUOTE_CHARS = 300


class DecontaminationConfig(Section):
    """Benchmark decontamination; runs when `benchmarks` is not empty."""

    benchmarks: tuple[str, ...] = Field(
        default=(),
        description="Benchmark test sets: local .jsonl/.json/.parquet files, save_to_disk directories, or "
        "standard names (gsm8k, math500, math, aime24, amc23, olympiadbench, minerva, svamp, asdiv; online only). "
        "Fields are recognized as `mathforge.benchmark_sets` describes.",
    )
    split: str = Field(default="test", description="Split read from saved DatasetDicts.")
    layers: tuple[Layer, ...] = Field(
        default=ALL_LAYERS, min_length=1, description="Layers run, cheapest first: exact, ngram, ngram_masked, embedding."
    )
    check: tuple[CheckPoint, ...] = Field(
        default=("seeds", "synthesized", "samples"),
        description="Where a build checks: seed problems at ingest, synthesized problems after the template "
        "stage, samples in curation.",
    )
    ngram: int = Field(default=13, ge=4, le=64, description="Tokens per n-gram.")
    min_short_tokens: int = Field(
        default=4, ge=1, description="Texts shorter than `ngram` tokens are matched as substrings from this length on."
    )
    columns: tuple[str, ...] = Field(
        default=("problem",), min_length=1, description="Sample columns checked in curation (add 'response' to check responses)."
    )
    max_item_frequency: int = Field(
        default=10, ge=2, description="N-grams found in at least this many benchmark items are boilerplate, ignored."
    )
    embedding: EmbeddingLayerConfig = Field(default_factory=EmbeddingLayerConfig, description="Embedding layer.")
    llm: LLMCheckConfig = Field(default_factory=LLMCheckConfig, description="Optional LLM confirmation of embedding candidates.")


@dataclass(frozen=True)
class Hit:
    """Why one text was flagged: the benchmark item it matched, the layer, the score and the evidence."""

    benchmark: str
    item_id: str
    layer: str
    reason: str
    score: float
    """Share of the text's n-grams found (n-gram layers), cosine (embedding, llm), 1 (exact)."""
    evidence: dict[str, object]


class Decontaminator:
    """The layers of `config`, built once over `benchmarks`; `check` flags texts.

    `generator` is needed only when `config.llm.enabled`. `stats` counts what
    the layers did beyond flagging (LLM candidates, confirmations, rejections).
    """

    def __init__(
        self, benchmarks: Sequence[BenchmarkSet], config: DecontaminationConfig, *, generator: Generator | None = None
    ) -> None:
        if not benchmarks or not all(isinstance(b, BenchmarkSet) for b in benchmarks):
            raise ValueError("decontaminate needs at least one BenchmarkSet (see load_benchmarks)")
        if config.llm.enabled and generator is None:
            raise ValueError("decontamination.llm.enabled needs a generator")
        self.config = config
        self.generator = generator
        self.names = [b.name for b in benchmarks for _ in b.items]
        self.item_ids = [item.item_id for b in benchmarks for item in b.items]
        self.texts = [item.problem for b in benchmarks for item in b.items]
        self.stats: Counter[str] = Counter()
        layers = set(config.layers)
        ngram = {"ngram": config.ngram, "max_item_frequency": config.max_item_frequency}
        self._exact = None
        if "exact" in layers:
            keys = exact_keys(self.texts)
            self._exact = {int(key): item for item, key in reversed(list(enumerate(keys))) if key}
        self._ngram = (
            NgramIndex.build(self.texts, min_short_tokens=config.min_short_tokens, **ngram) if "ngram" in layers else None
        )
        # The short-text rule is off on masked text: a minimum above `ngram` never applies.
        self._masked = (
            NgramIndex.build(mask_numbers(self.texts), min_short_tokens=config.ngram + 1, **ngram)
            if "ngram_masked" in layers
            else None
        )
        self._embedding = EmbeddingIndex.build(self.texts, config.embedding) if "embedding" in layers else None

    def check(self, texts: Sequence[str | None] | pa.Array) -> list[Hit | None]:
        """Return the first layer's hit for each text, None for a clean one; equal texts are checked once."""
        values = texts if isinstance(texts, pa.Array) else pa.array(list(texts), pa.large_string())
        encoded = pc.dictionary_encode(pc.fill_null(values.cast(pa.large_string()), ""))
        distinct = encoded.dictionary
        hits: dict[int, Hit] = {}
        if self._exact is not None:
            for position, key in enumerate(exact_keys(distinct)):
                item = self._exact.get(int(key)) if key else None
                if item is not None:
                    hits[position] = self._hit(item, "exact", "benchmark_exact_match", 1.0, {})
        for index, layer, text_of in (
            (self._ngram, "ngram", lambda array: array),
            (self._masked, "ngram_masked", mask_numbers),
        ):
            if index is None:
                continue
            open_rows = np.array([i for i in range(len(distinct)) if i not in hits], dtype=np.int64)
            found = match_ngrams(text_of(distinct.take(pa.array(open_rows))), index)
            for local, match in found.items():
                reason = match.reason if layer == "ngram" else "benchmark_ngram_overlap_numbers_masked"
                evidence = {"match": match.text, "n_matching_ngrams": match.count}
                hits[int(open_rows[local])] = self._hit(match.item, layer, reason, match.share, evidence)
        if self._embedding is not None:
            self._check_embedding(distinct, hits)
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        return [hits.get(int(code)) for code in codes]

    def _check_embedding(self, distinct: pa.Array, hits: dict[int, Hit]) -> None:
        open_rows = [i for i in range(len(distinct)) if i not in hits]
        texts = distinct.take(pa.array(open_rows, pa.int64())).to_pylist()
        items, cosines = self._embedding.nearest(texts)
        threshold = self.config.embedding.threshold
        llm = self.config.llm
        candidates = []
        for local, (item, cosine) in enumerate(zip(items.tolist(), cosines.tolist())):
            if llm.enabled and cosine >= llm.min_cosine:
                candidates.append(local)
            elif not llm.enabled and cosine >= threshold:
                hits[open_rows[local]] = self._hit(item, "embedding", "benchmark_embedding_match", cosine, {})
        if not candidates:
            return
        pairs = [(texts[local], self.texts[int(items[local])]) for local in candidates]
        verdicts = confirm_pairs(pairs, self.generator, max_tokens=llm.max_tokens)
        self.stats["llm_candidates"] += len(candidates)
        for local, (verdict, reply) in zip(candidates, verdicts):
            item, cosine = int(items[local]), float(cosines[local])
            if verdict is None:
                self.stats["llm_unparsable"] += 1
                if cosine >= threshold:
                    evidence = {"llm_reply": reply}
                    hits[open_rows[local]] = self._hit(item, "embedding", "benchmark_embedding_match", cosine, evidence)
            elif verdict:
                self.stats["llm_confirmed"] += 1
                hits[open_rows[local]] = self._hit(item, "llm", "benchmark_llm_confirmed", cosine, {"llm_reply": reply})
            else:
                self.stats["llm_cleared"] += 1

    def _hit(self, item: int, layer: str, reason: str, score: float, evidence: dict[str, object]) -> Hit:
        quoted = self.texts[item][:_QUOTE_CHARS]
        return Hit(
            benchmark=self.names[item],
            item_id=self.item_ids[item],
            layer=layer,
            reason=reason,
            score=round(float(score), 4),
            evidence={**evidence, "item_text": quoted},
        )


def decontaminate(
    table: pa.Table,
    benchmarks: Sequence[BenchmarkSet] | Decontaminator,
    config: DecontaminationConfig | None = None,
    *,
    columns: Sequence[str] | None = None,
    generator: Generator | None = None,
) -> CurateResult:
    """Drop rows whose checked columns match a benchmark item in one of the configured layers.

    Reads `columns` (default `config.columns`), `problem_id` and the row id
    (`sample_id`, else `problem_id`); adds no column. Each rejected row has
    the benchmark, item id, layer and score, and a detail naming the column
    and the layer's evidence. `benchmarks` may be a built `Decontaminator`
    (to build the indexes once for many tables).
    """
    checker = (
        benchmarks
        if isinstance(benchmarks, Decontaminator)
        else Decontaminator(benchmarks, config or DecontaminationConfig(), generator=generator)
    )
    columns = tuple(columns or checker.config.columns)
    require_columns(table, ["problem_id", *columns], STEP)
    hits: list[Hit | None] = [None] * table.num_rows
    found_in: list[str | None] = [None] * table.num_rows
    for column in columns:
        for row, hit in enumerate(checker.check(table.column(column).combine_chunks())):
            if hit is not None and hits[row] is None:
                hits[row], found_in[row] = hit, column
    return split_rows(
        STEP,
        table,
        [hit.reason if hit else None for hit in hits],
        [detail_json(column=column, **hit.evidence) if hit else None for hit, column in zip(hits, found_in)],
        benchmark=[hit.benchmark if hit else None for hit in hits],
        benchmark_item_id=[hit.item_id if hit else None for hit in hits],
        layer=[hit.layer if hit else None for hit in hits],
        score=[hit.score if hit else None for hit in hits],
    )


def load_benchmarks(config: DecontaminationConfig) -> list[BenchmarkSet]:
    """Load every benchmark listed in `config` (answers optional: only the problems are compared)."""
    return [load_benchmark_set(source, split=config.split, require_answer=False) for source in config.benchmarks]


def contamination_report(rejected: pa.Table) -> list[dict[str, object]]:
    """The decontamination rows of a rejected table as small dicts (row, benchmark, item, layer, score), for the card."""
    rows = rejected.filter(pc.equal(rejected.column("stage"), STEP))
    keep = ["row_id", "problem_id", "reason", "benchmark", "benchmark_item_id", "layer", "score"]
    return rows.select(keep).to_pylist()


def contamination_summary(point: str, checker: Decontaminator, rejected: pa.Table) -> dict[str, object]:
    """The manifest entry of one decontamination check: counts per benchmark, flagged rows, LLM counts.

    `point` says what was checked ('seeds', 'synthesized', 'samples'); every
    benchmark appears in `benchmarks`, with 0 when nothing matched it. At most
    `MAX_LISTED` flagged rows are listed (all are in the rejected table).
    """
    flagged = contamination_report(rejected)
    counts = dict.fromkeys(checker.names, 0) | count_by_benchmark(rejected)
    return {
        "point": point,
        "benchmarks": counts,
        "layers": dict(sorted(Counter(row["layer"] for row in flagged).items())),
        "flagged": flagged[:MAX_LISTED],
        "llm": dict(checker.stats),
    }


def count_by_benchmark(rejected: pa.Table) -> dict[str, int]:
    """Count decontamination drops per benchmark from a rejected table (for the dataset card)."""
    return dict(sorted(Counter(row["benchmark"] for row in contamination_report(rejected)).items()))
