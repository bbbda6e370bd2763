"""Configuration of the sandbox: per-execution limits and pool settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mathforge.section import Section

DEFAULT_PRELOAD = (
    "math",
    "cmath",
    "fractions",
    "decimal",
    "itertools",
    "functools",
    "collections",
    "statistics",
    "random",
    "re",
    "numpy",
    "sympy",
)


class SandboxConfig(Section):
    """Limits for each execution and the shape of the worker pool that runs them."""

    timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Wall-clock limit of one execution (or one cell), seconds; CPU time is capped at this plus one.",
    )
    memory_mb: int = Field(
        default=512,
        gt=0,
        description="Address space the program may add on top of the preloaded interpreter (RLIMIT_AS), MiB.",
    )
    max_output_bytes: int = Field(
        default=65536,
        ge=256,
        description="Bytes kept per stream (stdout, stderr); longer output keeps its head and tail around a marker.",
    )
    n_workers: int = Field(default=0, ge=0, description="Executions run at once; 0 means one per CPU.")
    max_processes: int = Field(
        default=16,
        ge=1,
        description="Processes and threads a program may have at once (RLIMIT_NPROC of its private uid).",
    )
    max_file_mb: int = Field(default=16, ge=1, description="Largest file a program may write (RLIMIT_FSIZE), MiB.")
    tmp_mb: int = Field(
        default=64,
        ge=1,
        description="Size of each worker's private tmpfs working directory and /dev/shm (namespace isolation), MiB.",
    )
    max_open_files: int = Field(default=256, ge=16, description="Open file descriptors per process (RLIMIT_NOFILE).")
    preload_modules: tuple[str, ...] = Field(
        default=DEFAULT_PRELOAD,
        description="Modules imported once in the template, so programs importing them pay nothing; "
        "missing ones are skipped with a warning.",
    )
    isolation: Literal["namespaces", "rlimits"] = Field(
        default="namespaces",
        description="Wanted isolation: 'namespaces' (pid/net/mount/ipc/uts namespaces, read-only filesystem) "
        "or 'rlimits' (the weaker mode: resource limits, private uid, seccomp network block).",
    )
    allow_weaker_isolation: bool = Field(
        default=True,
        description="Fall back to 'rlimits' (with one warning) when namespaces are refused; otherwise fail.",
    )
    uid_base: int = Field(
        default=2**30,
        ge=1000,
        le=2**31,
        description="First of the unprivileged uids code runs as when the pipeline is root; "
        "each pool takes a block of 4096 above it, one uid per worker.",
    )
