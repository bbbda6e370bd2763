"""The build-dataset flow end to end on the scripted backend: export, card, skip, crash resume."""

import json
import os
from collections import Counter
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def seeds_with_bad_rows(tmp_path: Path) -> Path:
    rows = [json.dumps({"id": f"s{i}", "problem": f"A crate holds {i + 3} boxes of {i + 4} pens. How many pens?", "answer": str((i + 3) * (i + 4))}) for i in range(8)]
    rows.insert(2, '{"id": "bad1", "problem": ')
    rows.insert(5, json.dumps({"id": "bad2", "answer": "4"}))
    rows.insert(7, json.dumps({"id": "bad3", "problem": "No answer?", "answer": ""}))
    path = tmp_path / "seeds.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_flow_exports_a_loadable_dataset_and_skips_on_rerun(prefect_harness, tmp_path, seeds_with_bad_rows, scripted_config):
    import datasets

    from flows.build_dataset import build_dataset

    config = scripted_config(seeds_with_bad_rows)
    first = build_dataset(str(config))
    assert not any(r.skipped for r in first.values())
    export = Path(first["export"].manifest["export_path"])
    dataset = datasets.load_from_disk(str(export))
    assert dataset.num_rows > 0
    from trl.data_utils import is_conversational

    # The demo-shaped export is TRL's conversational prompt-completion format as it stands.
    row = dataset[0]
    assert is_conversational(row) and {"prompt", "completion", "messages"} <= set(dataset.column_names)
    assert row["messages"] == row["prompt"] + row["completion"]
    assert [m["role"] for m in row["prompt"]] == ["user"] and row["completion"] == [{"role": "assistant", "content": row["response"]}]
    # The scripted backend names no tokenizer (output.tokenizer 'generation' resolves to none): not pre-tokenized.
    assert "input_ids" not in dataset.column_names
    for column in ("sample_id", "problem_id", "model", "sampling_json", "prompt_hash", "round", "verdict", "n_trials", "pass_rate"):
        assert row[column] is not None, column
    assert set(dataset["verdict"]) == {"correct"}
    card = (export / "README.md").read_text()
    assert "quarantined_invalid_json" in card and "Difficulty" in card
    assert first["ingest"].manifest["drop_reasons"] == {
        "quarantined_empty_answer": 1,
        "quarantined_invalid_json": 1,
        "quarantined_missing_field": 1,
    }
    assert (export / "parquet" / "query_info.parquet").exists()
    manifest = json.loads((export / "manifest.json").read_text())
    assert manifest["rows"] == dataset.num_rows and manifest["backend"] == "scripted"

    stages = {m["stage"]: m for m in manifest["stages"]}
    for stage in stages.values():  # every row that went in came out or was dropped for a reason
        assert stage["rows_in"] == stage["rows_out"] + sum(stage["drop_reasons"].values()), stage["stage"]
        for step in stage.get("steps", []):
            assert step["rows_in"] == step["rows_out"] + sum(step["drop_reasons"].values()), step["step"]
    (solutions,) = stages["templates"]["steps"]
    assert solutions["rows_out"] > 0 and "template-solution" in set(dataset["row_kind"])
    assert stages["curate"]["rows_in"] == stages["dart"]["rows_out"] + solutions["rows_out"] + stages["self_correction"]["rows_out"]
    for kind, n in Counter(dataset["row_kind"]).items():  # the card's "What is learned" table
        assert f"| {kind} | {n} |" in card
    assert stages["select"]["rows_in"] == stages["curate"]["rows_out"]
    assert manifest["rows"] == stages["select"]["rows_out"]
    for stage in stages:  # the card shows each stage's row
        assert f"| {stage} | {stages[stage]['rows_in']} | {stages[stage]['rows_out']} |" in card

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        keys = {artifact.key for artifact in client.read_artifacts()}
    assert {"t-summary", "t-difficulty", "t-verifier-reasons"} <= keys

    second = build_dataset(str(config))
    assert all(r.skipped for r in second.values())


