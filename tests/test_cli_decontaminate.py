"""`mathforge decontaminate`: one verdict line per input row, a summary table, clear errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mathforge.cli import app
from mathforge.curate.rewrites import change_numbers

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "data" / "benchmarks" / "demo_benchmark.jsonl"
ITEMS = [json.loads(line) for line in DEMO.open()]
CLEAN = "A garden is 12 meters long and 5 meters wide. What is its area in square meters?"


def rows() -> list[dict]:
    return [
        {"id": "a", "problem": CLEAN},
        {"id": "b", "problem": ITEMS[1]["problem"]},
        {"id": "c", "problem": change_numbers(ITEMS[1]["problem"])},
    ]


def run(*args: str):
    return CliRunner().invoke(app, ["decontaminate", *args])


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_one_line_per_row_with_the_match_and_a_summary(tmp_path: Path, suffix: str) -> None:
    source = tmp_path / f"data{suffix}"
    if suffix == ".jsonl":
        source.write_text("".join(json.dumps(row) + "\n" for row in rows()))
    else:
        pq.write_table(pa.Table.from_pylist(rows()), source)
    out = tmp_path / "verdicts.jsonl"
    result = run(str(source), "--benchmark", str(DEMO), "--out", str(out), "--layer", "exact", "--layer", "ngram_masked")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(line["row"], line["id"], line["contaminated"]) for line in lines] == [(0, "a", False), (1, "b", True), (2, "c", True)]
    assert (lines[1]["benchmark"], lines[1]["item_id"], lines[1]["layer"], lines[1]["score"]) == (
        "demo_benchmark", ITEMS[1]["id"], "exact", 1.0
    )
    assert (lines[2]["item_id"], lines[2]["layer"]) == (ITEMS[1]["id"], "ngram_masked") and 0 < lines[2]["score"] <= 1
    assert "2 of 3 rows contaminated" in result.output and "ngram_masked" in result.output


def test_default_layers_include_the_embedding_layer_and_another_field(tmp_path: Path) -> None:
    source = tmp_path / "data.jsonl"
    reworded = "Every morning a farmer gathers 14 eggs, and every evening 9 more. What is his egg count for a whole week?"
    source.write_text("".join(json.dumps({"question": text}) + "\n" for text in (CLEAN, reworded)))
    out = tmp_path / "verdicts.jsonl"
    result = run(str(source), "-b", str(DEMO), "-o", str(out), "--field", "question")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["contaminated"] for line in lines] == [False, True] and "id" not in lines[0]
    assert (lines[1]["item_id"], lines[1]["layer"]) == ("demo-bench-001", "embedding")


@pytest.mark.parametrize(
    ("content", "field", "message"),
    [
        ('{"problem": "ok"}\nnot json\n', "problem", "data.jsonl:2: invalid JSON"),
        ('{"problem": "ok"}\n{"question": "x"}\n', "problem", "data.jsonl:2: field 'problem' is missing"),
    ],
    ids=["invalid-json", "missing-field"],
)
def test_bad_input_exits_with_a_message_naming_file_and_row(tmp_path: Path, content: str, field: str, message: str) -> None:
    source = tmp_path / "data.jsonl"
    source.write_text(content)
    result = run(str(source), "-b", str(DEMO), "-o", str(tmp_path / "out.jsonl"), "--field", field, "--layer", "exact")
    assert result.exit_code == 2 and message in result.output.replace("\n", "")


def test_an_unknown_benchmark_name_is_a_clear_error(tmp_path: Path) -> None:
    source = tmp_path / "data.jsonl"
    source.write_text(json.dumps({"problem": CLEAN}) + "\n")
    result = run(str(source), "-b", "no-such-benchmark", "-o", str(tmp_path / "out.jsonl"))
    assert result.exit_code == 2 and "neither a local file nor a known benchmark" in result.output.replace("\n", "")
