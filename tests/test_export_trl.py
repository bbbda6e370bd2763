"""Exports train exactly what they should: a real TRL SFTTrainer on the embedded SmolLM2 (issue 15).

Rows of every kind are made by the real stage functions (scripted model,
real sandbox and verifier) and exported with the default output settings; TRL
1.16's SFTTrainer prepares them without a formatting function, and the batches
its collator produces are checked token by token: the labelled tokens are
exactly the assistant turns of each row's completion (each with its
end-of-turn), nothing of a system/user turn, a wrong attempt, the verifier's
feedback or a sandbox output. CPU settings from DESIGN.md "TRL on these
machines": bf16=False, gradient_checkpointing=False.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("trl")

from mathforge.config import OutputConfig
from mathforge.export import export_dataset
from mathforge.generation.embedded import DEFAULT_MODEL, ModelNotAvailable, prepare_model
from mathforge.generation.scripted import ScriptedGenerator, ScriptedProblem
from mathforge.prompts import chat
from mathforge.sandbox import SandboxConfig, SandboxPool
from mathforge.synthesis.dart import DartConfig, run_dart
from mathforge.synthesis.self_correction import SelfCorrectionConfig, prompt_by_strategy, run_self_correction
from mathforge.synthesis.template_files import load_authored_templates
from mathforge.synthesis.template_solutions import code_samples, solution_samples
from mathforge.synthesis.templates import TemplateSynthesisConfig, instantiate
from mathforge.verify import verify_answer

pytestmark = pytest.mark.slow

TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "configs" / "templates"
ROW_KINDS = {"cot", "template-solution", "correction", "tool", "cosc"}
OUTPUTS = re.compile(r"```output\n(.*?)\n```\n", re.DOTALL)
END_OF_TURN = "<|im_end|>\n"  # SmolLM2's chat template closes every message with it


def verify_many(pairs):
    return [verify_answer(reference, response) for reference, response in pairs]


@pytest.fixture(scope="module")
def model_dir() -> Path:
    try:
        return prepare_model()
    except ModelNotAvailable as error:
        pytest.skip(f"embedded model unavailable: {error}")


def _template_problems(pool, templates: list[str] | None, n: int, seed: int):
    chosen = load_authored_templates(TEMPLATES_DIR, ids=templates)
    return instantiate(chosen, n_per_template=n, seed=seed, pool=pool, config=TemplateSynthesisConfig()).problems


def _trace_script(problems):
    """A scripted model that solves with code: a first program, then (CoSC) a verification that revises it."""
    by_text = sorted(problems, key=lambda p: len(p.problem), reverse=True)

    def script(text, index, params):
        problem = next((p for p in by_text if p.problem in text), None)
        if problem is None:
            return None
        outputs = OUTPUTS.findall(text.split(problem.problem)[-1])
        program = f"```python\nanswer = {problem.answer!r}\nprint(answer)\n```\n"
        if '"Conclusion:"' in text:  # the CoSC prompt asks for stages
            if not outputs:
                return "First I compute the total.\n```python\nprint(0)\n```\n"
            if len(outputs) == 1:
                return "Verification: the program printed 0, which ignores the quantities given. Revising.\n" + program
            return f"Verification: the program uses every quantity.\nConclusion: \\boxed{{{problem.answer}}}."
        if not outputs:
            return "Let me compute it.\n" + program
        return f"The program printed {outputs[-1]}, so the answer is \\boxed{{{outputs[-1]}}}."

    return script


@pytest.fixture(scope="module")
def export(tmp_path_factory, model_dir) -> tuple[Path, OutputConfig]:
    """An export holding every row kind, built by the stage functions and written with the default output settings."""
    output = OutputConfig()
    with SandboxPool(SandboxConfig(n_workers=1)) as pool:
        problems = _template_problems(pool, ["money_change", "ratio_share", "ages_multiple", "rates_two_legs"], 1, 7)
        solutions = solution_samples(problems, verify_many=verify_many, prompt=output.prompt).samples
        solutions += code_samples(problems, pool=pool, verify_many=verify_many).samples
        sampler = ScriptedGenerator(
            [ScriptedProblem(p.problem_id, p.problem, p.answer) for p in problems], pass_rate=0.5, seed=3, malformed_rate=0.0, truncated_rate=0.0
        )
        dart = run_dart(
            problems,
            sampler,
            verify_many,
            DartConfig(k_uniform=1, n_max=4, max_per_round=4, keep_negatives=True),
            prompt_fn=lambda p: chat("solve_cot", problem=p.problem),
        )
        traces = ScriptedGenerator(script=_trace_script(problems))
        kept = []
        for config in (SelfCorrectionConfig(), SelfCorrectionConfig(mode="tool"), SelfCorrectionConfig(mode="correction")):
            result = run_self_correction(problems, dart.negatives, traces, pool=pool, verify_many=verify_many, config=config)
            assert result.kept, (config.mode, result.counts)
            kept += result.kept
    import pyarrow as pa

    from mathforge.records import SAMPLE_SCHEMA, to_table

    samples = pa.concat_tables([to_table(rows, SAMPLE_SCHEMA) for rows in (dart.accepted, solutions, kept)])
    path = export_dataset(
        samples,
        export_dir=tmp_path_factory.mktemp("exports"),
        version="v1",
        prompt=output.prompt,
        system_prompt=output.system_prompt,
        prompt_by_strategy=prompt_by_strategy(SelfCorrectionConfig().attempt_prompt),
        query_info=None,
        manifests=[],
        meta={"name": "trl-contract", "model": DEFAULT_MODEL},
        tokenizer=output.tokenizer_model("vllm", DEFAULT_MODEL),
    )
    return path, output


def _sft_args(tmp_path: Path, **overrides):
    from trl import SFTConfig

    options = {
        "output_dir": str(tmp_path),
        "per_device_train_batch_size": 4,
        "max_steps": 2,
        "learning_rate": 1e-5,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "bf16": False,
        "gradient_checkpointing": False,
        "seed": 0,
    }
    return SFTConfig(**(options | overrides))


def _spans(labels: list[int]) -> list[tuple[int, int]]:
    """[start, end) runs of labelled positions."""
    spans, start = [], None
    for i, label in enumerate([*labels, -100]):
        if label != -100 and start is None:
            start = i
        elif label == -100 and start is not None:
            spans.append((start, i))
            start = None
    return spans


def test_trl_labels_exactly_the_learned_turns_of_every_row_kind(export, model_dir, tmp_path):
    import datasets
    from transformers import AutoTokenizer
    from trl import SFTTrainer
    from trl.data_utils import is_conversational

    path, output = export
    dataset = datasets.load_from_disk(str(path))
    assert set(dataset["row_kind"]) == ROW_KINDS
    assert all(is_conversational(row) for row in dataset.select_columns(["prompt", "completion"]))
    assert {"input_ids", "completion_mask"} <= set(dataset.column_names)
    card = (path / "README.md").read_text()
    for kind, n in Counter(dataset["row_kind"]).items():
        assert f"| {kind} | {n} |" in card

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    trainer = SFTTrainer(model=str(model_dir), args=_sft_args(tmp_path), train_dataset=dataset, processing_class=tokenizer)
    rows = {tuple(row["input_ids"]): row for row in dataset}
    seen: Counter[str] = Counter()
    for batch in trainer.get_train_dataloader():
        for input_ids, attention_mask, labels in zip(batch["input_ids"], batch["attention_mask"], batch["labels"]):
            n = int(attention_mask.sum())
            ids, labels = input_ids[:n].tolist(), labels.tolist()
            assert set(labels[n:]) <= {-100}
            row = rows[tuple(ids)]
            seen[row["row_kind"]] += 1
            # The model reads the whole conversation as its chat template renders it ...
            assert tokenizer.decode(ids) == tokenizer.apply_chat_template(row["messages"], tokenize=False)
            labels = labels[:n]
            assert all(label in (-100, token) for label, token in zip(labels, ids))
            # ... and learns exactly its assistant turns, each with its end-of-turn: no system or user turn,
            # no wrong attempt, no feedback (all in `prompt`), no tool turn.
            learned = [tokenizer.decode(ids[a:b]) for a, b in _spans(labels)]
            expected = [m["content"] + END_OF_TURN for m in row["completion"] if m["role"] == "assistant"]
            assert learned == expected, row["row_kind"]
            text = "".join(learned)
            assert "<|im_start|>" not in text and "```output" not in text
            for message in row["prompt"]:
                assert message["content"] not in text, (row["row_kind"], message["role"])
            if row["row_kind"] == "correction":
                attempt, feedback = row["prompt"][-2:]
                assert attempt["role"] == "assistant" and "\\boxed{" in attempt["content"]
                assert feedback["role"] == "user" and "is incorrect" in feedback["content"]
            if row["row_kind"] in ("tool", "cosc", "correction"):
                assert any(m["role"] == "tool" for m in row["completion"])
    assert seen == Counter(dataset["row_kind"])

    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2 and all(loss > 0 for loss in losses)


def test_without_pre_tokenized_columns_trl_labels_the_same_tokens_except_tool_outputs(export, model_dir, tmp_path):
    """TRL's own prompt–completion tokenization agrees with ours on rows without tool turns, and trains
    on tool outputs in the others: why the default export pre-tokenizes."""
    import datasets
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    path, _ = export
    dataset = datasets.load_from_disk(str(path))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    plain = dataset.remove_columns(["input_ids", "completion_mask"])
    trainer = SFTTrainer(model=str(model_dir), args=_sft_args(tmp_path), train_dataset=plain, processing_class=tokenizer)
    prepared = {tuple(row["input_ids"]): row["labels"] for row in trainer.train_dataset}
    for row in dataset:
        trl_labels = prepared[tuple(row["input_ids"])]
        ours = [token if bit else -100 for token, bit in zip(row["input_ids"], row["completion_mask"])]
        has_tool_turns = any(m["role"] == "tool" for m in row["completion"])
        assert (trl_labels == ours) is not has_tool_turns, row["row_kind"]
        if has_tool_turns:
            extra = [i for i, (a, b) in enumerate(zip(trl_labels, ours)) if a != b]
            assert "<|im_start|>tool" in tokenizer.decode([row["input_ids"][i] for i in extra])


def test_loss_falls_over_30_steps_on_64_template_rows(model_dir, tmp_path):
    import datasets
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    output = OutputConfig()
    with SandboxPool(SandboxConfig(n_workers=1)) as pool:
        problems = _template_problems(pool, None, 6, 11)
    rows = solution_samples(problems, verify_many=verify_many, prompt=output.prompt).samples[:64]
    assert len(rows) == 64
    from mathforge.records import SAMPLE_SCHEMA, to_table

    path = export_dataset(
        to_table(rows, SAMPLE_SCHEMA),
        export_dir=tmp_path / "exports",
        version="v1",
        prompt=output.prompt,
        system_prompt=output.system_prompt,
        query_info=None,
        manifests=[],
        meta={"name": "template-rows", "model": DEFAULT_MODEL},
        tokenizer=output.tokenizer_model("vllm", DEFAULT_MODEL),
    )
    dataset = datasets.load_from_disk(str(path))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    args = _sft_args(
        tmp_path / "out", max_steps=30, per_device_train_batch_size=2, learning_rate=1e-4, lr_scheduler_type="constant"
    )
    trainer = SFTTrainer(model=str(model_dir), args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    print("losses=" + " ".join(f"{loss:.3f}" for loss in losses))
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    print(f"steps={len(losses)} rows={dataset.num_rows} loss_first5={first:.3f} loss_last5={last:.3f}")
    assert len(losses) == 30
    assert last < 0.7 * first
