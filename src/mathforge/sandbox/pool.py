"""Run untrusted Python through a warm pool of sandbox workers (pipeline side).

`SandboxPool` owns a template process and idle workers forked from it (see
`mathforge.sandbox.server`); it is thread-safe, so Prefect task threads may
share one. `shared_pool` keeps one pool per configuration for the process;
`run_python`, `run_cells` and `verify_program` use it when given no pool.
"""

from __future__ import annotations

import logging
import os
import secrets
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from mathforge.sandbox import server
from mathforge.sandbox.config import SandboxConfig
from mathforge.sandbox.result import ExecutionResult

logger = logging.getLogger(__name__)

# Slack beyond a run's own timeout for the worker to kill, reap and report
# (killing a fork bomb without namespaces can take a few seconds).
_GRACE_S = 10.0
_START_TIMEOUT_S = 120.0
# Loads mathforge.sandbox.server by path as a top-level package: the template
# must not import mathforge (nor run its package __init__ files).
_BOOTSTRAP = (
    "import importlib.util, os, sys\n"
    "spec = importlib.util.spec_from_file_location(\n"
    "    'mathforge_sandbox_server', sys.argv[1], submodule_search_locations=[os.path.dirname(sys.argv[1])]\n"
    ")\n"
    "server = importlib.util.module_from_spec(spec)\n"
    "sys.modules[spec.name] = server\n"
    "spec.loader.exec_module(server)\n"
    "server.serve_template(int(sys.argv[2]))\n"
)


class SandboxError(RuntimeError):
    """The sandbox itself failed (as opposed to the program it ran)."""


class SandboxUnavailableError(SandboxError):
    """The requested isolation is not permitted here and weaker isolation was not allowed."""


_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(message: str) -> None:
    with _warned_lock:
        if message in _warned:
            return
        _warned.add(message)
    logger.warning(message)


