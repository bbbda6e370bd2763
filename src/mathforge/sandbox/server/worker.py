"""The worker's request loop: one execution at a time, supervised from fork to kill.

A worker is forked by the template for one pool connection and serves it until
the pool closes the socket. It never runs code itself: each run, or each
session of cells, gets a child (`child.child_main`) forked ahead of the request.

Guarantees:
- one reply frame per request (a run, or a session's cells one by one) unless
  the pool went away; a request never waits for a fork on its critical path;
- after every run or session, every process it started is killed and reaped
  (`kill(-1)` as the pid-namespace init, or the process group plus the
  subreaper's strays) and the working directory (and, with namespaces,
  /dev/shm) is emptied before the next child is forked;
- a command's status maps how it ended: 'timeout' (wall clock, or SIGXCPU),
  'killed' (any other signal), 'memory' (MemoryError), 'error', 'ok'; for
  'timeout' and 'killed' a note saying why is appended to stderr;
- stdout and stderr are each kept within `max_output_bytes`, head and tail
  around a "[... sandbox: N bytes of output truncated ...]" marker.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import tempfile
import time

from .child import ChildSpec, ChildStreams, child_main
from .isolation import (
    PR_SET_CHILD_SUBREAPER,
    PR_SET_DUMPABLE,
    isolate_worker_filesystem,
    kill_children,
    mount_private_directories,
    prctl,
)
from .protocol import READ_CHUNK, pop_frame, recv_message, send_message, write_frame


class _Capture:
    """Keep the head and tail of a stream within `limit` bytes."""

    def __init__(self, limit: int):
        self.head_limit = limit // 2
        self.tail_limit = limit - self.head_limit
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > self.tail_limit:
                del self.tail[: len(self.tail) - self.tail_limit]

    def text(self) -> str:
        dropped = self.total - len(self.head) - len(self.tail)
        if dropped <= 0:
            return (self.head + self.tail).decode("utf-8", "replace")
        marker = f"\n[... sandbox: {dropped} bytes of output truncated ...]\n"
        return self.head.decode("utf-8", "replace") + marker + self.tail.decode("utf-8", "replace")


def _append_note(stderr: str, note: str) -> str:
    return f"{stderr}{'' if not stderr or stderr.endswith(chr(10)) else chr(10)}[sandbox] {note}"


def _empty_directory(path: str) -> None:
    if not os.path.isdir(path):
        return
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)


class _Child:
    """A child forked ahead of its commands, seen from its worker: pipes, captures, exit status."""

    def __init__(self, worker: Worker):
        self.worker = worker
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        cmd_r, self.commands = os.pipe()
        self.outcomes, outcome_w = os.pipe()
        spec = ChildSpec(
            settings=worker.settings,
            uid=worker.uid,
            workdir=worker.workdir,
            streams=worker.streams,
            fds={1: out_w, 2: err_w, 3: cmd_r, 4: outcome_w},
            parent=worker.pid,
        )
        self.pid = os.fork()
        if self.pid == 0:
            worker.sock.detach()  # its fd is closed with the others; never close it twice
            child_main(spec)
        for fd in (out_w, err_w, cmd_r, outcome_w):
            os.close(fd)
        self.pidfd = os.pidfd_open(self.pid)
        self.stdout_fd, self.stderr_fd = out_r, err_r
        self.streams: dict[int, _Capture | bytearray] = {self.outcomes: bytearray()}
        for fd in (out_r, err_r, self.outcomes):
            os.set_blocking(fd, False)
        self.status: int | None = None
        self.reset_capture()

    def reset_capture(self) -> None:
        limit = self.worker.settings["max_output_bytes"]
        self.streams[self.stdout_fd] = _Capture(limit)
        self.streams[self.stderr_fd] = _Capture(limit)

    def note_exit(self, pid: int, status: int) -> None:
        if pid == self.pid:
            self.status = status

    def _read(self, fd: int) -> bool:
        """Read what `fd` has now; False at end of stream."""
        while True:
            try:
                data = os.read(fd, READ_CHUNK)
            except BlockingIOError:
                return True
            if not data:
                return False
            sink = self.streams[fd]
            if fd == self.outcomes:
                sink += data
            else:
                sink.add(data)

    def next_outcome(self) -> dict | None:
        body = pop_frame(self.streams[self.outcomes])
        if body is None:
            return None
        try:
            return json.loads(body)
        except ValueError:  # the program wrote on its outcome pipe: its own loss
            return {"outcome": "error", "exit_code": 1}

    def wait(self, deadline: float) -> tuple[str, dict | None]:
        """Pump the pipes until an outcome arrives, the child exits, or the deadline.

        Returns the event ('outcome', 'exit', 'timeout' or 'abandoned' when the
        pool closed the socket) and the outcome if one arrived.
        """
        open_fds = set(self.streams)
        pool = self.worker.sock.fileno()
        while True:
            if (outcome := self.next_outcome()) is not None:
                return "outcome", outcome
            if self.status is not None:
                return "exit", None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout", None
            ready, _, _ = select.select([*open_fds, self.pidfd, pool], [], [], remaining)
            for fd in ready:
                if fd == self.pidfd:
                    self.status = os.waitpid(self.pid, 0)[1]
                elif fd == pool:
                    return "abandoned", None
                elif not self._read(fd):
                    open_fds.discard(fd)

    def drain(self, to_end: bool) -> None:
        """Collect buffered output; `to_end` reads to end of stream (every writer is dead)."""
        for fd in self.streams:
            if not to_end:
                self._read(fd)
                continue
            give_up = time.monotonic() + 1.0
            while self._read(fd) and time.monotonic() < give_up:
                select.select([fd], [], [], 0.05)

    def kill_all(self) -> None:
        """Kill the child and everything it started, reaping them all."""
        if self.worker.isolated:
            # Init of the pid namespace: kill(-1) reaches every other process in it.
            while True:
                try:
                    os.kill(-1, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    self.note_exit(*os.waitpid(-1, 0))
                except ChildProcessError:
                    return
        if self.status is None:  # once reaped, the pid may belong to someone else
            for kill in (os.killpg, os.kill):
                try:
                    kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.status = os.waitpid(self.pid, 0)[1]
        # Usually nothing is left, and this returns without scanning /proc.
        kill_children(frozenset(), self.note_exit)

    def execute(self, command: dict) -> dict | None:
        """Run one command (a program or a cell); the reply for the pool, None if it went away."""
        self.reset_capture()
        started = time.monotonic()
        try:
            write_frame(self.commands, command)
        except BrokenPipeError:
            pass  # the child is gone; wait() says how it ended
        event, outcome = self.wait(started + command["timeout_s"])
        if event == "abandoned":
            return None
        if event == "outcome" and outcome["outcome"] == "setup_error":
            return {"setup_error": outcome.get("message", "")}
        if event == "outcome":
            self.drain(to_end=False)  # the child flushed before reporting
        else:
            self.kill_all()
            self.drain(to_end=True)
            outcome = self.next_outcome()
        reply = self.result(event, outcome, command["timeout_s"])
        reply.update(duration_s=time.monotonic() - started, alive=event == "outcome" and outcome["outcome"] != "exit")
        return reply

    def result(self, event: str, outcome: dict | None, timeout_s: float) -> dict:
        """Map how the command ended to a status, with its captured output."""
        stderr = self.streams[self.stderr_fd].text()
        signalled = outcome is None and self.status is not None and os.WIFSIGNALED(self.status)
        if event == "timeout":
            status = "timeout"
            stderr = _append_note(stderr, f"timed out after {timeout_s:g} s")
        elif signalled and os.WTERMSIG(self.status) == signal.SIGXCPU:
            status = "timeout"
            stderr = _append_note(stderr, "CPU time limit exceeded")
        elif signalled:
            status = "killed"
            stderr = _append_note(stderr, f"killed by {signal.Signals(os.WTERMSIG(self.status)).name}")
        elif outcome is not None and outcome["outcome"] == "memory":
            status = "memory"
        elif outcome is not None:
            status = "ok" if outcome["exit_code"] == 0 else "error"
        else:
            code = os.waitstatus_to_exitcode(self.status) if self.status is not None else -1
            status = "ok" if code == 0 else "error"
        return {"status": status, "stdout": self.streams[self.stdout_fd].text(), "stderr": stderr}

    def close(self) -> None:
        for fd in (*self.streams, self.commands, self.pidfd):
            os.close(fd)
        self.worker.clear_workdir()


class Worker:
    """Supervise executions one at a time for the pool on the other end of `sock`.

    The child for the next request is forked, and confined, as soon as the
    previous one is gone, so a request costs no fork on its critical path.
    """

    def __init__(self, sock: socket.socket, settings: dict, uid: int | None):
        self.sock = sock
        self.settings = settings
        self.uid = uid
        self.isolated = settings["isolation"] == "namespaces"
        self.pid = os.getpid()
        # Namespaces: this worker's own tmpfs mounted on work_root. Otherwise a
        # directory of this worker's. Either is emptied after every execution.
        work_root = settings["work_root"]
        self.workdir = work_root if self.isolated else os.path.join(work_root, f"worker-{self.pid}")
        self.streams = ChildStreams()

    def clear_workdir(self) -> None:
        """Leave the next execution an empty working directory (and /dev/shm)."""
        if self.isolated:
            for directory in (self.workdir, "/dev/shm"):
                _empty_directory(directory)
            return
        shutil.rmtree(self.workdir, ignore_errors=True)
        os.mkdir(self.workdir, 0o700)
        if self.uid is not None:
            os.chown(self.workdir, self.uid, self.uid)

    def serve(self) -> None:
        prctl(PR_SET_DUMPABLE, 0)
        try:
            if self.isolated:
                isolate_worker_filesystem(self.settings["expose"])
                mount_private_directories(self.workdir, self.uid, self.settings["tmp_mb"])
            else:
                prctl(PR_SET_CHILD_SUBREAPER, 1)
                self.clear_workdir()
        except OSError as exc:
            send_message(self.sock, {"ready": False, "error": repr(exc)})
            return
        # Children inherit these; the rest of the environment is SANDBOX_ENV, the template's.
        os.environ.update(HOME=self.workdir, TMPDIR=self.workdir)
        tempfile.tempdir = self.workdir
        send_message(self.sock, {"ready": True})
        child = _Child(self)
        try:
            while self.serve_request(child):
                child.kill_all()
                child.close()
                child = _Child(self)
        finally:
            child.kill_all()

    def serve_request(self, child: _Child) -> bool:
        """Serve one run, or one whole session of cells, with `child`; False once the pool is gone."""
        request, _ = recv_message(self.sock)
        if request is None:
            return False
        if request["op"] == "run":
            return self.reply(child.execute(dict(request, once=True)))
        send_message(self.sock, {"ready": True})
        while (cell := recv_message(self.sock)[0]) is not None and cell["op"] == "cell":
            command = dict(cell, once=False, memory_mb=request["memory_mb"], stdin=None, entrypoints=[])
            if not self.reply(child.execute(command)):
                return False
        return cell is not None

    def reply(self, reply: dict | None) -> bool:
        if reply is not None:
            send_message(self.sock, reply)
        return reply is not None


