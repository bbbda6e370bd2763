"""Reference audit after DART: answer groups by value, thresholds, policy, and planted wrong references."""

import json
from pathlib import Path

import datasets

import pyarrow as pa
import pytest

from mathforge.export import suspect_reference_section
from mathforge.inspect import load_run
from mathforge.records import Problem
from mathforge.synthesis.audit_scenario import planted_scenario
from mathforge.synthesis.reference_audit import (
    ReferenceAuditConfig,
    audit_references,
    quarantined_problem_ids,
    suspect_entries,
)
from mathforge.verify import compare_answers


def compare_many(pairs):
    return [compare_answers(a, b) for a, b in pairs]


def trials(rows):
    """A trials table from (problem_id, verdict, extracted answer) triples (the columns the audit reads)."""
    return pa.table({name: list(column) for name, column in zip(("problem_id", "verdict", "extracted_answer"), zip(*rows))})


def problem(problem_id, answer):
    return Problem(problem_id=problem_id, problem=f"Problem {problem_id}", answer=answer, source="t")


def test_answers_are_grouped_by_value_not_spelling():
    rows = [("a", "correct", "3")] * 2 + [("a", "incorrect", "0.5")] * 3 + [("a", "incorrect", r"\frac{1}{2}")] * 3
    rows += [("a", "incorrect", "1/2")] + [("a", "unjudgeable", None)] * 5
    (row,) = audit_references([problem("a", "3")], trials(rows), ReferenceAuditConfig(), compare_many=compare_many).rows
    assert (row.status, row.n_judged, row.n_reference, row.majority_count) == ("suspect_reference", 9, 2, 7)
    assert row.majority_answer == "0.5" and row.majority_share == pytest.approx(7 / 9)
    assert json.loads(row.answer_counts_json) == {"3": 2, "0.5": 7}


CASES = [
    # (judged rows as (verdict, answer) counts, expected status)
    ([("correct", "7", 3), ("incorrect", "9", 2)], "too_few_responses", "too_few"),
    ([("correct", "7", 6), ("incorrect", "9", 4)], "consistent", "reference_majority"),
    ([("correct", "7", 2), ("incorrect", "9", 4), ("incorrect", "8", 4)], "consistent", "plurality_is_not_majority"),
    ([("correct", "7", 5), ("incorrect", "9", 5)], "consistent", "tie_is_not_majority"),
    ([("correct", "7", 3), ("incorrect", "9", 7)], "suspect_reference", "wrong_majority"),
    ([("incorrect", "9", 8)], "suspect_reference", "never_reproduced"),
]


@pytest.mark.parametrize(("judged", "expected"), [c[:2] for c in CASES], ids=[c[2] for c in CASES])
def test_status_follows_the_thresholds(judged, expected):
    rows = [("p", verdict, answer) for verdict, answer, n in judged for _ in range(n)]
    (row,) = audit_references([problem("p", "7")], trials(rows), ReferenceAuditConfig(min_responses=8), compare_many=compare_many).rows
    assert row.status == expected


def test_quarantine_policy_marks_suspects_only():
    rows = [("bad", "incorrect", "9")] * 8 + [("good", "correct", "7")] * 8
    config = ReferenceAuditConfig(policy="quarantine")
    result = audit_references([problem("bad", "7"), problem("good", "7")], trials(rows), config, compare_many=compare_many)
    assert [(r.problem_id, r.is_quarantined) for r in result.rows] == [("bad", True), ("good", False)]
    assert result.counts == {"suspect_reference": 1, "consistent": 1, "quarantined": 1}
    assert quarantined_problem_ids(suspect_entries(result.rows)) == {"bad"}


def test_planted_wrong_references_are_found_and_carded():
    problems, table, planted, truth = planted_scenario(200, seed=7)
    result = audit_references(problems, table, ReferenceAuditConfig(), compare_many=compare_many)
    flagged = {row.problem_id for row in result.suspects}
    recall, precision = len(flagged & planted) / len(planted), len(flagged & planted) / len(flagged)
    assert recall >= 0.9 and precision >= 0.9, (recall, precision)
    assert all(row.majority_answer == truth[row.problem_id] for row in result.suspects if row.problem_id in planted)
    card = "\n".join(suspect_reference_section(suspect_entries(result.rows)))
    assert f"**{len(flagged)}** problems have a suspect reference answer" in card
    assert all(f"| {pid} |" in card for pid in flagged)


def test_build_stages_flag_quarantine_and_card_planted_references(tmp_path, scripted_config):
    """ingest -> DART (with the audit) -> export on the scripted backend, two of ten references planted wrong."""
    from mathforge import pipeline
    from mathforge.config import load_config
    from mathforge.records import REFERENCE_AUDIT_SCHEMA
    from mathforge.store import read_output

    seeds = tmp_path / "seeds.jsonl"
    true = {f"s{i}": (i + 3) * (i + 4) for i in range(10)}
    # Offsets the scripted model's wrong answers also take: some responses "verify" against the wrong reference.
    wrong = {"s3": true["s3"] + 1, "s7": true["s7"] - 2}
    seeds.write_text(
        "".join(
            json.dumps({"id": pid, "problem": f"A crate holds {i + 3} boxes of {i + 4} pens. How many pens?", "answer": str(wrong.get(pid, answer))}) + "\n"
            for i, (pid, answer) in enumerate(true.items())
        )
    )
    path = scripted_config(seeds, name="audit")
    believed = {f"seeds-{pid}": str(true[pid]) for pid in wrong}  # ingest ids are "<file stem>-<id>"
    config = load_config(
        path,
        {
            "generation": {"scripted": {"pass_rate": 0.8, "answers": believed}},
            "sampling": {"n_max": 40, "reference_audit": {"policy": "quarantine"}},
            "self_correction": {"enabled": False},
        },
    )
    ingest = pipeline.ingest_stage(config)
    problem_ids = {p.problem_id: p for p in pipeline.read_problems(ingest)}
    planted = set(believed)
    assert planted <= set(problem_ids)
    dart = pipeline.dart_stage(config, [ingest])
    suspects = dart.manifest["suspect_references"]
    assert {entry["problem_id"] for entry in suspects} == planted
    assert all(entry["is_quarantined"] for entry in suspects)
    assert dart.manifest["counts"]["audit_suspect_reference"] == 2
    audit = read_output(tmp_path / "runs" / "audit" / "dart", "reference_audit", REFERENCE_AUDIT_SCHEMA)
    assert audit.num_rows == len(problem_ids)

    sampled = pipeline.read_sources([(dart, "accepted")], include_surplus=config.output.include_surplus)
    n_planted_rows = sum(pid in planted for pid in sampled["problem_id"].to_pylist())
    assert n_planted_rows > 0
    export = pipeline.export_stage(config, [(dart, "accepted")], upstream=[ingest, dart], query_info=dart)
    manifest = export.manifest
    card = (Path(manifest["export_path"]) / "README.md").read_text()
    assert "**2** problems have a suspect reference answer" in card and "2 of them were quarantined" in card
    rows = datasets.load_from_disk(manifest["export_path"])
    assert not planted & set(rows["problem_id"])
    assert manifest["drop_reasons"] == {"quarantined_suspect_reference": n_planted_rows}
    assert manifest["rows_out"] == rows.num_rows == sampled.num_rows - n_planted_rows
    for view in (load_run(tmp_path / "runs" / "audit"), load_run(manifest["export_path"])):  # what the notebook shows
        shown = view.suspect_references()
        assert set(shown["problem_id"]) == planted and shown["is_quarantined"].all()
        assert set(shown["majority_answer"]) == set(believed.values())
