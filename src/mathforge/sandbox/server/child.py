"""The forked child: confine itself, then run the program's code in a fresh `__main__`.

A worker forks its next child ahead of the request; `child_main` is all that
child ever runs.

Guarantees:
- the child never returns or unwinds into the worker's frames it was forked
  from: every path ends in `os._exit` (bound at import, so a program that
  replaces `os._exit` cannot change it), exit code 70 if confinement failed;
- confinement (`isolation.confine_child`, own process group, death with its
  worker) is complete before any code arrives, and a failure to confine is
  reported as a 'setup_error' outcome, never as the program's error;
- each command runs in the same `__main__` namespace (cells of a session share
  it), with fd 0-2 as its stdin/stdout/stderr, and reports one outcome frame
  on fd 4; a traceback starts at the program's own frame, not this file's;
- a process the program forked that reaches the end of a command exits
  silently: only the child itself reports.
"""

from __future__ import annotations

import fcntl
import io
import itertools
import linecache
import os
import resource
import signal
import sys
import traceback
import types
from dataclasses import dataclass, field

from .isolation import PR_SET_PDEATHSIG, confine_child, limit_command, prctl
from .protocol import read_frame, write_frame

_exit = os._exit  # bound at import: a program may replace os._exit, the child must still end


class CountingFile(io.FileIO):
    """fd 1 as the program sees it, counting bytes written (for `entrypoints`)."""

    written = 0

    def write(self, data) -> int:
        count = super().write(data) or 0
        self.written += count
        return count


def _text_stream(fd: int, mode: str, raw: io.FileIO | None = None) -> io.TextIOWrapper:
    raw = raw or io.FileIO(fd, mode, closefd=False)
    buffered = io.BufferedWriter(raw) if mode == "w" else io.BufferedReader(raw)
    return io.TextIOWrapper(buffered, encoding="utf-8", errors="backslashreplace", line_buffering=fd == 2)


class ChildStreams:
    """The program's sys.stdin/stdout/stderr, built once by the worker and inherited unused by each child.

    They name fds 0-2, which each child points at its own pipes; building them
    before the fork saves every child that work (and the page copies it causes).
    """

    def __init__(self):
        self.stdout_file = CountingFile(1, "w", closefd=False)
        self.stdout = _text_stream(1, "w", self.stdout_file)
        self.stderr = _text_stream(2, "w")
        self.stdin = _text_stream(0, "r")


@dataclass
class ChildSpec:
    """What a worker hands to the child it forks."""

    settings: dict
    uid: int | None
    workdir: str
    streams: ChildStreams
    fds: dict[int, int]  # target fd -> fd to install there (1-2 output, 3 commands, 4 outcomes)
    parent: int  # the worker's pid
    outcome_fd: int = field(init=False)  # fds[4] until the fds are installed, then 4

    def __post_init__(self):
        self.outcome_fd = self.fds[4]


def _enter_child(spec: ChildSpec) -> CountingFile:
    """Confine a freshly forked child, short of the per-command limits; returns its stdout file."""
    os.setpgid(0, 0)
    prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if os.getppid() != spec.parent:
        _exit(70)
    high = {target: fcntl.fcntl(source, fcntl.F_DUPFD_CLOEXEC, 10) for target, source in spec.fds.items()}
    for target, source in high.items():
        os.dup2(source, target, inheritable=target <= 2)
    spec.outcome_fd = 4
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.closerange(5, min(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 1 << 20))
    os.chdir(spec.workdir)
    confine_child(spec.settings, spec.uid)
    if "numpy.random" in sys.modules:  # CPython reseeds `random` after a fork; numpy does not
        sys.modules["numpy.random"].seed()
    sys.stdout = sys.__stdout__ = spec.streams.stdout
    sys.stderr = sys.__stderr__ = spec.streams.stderr
    sys.stdin = sys.__stdin__ = spec.streams.stdin
    sys.argv = ["-c"]
    return spec.streams.stdout_file


def _prepare_command(command: dict, address_space: int) -> None:
    """Apply the limits of the coming command and give it its stdin."""
    limit_command(command, address_space)
    if command["stdin"] is not None:
        stdin = os.memfd_create("stdin")
        os.write(stdin, command["stdin"].encode("utf-8"))
        os.lseek(stdin, 0, os.SEEK_SET)
        os.dup2(stdin, 0)
        os.close(stdin)
        sys.stdin = sys.__stdin__ = _text_stream(0, "r")


def child_main(spec: ChildSpec) -> None:
    """Body of a forked child: confine, then run commands (one, or a session's cells); never returns.

    Whatever happens -- even a program closing fd 3 or 4 -- the child ends here
    and never unwinds into the worker's frames it was forked from.
    """
    code = 70
    try:
        stdout = _enter_child(spec)
    except BaseException as exc:  # reported to the pool as a sandbox failure, not a program error
        try:
            write_frame(spec.outcome_fd, {"outcome": "setup_error", "message": repr(exc)})
        finally:
            _exit(code)
    try:
        code = _run_commands(stdout)
    finally:
        _exit(code)


def _run_commands(stdout: CountingFile) -> int:
    """Run commands from fd 3 in one `__main__` namespace, reporting on fd 4; the exit code."""
    main = types.ModuleType("__main__")
    sys.modules["__main__"] = main
    me = os.getpid()
    address_space = None
    for index in itertools.count(1):
        command = read_frame(3)
        if command is None:
            return 0
        if address_space is None:
            with open("/proc/self/statm", "rb") as statm:
                address_space = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        _prepare_command(command, address_space)
        filename = "<sandbox>" if command["once"] else f"<cell {index}>"
        outcome = _run_source(command["code"], filename, main.__dict__, command["entrypoints"], stdout)
        _flush_streams()
        if os.getpid() != me:
            return 0  # a fork made by the program reached the end: the program's own process reports
        write_frame(4, outcome)
        if command["once"] or outcome["outcome"] == "exit":
            return outcome["exit_code"] & 0xFF


def _run_source(source: str, filename: str, namespace: dict, entrypoints: list[str], stdout: CountingFile) -> dict:
    """Execute `source` in `namespace` and describe how it ended."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    try:
        exec(compile(source, filename, "exec", dont_inherit=True), namespace)
        sys.stdout.flush()
        if entrypoints and stdout.written == 0:
            entry = next((namespace[name] for name in entrypoints if callable(namespace.get(name))), None)
            if entry is not None:
                print(entry())
        return {"outcome": "ok", "exit_code": 0}
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return {"outcome": "exit", "exit_code": exc.code or 0}
        print(exc.code, file=sys.stderr)
        return {"outcome": "exit", "exit_code": 1}
    except BaseException as exc:  # the program's own failure, reported like the interpreter does
        outcome = "memory" if isinstance(exc, MemoryError) else "error"
        try:
            traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
        except BaseException:  # out of memory even for the traceback: the outcome still stands
            pass
        return {"outcome": outcome, "exit_code": 1}


def _flush_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
