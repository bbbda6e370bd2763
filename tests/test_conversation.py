"""The training contract of a row: which messages are context, which are learned, which tokens are masked."""

from __future__ import annotations

import json

import pytest

from mathforge import prompts
from mathforge.conversation import Conversation, row_conversation, row_kind, tokenize_conversation

PROMPTS = {"self-correction": "solve_cot", "tool-integrated": "solve_with_code", "cosc": "cosc_verify"}
CODE = "```python\nprint(6 * 7)\n```\n"


def row(strategy: str, response: str = "6 * 7 = 42, so \\boxed{42}.", trace: list | None = None) -> dict:
    return {
        "sample_id": f"{strategy}-0",
        "problem": "What is 6 times 7?",
        "response": response,
        "strategy": strategy,
        "trace_json": json.dumps(trace) if trace is not None else None,
    }


def contract(r: dict, system_prompt: str | None = None) -> Conversation:
    return row_conversation(r, prompt_by_strategy=PROMPTS, default_prompt="solve_cot", system_prompt=system_prompt)


def test_plain_rows_learn_their_response_after_system_and_user():
    conversation = contract(row("dart-uniform"), system_prompt="Be exact.")
    user = prompts.render("solve_cot", problem="What is 6 times 7?")
    assert conversation.prompt == [{"role": "system", "content": "Be exact."}, {"role": "user", "content": user}]
    assert conversation.completion == [{"role": "assistant", "content": "6 * 7 = 42, so \\boxed{42}."}]
    assert conversation.messages == conversation.prompt + conversation.completion
    assert (row_kind("dart-uniform"), row_kind("template-solution")) == ("cot", "template-solution")


def test_a_correction_learns_only_what_follows_the_feedback():
    attempt = {"role": "assistant", "content": "6 * 7 = 48, so \\boxed{48}."}
    feedback = {"role": "user", "content": "Your final answer, 48, is incorrect. Review your solution."}
    fixed = [{"role": "assistant", "content": CODE}, {"role": "tool", "content": "42"}, {"role": "assistant", "content": "\\boxed{42}"}]

    conversation = contract(row("self-correction", trace=[attempt, feedback, *fixed]))

    assert conversation.prompt[1:] == [attempt, feedback] and conversation.completion == fixed
    assert row_kind("self-correction") == "correction"


def test_fenced_outputs_become_tool_turns():
    text = CODE + "```output\n42\n```\nSo \\boxed{42}."
    conversation = contract(row("cosc", response=text, trace=[{"role": "assistant", "content": text}]))
    assert [m["role"] for m in conversation.completion] == ["assistant", "tool", "assistant"]
    assert conversation.completion[1]["content"] == "42"
    assert conversation.prompt[-1]["content"] == prompts.render("cosc_verify", problem="What is 6 times 7?")


@pytest.mark.parametrize(
    ("trace", "message"),
    [
        ("not json", "not JSON"),
        ([], "non-empty list"),
        ([{"role": "robot", "content": "x"}], r"trace_json\[0\]"),
        ([{"role": "assistant", "content": CODE}, {"role": "tool", "content": "42"}], "end with an assistant turn"),
    ],
    ids=["invalid-json", "empty", "unknown-role", "ends-with-tool"],
)
def test_a_malformed_trace_is_an_error_naming_the_row(trace, message):
    bad = row("tool-integrated")
    bad["trace_json"] = trace if isinstance(trace, str) else json.dumps(trace)
    with pytest.raises(ValueError, match=message) as error:
        contract(bad)
    assert "tool-integrated-0" in str(error.value)


@pytest.fixture(scope="module")
def tokenizer():
    from mathforge.generation.embedded import load_tokenizer
    from mathforge.generation.embedded import ModelNotAvailable

    try:
        return load_tokenizer("embedded:smollm2-135m-instruct")
    except ModelNotAvailable as error:
        pytest.skip(f"embedded model unavailable: {error}")


def test_tokens_are_learned_exactly_on_assistant_turns(tokenizer):
    completion = [
        {"role": "assistant", "content": "First:\n" + CODE},
        {"role": "tool", "content": "42"},
        {"role": "assistant", "content": "So \\boxed{42}."},
    ]
    conversation = Conversation(prompt=[{"role": "user", "content": "What is 6 times 7?"}], completion=completion)

    tokens = tokenize_conversation(tokenizer, conversation)

    assert tokenizer.decode(tokens.input_ids) == tokenizer.apply_chat_template(conversation.messages, tokenize=False)
    learned, run = [], []
    for token, bit in zip(tokens.input_ids, tokens.completion_mask):
        if bit:
            run.append(token)
        elif run:
            learned.append(tokenizer.decode(run))
            run = []
    learned += [tokenizer.decode(run)] if run else []
    # The tool turn and the assistant header the harness writes after it carry no loss.
    assert learned == ["First:\n" + CODE + "<|im_end|>\n", "So \\boxed{42}.<|im_end|>\n"]


def test_without_tool_turns_the_mask_is_trls_prompt_completion_mask(tokenizer):
    from trl.data_utils import common_prefix_length

    conversation = contract(row("dart-uniform"))
    prompt_ids = tokenizer.apply_chat_template(conversation.prompt, tokenize=True, return_dict=True, add_generation_prompt=True)["input_ids"]
    whole = tokenizer.apply_chat_template(conversation.messages, tokenize=True, return_dict=True)["input_ids"]
    start = common_prefix_length(prompt_ids, whole)

    tokens = tokenize_conversation(tokenizer, conversation)

    assert tokens.input_ids == list(whole)
    assert tokens.completion_mask == [0] * start + [1] * (len(whole) - start)


def test_template_code_rows_ask_for_code_and_the_tool_loop_shows_what_training_saw(tokenizer):
    from mathforge.synthesis.tool_loop import loop_prompt, output_block, to_turns

    shown = CODE + output_block("42")
    text = shown + "The answer is \\boxed{42}."
    conversation = contract(row("template-code", text, to_turns(text)))
    assert row_kind("template-code") == "tool"
    assert conversation.prompt[-1]["content"] == prompts.render("solve_with_code", problem="What is 6 times 7?")
    tokens = tokenize_conversation(tokenizer, conversation)
    last_learned = max(i for i, (m, prev) in enumerate(zip(tokens.completion_mask, [0, *tokens.completion_mask])) if m and not prev)

    def render(messages):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    # Evaluating with tools, the model continues from exactly the text it learned its final turn after.
    assert loop_prompt(render, conversation.prompt, shown, outputs_as_turns=True) == tokenizer.decode(tokens.input_ids[:last_learned])
    assert tokenizer.decode(tokens.input_ids[last_learned:]) == "The answer is \\boxed{42}.<|im_end|>\n"
