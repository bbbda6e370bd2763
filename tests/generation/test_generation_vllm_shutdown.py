"""A plain script using VLLMGenerator that gets SIGTERM leaves no EngineCore or worker behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO
from tests.process_watch import ProcessWatch

SCRIPT = """
from mathforge.generation import GenerationParams
from mathforge.generation.vllm_backend import EngineConfig, VLLMGenerator

if __name__ == "__main__":
    generator = VLLMGenerator("embedded:smollm2-135m-instruct", EngineConfig(max_model_len=1024, kv_cache_gb=1))
    chats = [[{"role": "user", "content": f"Count from {i} to {i + 200}."}] for i in range(8)]
    print("generating", flush=True)
    while True:
        generator.generate(chats, GenerationParams(max_tokens=256, temperature=0.8))
"""


@pytest.mark.integration
def test_sigterm_to_a_script_shuts_its_engine_down(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    log = tmp_path / "script.log"
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'src'}{os.pathsep}{REPO}", VLLM_LOGGING_LEVEL="WARNING")
    process = subprocess.Popen([sys.executable, str(script)], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    watch = ProcessWatch(process.pid)
    deadline = time.monotonic() + 600
    while "generating" not in log.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)
    time.sleep(3.0)  # mid-generation
    process.send_signal(signal.SIGTERM)
    try:
        returncode = process.wait(timeout=120)
    finally:
        watch.stop()
    names = watch.names()
    print(f"checked {len(watch.seen)} processes: {names}")
    assert returncode == 128 + signal.SIGTERM, log.read_text()[-3000:]
    assert any("EngineCor" in name for name in names) and any("Worker" in name for name in names), names
    assert watch.survivors() == []
