"""The training contract of an exported row: which messages are context and which are learned.

One rendering serves the export, GRAPE scoring and evaluation/training, so what
is scored is what is trained. A row becomes a `Conversation`: `prompt` (the
context, no loss) and `completion` (what the model learns), the conversational
prompt–completion format TRL's SFTTrainer reads natively (it tokenizes the
prompt with the generation prompt, then prompt + completion, and labels only
the completion).

Row kinds (from the row's `strategy`) and their contract:

| kind | strategy | prompt (context, no loss) | completion (learned) |
|---|---|---|---|
| cot | 'dart-*', 'generate', ... | [system], user (the prompt the row was sampled with) | the assistant's solution |
| template-solution | 'template-solution' | [system], user (`output.prompt`) | the template's rendered solution, answer computed by its program |
| correction | 'self-correction' | [system], user, the model's wrong attempt (assistant), the verifier's feedback (user) | the corrected solution: assistant turns, sandbox outputs as `tool` turns |
| tool | 'tool-integrated', 'template-code' | [system], user | assistant turns (reasoning, code, final answer) with sandbox outputs as `tool` turns |
| cosc | 'cosc' | [system], user | one intrinsic self-correcting answer: programs, `tool` outputs, verifications, conclusion |

Template code rows ('template-code') always open with `CODE_PROMPT`, the
prompt that asks for code, whatever the export's default prompt is.

A trace (`trace_json`) is split after its last user turn: everything before is
context. Sandbox outputs are always `tool` messages, never assistant text: a
trace stored in the fenced format (outputs as ```output blocks inside the
assistant text) is split into assistant and tool turns here.

Tool turns sit inside a completion, so TRL's prompt–completion loss would
train on them; `tokenize_conversation` gives `input_ids` plus a
`completion_mask` that is 0 on them (and on the assistant header that follows,
which the inference harness writes, not the model). TRL uses such pre-tokenized
columns as they are (a dataset with `input_ids` is not re-tokenized; with
`prompt` and `completion` present, `completion_mask` decides the labels).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from mathforge import prompts
from mathforge.synthesis.tool_loop import fenced_text, to_turns

Message = dict[str, str]
RowKind = Literal["cot", "template-solution", "correction", "tool", "cosc"]

#: Strategy of template-solution rows (template instances whose rendered solution is the response).
TEMPLATE_SOLUTION_STRATEGY = "template-solution"

#: Strategy of template code rows (an instance's program, its sandbox output, the answer: synthesis.template_solutions).
TEMPLATE_CODE_STRATEGY = "template-code"
#: The user turn of template code rows: a prompt that asks for code.
CODE_PROMPT = "solve_with_code"

#: Row kind of each strategy that is not plain chain of thought.
ROW_KINDS: dict[str, RowKind] = {
    TEMPLATE_SOLUTION_STRATEGY: "template-solution",
    TEMPLATE_CODE_STRATEGY: "tool",
    "self-correction": "correction",
    "tool-integrated": "tool",
    "cosc": "cosc",
}

#: What each row kind trains on (the dataset card's `train_on` column).
TRAIN_ON: dict[RowKind, str] = {
    "cot": "the assistant's solution; system and user turns are context",
    "template-solution": "the template's rendered solution (answer computed by its program); system and user turns are context",
    "correction": "the corrected solution only; the wrong attempt and the verifier's feedback are context (no loss), "
    "sandbox outputs are tool turns",
    "tool": "the assistant's reasoning, code and final answer; sandbox outputs are tool turns",
    "cosc": "the whole self-correcting answer (programs, verifications, conclusion); sandbox outputs are tool turns",
}

_ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class Conversation:
    """One training row: `prompt` is context (no loss), `completion` is learned (tool turns in it masked)."""

    prompt: list[Message]
    completion: list[Message]

    @property
    def messages(self) -> list[Message]:
        """The whole conversation: prompt then completion."""
        return [*self.prompt, *self.completion]


@dataclass(frozen=True)
class TokenizedConversation:
    """Token ids of a rendered conversation and the mask of the tokens to learn.

    `completion_mask` is 1 exactly on learned tokens: 0 on the prompt, and on
    each tool message (its role header included) plus the assistant header
    that follows it.
    """

    input_ids: list[int]
    completion_mask: list[int]


def row_kind(strategy: str) -> RowKind:
    """The row kind of a strategy: 'cot' unless it is a template solution or a trace mode."""
    return ROW_KINDS.get(strategy, "cot")


def row_conversation(
    row: Mapping[str, Any],
    *,
    prompt_by_strategy: Mapping[str, str],
    default_prompt: str,
    system_prompt: str | None,
) -> Conversation:
    """The contract of one exported row (reads problem, response, strategy, trace_json, sample_id).

    The first user turn renders the prompt template the row's strategy was
    generated with (`prompt_by_strategy`, else `CODE_PROMPT` for template
    code rows, else `default_prompt`). A row with
    a `trace_json` (a JSON list of {role, content} after that user turn)
    learns the turns after its last user turn; the turns up to it (a wrong
    attempt, the verifier's feedback) join the prompt. Other rows learn
    `response` as one assistant turn. Raises ValueError naming the row on a
    malformed trace.
    """
    head: list[Message] = [{"role": "system", "content": system_prompt}] if system_prompt else []
    fixed = {TEMPLATE_CODE_STRATEGY: CODE_PROMPT}
    template = prompt_by_strategy.get(row["strategy"]) or fixed.get(row["strategy"], default_prompt)
    head.append({"role": "user", "content": prompts.render(template, problem=row["problem"])})
    if not row.get("trace_json"):
        return Conversation(prompt=head, completion=[{"role": "assistant", "content": row["response"]}])
    turns = _trace_turns(row)
    last_user = max((i for i, turn in enumerate(turns) if turn["role"] == "user"), default=-1)
    # Outputs stored inside assistant text (fenced format) become tool turns.
    completion = to_turns(fenced_text(turns[last_user + 1 :]))
    if not completion or completion[-1]["role"] != "assistant":
        raise ValueError(f"row {row.get('sample_id')}: trace_json must end with an assistant turn after its last user turn")
    return Conversation(prompt=head + turns[: last_user + 1], completion=completion)


def _trace_turns(row: Mapping[str, Any]) -> list[Message]:
    """The messages of a row's `trace_json`, checked: a list of {role, content} with known roles."""
    where = f"row {row.get('sample_id')}: trace_json"
    try:
        turns = json.loads(row["trace_json"])
    except json.JSONDecodeError as error:
        raise ValueError(f"{where} is not JSON: {error}") from None
    if not isinstance(turns, list) or not turns:
        raise ValueError(f"{where} must be a non-empty list of messages")
    for index, turn in enumerate(turns):
        if not isinstance(turn, dict) or turn.get("role") not in _ROLES or not isinstance(turn.get("content"), str):
            raise ValueError(f"{where}[{index}] must be {{role: one of {_ROLES}, content: text}}, got {turn!r}")
    return [{"role": turn["role"], "content": turn["content"]} for turn in turns]


def _render_ids(tokenizer: Any, messages: list[Message], *, add_generation_prompt: bool) -> list[int]:
    encoded = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, add_generation_prompt=add_generation_prompt
    )
    return list(encoded["input_ids"])


