"""Tool-integrated generation: the model writes Python, a sandbox runs it, the real output goes back.

The generation loop of ToRA (Gou et al., 2024) and DotaMath (Li et al., 2024),
which CoSC (Gao et al., 2024) traces are made with too. A trace is one
assistant message in the fenced format:

    reasoning ```python
    <code>
    ```
    ```output
    <what the sandbox printed>
    ```
    more reasoning, another program, ... the final answer in \\boxed{}.

Generation stops right after a python block closes; the loop runs the block in
the trace's own sandbox session (variables persist across cells), appends the
output block and generates again, until the model ends its message, a limit is
hit, or it breaks the protocol. Many traces advance together: each iteration is
one `generate` call for every active trace, then one parallel wave of cell
executions, so the engine always sees the whole batch.

Continuing a partial assistant message needs a raw-text prompt: the rendered
chat prefix (chat template plus generation prompt) followed by the text so far.
`render` makes that prefix; by default the generator's own `render` (the vLLM
backend has one), else a plain newline join of the messages (enough for the
scripted generator, whose scripts read the flattened text). With
`outputs_as_turns` the outputs so far are rendered as `tool` messages instead
of fenced text inside the assistant message: the layout of an exported row
(`mathforge.conversation`), which a model fine-tuned on the export expects.

What differs from ToRA and DotaMath:
- They stop on "```output", which a model trained on the format writes after
  every program; a general instruct model does not, so the loop stops at the
  block's closing fence instead (stop string "```\\n", kept in the output; the
  opener "```python\\n" does not contain it). A fence that closes something
  other than a python block just resumes generation.
- A model that writes an ```output block itself (not right after a python
  block, where generation has already stopped) is making up an execution
  result: the trace ends ('fabricated_output'). "```output" is a stop string
  too, so such a call ends there.
- A cell that times out or ends the interpreter (a signal, `sys.exit`) gets a
  fresh interpreter for the next cell, and its output says that earlier
  variables are lost. Timed-out cells show only the timeout (partial output
  depends on timing), so a re-execution reproduces every shown output exactly;
  `reexecute_check` relies on that.
- Shown outputs never contain "```" (replaced by "'''"), so the fenced text
  parses back into cells unambiguously.
"""

from __future__ import annotations

import json
import re
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

from pydantic import Field

from mathforge.section import Section
from mathforge.generation.base import ChatMessage, Completion, GenerationParams, Generator

if TYPE_CHECKING:
    from mathforge.records import Sample
    from mathforge.sandbox import ExecutionResult, SandboxPool, SandboxSession

#: Turns chat messages into the raw text the model continues (chat template and generation prompt).
Render = Callable[[list[ChatMessage]], str]

FENCE_STOP = "```\n"
OUTPUT_OPENER = "```output"
STOP_STRINGS = (FENCE_STOP, OUTPUT_OPENER)
_PYTHON_OPENER = "```python"
_CLOSED_PYTHON_BLOCK = re.compile(r"```python[^\n]*\n(.*?)```[ \t]*\n?\Z", re.DOTALL)
_OUTPUT_BLOCK = re.compile(r"```output\n(.*?)\n```\n", re.DOTALL)
_RESTART_NOTE = "(the interpreter was restarted: earlier variables are lost)"


class ToolLoopConfig(Section):
    """Limits and sampling of the tool-integrated generation loop."""

    max_rounds: int = Field(
        default=4,
        ge=1,
        description="Most code cells one trace may run; a trace that asks for one more is dropped (max_rounds_exceeded).",
    )
    max_tokens_per_round: int = Field(
        default=512,
        ge=1,
        description="Most tokens one generation call adds to a trace (it stops at a code block's end or the message's end).",
    )
    max_total_tokens: int = Field(
        default=1536,
        ge=1,
        description="Most generated tokens in a whole trace, all calls together; beyond it the trace is dropped (truncated).",
    )
    cell_timeout_s: float = Field(
        default=5.0,
        gt=0.0,
        description="Wall-clock limit of one code cell, seconds; a timed-out cell restarts the trace's interpreter.",
    )
    max_output_chars: int = Field(
        default=1000,
        ge=64,
        description="Longest output shown to the model per cell, characters; longer output keeps its head and tail.",
    )
    max_active_traces: int = Field(
        default=32,
        ge=1,
        description="Traces in flight at once (each holds a sandbox session); the others wait and join as traces finish.",
    )
    temperature: float = Field(default=0.7, ge=0.0, description="Sampling temperature.")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, description="Nucleus sampling.")
    seed: int = Field(default=0, description="Seed sent with every generation call (backends that honour per-call seeds).")

    def params(self, *, max_tokens: int, use_code: bool) -> GenerationParams:
        """Sampling parameters of one loop call; with code, generation stops after each python block."""
        return GenerationParams(
            n=1,
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=max_tokens,
            stop=STOP_STRINGS if use_code else (),
            include_stop_str_in_output=use_code,
            seed=self.seed,
        )


