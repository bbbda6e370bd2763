"""SIGTERM to `mathforge build`: engine, sandbox, verifier workers and Prefect's server stop; the run resumes.

Each test runs the real CLI in a child process, records every process it
starts (`ProcessWatch`), sends SIGTERM once DART has committed its first round
(so the build is generating), and checks that none of them still runs.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.process_watch import ProcessWatch

FIRST_ROUND = re.compile(r"dart part-\d+: .*round 0")


def _config(tmp_path: Path, generation: dict, sampling: dict) -> Path:
    data = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    data["run"] = {"name": "signals", "runs_dir": str(tmp_path / "runs")}
    data["ingest"] = {"sources": [{"path": "data/seeds/grade_school.jsonl", "answer_from": "answer", "limit": 6}]}
    data["generation"] = generation
    data["templates"]["enabled"] = False
    data["self_correction"]["enabled"] = False
    data["sampling"].update(sampling)
    data["selection"] = None
    data["output"]["export_dir"] = str(tmp_path / "exports")
    path = tmp_path / "signals.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _build(config: Path, tmp_path: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'src'}{os.pathsep}{REPO}", COLUMNS="250")
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    env.pop("PREFECT_API_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "mathforge.cli", "build", str(config), "--run", "signals"],
        cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )


def _wait_for(log: Path, pattern: re.Pattern, process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pattern.search(log.read_text()):
            return
        if process.poll() is not None:
            pytest.fail(f"build exited ({process.returncode}) before {pattern.pattern!r}:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    process.kill()
    pytest.fail(f"no {pattern.pattern!r} within {timeout_s} s:\n{log.read_text()[-3000:]}")


def _terminate_mid_generation(config: Path, tmp_path: Path, timeout_s: float) -> ProcessWatch:
    log = tmp_path / "first.log"
    process = _build(config, tmp_path, log)
    watch = ProcessWatch(process.pid)
    _wait_for(log, FIRST_ROUND, process, timeout_s)
    time.sleep(2.0)  # into the next round's generation
    process.send_signal(signal.SIGTERM)
    try:
        returncode = process.wait(timeout=120)
    finally:
        watch.stop()
    output = log.read_text()
    assert returncode == 128 + signal.SIGTERM, output[-3000:]
    assert "run the same command again to resume" in output
    return watch


def _resume(config: Path, tmp_path: Path, timeout_s: float) -> str:
    log = tmp_path / "second.log"
    process = _build(config, tmp_path, log)
    assert process.wait(timeout=timeout_s) == 0, log.read_text()[-3000:]
    return log.read_text()


@pytest.mark.slow
def test_sigterm_stops_a_scripted_build_and_the_run_resumes(tmp_path):
    """Sandbox, verifier pool and Prefect's temporary server stop with the build (no model needed)."""
    generation = {"backend": "scripted", "scripted": {"pass_rate": 0.3, "seed": 1, "latency_s": 1.5}}
    config = _config(tmp_path, generation, {"k_uniform": 2, "n_max": 12, "max_per_round": 2})
    watch = _terminate_mid_generation(config, tmp_path, timeout_s=240)
    survivors = watch.survivors()
    print(f"checked {len(watch.seen)} processes: {watch.names()}")
    assert survivors == []
    assert len(watch.seen) >= 3  # the build, the verifier pool, Prefect's server at least
    assert "resuming after" in _resume(config, tmp_path, timeout_s=300)


@pytest.mark.integration
@pytest.mark.slow
def test_sigterm_mid_generation_leaves_no_process_of_the_real_engine(tmp_path):
    """The real vLLM engine (EngineCore and its worker) stops with the build; the run then resumes."""
    generation = {"backend": "vllm", "engine": {"seed": 0, "max_model_len": 1024, "kv_cache_gb": 1}}
    config = _config(tmp_path, generation, {"k_uniform": 2, "n_max": 8, "max_per_round": 2, "max_tokens": 192})
    watch = _terminate_mid_generation(config, tmp_path, timeout_s=600)
    survivors = watch.survivors()
    names = watch.names()
    print(f"checked {len(watch.seen)} processes: {names}")
    assert any("EngineCor" in name for name in names) and any("Worker" in name for name in names), names
    assert survivors == []
    assert "resuming after" in _resume(config, tmp_path, timeout_s=900)
