"""The tool-integrated loop on the scripted generator and the real sandbox: execution, batching, formats, re-execution."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from mathforge.export import sft_table
from mathforge.generation.base import Completion
from mathforge.generation.scripted import ScriptedGenerator
from mathforge.records import SAMPLE_SCHEMA, Problem, to_table
from mathforge.sandbox import SandboxConfig, SandboxPool
from mathforge.synthesis.self_correction import SelfCorrectionConfig, run_tool_traces
from mathforge.synthesis.tool_loop import (
    Cell,
    ToolLoopConfig,
    Trace,
    TraceTask,
    advance,
    closed_python_block,
    fenced_text,
    generate_traces,
    reexecute_check,
    to_turns,
)
from mathforge.verify import verify_answer

OUTPUTS = re.compile(r"```output\n(.*?)\n```\n", re.DOTALL)


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(SandboxConfig(n_workers=2)) as pool:
        yield pool


def verify_many(pairs):
    return [verify_answer(reference, response) for reference, response in pairs]


def outputs_in(text: str) -> list[str]:
    """The output blocks already in a prompt: what the sandbox has shown the model so far."""
    return OUTPUTS.findall(text)


def by_round(replies: dict[str, list]):
    """A script: for the problem whose marker is in the prompt, reply number len(outputs so far).

    A reply is a string or a function of the outputs so far; the last reply repeats.
    """

    def script(text, index, params):
        for marker, sequence in replies.items():
            if marker in text:
                outputs = outputs_in(text)
                reply = sequence[min(len(outputs), len(sequence) - 1)]
                return reply(outputs) if callable(reply) else reply
        return None

    return script


def answer_last_output(outputs):
    return f"The program printed {outputs[-1]}, so the answer is \\boxed{{{outputs[-1]}}}."


def problem(marker: str, answer: str, text: str = "") -> Problem:
    return Problem(problem_id=marker.strip("[]"), problem=f"{marker} {text}".strip(), answer=answer, source="test")


class RecordingGenerator(ScriptedGenerator):
    """The scripted generator, also recording how many prompts each call carried."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.batch_sizes: list[int] = []

    def generate(self, prompts, params):
        self.batch_sizes.append(len(prompts))
        return super().generate(prompts, params)


def test_an_output_the_model_cannot_know_is_in_the_trace_exactly_as_executed(pool):
    text = "[hash] Let h be the first 16 hex digits of the SHA-256 of the text of this problem. Find h."
    expected = hashlib.sha256(text.encode()).hexdigest()[:16]
    program = f"import hashlib\nprint(hashlib.sha256({text!r}.encode()).hexdigest()[:16])\n"
    # The first reply also makes up an output and an answer after the program: the loop must cut them.
    first = f"I will compute it.\n```python\n{program}```\n```output\n0123456789abcdef\n```\nSo \\boxed{{0123456789abcdef}}."
    generator = ScriptedGenerator(script=by_round({"[hash]": [first, answer_last_output]}))
    config = SelfCorrectionConfig(mode="tool")

    result = run_tool_traces(
        [Problem(problem_id="hash", problem=text, answer=expected, source="test")],
        generator,
        pool=pool,
        verify_many=verify_many,
        config=config,
    )

    assert result.counts == {"attempted": 1, "solved": 1, "kept": 1}
    (trace,) = result.kept
    assert outputs_in(trace.response) == [expected]
    assert "0123456789abcdef" not in trace.response
    assert trace.response == (
        f"I will compute it.\n```python\n{program}```\n```output\n{expected}\n```\n"
        f"The program printed {expected}, so the answer is \\boxed{{{expected}}}."
    )
    assert (trace.verdict, trace.extracted_answer, trace.n_rounds, trace.n_corrections) == ("correct", expected, 1, 0)
    # The default storage: the sandbox's output is a tool turn, never assistant text.
    assert json.loads(trace.trace_json) == to_turns(trace.response)
    assert [t["role"] for t in json.loads(trace.trace_json)] == ["assistant", "tool", "assistant"]
    assert reexecute_check(trace, pool=pool, config=config) == (True, "outputs_reproduced")


