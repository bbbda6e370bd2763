"""finetune: column choice, CPU settings, and a real (tiny) TRL run whose model directory loads again."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mathforge.config import ConfigError
from mathforge.finetune import TrainConfig, cpu_has_native_bf16, load_rows, load_train_config, use_bf16

REPO = Path(__file__).resolve().parents[1]


def _rows(n: int, *, tokens: bool = False) -> list[dict]:
    rows = []
    for i in range(n):
        row = {
            "prompt": [{"role": "user", "content": f"What is {i} + {i}?"}],
            "completion": [{"role": "assistant", "content": f"{i} + {i} = {2 * i}. The answer is \\boxed{{{2 * i}}}."}],
            "verdict": "correct",
        }
        if tokens:
            row |= {"input_ids": [1, 2, 3], "completion_mask": [0, 1, 1]}
        rows.append(row)
    return rows


def test_rows_keep_only_what_trl_reads(tmp_path):
    pq.write_table(pa.Table.from_pylist(_rows(5)), tmp_path / "rows.parquet")
    rows = load_rows(TrainConfig(dataset=str(tmp_path / "rows.parquet"), max_rows=3))
    assert rows.column_names == ["prompt", "completion"] and len(rows) == 3


def test_pretokenized_columns_win_when_present(tmp_path):
    pq.write_table(pa.Table.from_pylist(_rows(2, tokens=True)), tmp_path / "rows.parquet")
    assert load_rows(TrainConfig(dataset=str(tmp_path / "rows.parquet"))).column_names == ["input_ids", "completion_mask"]
    forced = TrainConfig(dataset=str(tmp_path / "rows.parquet"), columns="prompt-completion")
    assert load_rows(forced).column_names == ["prompt", "completion"]


def test_missing_columns_and_files_are_named(tmp_path):
    pq.write_table(pa.table({"messages": ["x"]}), tmp_path / "rows.parquet")
    with pytest.raises(ConfigError, match=r"lacks the columns \['prompt', 'completion'\]"):
        load_rows(TrainConfig(dataset=str(tmp_path / "rows.parquet")))
    with pytest.raises(ConfigError, match="no input_ids/completion_mask"):
        load_rows(TrainConfig(dataset=str(tmp_path / "rows.parquet"), columns="tokenized"))
    with pytest.raises(ConfigError, match="neither an export directory nor a .parquet file"):
        load_rows(TrainConfig(dataset=str(tmp_path / "absent")))


def test_config_file_errors_name_the_key(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("dataset: x\nlearning_rate: fast\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        load_train_config(path)
    assert load_train_config(REPO / "configs" / "train_sft.yaml").precision == "auto"


def test_precision_follows_the_cpu():
    assert use_bf16("fp32") is False and use_bf16("bf16") is True
    assert use_bf16("auto") is cpu_has_native_bf16()


@pytest.mark.slow
@pytest.mark.integration
def test_tiny_training_run_saves_a_loadable_model(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mathforge.finetune import train

    pq.write_table(pa.Table.from_pylist(_rows(4)), tmp_path / "rows.parquet")
    result = train(
        TrainConfig(dataset=str(tmp_path / "rows.parquet"), output_dir=str(tmp_path / "model"), max_steps=2, batch_size=2, logging_steps=1)
    )
    assert result.n_steps == 2 and result.n_rows == 4 and len(result.losses) == 2
    assert json.loads((tmp_path / "model" / "train_summary.json").read_text())["n_steps"] == 2
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "model")
    assert tokenizer.chat_template
    AutoModelForCausalLM.from_pretrained(tmp_path / "model")


def test_train_layers_freezes_everything_below_the_top_layers():
    from transformers import LlamaConfig, LlamaForCausalLM

    from mathforge.finetune import freeze_below

    model = LlamaForCausalLM(
        LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=2)
    )
    freeze_below(model, 1)
    trained = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert trained and all(name.startswith(("model.layers.2.", "model.norm.")) for name in trained)
    assert "model.norm.weight" in trained
    with pytest.raises(ConfigError, match="exceeds the model's 3 decoder layers"):
        freeze_below(model, 4)
