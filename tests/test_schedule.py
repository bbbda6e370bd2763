"""A served deployment on a real local Prefect server: two scheduled runs, the second incremental."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _seed_rows(start: int, stop: int) -> str:
    rows = [{"id": f"n{i}", "problem": f"A van carries {i + 2} crates of {i + 6} melons. How many melons?", "answer": str((i + 2) * (i + 6))} for i in range(start, stop)]
    return "".join(json.dumps(r) + "\n" for r in rows)


def _wait(predicate, timeout: float, what: str, processes) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        for process in processes:
            if process.poll() is not None:
                pytest.fail(f"{what}: a process exited early ({process.args[:3]})")
        time.sleep(1)
    pytest.fail(f"timed out waiting for {what}")


def test_scheduled_runs_are_incremental(tmp_path, scripted_config):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(_seed_rows(0, 4))
    # Only the stages that matter for scheduling, so each run takes seconds.
    light = {"templates": {"enabled": False}, "self_correction": {"enabled": False}, "curation": None, "selection": None}
    config = scripted_config(seeds, name="nightly", sections=light)
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=(logs / "server.log").open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    processes = [server]
    try:
        _wait(lambda: _healthy(port), 120, "the Prefect server", processes)
        runner = subprocess.Popen(
            [sys.executable, "-m", "flows.serve", str(config), "--name", "nightly-test", "--interval", "15"],
            cwd=REPO, env=env, stdout=(logs / "serve.log").open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        processes.append(runner)
        ledger = tmp_path / "runs" / "nightly" / "ledger.json"
        _wait(lambda: ledger.exists() and len(json.loads(ledger.read_text())) >= 1, 240, "the first scheduled run", processes)
        with seeds.open("a") as handle:
            handle.write(_seed_rows(4, 6))
        _wait(lambda: "seeds-n4" in ledger.read_text(), 240, "a scheduled run over the new seeds", processes)
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    entries = json.loads(ledger.read_text())
    first, second = entries[0], entries[-1]
    assert first["problem_ids"] == sorted(f"seeds-n{i}" for i in range(4))
    # Runs that started before the new seeds arrived processed nothing; the one after them only the new ones.
    assert all(entry["problem_ids"] == [] for entry in entries[1:-1])
    assert second["problem_ids"] == ["seeds-n4", "seeds-n5"]
    ingest = json.loads((tmp_path / "runs" / second["run"] / "ingest" / "manifest.json").read_text())
    assert ingest["drop_reasons"]["seen_in_earlier_run"] == 4
    import datasets

    merged = datasets.load_from_disk(second["export"])
    first_rows = datasets.load_from_disk(first["export"])
    assert set(first_rows["sample_id"]) < set(merged["sample_id"])  # earlier rows kept, new ones added
    assert first["export"] != second["export"] and Path(first["export"]).exists()


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
