"""A build that samples with two real models: DART per model on the real engine, one engine at a time, GRAPE on the pool.

The main model is the embedded SmolLM2-135M, the additional one the session
fixture `derived_model` (SmolLM2 cut to 4 layers); GRAPE's target is the
derived model, so it is reused from the second DART stage, not loaded again.
Whatever the two weak models solve, each DART stage's counts must be its own
model's (trials = that model's rows), every row must name its model, and GRAPE
must keep per problem exactly DART's accepted count.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_dart_per_real_model_then_grape_with_a_separate_target(tmp_path: Path, derived_model):
    from mathforge import generation, pipeline
    from mathforge.config import build_config
    from mathforge.records import QUERY_INFO_SCHEMA, SAMPLE_SCHEMA
    from mathforge.select import dart_allocation
    from mathforge.store import read_output

    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("\n".join(json.dumps({"id": f"q{i}", "problem": f"What is {i} + 1?", "answer": str(i + 1)}) for i in range(1, 4)) + "\n")
    engine = {"seed": 0, "dtype": "float32", "max_model_len": 1024, "kv_cache_gb": 0.5, "enforce_eager": True}
    target = {"backend": "vllm", "model": derived_model, "engine": engine}
    config = build_config(
        {
            "run": {"name": "two-models", "runs_dir": str(tmp_path / "runs")},
            "ingest": {"sources": [{"path": str(seeds)}]},
            "generation": {"backend": "vllm", "model": "embedded:smollm2-135m-instruct", "engine": engine, "additional": [target]},
            "sampling": {"strategy": "uniform", "k_uniform": 2, "n_max": 4, "max_per_round": 4, "max_tokens": 64, "temperature": 0.8},
            "verification": {"n_workers": 1},
            "selection": {"steps": [{"method": "grape", "target_model": target}]},
            "output": {"export_dir": str(tmp_path / "exports"), "include_surplus": True, "tokenizer": None},
        }
    )
    ingest = pipeline.ingest_stage(config)
    dart = [pipeline.dart_stage(config, [ingest])]
    dart.append(pipeline.dart_stage(pipeline.with_model(config, config.generation.additional[0]), [ingest], name="dart-1"))
    # The main model's engine was released when the derived model's was built.
    assert [g.model_id for g in generation._SHARED.values()] == [derived_model]

    models = ["embedded:smollm2-135m-instruct", derived_model]
    for result, model in zip(dart, models):
        rows = pa.concat_tables([read_output(Path(result.stage_dir), name, SAMPLE_SCHEMA) for name in ("accepted", "negatives")])
        assert set(rows.column("model").to_pylist()) <= {model}
        info = read_output(Path(result.stage_dir), "query_info", QUERY_INFO_SCHEMA).to_pylist()
        for problem in info:  # the counts are this model's own trials, nothing pooled
            mine = [r for r in rows.to_pylist() if r["problem_id"] == problem["problem_id"]]
            assert problem["n_trials"] == len(mine) and problem["n_correct"] == sum(r["verdict"] == "correct" for r in mine)
        assert result.manifest["model"] == model

    selected = pipeline.select_stage(config, [(r, "accepted") for r in dart], dart=dart)
    assert selected.manifest["grape"]["role"] == "target model" and selected.manifest["grape"]["scorer"] == derived_model
    assert generation._SHARED == {}  # the target was released after selection
    kept = read_output(Path(selected.stage_dir), "data", SAMPLE_SCHEMA).column("problem_id").to_pylist()
    query_info = pa.concat_tables([read_output(Path(r.stage_dir), "query_info", QUERY_INFO_SCHEMA) for r in dart])
    expected = {p: n for p, n in dart_allocation(query_info).items() if n}
    assert {p: kept.count(p) for p in set(kept)} == expected
    pooled = pa.concat_tables([read_output(Path(r.stage_dir), "accepted", SAMPLE_SCHEMA) for r in dart])
    print(
        f"pool_rows={pooled.num_rows} pool_models={sorted(set(pooled.column('model').to_pylist()))} kept={len(kept)} "
        f"allocation={expected}"
    )
