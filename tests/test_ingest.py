"""ingest.py: every format, reference extraction, and bad rows quarantined with reasons."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mathforge.ingest import IngestConfig, SourceConfig, gsm8k_answer, ingest, last_boxed, read_source


def test_three_bad_rows_are_quarantined_and_good_rows_kept(tmp_path):
    path = tmp_path / "seeds.jsonl"
    good = [{"id": str(i), "problem": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(4)]
    lines = [json.dumps(good[0]).encode(), b'{"id": "x", "problem": "broken', json.dumps(good[1]).encode()]
    lines += [json.dumps({"id": "y", "problem": "No answer here?", "answer": ""}).encode()]
    lines += [b'{"id": "z", "problem": "caf\xe9 bytes", "answer": "1"}', json.dumps(good[2]).encode(), json.dumps(good[3]).encode()]
    path.write_bytes(b"\n".join(lines) + b"\n")
    problems, quarantined = read_source(SourceConfig(path=str(path)))
    assert [p.answer for p in problems] == ["1", "2", "3", "4"]
    assert [(q.row_number, q.reason) for q in quarantined] == [(2, "invalid_json"), (4, "empty_answer"), (5, "non_utf8")]
    assert quarantined[1].field == "answer"
    assert all(q.source_file == str(path) for q in quarantined)


def test_megabyte_strings_and_missing_fields_are_quarantined(tmp_path):
    path = tmp_path / "seeds.jsonl"
    rows = [{"problem": "x" * 1_000_000, "answer": "1"}, {"question": "wrong field", "answer": "2"}, {"problem": "ok?", "answer": "3"}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    problems, quarantined = read_source(SourceConfig(path=str(path)))
    assert [p.answer for p in problems] == ["3"]
    assert [(q.reason, q.field) for q in quarantined] == [("field_too_long", "problem"), ("missing_field", "problem")]
    assert len(quarantined[0].raw) <= 2000


@pytest.mark.parametrize(
    "solution,expected",
    [("He has 3*4=12 apples.\n#### 12", "12"), ("Total 1,200 dollars.\n#### 1,200", "1200"), ("no marker", None)],
    ids=["plain", "thousands", "missing"],
)
def test_gsm8k_answer(solution, expected):
    assert gsm8k_answer(solution) == expected


@pytest.mark.parametrize(
    "solution,expected",
    [
        (r"So $x = \boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
        (r"First \boxed{1}, then \boxed{\sqrt{x^{2}}}", r"\sqrt{x^{2}}"),
        (r"\fbox{7}", "7"),
        (r"\boxed{unclosed", None),
    ],
    ids=["frac", "last-nested", "fbox", "unclosed"],
)
def test_last_boxed(solution, expected):
    assert last_boxed(solution) == expected


def test_formats_and_field_mapping(tmp_path):
    rows = [{"question": "2+2?", "solution": "It is \\boxed{4}.", "uid": 7}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    (tmp_path / "b.csv").write_text("question,solution,uid\n3+3?,So \\boxed{6},8\n")
    (tmp_path / "c.jsonl").write_text(json.dumps({"question": "5+5?", "answer": "Add.\n#### 10"}) + "\n")
    fields = {"problem": "question", "answer": None, "solution": "solution", "id": "uid"}
    config = IngestConfig(
        sources=[
            SourceConfig(path=str(tmp_path / "a.parquet"), fields=fields, answer_from="math"),
            SourceConfig(path=str(tmp_path / "b.csv"), fields=fields, answer_from="math"),
            SourceConfig(path=str(tmp_path / "c.jsonl"), fields={"problem": "question", "answer": "answer"}, answer_from="gsm8k"),
        ]
    )
    problems, quarantined = ingest(config)
    assert quarantined == []
    assert [(p.problem_id, p.answer) for p in problems] == [("a-7", "4"), ("b-8", "6"), (problems[2].problem_id, "10")]
    assert problems[2].solution == "Add.\n#### 10"


def test_saved_dataset_directory(tmp_path):
    import datasets

    datasets.Dataset.from_list([{"problem": "1+1?", "answer": "2"}]).save_to_disk(str(tmp_path / "saved"))
    problems, _ = read_source(SourceConfig(path=str(tmp_path / "saved")))
    assert problems[0].answer == "2"


def test_duplicate_ids_across_sources_are_quarantined(tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"{name}.jsonl").write_text(json.dumps({"id": "1", "problem": "1+1?", "answer": "2"}) + "\n")
    config = IngestConfig(sources=[SourceConfig(path=str(tmp_path / "a.jsonl"), name="s"), SourceConfig(path=str(tmp_path / "b.jsonl"), name="s")])
    problems, quarantined = ingest(config)
    assert len(problems) == 1 and [q.reason for q in quarantined] == ["duplicate_id"]


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_source(SourceConfig(path=str(tmp_path / "nope.jsonl")))
