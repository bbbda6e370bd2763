"""The DART stage on a local Ray instance gives the same rows as in-process (scripted generator)."""

import pytest

from mathforge import pipeline
from mathforge.config import load_config


@pytest.fixture()
def seeds(tmp_path):
    import json

    rows = [json.dumps({"id": f"r{i}", "problem": f"A shelf has {i + 2} rows of {i + 5} books. How many books?", "answer": str((i + 2) * (i + 5))}) for i in range(10)]
    path = tmp_path / "seeds.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path


def _accepted(config_path, overrides):
    config = load_config(config_path, overrides)
    problems = pipeline.ingest_stage(config)
    sampled = pipeline.dart_stage(config, [problems])
    table = pipeline.read_samples(sampled, "accepted")
    return sampled, sorted(zip(table["sample_id"].to_pylist(), table["response"].to_pylist()))


def test_ray_parts_match_in_process_rows(seeds, scripted_config):
    import ray

    config_path = scripted_config(seeds)
    local, local_rows = _accepted(config_path, {"run": {"name": "local", "shard_size": 3}})
    try:
        distributed, ray_rows = _accepted(
            config_path, {"run": {"name": "ray", "shard_size": 3}, "scale": {"backend": "ray", "num_replicas": 2}}
        )
    finally:
        ray.shutdown()
    assert distributed.manifest["n_parts"] == 4
    assert ray_rows == local_rows and len(ray_rows) > 0
    assert distributed.manifest["drop_reasons"] == local.manifest["drop_reasons"]
