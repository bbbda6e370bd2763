"""A build whose seeds leak benchmark items, with template synthesis and paraphrase on, exports none of them.

Planted: a benchmark item copied verbatim into the seeds, one with its numbers
changed, one reworded; and a benchmark item that an authored template
(money_change) reproduces with other numbers, which the paraphrase step then
rewords. The build must drop the seeds at ingest, the template instances and
their paraphrases after synthesis, export none of them, and name each in the card.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mathforge.curate.rewrites import change_numbers, reword

BENCHMARK_ITEMS = {
    "weng": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?",
    "natalia": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "janet": "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her "
    "friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck egg. "
    "How much in dollars does she make every day at the farmers' market?",
    # What the authored template money_change renders, with other numbers than any instance.
    "sam": "Sam buys 3 pens at $1.25 each and a notebook for $4.50. He hands the cashier $20. "
    "How much change, in dollars, does he get back?",
}
# Each planted seed exercises one layer: a verbatim copy, a copy whose every 13-gram has a changed number,
# and a rewording in other words with other numbers (no n-gram in common), which only the embedding sees.
PLANTED_SEEDS = {
    "leak-verbatim": (BENCHMARK_ITEMS["natalia"], "72"),
    "leak-numbers": (change_numbers(BENCHMARK_ITEMS["weng"]), "10"),
    "leak-reworded": (
        "Priya's ducks produce 21 eggs daily. Three get eaten at breakfast each morning and four go into muffins she "
        "bakes for friends each day. The rest are sold at the farmers' market for $3 per fresh duck egg. How many "
        "dollars does she make at the market every day?",
        "42",
    ),
}


@pytest.fixture()
def leaky_build(tmp_path: Path, scripted_config):
    benchmark = tmp_path / "held_out.jsonl"
    benchmark.write_text("".join(json.dumps({"id": k, "question": v}) + "\n" for k, v in BENCHMARK_ITEMS.items()))
    rows = [
        {"id": f"s{i}", "problem": f"A crate holds {i + 3} boxes of {i + 4} pens. How many pens?", "answer": str((i + 3) * (i + 4))}
        for i in range(4)
    ]
    rows += [{"id": key, "problem": text, "answer": answer} for key, (text, answer) in PLANTED_SEEDS.items()]
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps(row) + "\n" for row in rows))
    sections = {
        "templates": {
            "enabled": True,
            "authored_dir": str(Path(__file__).resolve().parents[1] / "configs" / "templates"),
            "templates": ["money_change", "ages_multiple"],
            "n_instances_per_template": 3,
            "decouple": {"enabled": True, "max_seeds": 8},
            "paraphrase": {"enabled": True},
        },
        "self_correction": {"enabled": False},
        "selection": None,
        "curation": {"decontamination": {"benchmarks": [str(benchmark)]}},
    }
    return scripted_config(seeds, name="leaky", sections=sections)


def paraphrasing_generator(factory):
    """The scripted backend, scripted to paraphrase: reword the instance keeping its numbers; the independent solve of the rewording returns its answer."""
    from mathforge.generation import ScriptedGenerator

    def build(config, *, problems=(), **options):
        problems = list(problems)
        answers = {p.problem: p.answer for p in problems}

        reworded = {reword(text): answer for text, answer in answers.items()}

        def script(prompt: str, index: int, params) -> str | None:
            _, marker, text = prompt.partition("Problem to rewrite: ")
            if marker and text.strip() in answers:
                return f"Problem: {reword(text.strip())}"
            # The independent solve sees the reworded text alone.
            _, marker, text = prompt.partition("Problem: ")
            if marker and text.strip() in reworded:
                return f"```python\ndef solve():\n    return {reworded[text.strip()]}\n```"
            return None

        generator = factory(config, problems=problems, **options)
        assert isinstance(generator, ScriptedGenerator)
        generator.script = script
        return generator

    return build


def test_planted_benchmark_items_are_dropped_at_every_check_and_named_in_the_card(
    prefect_harness, leaky_build, monkeypatch
) -> None:
    import mathforge.pipeline.common
    from flows.build_dataset import build_dataset
    from mathforge.benchmark_sets import load_benchmark_set
    from mathforge.curate import DecontaminationConfig, Decontaminator
    from mathforge.inspect import load_run

    monkeypatch.setattr(mathforge.pipeline.common, "shared_generator", paraphrasing_generator(mathforge.pipeline.common.shared_generator))
    results = build_dataset(str(leaky_build))

    seeds = results["ingest"].manifest["decontamination"]
    by_row = {row["row_id"]: row for row in seeds["flagged"]}
    assert {row_id: (row["benchmark_item_id"], row["layer"]) for row_id, row in by_row.items()} == {
        "seeds-leak-verbatim": ("natalia", "exact"),  # ingest prefixes ids with the file's stem
        "seeds-leak-numbers": ("weng", "ngram_masked"),
        "seeds-leak-reworded": ("janet", "embedding"),
    }
    synthesized = results["templates"].manifest["decontamination"]["flagged"]
    template_problems = pq.read_table(Path(results["templates"].stage_dir) / "data").to_pylist()
    assert not any(p["template_id"] == "money_change" for p in template_problems)
    # Three instances of money_change and their three paraphrases, all copies of "sam" with other numbers.
    assert len(synthesized) == 6 and {row["benchmark_item_id"] for row in synthesized} == {"sam"}
    assert {row["layer"] for row in synthesized} <= {"ngram_masked", "embedding"}
    assert any(p["source"].endswith("+paraphrase") for p in template_problems)  # paraphrase ran and kept others

    export = Path(results["export"].manifest["export_path"])
    exported = pq.read_table(export / "parquet" / "train.parquet")
    flagged_ids = set(by_row) | {row["row_id"] for row in synthesized}
    assert exported.num_rows and not flagged_ids & set(exported.column("problem_id").to_pylist())
    benchmark = load_benchmark_set(leaky_build.parent / "held_out.jsonl", require_answer=False)
    checker = Decontaminator([benchmark], DecontaminationConfig())
    assert not any(checker.check(exported.column("problem").to_pylist()))

    card = (export / "README.md").read_text()
    assert "## Decontamination" in card and "### held_out" in card
    for row_id in flagged_ids:
        assert f"`{row_id}`" in card, row_id
    assert "| held_out | 3 | 6 | 0 | 9 |" in card

    for path in (Path(results["ingest"].stage_dir).parent, export):  # the notebook's listing, from a run and an export
        listed = load_run(path).contamination()
        assert set(listed["row_id"]) == flagged_ids and set(listed["checked_in"]) == {"ingest", "templates"}
