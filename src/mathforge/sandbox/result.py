"""The value one sandboxed execution returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ExecutionStatus = Literal["ok", "error", "timeout", "memory", "killed"]


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    """How one execution ended, with its captured (possibly truncated) output.

    status: 'ok' (exit code 0), 'error' (exception or non-zero exit), 'timeout'
    (wall clock or CPU limit), 'memory' (MemoryError under the address-space
    limit) or 'killed' (ended by a signal otherwise, e.g. a segfault, or its
    session was already dead).
    """

    status: ExecutionStatus
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        """Whether the program ran to completion with exit code 0."""
        return self.status == "ok"