def _run_build(config: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "flows.build_dataset", str(config)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def test_killed_build_resumes_to_the_same_dataset(tmp_path, seeds_with_bad_rows, scripted_config):
    import datasets

    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    # Generation is what gets killed: the other stages stay off to keep the test short.
    light = {"templates": {"enabled": False}, "self_correction": {"enabled": False}, "curation": None, "selection": None}
    reference = scripted_config(seeds_with_bad_rows, name="whole", sections=light)
    assert _run_build(reference, env).wait(timeout=300) == 0

    config = scripted_config(seeds_with_bad_rows, latency_s=1.0, name="killed", sections=light)
    process = _run_build(config, env)
    shards = tmp_path / "runs" / "killed" / "dart" / "_parts" / "part-00000" / "_shards"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(shards.glob("*.json"))) < 2:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "runs" / "killed" / "dart" / "manifest.json").exists(), "killed too late"
    assert _run_build(config, env).wait(timeout=300) == 0

    whole = datasets.load_from_disk(str(tmp_path / "exports" / "whole" / "latest"))
    resumed = datasets.load_from_disk(str(tmp_path / "exports" / "killed" / "latest"))
    assert resumed.num_rows == whole.num_rows
    assert len(set(resumed["sample_id"])) == resumed.num_rows
    assert sorted(resumed["response"]) == sorted(whole["response"])


def test_grape_following_dart_exports_dart_counts_from_two_models(prefect_harness, tmp_path, seeds_with_bad_rows, scripted_config):
    """Two scripted sampling models, surplus included: GRAPE keeps per problem exactly DART's accepted count."""
    import datasets
    import pyarrow as pa

    from flows.build_dataset import build_dataset
    from mathforge.records import QUERY_INFO_SCHEMA
    from mathforge.select import dart_allocation
    from mathforge.store import read_output

    sections = {
        "templates": {"enabled": False},
        "self_correction": {"enabled": False},
        "curation": None,
        "generation": {
            "backend": "scripted",
            "scripted": {"pass_rate": 0.5, "seed": 1},
            "additional": [{"backend": "scripted", "model": "second", "scripted": {"pass_rate": 0.7, "seed": 2}}],
        },
        "sampling": {"strategy": "prop2diff", "k_max": 4, "n_probe": 4, "n_max": 12, "max_per_round": 4, "prompt": "solve_cot"},
        "selection": {"steps": [{"method": "grape"}]},
        "output": {"export_dir": str(tmp_path / "exports" / "g"), "prompt": "solve_cot", "include_surplus": True},
    }
    results = build_dataset(str(scripted_config(seeds_with_bad_rows, name="g", sections=sections)))
    assert {"dart", "dart-1", "select"} <= set(results)
    query_info = pa.concat_tables([read_output(Path(results[n].stage_dir), "query_info", QUERY_INFO_SCHEMA) for n in ("dart", "dart-1")])
    export = Path(results["export"].manifest["export_path"])
    dataset = datasets.load_from_disk(str(export))
    exported: dict[str, int] = {}
    for problem_id in dataset["problem_id"]:
        exported[problem_id] = exported.get(problem_id, 0) + 1
    allocation = {p: n for p, n in dart_allocation(query_info).items() if n}
    assert exported == allocation
    assert len(set(allocation.values())) > 1, "prop2diff should give problems different counts"
    pool = read_output(Path(results["select"].stage_dir), "rejected", None)
    assert pool.num_rows > 0  # surplus and the other model's responses were candidates
    assert set(dataset["model"]) <= {"scripted:embedded:smollm2-135m-instruct", "scripted:second"}
    card = (export / "README.md").read_text()
    assert "## Selection" in card and "generation model, not a separate target" in card
    difficulty = results["select"].manifest["difficulty"]
    assert sum(row["rows_after"] for row in difficulty) == dataset.num_rows
    for row in difficulty:
        assert f"| {row['pass_rate']} | {row['problems_before']} | {row['rows_before']} | {row['problems_after']} | {row['rows_after']} |" in card


def test_flows_leave_print_alone():
    """Prefect's log_prints would log dill's captured `dis` output (datasets' table fingerprints) line by line."""
    from flows.build_dataset import build_dataset
    from flows.evaluate import evaluate

    assert not build_dataset.log_prints and not evaluate.log_prints
