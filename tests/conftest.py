"""Shared fixtures: Prefect isolation, scripted problems, and the real vLLM engine (integration)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Before Prefect is imported anywhere: a private home (cached results must not
# leak between sessions) and no API URL (flows use the test harness).
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="mathforge-prefect-home-")
os.environ.pop("PREFECT_API_URL", None)
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test server for the whole session, flow heartbeats off."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        with prefect_test_harness(server_startup_timeout=120):
            yield


@pytest.fixture(scope="session")
def vllm_generator():
    """The real in-process vLLM engine on the embedded model, started once per session."""
    from mathforge.generation.vllm_backend import EngineConfig, VLLMGenerator

    generator = VLLMGenerator("embedded:smollm2-135m-instruct", EngineConfig(seed=0, max_model_len=1024, kv_cache_gb=1))
    yield generator
    generator.close()


@pytest.fixture(scope="session")
def derived_model(tmp_path_factory) -> str:
    """A second real model: SmolLM2-135M cut to its first 4 decoder layers (S2L's proxy cut), saved as a directory."""
    from mathforge.select.s2l import ProxyTraining, _load_proxy

    tokenizer, model, _ = _load_proxy(ProxyTraining(n_layers=4, device="cpu"), seed=0)
    directory = tmp_path_factory.mktemp("smollm2-4-layers")
    model.eval().save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


@pytest.fixture()
def small_seeds(tmp_path: Path) -> Path:
    """A seed file of six clean problems with known answers."""
    import json

    rows = [
        {"id": f"s{i}", "problem": f"Tom has {i + 2} apples and buys {i + 3} more. How many apples does he have?", "answer": str(2 * i + 5)}
        for i in range(6)
    ]
    path = tmp_path / "seeds.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.fixture()
def scripted_config(tmp_path: Path):
    """Factory: write a copy of configs/demo.yaml that runs on the scripted backend in tmp_path.

    `sections` replaces whole top-level sections (e.g. {"selection": None} turns selection off).
    """
    import yaml

    def write(seeds: Path, *, latency_s: float = 0.0, name: str = "t", sections: dict | None = None) -> Path:
        data = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
        data["run"] = {"name": name, "runs_dir": str(tmp_path / "runs")}
        data["ingest"] = {"sources": [{"path": str(seeds)}]}
        data["generation"] = {"backend": "scripted", "scripted": {"pass_rate": 0.5, "seed": 1, "latency_s": latency_s}}
        data["sampling"].update({"k_uniform": 2, "n_max": 12, "max_per_round": 2})
        data["output"]["export_dir"] = str(tmp_path / "exports" / name)
        data.update(sections or {})
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    return write