class _Worker:
    """The pool's end of one worker's socket."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    def call(self, message: dict, timeout_s: float) -> tuple[dict | None, str]:
        """Send a request and wait for its reply; (None, why) if the worker died or went silent."""
        try:
            self.sock.settimeout(timeout_s)
            server.send_message(self.sock, message)
            reply, _ = server.recv_message(self.sock)
        except TimeoutError:
            return None, "unresponsive"
        except (OSError, ValueError):
            return None, "died"
        return reply, "" if reply is not None else "died"

    def is_alive(self) -> bool:
        """Whether an idle worker is still there (it never speaks unasked: readable means closed)."""
        poller = select.poll()  # not select(): the pipeline may hold more than 1024 fds
        poller.register(self.sock, select.POLLIN)
        return not poller.poll(0)

    def send(self, message: dict) -> None:
        try:
            server.send_message(self.sock, message)
        except OSError:
            self.close()

    def close(self) -> None:
        self.sock.close()


class _Template:
    """The template process: a fresh interpreter that forks workers on request."""

    def __init__(self, config: SandboxConfig, pool_id: str):
        pool_end, template_end = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-c", _BOOTSTRAP, server.__file__, str(template_end.fileno())]
            + ["mathforge-sandbox", pool_id],
            pass_fds=(template_end.fileno(),),
            env=dict(server.SANDBOX_ENV),  # nothing of the pipeline's environment
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # terminal signals (Ctrl-C) are the pipeline's business
        )
        template_end.close()
        self.sock = pool_end
        self.lock = threading.Lock()
        self.work_root: str | None = None
        settings = config.model_dump(
            include={"preload_modules", "isolation", "uid_base", "max_output_bytes", "max_processes"}
            | {"max_file_mb", "tmp_mb", "max_open_files"}
        )
        # The template imports what the pipeline can (-I made it ignore PYTHONPATH), minus its cwd.
        settings["sys_path"] = [path for path in sys.path if path and os.path.isdir(path)]
        self.sock.settimeout(_START_TIMEOUT_S)
        try:
            server.send_message(self.sock, settings)
            ready, _ = server.recv_message(self.sock)
        except OSError:
            ready = None
        if ready is None:
            self.close()
            raise SandboxError("the sandbox template process failed to start (its traceback is on stderr)")
        self.isolation: str = ready["isolation"]
        self.refusal: str | None = ready["refusal"]
        self.warnings: list[str] = ready["warnings"]
        self.work_root = ready["work_root"]

    def is_alive(self) -> bool:
        return self.process.poll() is None

    def spawn(self) -> _Worker:
        with self.lock:
            try:
                self.sock.settimeout(30.0)
                server.send_message(self.sock, {"op": "spawn"})
                reply, fds = server.recv_message(self.sock, with_fds=True)
            except OSError as exc:
                raise SandboxError(f"the sandbox template does not answer: {exc!r}") from exc
        if reply is None or "error" in reply or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise SandboxError(f"the sandbox template could not fork a worker: {reply}")
        worker = _Worker(socket.socket(fileno=fds[0]))
        worker.sock.settimeout(30.0)
        try:
            ready, _ = server.recv_message(worker.sock)
        except OSError:
            ready = None
        if not ready or not ready.get("ready"):
            worker.close()
            raise SandboxError(f"a sandbox worker failed to start: {ready}")
        return worker

    def close(self) -> None:
        try:
            self.sock.settimeout(5.0)
            server.send_message(self.sock, {"op": "close"})
        except OSError:
            pass
        self.sock.close()
        try:
            self.process.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.work_root is not None:  # the template removes it, unless it was killed
            shutil.rmtree(self.work_root, ignore_errors=True)


def _shutdown(template: _Template, idle: deque[_Worker]) -> None:
    while idle:
        idle.pop().close()
    template.close()


class SandboxSession:
    """A sandboxed interpreter whose namespace persists across cells.

    Cells run one at a time, each with its own timeout; output is per cell.
    A cell that raises is reported ('error' or 'memory') and the session goes
    on. A cell that times out, is killed or exits (`sys.exit`) ends the
    session: later cells are not run and get status 'killed' with a stderr
    line saying which cell ended it. Threads or processes a cell leaves running
    keep running until the session ends (the CPU limit still counts them).
    """

    def __init__(self, pool: SandboxPool, worker: _Worker, timeout_s: float):
        self._pool = pool
        self._worker: _Worker | None = worker  # None once it died
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._n_cells = 0
        self._ended_by: str | None = None
        self._closed = False

    @property
    def is_alive(self) -> bool:
        """Whether the next cell will run."""
        return not self._closed and self._ended_by is None

    def run_cell(self, code: str, *, timeout_s: float | None = None) -> ExecutionResult:
        """Run one cell in the session's namespace and return its own output."""
        timeout_s = self._timeout_s if timeout_s is None else timeout_s
        with self._lock:
            if self._closed:
                raise SandboxError("the session is closed")
            self._n_cells += 1
            if self._ended_by is not None:
                note = f"[sandbox] cell not run: the session ended at {self._ended_by}"
                return ExecutionResult("killed", "", note, 0.0)
            started = time.monotonic()
            with self._pool._slots:
                cell = {"op": "cell", "code": code, "timeout_s": timeout_s}
                reply, failure = self._worker.call(cell, timeout_s + _GRACE_S)
            if reply is None:
                self._worker.close()
                self._worker = None
            result = _to_result(reply, failure, time.monotonic() - started)
            if reply is None or not reply["alive"]:
                self._ended_by = f"cell {self._n_cells} ({result.status})"
            return result

    def close(self) -> None:
        """End the session; its worker goes back to the pool."""
        with self._lock:
            worker, self._worker, self._closed = self._worker, None, True
        if worker is not None:
            worker.send({"op": "end"})
            self._pool._checkin(worker)

    def __enter__(self) -> SandboxSession:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class SandboxPool:
    """Run Python programs in isolated processes forked from a warm template.

    Each execution runs in a fresh child of a pre-forked worker, so it costs a
    fork rather than an interpreter start. Thread-safe; at most `n_workers`
    executions (runs or cells) proceed at once. Use as a context manager or
    call `close()`; an unreferenced pool is closed when collected.
    """

    def __init__(self, config: SandboxConfig | None = None):
        self.config = config or SandboxConfig()
        self.pool_id = secrets.token_hex(6)  # in the template's argv: `ps` shows "mathforge-sandbox <pool_id>"
        self.n_workers = self.config.n_workers or os.cpu_count() or 1
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.n_workers)
        # First in, first out: consecutive runs rotate over the workers, so each one
        # prepares its next child while the others serve.
        self._idle: deque[_Worker] = deque()
        self._closed = False
        self._owner_pid = os.getpid()
        self._template = self._start_template()
        self._finalizer = weakref.finalize(self, _shutdown, self._template, self._idle)
        _live_pools.add(self)
        try:
            self._idle.extend(self._template.spawn() for _ in range(self.n_workers))
        except SandboxError:
            self.close()
            raise

    @property
    def isolation(self) -> str:
        """Isolation achieved: 'namespaces' or the weaker 'rlimits'."""
        return self._template.isolation

    @property
    def closed(self) -> bool:
        return self._closed

    def _start_template(self) -> _Template:
        template = _Template(self.config, self.pool_id)
        if template.isolation != self.config.isolation:
            if not self.config.allow_weaker_isolation:
                template.close()
                raise SandboxUnavailableError(f"sandbox namespaces are not permitted here: {template.refusal}")
            _warn_once(
                f"sandbox: namespaces refused ({template.refusal}); falling back to the weaker 'rlimits' "
                "isolation (resource limits, private uid when root, seccomp network block, no read-only filesystem)"
            )
        for warning in template.warnings:
            _warn_once(f"sandbox: {warning}")
        return template

    def _check_usable(self) -> None:
        if self._closed:
            raise SandboxError("the sandbox pool is closed")
        if os.getpid() != self._owner_pid:
            raise SandboxError("a sandbox pool cannot be used from a forked child; create a new pool there")

    def _checkout(self) -> _Worker:
        with self._lock:
            self._check_usable()
            while self._idle:
                worker = self._idle.popleft()
                if worker.is_alive():
                    return worker
                worker.close()
            if not self._template.is_alive():
                logger.warning("sandbox template %s died; starting a new one", self.pool_id)
                self._template.close()
                self._template = self._start_template()
                self._finalizer.detach()
                self._finalizer = weakref.finalize(self, _shutdown, self._template, self._idle)
            template = self._template
        return template.spawn()

    def _checkin(self, worker: _Worker) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self.n_workers:
                self._idle.append(worker)
                return
        worker.close()

    def run(
        self,
        code: str,
        *,
        timeout_s: float | None = None,
        memory_mb: int | None = None,
        stdin: str | None = None,
        entrypoints: Sequence[str] = (),
    ) -> ExecutionResult:
        """Run `code` as a fresh `__main__` and return how it ended.

        Args:
            code: Python source.
            timeout_s: wall-clock limit, seconds (default: the config's).
            memory_mb: address space beyond the preloaded interpreter, MiB (default: the config's).
            stdin: text the program reads on standard input (default: empty).
            entrypoints: if the program writes nothing to stdout, call the first
                of these zero-argument functions it defines and print the result.
        """
        timeout_s = self.config.timeout_s if timeout_s is None else timeout_s
        request = {
            "op": "run",
            "code": code,
            "stdin": stdin,
            "timeout_s": timeout_s,
            "memory_mb": self.config.memory_mb if memory_mb is None else memory_mb,
            "entrypoints": list(entrypoints),
        }
        started = time.monotonic()
        with self._slots:
            worker = self._checkout()
            reply, failure = worker.call(request, timeout_s + _GRACE_S)
            if reply is None:
                worker.close()
            else:
                self._checkin(worker)
        return _to_result(reply, failure, time.monotonic() - started)

    def run_many(
        self, codes: Sequence[str], *, timeout_s: float | None = None, memory_mb: int | None = None
    ) -> list[ExecutionResult]:
        """Run programs in parallel across the workers; results in input order."""
        run = partial(self.run, timeout_s=timeout_s, memory_mb=memory_mb)
        if len(codes) <= 1:
            return [run(code) for code in codes]
        with ThreadPoolExecutor(min(self.n_workers, len(codes)), thread_name_prefix="sandbox") as executor:
            return list(executor.map(run, codes))

    def session(self, *, timeout_s: float | None = None, memory_mb: int | None = None) -> SandboxSession:
        """Start a persistent interpreter for tool-integrated traces (see `SandboxSession`).

        `timeout_s` is the default per cell; `memory_mb` bounds the session's
        whole address space growth, all cells together.
        """
        timeout_s = self.config.timeout_s if timeout_s is None else timeout_s
        request = {
            "op": "session",
            "timeout_s": timeout_s,
            "memory_mb": self.config.memory_mb if memory_mb is None else memory_mb,
        }
        worker = self._checkout()
        reply, failure = worker.call(request, 30.0 + _GRACE_S)
        if reply is None or not reply.get("ready"):
            worker.close()
            raise SandboxError(f"could not start a sandbox session: {reply or failure}")
        return SandboxSession(self, worker, timeout_s)

    def close(self) -> None:
        """Stop the template and every worker (idle or busy); idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._finalizer()

    def _abandon(self) -> None:
        """In a forked child: drop the parent's sockets without touching its processes."""
        self._closed = True
        self._finalizer.detach()
        for worker in self._idle:
            worker.sock.close()
        self._template.sock.close()

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _to_result(reply: dict | None, failure: str, elapsed_s: float) -> ExecutionResult:
    if reply is None:
        if failure == "unresponsive":
            return ExecutionResult("timeout", "", "[sandbox] the worker stopped answering", elapsed_s)
        return ExecutionResult("killed", "", "[sandbox] the worker running the program died", elapsed_s)
    if "setup_error" in reply:
        raise SandboxError(f"sandbox setup failed: {reply['setup_error']}")
    return ExecutionResult(reply["status"], reply["stdout"], reply["stderr"], reply["duration_s"])