def _common_prefix(ids: list[int], other: list[int]) -> int:
    length = 0
    for token, other_token in zip(ids, other):
        if token != other_token:
            break
        length += 1
    return length


def tokenize_conversation(tokenizer: Any, conversation: Conversation) -> TokenizedConversation:
    """Render a conversation with the tokenizer's own chat template; mask everything not learned.

    As TRL tokenizes a conversational prompt–completion row: the prompt with
    the generation prompt, then prompt + completion; the completion starts
    where the two token sequences diverge (`trl.data_utils.common_prefix_length`),
    so rows without tool turns get exactly TRL's own ids and mask. Each tool
    message in the completion (role header included), and the assistant
    generation prompt after it, gets mask 0: the sandbox wrote them, not the
    model. Raises ValueError when the template does not render a conversation
    up to a tool turn as a prefix of the whole (the mask would be ambiguous).
    """
    messages = conversation.messages
    input_ids = _render_ids(tokenizer, messages, add_generation_prompt=False)
    prompt_ids = _render_ids(tokenizer, conversation.prompt, add_generation_prompt=True)
    start = _common_prefix(prompt_ids, input_ids)
    mask = [0] * start + [1] * (len(input_ids) - start)
    n_prompt = len(conversation.prompt)
    for index, message in enumerate(conversation.completion):
        if message["role"] != "tool":
            continue
        before = _render_ids(tokenizer, messages[: n_prompt + index], add_generation_prompt=False)
        has_reply = index + 1 < len(conversation.completion) and conversation.completion[index + 1]["role"] == "assistant"
        through = _render_ids(tokenizer, messages[: n_prompt + index + 1], add_generation_prompt=has_reply)
        end = _common_prefix(through, input_ids)
        if end < len(through):
            raise ValueError(
                "the chat template renders the conversation up to a tool turn differently from the whole "
                f"conversation (first difference at token {end}); cannot mask the tool output"
            )
        begin = _common_prefix(before, input_ids)
        mask[begin:end] = [0] * (end - begin)
    return TokenizedConversation(input_ids=input_ids, completion_mask=mask)