@dataclass(frozen=True)
class TraceTask:
    """One trace to generate: an id for bookkeeping and the chat messages before the assistant turn."""

    task_id: str
    messages: tuple[ChatMessage, ...]


@dataclass(frozen=True)
class Cell:
    """One executed code cell: the code, how it ended, and the output shown to the model."""

    code: str
    status: str
    output: str


@dataclass
class Trace:
    """A trace being generated or finished.

    `end` is None while it runs, 'answered' when the model ended its message,
    else why it was cut: 'truncated', 'max_rounds_exceeded' or 'fabricated_output'.
    """

    task: TraceTask
    text: str = ""
    cells: list[Cell] = field(default_factory=list)
    n_tokens: int = 0
    n_calls: int = 0
    end: str | None = None
    segment_start: int = 0

    @property
    def segment(self) -> str:
        """Text generated since the last real output block (the part the model is still writing)."""
        return self.text[self.segment_start :]


def join_messages(messages: list[ChatMessage]) -> str:
    """Default `render`: message contents joined by newlines, then a newline (no chat template)."""
    return "\n".join(message["content"] for message in messages) + "\n"


def loop_prompt(render: Render, messages: list[ChatMessage], text: str, *, outputs_as_turns: bool) -> str:
    """The raw text the model continues: the rendered messages, then the trace so far.

    With `outputs_as_turns`, the trace up to its last output block becomes
    assistant and `tool` messages (rendered with the chat template, ending in
    the generation prompt of the next assistant turn) and only the text after
    it is appended raw.

    >>> loop_prompt(join_messages, [{"role": "user", "content": "Q"}], "```python\\nprint(2)\\n```\\n```output\\n2\\n```\\nSo", outputs_as_turns=True)
    'Q\\n```python\\nprint(2)\\n```\\n\\n2\\nSo'
    """
    last = None
    if outputs_as_turns:
        for last in _OUTPUT_BLOCK.finditer(text):
            pass
    if last is None:
        return render(messages) + text
    return render([*messages, *to_turns(text[: last.end()])]) + text[last.end() :]


def closed_python_block(segment: str) -> str | None:
    """Return the code of the python block `segment` ends with, or None if it does not end with one.

    >>> closed_python_block("First:\\n```python\\nprint(6 * 7)\\n```\\n")
    'print(6 * 7)\\n'
    >>> closed_python_block("```python\\nprint(1)\\n") is None
    True
    """
    start = segment.rfind(_PYTHON_OPENER)
    if start < 0:
        return None
    match = _CLOSED_PYTHON_BLOCK.match(segment, start)
    return match.group(1) if match else None


def output_block(output: str) -> str:
    """The fenced block that shows a cell's output to the model."""
    return f"```output\n{output}\n```\n"


def shown_output(result: ExecutionResult, *, ended_session: bool, config: ToolLoopConfig) -> str:
    """What the model sees of one execution: stdout, else the error's last line, or the timeout.

    Deterministic for deterministic code (a timeout shows no partial output),
    truncated to `config.max_output_chars`, with "```" defused.
    """
    if result.status == "timeout":
        text = f"TimeoutError: the cell did not finish within {config.cell_timeout_s:g} s"
    elif result.status == "ok":
        text = result.stdout.rstrip("\n") or "(no output: print the values you need)"
    else:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        error = lines[-1] if lines else f"the program ended abnormally ({result.status})"
        text = "\n".join(part for part in (result.stdout.rstrip("\n"), error) if part)
    if ended_session:
        text = f"{text}\n{_RESTART_NOTE}"
    if len(text) > config.max_output_chars:
        half = config.max_output_chars // 2
        text = f"{text[:half]}\n[... {len(text) - 2 * half} characters cut ...]\n{text[-half:]}"
    return text.replace("```", "'''")