_live_pools: weakref.WeakSet[SandboxPool] = weakref.WeakSet()
_shared_pools: dict[SandboxConfig, SandboxPool] = {}
_shared_lock = threading.Lock()


def _forget_pools_in_child() -> None:
    global _shared_lock
    _shared_lock = threading.Lock()  # another thread may have held it at fork time
    _shared_pools.clear()
    for pool in list(_live_pools):
        pool._abandon()


os.register_at_fork(after_in_child=_forget_pools_in_child)


def shared_pool(config: SandboxConfig | None = None) -> SandboxPool:
    """Return this process's pool for `config`, starting it on first use (about a second)."""
    config = config or SandboxConfig()
    with _shared_lock:
        pool = _shared_pools.get(config)
        if pool is None or pool.closed:
            pool = _shared_pools[config] = SandboxPool(config)
        return pool


def run_python(
    code: str, *, timeout_s: float | None = None, memory_mb: int | None = None, stdin: str | None = None
) -> ExecutionResult:
    """Run `code` in the sandbox through the process's shared default pool.

    The first call starts the pool (`shared_pool()`); later calls cost a fork.
    Limits default to `SandboxConfig()`'s.
    """
    return shared_pool().run(code, timeout_s=timeout_s, memory_mb=memory_mb, stdin=stdin)


def run_cells(
    cells: Sequence[str],
    *,
    timeout_s: float | None = None,
    memory_mb: int | None = None,
    pool: SandboxPool | None = None,
) -> list[ExecutionResult]:
    """Run cells in order in one persistent namespace, each with its own timeout.

    Semantics are `SandboxSession`'s: after a cell times out, is killed or
    exits, the remaining cells are not run and come back 'killed'.
    """
    with (pool or shared_pool()).session(timeout_s=timeout_s, memory_mb=memory_mb) as session:
        return [session.run_cell(cell) for cell in cells]