def test_state_persists_across_cells_and_a_timeout_restarts_the_interpreter(pool):
    replies = [
        "```python\nx = 6\nprint('stored')\n```\n",
        "```python\nprint(x * 7)\n```\n",
        "```python\ny = 1\nwhile True:\n    pass\n```\n",
        "```python\nprint(x)\n```\n",
        "```python\nx = 21\nprint(x * 2)\n```\n",
        answer_last_output,
    ]
    generator = ScriptedGenerator(script=by_round({"[state]": replies}))
    config = SelfCorrectionConfig(mode="tool", max_rounds=5, cell_timeout_s=1.0)

    result = run_tool_traces([problem("[state]", "42")], generator, pool=pool, verify_many=verify_many, config=config)

    (trace,) = result.kept
    assert outputs_in(trace.response) == [
        "stored",
        "42",
        "TimeoutError: the cell did not finish within 1 s\n(the interpreter was restarted: earlier variables are lost)",
        "NameError: name 'x' is not defined",
        "42",
    ]
    # Two cells ran after a failed one: after the timeout, and after the NameError.
    assert (trace.n_rounds, trace.n_corrections) == (5, 2)
    assert result.stats["cells_timeout"] == 1 and result.stats["cells_error"] == 1 and result.stats["cells_ok"] == 3


def test_all_active_traces_advance_in_one_generate_call(pool):
    # Problem k runs k cells before answering: 4 calls in all, not 1 + 2 + 3 + 4.
    replies = {
        f"[batch{k}]": [f"```python\nprint({k} * 10 + {i})\n```\n" for i in range(k)] + [answer_last_output]
        for k in range(1, 4)
    }
    replies["[batch0]"] = ["No code needed: \\boxed{0}."]
    generator = RecordingGenerator(script=by_round(replies))
    problems = [problem(f"[batch{k}]", str(k * 10 + k - 1) if k else "0") for k in range(4)]
    config = SelfCorrectionConfig(mode="tool")

    result = run_tool_traces(problems, generator, pool=pool, verify_many=verify_many, config=config)

    assert generator.batch_sizes == [4, 3, 2, 1]
    assert result.stats["generate_calls"] == 4 and result.stats["cells_run"] == 0 + 1 + 2 + 3
    # batch0 answers without code: in tool mode that is not a tool-integrated trace.
    assert result.counts == {"attempted": 4, "solved": 4, "kept": 3, "no_code_run": 1}
    assert [s.n_rounds for s in result.kept] == [1, 2, 3]


def test_waiting_traces_join_as_others_finish(pool):
    replies = {f"[queue{k}]": [f"```python\nprint({k})\n```\n"] * k + [answer_last_output] for k in range(1, 5)}
    generator = RecordingGenerator(script=by_round(replies))
    problems = [problem(f"[queue{k}]", str(k)) for k in range(1, 5)]
    config = SelfCorrectionConfig(mode="tool", max_active_traces=2)

    result = run_tool_traces(problems, generator, pool=pool, verify_many=verify_many, config=config)

    assert max(generator.batch_sizes) == 2
    assert sum(generator.batch_sizes) == 2 + 3 + 4 + 5  # every trace sent once per call it needed
    assert result.counts == {"attempted": 4, "solved": 4, "kept": 4}
    assert [s.problem_id for s in result.kept] == ["queue1", "queue2", "queue3", "queue4"]


def test_a_plain_fence_resumes_generation_and_a_block_closed_at_the_end_of_the_message_runs(pool):
    intended = "A table first:\n```\nn | n^2\n```\nNow the code:\n```python\nprint(9 ** 2)\n```"

    def script(text, index, params):
        written = text.split("[fence]\n", 1)[1]
        if outputs_in(written):
            return answer_last_output(outputs_in(written))
        return intended[len(written) :]

    generator = RecordingGenerator(script=script)
    config = SelfCorrectionConfig(mode="tool")

    result = run_tool_traces([problem("[fence]", "81")], generator, pool=pool, verify_many=verify_many, config=config)

    (trace,) = result.kept
    # Stops at the plain fence's opener and closer, then the python block ends the message: 4 calls.
    assert generator.batch_sizes == [1, 1, 1, 1]
    assert trace.response.startswith(intended + "\n```output\n81\n```\n")
    assert trace.n_rounds == 1


