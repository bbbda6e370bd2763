"""The composed selection stage: config parsing and steps applied in sequence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from mathforge.generation.scripted import ScriptedGenerator, ScriptedProblem
from mathforge.records import REJECTED_SCHEMA
from mathforge.select import Budget, GrapeStep, KMeansStep, S2LStep, SelectConfig, select
from mathforge.select.s2l import write_trajectories

TOPICS = ["apples in boxes", "train speed over distance", "area of a rectangle", "probability of dice"]


def test_config_parses_steps_by_method():
    config = SelectConfig.model_validate(
        {
            "steps": [
                {"method": "grape", "per_problem": 2},
                {"method": "kmeans", "budget": {"tokens": 5000}, "within": "quality", "temperature": 0.5},
                {"method": "s2l", "budget": {"rows": 10}, "proxy": {"n_layers": 2, "epochs": 1}},
            ],
            "seed": 3,
        }
    )
    assert [type(step) for step in config.steps] == [GrapeStep, KMeansStep, S2LStep]
    assert config.steps[1].budget == Budget(tokens=5000)
    assert config.steps[2].proxy.n_layers == 2


@pytest.mark.parametrize(
    "steps",
    [
        [],
        [{"method": "dedup", "budget": {"rows": 1}}],
        [{"method": "kmeans"}],
        [{"method": "kmeans", "budget": {"rows": 1, "tokens": 1}}],
        [{"method": "kmeans", "budget": {"rows": 1}, "clusters": 4}],
        [{"method": "s2l", "budget": {"rows": 1}, "proxy": {"epochs": 0}}],
    ],
    ids=["no_steps", "unknown_method", "no_budget", "two_budgets", "unknown_key", "zero_epochs"],
)
def test_config_errors(steps):
    with pytest.raises(ValidationError):
        SelectConfig.model_validate({"steps": steps})


def samples(make_samples):
    """Four topics x three problems x three responses, two of them correct."""
    rows, problems = [], []
    for t, topic in enumerate(TOPICS):
        for p in range(3):
            problem = f"A question about {topic}, number {p}: what is {t} + {p}?"
            problem_id = f"t{t}p{p}"
            problems.append(ScriptedProblem(problem_id, problem, str(t + p)))
            for r in range(3):
                rows.append(
                    {
                        "sample_id": f"{problem_id}r{r}",
                        "problem_id": problem_id,
                        "problem": problem,
                        "response": f"Reasoning {r} about {topic}. \\boxed{{{t + p}}}" + " Again." * r,
                        "verdict": "correct" if r < 2 else "incorrect",
                    }
                )
    return make_samples(rows), problems


def test_grape_then_kmeans(make_samples, tmp_path: Path):
    table, problems = samples(make_samples)
    config = SelectConfig(
        steps=[GrapeStep(), KMeansStep(budget=Budget(rows=4), n_clusters=4)], embedding_cache_dir=tmp_path
    )
    result = select(table, config, generator=ScriptedGenerator(problems), prompt_fn=lambda problem: problem)
    assert result.counts == {"kept": 4, "grape_not_best": 12, "not_correct": 12, "not_selected": 8}
    assert set(result.table.column("selected_by").to_pylist()) == {"grape+kmeans"}
    # GRAPE's score survives the k-means step; selection_score is the last selector's.
    assert result.table.column("loglik_per_token").null_count == 0
    assert result.table.column("selection_score").to_pylist() != result.table.column("loglik_per_token").to_pylist()
    # One problem per topic: the four topics are the four clusters.
    assert sorted(pid[:2] for pid in result.table.column("problem_id").to_pylist()) == ["t0", "t1", "t2", "t3"]
    assert result.rejected.schema == REJECTED_SCHEMA
    assert result.rejected.num_rows == table.num_rows - 4
    assert set(result.rejected.column("stage").to_pylist()) == {"select.grape", "select.kmeans"}
    assert result.stats["1.kmeans.kept"] == 4


def test_kmeans_then_s2l_from_file(make_samples, tmp_path: Path):
    table, _ = samples(make_samples)
    ids = table.column("sample_id").to_pylist()
    trajectories = np.array([[1.0 + (i % 3), 0.5 + (i % 3)] for i in range(len(ids))], dtype=np.float32)
    write_trajectories(tmp_path / "t.parquet", ids, trajectories)
    config = SelectConfig(
        steps=[
            KMeansStep(budget=Budget(rows=24), n_clusters=4, text="response"),
            S2LStep(budget=Budget(rows=6), n_clusters=3, trajectories=tmp_path / "t.parquet"),
        ],
        embedding_cache_dir=tmp_path,
    )
    result = select(table, config)
    assert result.counts == {"kept": 6, "not_selected": 30}
    assert set(result.table.column("selected_by").to_pylist()) == {"kmeans+s2l"}
    assert sorted(int(s[-1]) for s in result.table.column("sample_id").to_pylist()) == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize(
    "last_step, error",
    [(GrapeStep(), ValueError), (S2LStep(budget=Budget(rows=1), trajectories=Path("/nonexistent.parquet")), FileNotFoundError)],
    ids=["grape_without_generator", "missing_trajectories"],
)
def test_unrunnable_steps_fail_before_any_work(make_samples, tmp_path: Path, last_step, error):
    table, _ = samples(make_samples)
    config = SelectConfig(steps=[KMeansStep(budget=Budget(rows=2)), last_step], embedding_cache_dir=tmp_path)
    with pytest.raises(error):
        select(table, config)
    assert not (tmp_path / "embeddings.sqlite").exists()


def test_missing_quality_column_fails_before_embedding(make_samples, tmp_path: Path):
    table, _ = samples(make_samples)
    config = SelectConfig(
        steps=[KMeansStep(budget=Budget(rows=2), within="quality", quality_column="pass_rate")], embedding_cache_dir=tmp_path
    )
    with pytest.raises(ValueError, match="nulls"):
        select(table, config)
    assert not (tmp_path / "embeddings.sqlite").exists()