class CellRunner:
    """One trace's interpreter: a persistent sandbox session, restarted after a cell that ends it."""

    def __init__(self, pool: SandboxPool, config: ToolLoopConfig):
        self._pool = pool
        self._config = config
        self._session: SandboxSession | None = None

    def run(self, code: str) -> Cell:
        """Run one cell in the trace's namespace and return it with its shown output."""
        if self._session is None or not self._session.is_alive:
            self.close()
            self._session = self._pool.session(timeout_s=self._config.cell_timeout_s)
        result = self._session.run_cell(code)
        output = shown_output(result, ended_session=not self._session.is_alive, config=self._config)
        return Cell(code=code, status=result.status, output=output)

    def close(self) -> None:
        """Give the session back to the pool."""
        if self._session is not None:
            self._session.close()
            self._session = None


def advance(trace: Trace, completion: Completion, config: ToolLoopConfig, *, use_code: bool) -> str | None:
    """Append one completion to a trace and decide what comes next.

    Returns the code to run when the text now ends with a closed python block;
    otherwise None, with `trace.end` set if the trace is over (None: a
    non-python fence closed, generation just resumes).
    """
    remaining = config.max_total_tokens - trace.n_tokens
    trace.text += completion.text
    trace.n_tokens += completion.n_tokens
    trace.n_calls += 1
    if completion.finish_reason == "length" or completion.n_tokens > remaining:
        trace.end = "truncated"
        return None
    if not use_code:
        trace.end = "answered"
        return None
    segment = trace.segment
    if OUTPUT_OPENER in segment:
        trace.end = "fabricated_output"
        return None
    code = closed_python_block(segment)
    if code is None:
        if completion.stop_reason not in STOP_STRINGS:
            trace.end = "answered"
        elif trace.n_tokens >= config.max_total_tokens:
            trace.end = "truncated"  # a plain fence closed with no budget left to go on
        return None
    if len(trace.cells) >= config.max_rounds:
        trace.end = "max_rounds_exceeded"
        return None
    return code


def record_cell(trace: Trace, cell: Cell) -> None:
    """Append an executed cell's output block to the trace text."""
    if not trace.text.endswith("\n"):
        trace.text += "\n"  # the model ended its message right at the closing fence
    trace.text += output_block(cell.output)
    trace.cells.append(cell)
    trace.segment_start = len(trace.text)


def generate_traces(
    tasks: Sequence[TraceTask],
    generator: Generator,
    *,
    pool: SandboxPool | None,
    config: ToolLoopConfig,
    use_code: bool = True,
    render: Render | None = None,
    outputs_as_turns: bool = False,
) -> tuple[list[Trace], dict[str, int]]:
    """Generate one trace per task, running the model's code in the sandbox; return them in input order.

    Each iteration sends every active trace (up to `config.max_active_traces`)
    in one `generate` call, then runs the cells they asked for in parallel.
    A call's `max_tokens` is the largest remaining budget among the active
    traces; a trace whose completion exceeds its own budget counts as
    truncated, exactly as if it had been cut there. `outputs_as_turns`
    shows the outputs to the model as `tool` messages (see `loop_prompt`);
    the traces' text keeps the fenced format either way.

    Returns the traces and loop statistics: generate_calls, prompts_sent,
    completion_tokens, cells_run and cells_<status>.
    """
    if use_code and pool is None:
        raise ValueError("a sandbox pool is needed to run code")
    render = render or getattr(generator, "render", None) or join_messages
    traces = [Trace(task) for task in tasks]
    pending = deque(enumerate(traces))
    active: dict[int, tuple[Trace, CellRunner | None]] = {}
    stats: Counter[str] = Counter()
    try:
        while pending or active:
            while pending and len(active) < config.max_active_traces:
                index, trace = pending.popleft()
                active[index] = (trace, CellRunner(pool, config) if use_code else None)
            running = list(active.values())
            budget = max(min(config.max_tokens_per_round, config.max_total_tokens - t.n_tokens) for t, _ in running)
            prompts = [
                loop_prompt(render, list(trace.task.messages), trace.text, outputs_as_turns=outputs_as_turns)
                for trace, _ in running
            ]
            outputs = generator.generate(prompts, config.params(max_tokens=budget, use_code=use_code))
            stats["generate_calls"] += 1
            stats["prompts_sent"] += len(prompts)
            stats["completion_tokens"] += sum(completions[0].n_tokens for completions in outputs)
            wave = []
            for (trace, runner), completions in zip(running, outputs):
                code = advance(trace, completions[0], config, use_code=use_code)
                if code is not None:
                    wave.append((trace, runner, code))
            if wave:
                with ThreadPoolExecutor(min(len(wave), pool.n_workers), thread_name_prefix="tool-loop") as executor:
                    cells = list(executor.map(CellRunner.run, [job[1] for job in wave], [job[2] for job in wave]))
                for (trace, _, _), cell in zip(wave, cells):
                    record_cell(trace, cell)
                    stats["cells_run"] += 1
                    stats[f"cells_{cell.status}"] += 1
                    if trace.n_tokens >= config.max_total_tokens:
                        trace.end = "truncated"  # no budget left to read the output and go on
            _retire(active)
    finally:
        for _, runner in active.values():
            if runner is not None:
                runner.close()
    return traces, dict(stats)