def test_the_messages_format_has_tool_turns_that_export_and_reexecute(pool):
    replies = ["Compute.\n```python\nprint(2 ** 10)\n```\n", "Check:\n```python\nprint(1024 % 7)\n```\n", answer_last_output]
    generator = ScriptedGenerator(script=by_round({"[messages]": replies}))
    config = SelfCorrectionConfig(mode="tool", format="messages")

    result = run_tool_traces([problem("[messages]", "2")], generator, pool=pool, verify_many=verify_many, config=config)

    (trace,) = result.kept
    turns = json.loads(trace.trace_json)
    assert [t["role"] for t in turns] == ["assistant", "tool", "assistant", "tool", "assistant"]
    assert [t["content"] for t in turns if t["role"] == "tool"] == ["1024", "2"]
    assert fenced_text(turns) == trace.response and to_turns(trace.response) == turns
    assert reexecute_check(trace, pool=pool, config=config) == (True, "outputs_reproduced")

    exported = sft_table(to_table([trace], SAMPLE_SCHEMA), prompt="solve_with_code", system_prompt=None).to_pylist()[0]
    messages = exported["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert messages[0]["content"].endswith("[messages]") and messages[2]["content"] == "1024"
    assert exported["prompt"] == messages[:1] and exported["completion"] == messages[1:]
    assert exported["row_kind"] == "tool"

    tampered = turns[:1] + [{"role": "tool", "content": "1023"}] + turns[2:]
    forged = trace.model_copy(update={"trace_json": json.dumps(tampered)})
    assert reexecute_check(forged, pool=pool, config=config) == (False, "output_mismatch")


def test_the_fenced_format_still_exports_outputs_as_tool_turns(pool):
    generator = ScriptedGenerator(script=by_round({"[fenced]": ["```python\nprint(6 * 7)\n```\n", answer_last_output]}))
    config = SelfCorrectionConfig(mode="tool", format="fenced")

    (trace,) = run_tool_traces([problem("[fenced]", "42")], generator, pool=pool, verify_many=verify_many, config=config).kept

    assert json.loads(trace.trace_json) == [{"role": "assistant", "content": trace.response}]
    exported = sft_table(to_table([trace], SAMPLE_SCHEMA), prompt="solve_with_code", system_prompt=None).to_pylist()[0]
    assert exported["completion"] == to_turns(trace.response)
    assert [m["role"] for m in exported["completion"]] == ["assistant", "tool", "assistant"]
    assert not any("```output" in m["content"] for m in exported["completion"])


def test_reexecution_rejects_edited_and_orphan_outputs_in_the_fenced_format(pool):
    generator = ScriptedGenerator(script=by_round({"[edit]": ["```python\nprint(6 * 7)\n```\n", answer_last_output]}))
    config = SelfCorrectionConfig(mode="tool", format="fenced")
    (trace,) = run_tool_traces([problem("[edit]", "42")], generator, pool=pool, verify_many=verify_many, config=config).kept

    def with_text(text):
        return trace.model_copy(update={"trace_json": json.dumps([{"role": "assistant", "content": text}])})

    assert reexecute_check(with_text(trace.response), pool=pool, config=config) == (True, "outputs_reproduced")
    edited = trace.response.replace("```output\n42\n", "```output\n43\n")
    assert reexecute_check(with_text(edited), pool=pool, config=config) == (False, "output_mismatch")
    orphan = "No code here.\n```output\n42\n```\n\\boxed{42}"
    assert reexecute_check(with_text(orphan).model_copy(update={"n_rounds": 1}), pool=pool, config=config) == (
        False,
        "output_mismatch",
    )


def test_advance_decides_from_the_text_and_the_budgets():
    config = ToolLoopConfig(max_rounds=1, max_tokens_per_round=50, max_total_tokens=60)

    def fresh():
        return Trace(TraceTask("t", ({"role": "user", "content": "q"},)))

    trace = fresh()
    assert advance(trace, Completion("a\n```python\nprint(1)\n```\n", 4, "stop", "```\n"), config, use_code=True) == "print(1)\n"
    assert trace.end is None
    trace.cells.append(Cell("print(1)\n", "ok", "1"))  # one cell run: asking for another exceeds max_rounds
    assert advance(trace, Completion("```python\nprint(2)\n```\n", 3, "stop", "```\n"), config, use_code=True) is None
    assert trace.end == "max_rounds_exceeded"

    trace = fresh()
    assert advance(trace, Completion("a table\n```\n", 3, "stop", "```\n"), config, use_code=True) is None
    assert trace.end is None  # a plain fence: keep generating
    assert advance(trace, Completion("done \\boxed{1}", 2, "stop", None), config, use_code=True) is None
    assert trace.end == "answered"

    trace = fresh()
    assert advance(trace, Completion("it prints\n```output", 3, "stop", "```output"), config, use_code=True) is None
    assert trace.end == "fabricated_output"

    trace = fresh()
    trace.n_tokens = 55  # 5 left of the trace's budget, though the call allowed more
    assert advance(trace, Completion("six words of text right here", 6, "stop", None), config, use_code=True) is None
    assert trace.end == "truncated"

    trace = fresh()
    assert advance(trace, Completion("cut", 50, "length", None), config, use_code=False) is None
    assert trace.end == "truncated"

    # Regression (the demo's CoSC stage crashed asking for max_tokens=0): a plain fence that spends
    # exactly the last of the trace's budget ends it instead of resuming with nothing left.
    trace = fresh()
    trace.n_tokens = 57
    assert advance(trace, Completion("a table\n```\n", 3, "stop", "```\n"), config, use_code=True) is None
    assert trace.end == "truncated"


def test_closed_python_block_only_matches_a_block_at_the_end():
    assert closed_python_block("x\n```python\nprint(1)\n```\n") == "print(1)\n"
    assert closed_python_block("```python\nprint(1)\n```") == "print(1)\n"
    assert closed_python_block("```python\nprint(1)\n```\nmore text") is None
    assert closed_python_block("```\nplain\n```\n") is None


def test_the_total_token_budget_spans_calls(pool):
    words = " ".join(["word"] * 20)
    replies = [f"{words}\n```python\nprint(1)\n```\n", f"{words} \\boxed{{1}}"]
    generator = ScriptedGenerator(script=by_round({"[budget]": replies}))
    config = ToolLoopConfig(max_tokens_per_round=100, max_total_tokens=30)
    task = TraceTask("budget", ({"role": "user", "content": "[budget]"},))

    (trace,), stats = generate_traces([task], generator, pool=pool, config=config)

    assert (trace.end, len(trace.cells), stats["generate_calls"]) == ("truncated", 1, 2)
    assert trace.n_tokens == 30  # the second call was cut at the 7 tokens left



def test_a_trace_left_without_budget_after_a_cell_is_truncated(pool):
    reply = " ".join(["word"] * 27) + "\n```python\nprint(1)\n```\n"  # 30 whitespace tokens
    generator = ScriptedGenerator(script=by_round({"[spent]": [reply, "\\boxed{1}"]}))
    config = ToolLoopConfig(max_tokens_per_round=100, max_total_tokens=30)
    task = TraceTask("spent", ({"role": "user", "content": "[spent]"},))

    (trace,), stats = generate_traces([task], generator, pool=pool, config=config)

    assert (trace.end, len(trace.cells), trace.n_tokens, stats["generate_calls"]) == ("truncated", 1, 30, 1)

@pytest.mark.integration
def test_traces_from_the_real_engine_hold_only_real_outputs(vllm_generator, pool):
    problems = [
        problem("[p1]", "391", "What is 17 times 23? Use Python."),
        problem("[p2]", "120", "What is 5 factorial? Use Python."),
        problem("[p3]", "12", "A box holds 3 rows of 4 eggs. How many eggs are in the box? Use Python."),
    ]
    config = SelfCorrectionConfig(mode="tool", max_rounds=2, max_tokens_per_round=128, max_total_tokens=256, temperature=0.0)

    result = run_tool_traces(problems, vllm_generator, pool=pool, verify_many=verify_many, config=config)

    drops = {k: v for k, v in result.counts.items() if k not in {"attempted", "solved", "kept"}}
    assert result.counts["attempted"] == 3 == result.counts["kept"] + sum(drops.values())
    for sample in result.kept + result.dropped:
        if sample.n_rounds and sample.verdict_reason != "fabricated_output":
            assert reexecute_check(sample, pool=pool, config=config) == (True, "outputs_reproduced"), sample.response
