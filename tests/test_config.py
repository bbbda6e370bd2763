"""config.py: YAML validation with errors naming the file and the key."""

from pathlib import Path

import pytest
import yaml

from mathforge.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]


def test_every_shipped_config_loads():
    from mathforge.evaluate import load_evaluate_config
    from mathforge.finetune import load_train_config

    # Evaluation and training jobs are named by prefix; every other file is a build.
    loaders = {"eval": load_evaluate_config, "train": load_train_config}
    for path in sorted((REPO / "configs").glob("*.yaml")):
        loaders.get(path.stem.split("_")[0], load_config)(path)


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _demo() -> dict:
    return yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())


def test_unknown_key_names_file_and_key(tmp_path):
    data = _demo()
    data["sampling"]["k_uniformm"] = 3
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(path) in str(error.value)
    assert "sampling.k_uniformm" in str(error.value)


def test_wrong_type_names_the_key(tmp_path):
    data = _demo()
    data["generation"]["engine"]["seed"] = "zero"
    with pytest.raises(ConfigError, match=r"generation\.engine\.seed"):
        load_config(_write(tmp_path, data))


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_overrides_merge_into_sections():
    config = load_config(REPO / "configs" / "demo.yaml", {"run": {"name": "other"}})
    assert config.run.name == "other"
    assert config.run.runs_dir == "data/runs"
