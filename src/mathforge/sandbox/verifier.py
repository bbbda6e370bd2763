"""Judge a program by running it: the code verifier.

A program's answer is the last non-empty line it prints. A program that
prints nothing but defines `solve()` (or else `main()`) taking no arguments
has that function called, and the printed return value is its answer. The
answer is compared with the reference by `mathforge.verify.compare_answers`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mathforge.records import Verdict
from mathforge.sandbox.config import SandboxConfig
from mathforge.sandbox.pool import SandboxPool, shared_pool

if TYPE_CHECKING:
    from mathforge.verify import VerifyConfig

ENTRYPOINTS = ("solve", "main")
_FAILURE_REASONS = {
    "error": "program_crashed",
    "killed": "program_crashed",
    "timeout": "program_timeout",
    "memory": "memory_limit",
}


def program_answer(stdout: str) -> str | None:
    """Return the last non-empty line of a program's output, stripped, or None.

    >>> program_answer("x = 3\\n42\\n\\n")
    '42'
    """
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    return lines[-1] if lines else None


def verify_program(
    program: str,
    reference: str,
    *,
    config: SandboxConfig | None = None,
    verify_config: VerifyConfig | None = None,
    pool: SandboxPool | None = None,
) -> Verdict:
    """Run `program` in the sandbox and compare its answer with `reference` (reference first).

    Args:
        program: Python source; see the module docstring for how its answer is taken.
        reference: reference answer.
        config: limits of the run (timeout_s, memory_mb); without `pool`, also
            selects the process's shared pool for that configuration.
        verify_config: answer comparison settings (default `VerifyConfig()`).
        pool: pool to run in.

    Returns:
        The comparison's verdict, or an unjudgeable one with reason
        'program_crashed', 'program_timeout', 'memory_limit' or 'no_output'.
    """
    from mathforge.verify import VerifyConfig, compare_answers  # the answer verifier is a sibling package

    config = config or SandboxConfig()
    result = (pool or shared_pool(config)).run(
        program, timeout_s=config.timeout_s, memory_mb=config.memory_mb, entrypoints=ENTRYPOINTS
    )
    if result.status != "ok":
        return Verdict(is_correct=None, reason=_FAILURE_REASONS[result.status])
    answer = program_answer(result.stdout)
    if answer is None:
        return Verdict(is_correct=None, reason="no_output")
    return compare_answers(reference, answer, verify_config or VerifyConfig())
