"""mathforge.inspect on small runs written through the real store API: tables, committed-only reads, exports, figures."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mathforge import inspect as mfi
from mathforge.export import export_dataset
from mathforge.records import (
    PROBLEM_SCHEMA,
    QUARANTINE_SCHEMA,
    QUERY_INFO_SCHEMA,
    REJECTED_SCHEMA,
    SAMPLE_SCHEMA,
    Problem,
    QueryInfo,
    Rejected,
    Sample,
    to_table,
)
from mathforge.store import Stage, StageSummary, run_stage


def sample(sample_id: str, problem_id: str, verdict: str, reason: str, *, tokens: int, cluster_id: int | None = None) -> Sample:
    return Sample(
        sample_id=sample_id, problem_id=problem_id, problem=f"problem {problem_id}", answer="4", source="seeds",
        response=f"response {sample_id}", finish_reason="stop", n_completion_tokens=tokens, verdict=verdict,
        verdict_reason=reason, model="scripted", sampling_json="{}", prompt_hash="h", cluster_id=cluster_id,
    )


ACCEPTED = [
    sample("a0", "p0", "correct", "string_match", tokens=10),
    sample("a1", "p0", "correct", "string_match", tokens=20),
    sample("a2", "p1", "correct", "string_match", tokens=30),
]
NEGATIVES = [
    sample("n0", "p1", "incorrect", "numeric_mismatch", tokens=40),
    sample("n1", "p2", "unjudgeable", "no_answer_found", tokens=50),
    sample("n2", "p2", "incorrect", "numeric_mismatch", tokens=60),
]
SELECTED = [ACCEPTED[0].model_copy(update={"cluster_id": 0}), ACCEPTED[2].model_copy(update={"cluster_id": 1})]
QUERY_INFO = [
    QueryInfo(
        problem_id=problem_id, n_trials=2, n_correct=n_correct, pass_rate=n_correct / 2, pass_rate_low=0.0,
        pass_rate_high=1.0, target=2, n_rounds=1, status=status,
    )
    for problem_id, n_correct, status in [("p0", 2, "solved"), ("p1", 1, "capped"), ("p2", 0, "unsolved")]
]


def write_stage(run_dir: Path, name: str, outputs: dict, rows_in: int, rows_out: int, drops: dict[str, int]):
    def work(stage: Stage) -> StageSummary:
        stage.write_shard(0, outputs)
        summary = StageSummary(rows_in=rows_in, rows_out=rows_out)
        summary.drop_reasons.update(drops)
        return summary

    return run_stage(run_dir, name, name, [], work)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """ingest (3 problems, 1 quarantined) → dart (3 accepted, 3 negatives) → select (2 kept, clustered), finished in that order."""
    path = tmp_path_factory.mktemp("runs") / "r"
    problems = [Problem(problem_id=f"p{i}", problem=f"problem p{i}", answer="4", source="seeds") for i in range(3)]
    ingest_outputs = {"data": to_table(problems, PROBLEM_SCHEMA), "quarantine": QUARANTINE_SCHEMA.empty_table()}
    write_stage(path, "ingest", ingest_outputs, 4, 3, {"quarantined_invalid_json": 1})
    dart_outputs = {
        "accepted": to_table(ACCEPTED, SAMPLE_SCHEMA),
        "negatives": to_table(NEGATIVES, SAMPLE_SCHEMA),
        "query_info": to_table(QUERY_INFO, QUERY_INFO_SCHEMA),
    }
    write_stage(path, "dart", dart_outputs, 6, 3, {"numeric_mismatch": 2, "no_answer_found": 1})
    rejected = [Rejected(stage="select.kmeans", row_id="a1", problem_id="p0", reason="not_selected")]
    select_outputs = {"data": to_table(SELECTED, SAMPLE_SCHEMA), "rejected": to_table(rejected, REJECTED_SCHEMA)}
    write_stage(path, "select", select_outputs, 3, 2, {"not_selected": 1})
    return path


@pytest.fixture(scope="module")
def view(run_dir) -> mfi.RunView:
    return mfi.load_run(run_dir)


def test_stage_table_follows_finish_order_not_names(view):
    assert view.kind == "run"
    rows = view.stages[["stage", "status", "rows_in", "rows_out", "dropped"]].values.tolist()
    assert rows == [["ingest", "complete", 4, 3, 1], ["dart", "complete", 6, 3, 3], ["select", "complete", 3, 2, 1]]
    assert (view.stages["wall_s"] >= 0).all()
    assert view.manifest("dart")["outputs"] == {"accepted": 3, "negatives": 3, "query_info": 3}
    with pytest.raises(KeyError, match="stages: \\['ingest', 'dart', 'select'\\]"):
        view.manifest("curate")


def test_drops_list_each_stage_reasons_largest_first(view):
    assert view.drops.values.tolist() == [
        ["ingest", "quarantined_invalid_json", 1],
        ["dart", "numeric_mismatch", 2],
        ["dart", "no_answer_found", 1],
        ["select", "not_selected", 1],
    ]


def test_samples_default_to_the_last_kept_output_and_any_output_reads_by_name(view):
    assert list(view.samples()["sample_id"]) == ["a0", "a2"]
    assert list(view.samples("dart/negatives")["sample_id"]) == ["n0", "n1", "n2"]
    assert list(view.read("ingest/quarantine").columns) == QUARANTINE_SCHEMA.names
    with pytest.raises(KeyError, match="dart/accepted"):
        view.read("dart/rounds")
    assert ["dart", "accepted", 3] in view.outputs.values.tolist()


def test_judged_samples_count_each_sample_once_across_stages(view):
    judged = view.judged_samples()
    assert sorted(judged["sample_id"]) == ["a0", "a1", "a2", "n0", "n1", "n2"]
    assert list(judged.columns) == SAMPLE_SCHEMA.names


def test_query_info_problems_and_rejected_rows(view):
    assert list(view.query_info()["status"]) == ["solved", "capped", "unsolved"]
    assert list(view.problems()["problem_id"]) == ["p0", "p1", "p2"]
    assert view.rejected()[["row_id", "reason"]].values.tolist() == [["a1", "not_selected"]]


def test_only_committed_shards_count_and_an_unfinished_stage_comes_last(run_dir, tmp_path):
    copy = tmp_path / "r"
    shutil.copytree(run_dir, copy)
    # A shard written but not committed (crash before its marker): never read.
    shutil.copy(copy / "dart" / "accepted" / "part-00000.parquet", copy / "dart" / "accepted" / "part-00001.parquet")
    curate = Stage(copy, "curate", config_fingerprint="c", input_fingerprint="i")
    curate.open()
    stats = {"rows_in": 2, "rows_out": 1, "drop_reasons": {"exact_duplicate_sample": 1}}
    curate.write_shard(0, {"data": to_table(ACCEPTED[:1], SAMPLE_SCHEMA)}, stats)
    curate.write_shard(1, {"data": to_table(ACCEPTED[1:], SAMPLE_SCHEMA)})
    (copy / "curate" / "_shards" / "00001.json").unlink()
    templates = Stage(copy, "templates", config_fingerprint="c", input_fingerprint="i")
    templates.open()
    templates.write_shard(0, {"data": to_table([Problem(problem_id="t0", problem="t", answer="1", source="template")], PROBLEM_SCHEMA)})
    (copy / "templates" / "_shards" / "00000.json").unlink()

    view = mfi.load_run(copy)
    assert len(view.samples("dart/accepted")) == 3
    nothing_committed = view.read("templates/data")
    assert nothing_committed.empty and list(nothing_committed.columns) == PROBLEM_SCHEMA.names
    assert list(view.problems()["problem_id"]) == ["p0", "p1", "p2"]
    unfinished = view.stages[view.stages["status"] == "incomplete"]
    assert unfinished[["stage", "rows_in", "rows_out", "dropped"]].values.tolist() == [["curate", 2, 1, 1], ["templates", 0, 0, 0]]
    assert list(view.stages["stage"])[-2:] == ["curate", "templates"]
    assert list(view.read("curate/data")["sample_id"]) == ["a0"]
    # The default rows are the last finished stage's, not a half-written one's.
    assert list(view.samples()["sample_id"]) == ["a0", "a2"]


def test_an_export_loads_from_its_version_or_its_latest_link(view, tmp_path):
    export_dir = tmp_path / "exports" / "r"
    manifests = [view.manifest(stage) for stage in view.stages["stage"]]
    version = export_dataset(
        pa.Table.from_pandas(view.samples(), schema=SAMPLE_SCHEMA, preserve_index=False),
        export_dir=export_dir, version="v1", prompt="solve_cot", system_prompt=None,
        query_info=to_table(QUERY_INFO, QUERY_INFO_SCHEMA), manifests=manifests, meta={"name": "r"},
    )
    exported = mfi.load_run(export_dir)
    assert exported.kind == "export" and exported.path == version.resolve()
    assert list(exported.samples()["sample_id"]) == ["a0", "a2"] and "messages" in exported.samples().columns
    assert list(exported.stages["stage"]) == ["ingest", "dart", "select"]
    assert exported.drops.values.tolist() == view.drops.values.tolist()
    assert len(exported.query_info()) == 3
    assert list(exported.problems()["problem_id"]) == ["p0", "p1"]
    assert exported.outputs.values.tolist() == [["export", "query_info", 3], ["export", "train", 2]]


def test_a_directory_that_is_neither_run_nor_export_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a run directory"):
        mfi.load_run(tmp_path)


def bars(fig):
    (ax,) = fig.axes
    return [(round(p.get_x(), 3), round(p.get_y(), 3), p.get_width(), p.get_height()) for p in ax.patches]


def test_pass_rate_histogram_counts_each_problem_once(view):
    fig = mfi.pass_rate_histogram(view.query_info())
    assert sum(height for *_, height in bars(fig)) == 3
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["solved", "capped", "unsolved"]


def test_kept_vs_difficulty_buckets_rows_by_their_problem_pass_rate(view):
    fig = mfi.kept_vs_difficulty(view.samples(), view.query_info())
    heights = [height for *_, height in bars(fig)]
    # Buckets [0,.1) [.1,.3) [.3,.5) [.5,.7) [.7,.9) [.9,1]: p2 = 0.0, p1 = 0.5, p0 = 1.0; kept rows of p0 and p1.
    assert heights == [1, 0, 0, 1, 0, 1] + [0, 0, 0, 1, 0, 1]
    orphan = view.samples().assign(problem_id="elsewhere", pass_rate=None)
    labels = [t.get_text() for t in mfi.kept_vs_difficulty(orphan, view.query_info()).axes[0].get_xticklabels()]
    assert labels[-1] == "unknown"


def test_verifier_reasons_count_verdict_reason_pairs(view):
    fig = mfi.verifier_reasons(view.judged_samples())
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    widths = [width for _, _, width, _ in bars(fig)]
    assert dict(zip(labels, widths)) == {"correct: string_match": 3, "incorrect: numeric_mismatch": 2, "unjudgeable: no_answer_found": 1}


def test_drop_waterfall_steps_down_from_rows_in_to_rows_out(view):
    fig = mfi.drop_waterfall(view.stages, view.drops)
    labels = [t.get_text().strip() for t in fig.axes[0].get_yticklabels()]
    spans = {label: (left, width) for label, (left, _, width, _) in zip(labels, bars(fig))}
    assert labels[3:7] == ["dart: in", "− numeric_mismatch", "− no_answer_found", "dart: out"]
    assert [spans[label] for label in labels[3:7]] == [(0, 6), (4, 2), (3, 1), (0, 3)]


def test_cluster_sizes_draw_clusters_or_say_there_are_none(view):
    assert [height for *_, height in bars(mfi.cluster_sizes(view.samples()))] == [1, 1]
    fig = mfi.cluster_sizes(view.samples("dart/accepted"))
    assert not fig.axes[0].patches
    assert [t.get_text() for t in fig.axes[0].texts] == ["no clusters in this run"]


def test_token_lengths_histograms_hold_every_row(view):
    fig = mfi.token_lengths(view.judged_samples(), view.samples())
    heights = np.array([height for *_, height in bars(fig)])
    n_bins = len(heights) // 2
    assert heights[:n_bins].sum() == 6 and heights[n_bins:].sum() == 2


def test_empty_inputs_give_placeholder_figures():
    empty_samples = SAMPLE_SCHEMA.empty_table().to_pandas()
    empty_info = QUERY_INFO_SCHEMA.empty_table().to_pandas()
    figures = [
        mfi.pass_rate_histogram(empty_info),
        mfi.kept_vs_difficulty(empty_samples, empty_info),
        mfi.verifier_reasons(empty_samples),
        mfi.drop_waterfall(pd.DataFrame(columns=["stage", "rows_in", "rows_out"]), pd.DataFrame(columns=["stage", "reason", "count"])),
        mfi.cluster_sizes(empty_samples),
        mfi.token_lengths(empty_samples, empty_samples),
    ]
    for fig in figures:
        assert not fig.axes[0].patches and fig.axes[0].texts[0].get_text().startswith("no ")


def test_save_figures_writes_six_pngs(view, tmp_path):
    paths = mfi.save_figures(view, tmp_path / "figures")
    assert [p.stem for p in paths] == list(mfi.FIGURE_NAMES)
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