def _retire(active: dict[int, tuple[Trace, CellRunner | None]]) -> None:
    """Remove finished traces from `active`, closing their sandbox sessions."""
    for key in [key for key, (trace, _) in active.items() if trace.end is not None]:
        _, runner = active.pop(key)
        if runner is not None:
            runner.close()


def final_text(text: str) -> str:
    """The part of a fenced trace after its last output block: where the final answer belongs."""
    return _OUTPUT_BLOCK.split(text)[-1]


def recorded_cells(text: str) -> list[tuple[str, str]] | None:
    """(code, recorded output) of every output block in a fenced trace, in order.

    None if an output block does not directly follow a closed python block
    (an output no code produced).
    """
    pieces = _OUTPUT_BLOCK.split(text)
    cells = []
    for segment, output in zip(pieces[0::2], pieces[1::2]):
        code = closed_python_block(segment)
        if code is None:
            return None
        cells.append((code, output))
    return cells


def to_turns(text: str) -> list[ChatMessage]:
    """Split a fenced trace into alternating assistant and tool messages (outputs become tool turns).

    >>> to_turns("```python\\nprint(2)\\n```\\n```output\\n2\\n```\\nSo \\\\boxed{2}.")
    [{'role': 'assistant', 'content': '```python\\nprint(2)\\n```\\n'}, {'role': 'tool', 'content': '2'}, \
{'role': 'assistant', 'content': 'So \\\\boxed{2}.'}]
    """
    turns = []
    for index, piece in enumerate(_OUTPUT_BLOCK.split(text)):
        if index % 2:
            turns.append({"role": "tool", "content": piece})
        elif piece:
            turns.append({"role": "assistant", "content": piece})
    return turns


def fenced_text(turns: Sequence[ChatMessage]) -> str:
    """Join assistant and tool messages back into one fenced assistant text (inverse of `to_turns`)."""
    return "".join(t["content"] if t["role"] == "assistant" else output_block(t["content"]) for t in turns)


def generated_turns(trace_json: str) -> list[ChatMessage]:
    """The turns of a stored trace that the loop generated: everything after its last user turn."""
    turns = json.loads(trace_json)
    last_user = max((i for i, turn in enumerate(turns) if turn["role"] == "user"), default=-1)
    return turns[last_user + 1 :]


def reexecute_check(sample: Sample, *, pool: SandboxPool, config: ToolLoopConfig) -> tuple[bool, str]:
    """Re-run every cell of a stored trace in a fresh interpreter; keep it only if each output is reproduced.

    Reads `trace_json` and `n_rounds`. The recorded outputs are the output
    blocks of the fenced format or the tool turns of the messages format; a
    trace whose outputs differ from the sandbox's (or that shows an output no
    code produced) fails with 'output_mismatch'. Use the same `config` the
    trace was generated with (timeouts and truncation shape the outputs).
    """
    if not sample.trace_json:
        return False, "no_trace"
    cells = recorded_cells(fenced_text(generated_turns(sample.trace_json)))
    if cells is None or len(cells) != (sample.n_rounds or 0):
        return False, "output_mismatch"
    runner = CellRunner(pool, config)
    try:
        for code, recorded in cells:
            if runner.run(code).output != recorded:
                return False, "output_mismatch"
    finally:
        runner.close()
    return True, "outputs_reproduced"


def check_cosc_shape(text: str) -> tuple[bool, str]:
    """Check a fenced trace has CoSC's stage shape: program, output, verification, then conclusion or a new stage.

    Every output block must be followed by a "Verification:" section before
    any next program, and the text after the last output must hold a
    "Conclusion:". Reasons: 'no_code_run', 'missing_verification',
    'missing_conclusion'.
    """
    pieces = _OUTPUT_BLOCK.split(text)
    if len(pieces) == 1:
        return False, "no_code_run"
    for segment in pieces[2::2]:
        before_code = segment.split(_PYTHON_OPENER, 1)[0]
        if not re.search(r"verification\s*:", before_code, re.IGNORECASE):
            return False, "missing_verification"
    if not re.search(r"conclusion\s*:", pieces[-1], re.IGNORECASE):
        return False, "missing_conclusion"
    return True, "cosc_shape"
