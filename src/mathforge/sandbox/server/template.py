"""The template process: prepare one interpreter, then fork a worker whenever the pool asks.

`serve_template` is the entry point of the fresh interpreter the pool starts
(`python -I`, this package loaded by path, `SANDBOX_ENV` as its environment).

Guarantees:
- the modules programs usually import are preloaded once and the garbage
  collector is frozen, so a fork shares their pages; a warning reaches the pool
  if a preload failed or the template is no longer single-threaded (forking a
  threaded process is unsafe);
- the isolation achieved is probed once, in a throwaway process, before any
  worker exists: 'namespaces' is reported only if the whole worker set-up
  succeeded there, otherwise 'rlimits' with the refusal;
- each worker is forked through a short-lived helper that creates its
  namespaces, so the worker is pid 1 of them, and gets a uid of its own from a
  block of `UID_BLOCK` per template (when the pipeline runs as root);
- when the pool closes the socket, or goes away, every worker and every stray
  the template inherited is killed and the working root is removed.
"""

from __future__ import annotations

import gc
import importlib
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import traceback

from .isolation import (
    PR_SET_CHILD_SUBREAPER,
    WORKER_NAMESPACES,
    blocked_ancestors,
    isolate_worker_filesystem,
    kill_children,
    mount_private_directories,
    needed_paths,
    prctl,
    tasks_of,
    unshare,
)
from .protocol import recv_message, send_message
from .worker import Worker

UID_BLOCK = 4096  # workers per template; each worker runs code as its own uid


class Template:
    """Prepare once, then fork workers for the pool on `sock`."""

    def __init__(self, sock: socket.socket, settings: dict):
        self.sock = sock
        self.warnings: list[str] = []
        self.workers: dict[int, int] = {}  # pid -> uid slot
        self.free_slots = list(range(UID_BLOCK - 1, -1, -1))
        prctl(PR_SET_CHILD_SUBREAPER, 1)
        sys.path[:] = settings["sys_path"]
        for name in settings["preload_modules"]:
            try:
                importlib.import_module(name)
            except Exception as exc:  # a missing optional module only costs speed
                self.warnings.append(f"preload of {name!r} failed: {exc!r}")
        work_root = tempfile.mkdtemp(prefix="mathforge-sandbox-")
        os.chmod(work_root, 0o711)
        self.is_root = os.geteuid() == 0
        self.settings = dict(settings, work_root=work_root, expose=needed_paths(), nproc_base=0)
        self.uid_base = settings["uid_base"] + (os.getpid() % 65536) * UID_BLOCK
        isolation = "rlimits"
        if settings["isolation"] == "namespaces":
            refusal = self._probe_namespaces()
            if refusal is None:
                isolation = "namespaces"
            else:
                self.settings["refusal"] = refusal
        self.settings["isolation"] = isolation
        if isolation == "rlimits" and self.is_root and blocked_ancestors(self.settings["expose"]):
            self.warnings.append(
                "the Python installation is not readable by other users: "
                "modules that were not preloaded cannot be imported"
            )
        if not self.is_root:
            # RLIMIT_NPROC counts every process of the uid: allow the ones already running.
            self.settings["nproc_base"] = sum(1 for _ in tasks_of(os.getuid()))
        if (threads := _thread_count()) > 1:
            self.warnings.append(f"template has {threads} threads after preloading: forking it is unsafe")
        gc.freeze()

    def _probe_namespaces(self) -> str | None:
        """Try the worker and child namespace setup in a throwaway process; the refusal, if any."""
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(reader)
            try:
                unshare(WORKER_NAMESPACES)
                inner = os.fork()
                if inner == 0:  # as a worker: pid 1 of the new namespaces
                    isolate_worker_filesystem(self.settings["expose"])
                    mount_private_directories(self.settings["work_root"], None, self.settings["tmp_mb"])
                    os._exit(0)
                os._exit(os.waitstatus_to_exitcode(os.waitpid(inner, 0)[1]))
            except BaseException as exc:
                os.write(writer, repr(exc).encode())
                os._exit(1)
        os.close(writer)
        with os.fdopen(reader, "rb") as pipe:
            message = pipe.read().decode(errors="replace")
        status = os.waitpid(pid, 0)[1]
        return None if status == 0 else message or f"probe exited with status {status}"

    def serve(self) -> None:
        send_message(
            self.sock,
            {
                "isolation": self.settings["isolation"],
                "refusal": self.settings.get("refusal"),
                "warnings": self.warnings,
                "work_root": self.settings["work_root"],
            },
        )
        try:
            while True:
                ready, _, _ = select.select([self.sock], [], [], 1.0)
                self._reap()
                if not ready:
                    continue
                request, _ = recv_message(self.sock)
                if request is None or request["op"] == "close":
                    return
                self._spawn()
        finally:
            for pid in self.workers:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            kill_children(frozenset(), lambda pid, status: None)
            shutil.rmtree(self.settings["work_root"], ignore_errors=True)

    def _reap(self) -> None:
        died = False
        try:
            while (pid := os.waitpid(-1, os.WNOHANG)[0]) != 0:
                if pid in self.workers:
                    self.free_slots.append(self.workers.pop(pid))
                    died = True
        except ChildProcessError:
            return
        if died:
            # Orphans of a dead worker (weaker mode) are re-parented here.
            kill_children(frozenset(self.workers), lambda pid, status: None)

    def _spawn(self) -> None:
        """Fork a worker (through a short-lived parent that creates its namespaces) and send its socket."""
        if not self.free_slots:
            send_message(self.sock, {"error": f"more than {UID_BLOCK} workers"})
            return
        pool_end, worker_end = socket.socketpair()
        reader, writer = os.pipe()
        slot = self.free_slots.pop()
        uid = self.uid_base + slot if self.is_root else None
        helper = os.fork()
        if helper == 0:
            os.close(reader)
            pool_end.close()
            os.close(self.sock.detach())
            try:
                if self.settings["isolation"] == "namespaces":
                    unshare(WORKER_NAMESPACES)
                worker = os.fork()
                if worker == 0:
                    os.close(writer)
                    try:
                        Worker(worker_end, self.settings, uid).serve()
                    except BaseException:  # a worker bug: say so, the pool sees the socket close
                        traceback.print_exc()
                    os._exit(0)
                os.write(writer, str(worker).encode())
            finally:
                os._exit(0)
        os.close(writer)
        worker_end.close()
        with os.fdopen(reader, "rb") as pipe:
            worker_pid = pipe.read()
        os.waitpid(helper, 0)
        if not worker_pid:
            self.free_slots.append(slot)
            send_message(self.sock, {"error": "could not fork a worker"})
        else:
            self.workers[int(worker_pid)] = slot
            send_message(self.sock, {"pid": int(worker_pid)}, fds=(pool_end.fileno(),))
        pool_end.close()


def _thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def serve_template(fd: int) -> None:
    """Entry point of the template process: `fd` is its socket to the pool."""
    sock = socket.socket(fileno=fd)
    settings, _ = recv_message(sock)
    if settings is None:
        return
    Template(sock, settings).serve()
