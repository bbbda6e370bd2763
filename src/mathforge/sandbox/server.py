"""Run untrusted Python: the template, worker and child processes behind `SandboxPool`.

Nothing here runs in the pipeline's process. The pool starts a fresh interpreter
(the *template*) that loads this file by path -- stdlib only, no package import,
so none of the pipeline's modules, memory or environment reach it -- preloads the
modules programs usually import, and then only forks:

    pipeline (SandboxPool) --socket-- template    fresh interpreter, preloaded, subreaper
                                         worker   one per concurrent execution, reused;
                                                  init of its own pid/net/mount/ipc/uts
                                                  namespaces (namespace isolation)
                                           child  forked per execution or session: runs the
                                                  code in a fresh `__main__` namespace

A worker is a disposable supervisor: it holds no state the pool needs, so if
the code manages to kill it (possible only without namespaces and a uid switch)
the pool discards it and forks another from the template.

Messages are length-prefixed JSON frames (`send_message` / `recv_message`),
shared with the pool; worker sockets reach the pool over SCM_RIGHTS.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import gc
import importlib
import io
import itertools
import json
import linecache
import math
import os
import re
import resource
import select
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
import traceback
import types

_FRAME_HEADER = struct.Struct(">I")
_exit = os._exit  # bound at import: a program may replace os._exit, the child must still end
_READ_CHUNK = 1 << 16
_UID_BLOCK = 4096  # workers per template; each worker runs code as its own uid
SANDBOX_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PYTHONHASHSEED": "0",
    "PYTHONDONTWRITEBYTECODE": "1",
    # One BLAS/OpenMP thread: the template must stay single-threaded to fork
    # safely, and threads count against the process limit.
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}

# Linux constants (include/uapi/linux/sched.h, mount.h, prctl.h, seccomp.h).
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
_WORKER_NAMESPACES = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_SECCOMP = 1, 4, 22
PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 36, 38
_MOUNT_OPTION_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def raw(text: str | None) -> bytes | None:
        return None if text is None else os.fsencode(text)

    _check(_libc.mount(raw(source), raw(target), raw(fstype), flags, raw(data)), f"mount {target}")


def _prctl(option: int, value: int, arg3: int = 0) -> None:
    _check(_libc.prctl(option, value, arg3, 0, 0), f"prctl {option}")


def encode_message(message: dict) -> bytes:
    """Encode one message as a length-prefixed JSON frame."""
    body = json.dumps(message, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return _FRAME_HEADER.pack(len(body)) + body


def send_message(sock: socket.socket, message: dict, fds: tuple[int, ...] = ()) -> None:
    """Send one frame on a stream socket, passing `fds` along (SCM_RIGHTS) if given."""
    frame = encode_message(message)
    if fds:
        frame = frame[socket.send_fds(sock, [frame], list(fds)) :]
    if frame:  # an empty send would fail once the peer, done reading, has closed
        sock.sendall(frame)


def _recv_exact(sock: socket.socket, size: int, buffer: bytearray) -> bool:
    while len(buffer) < size:
        chunk = sock.recv(size - len(buffer))
        if not chunk:
            return False
        buffer += chunk
    return True


def recv_message(sock: socket.socket, with_fds: bool = False) -> tuple[dict | None, list[int]]:
    """Receive one frame; returns (None, []) at end of stream.

    Only one frame may be in flight on the socket (every exchange here is
    request/reply), so reading past the frame boundary cannot happen.
    """
    buffer = bytearray()
    fds: list[int] = []
    if with_fds:
        data, fds, _flags, _address = socket.recv_fds(sock, _READ_CHUNK, 4)
        if not data:
            return None, fds
        buffer += data
    if not _recv_exact(sock, _FRAME_HEADER.size, buffer):
        return None, fds
    (size,) = _FRAME_HEADER.unpack_from(buffer)
    if not _recv_exact(sock, _FRAME_HEADER.size + size, buffer):
        return None, fds
    body = bytes(buffer[_FRAME_HEADER.size : _FRAME_HEADER.size + size])
    return json.loads(body.decode("utf-8", "surrogatepass")), fds


def _write_frame(fd: int, message: dict) -> None:
    view = memoryview(encode_message(message))
    while view:
        view = view[os.write(fd, view) :]


def _read_exact(fd: int, size: int) -> bytes | None:
    buffer = bytearray()
    while len(buffer) < size:
        chunk = os.read(fd, size - len(buffer))
        if not chunk:
            return None
        buffer += chunk
    return bytes(buffer)


def _read_frame(fd: int) -> dict | None:
    header = _read_exact(fd, _FRAME_HEADER.size)
    body = header and _read_exact(fd, _FRAME_HEADER.unpack(header)[0])
    return None if body is None else json.loads(body.decode("utf-8", "surrogatepass"))


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # The command name may contain spaces and parentheses: split after the last ')'.
            return int(stat.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _children_of(pid: int) -> list[int]:
    """Pids whose parent is `pid` (this kernel may lack /proc/*/task/*/children)."""
    return [int(name) for name in os.listdir("/proc") if name.isdigit() and _parent_of(int(name)) == pid]


def _kill_children(keep: frozenset[int], on_exit, deadline_s: float = 5.0) -> None:
    """SIGKILL and reap every child of this process except `keep`.

    This process is a subreaper (or a pid-namespace init), so descendants of a
    killed child are re-parented here and caught on a later pass; `on_exit`
    receives (pid, wait status) of each reaped process.
    """
    me = os.getpid()
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            while True:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                on_exit(pid, status)
        except ChildProcessError:
            return
        strays = [pid for pid in _children_of(me) if pid not in keep]
        if not strays or time.monotonic() > deadline:
            return
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.001)


def _unescape_mount_path(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), text)


def _mounts() -> list[tuple[str, int]]:
    """Mount points of this mount namespace with their nosuid/nodev/noexec flags."""
    mounts = []
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            flags = sum(_MOUNT_OPTION_FLAGS.get(option, 0) for option in fields[5].split(","))
            mounts.append((_unescape_mount_path(fields[4]), flags))
    return mounts


def _needed_paths() -> list[str]:
    """Directories the interpreter reads from: prefixes and import path."""
    candidates = [os.path.dirname(os.path.realpath(sys.executable)), sys.prefix, sys.base_prefix, *sys.path]
    return sorted({os.path.realpath(path) for path in candidates if path and os.path.isdir(path)})


def _blocked_ancestors(paths: list[str]) -> dict[str, set[str]]:
    """Directories others may not traverse on the way to `paths`, with the child needed below each.

    Code runs as a uid that owns nothing on the host, so only the "other"
    permission bits count (e.g. a Python installed under a 0700 /root).
    """
    blocked: dict[str, set[str]] = {}
    for path in paths:
        current = "/"
        for part in path.strip("/").split("/"):
            if not os.stat(current).st_mode & 0o001:
                blocked.setdefault(current, set()).add(part)
                break
            current = os.path.join(current, part)
    return blocked


def _expose(paths: list[str]) -> None:
    """Make `paths` reachable by an unprivileged uid in this mount namespace.

    A blocked directory is covered by an empty tmpfs into which only the needed
    children are bind-mounted back: the rest of it (e.g. root's home) is hidden.
    """
    for _ in range(8):
        blocked = _blocked_ancestors(paths)
        if not blocked:
            return
        for directory, children in blocked.items():
            handles = {child: os.open(os.path.join(directory, child), os.O_PATH | os.O_CLOEXEC) for child in children}
            _mount("tmpfs", directory, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
            for child, handle in handles.items():
                target = os.path.join(directory, child)
                if os.path.isdir(f"/proc/self/fd/{handle}"):
                    os.mkdir(target)
                else:
                    open(target, "x").close()
                _mount(f"/proc/self/fd/{handle}", target, None, MS_BIND | MS_REC)
                os.close(handle)
    raise OSError(errno.ELOOP, f"could not expose {paths}")


def _isolate_worker_filesystem(expose: list[str]) -> None:
    """Turn this (new) mount namespace read-only and give it its own /proc."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _expose(expose)
    for mountpoint, flags in _mounts():
        _mount(None, mountpoint, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | flags)
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


class _SockFprog(ctypes.Structure):
    """struct sock_fprog: a classic-BPF program for PR_SET_SECCOMP."""

    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _seccomp_block_network() -> None:
    """Refuse socket() for every family but AF_UNIX (and io_uring), for the weaker mode.

    A classic-BPF filter on the syscall number; syscalls of a foreign ABI
    (i386 `socketcall`, x32) kill the process, since they would bypass it.
    """
    machine = os.uname().machine
    arch, socket_nr = {"x86_64": (0xC000003E, 41), "aarch64": (0xC00000B7, 198)}.get(machine, (None, None))
    if arch is None:
        raise OSError(errno.ENOSYS, f"no seccomp filter for {machine}")
    load, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    allow, kill, refuse = 0x7FFF0000, 0x80000000, 0x00050000 | errno.EACCES
    io_uring_setup = 425
    program = [
        (load, 0, 0, 4),  # seccomp_data.arch
        (jeq, 1, 0, arch),
        (ret, 0, 0, kill),
        (load, 0, 0, 0),  # seccomp_data.nr
        (jge, 5, 0, 0x40000000),  # x32 ABI
        (jeq, 4, 0, io_uring_setup),
        (jeq, 1, 0, socket_nr),
        (ret, 0, 0, allow),
        (load, 0, 0, 16),  # args[0]: the address family
        (jeq, 1, 0, socket.AF_UNIX),
        (ret, 0, 0, refuse),
        (ret, 0, 0, allow),
    ]
    filters = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *op) for op in program))
    prog = _SockFprog(len(program), ctypes.addressof(filters))
    _prctl(PR_SET_SECCOMP, 2, ctypes.addressof(prog))


class _CountingFile(io.FileIO):
    """fd 1 as the program sees it, counting bytes written (for `entrypoints`)."""

    written = 0

    def write(self, data) -> int:
        count = super().write(data) or 0
        self.written += count
        return count


def _run_source(source: str, filename: str, namespace: dict, entrypoints: list[str], stdout: _CountingFile) -> dict:
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


def _text_stream(fd: int, mode: str, raw: io.FileIO | None = None) -> io.TextIOWrapper:
    raw = raw or io.FileIO(fd, mode, closefd=False)
    buffered = io.BufferedWriter(raw) if mode == "w" else io.BufferedReader(raw)
    return io.TextIOWrapper(buffered, encoding="utf-8", errors="backslashreplace", line_buffering=fd == 2)


class _ChildStreams:
    """The program's sys.stdin/stdout/stderr, built once by the worker and inherited unused by each child.

    They name fds 0-2, which each child points at its own pipes; building them
    before the fork saves every child that work (and the page copies it causes).
    """

    def __init__(self):
        self.stdout_file = _CountingFile(1, "w", closefd=False)
        self.stdout = _text_stream(1, "w", self.stdout_file)
        self.stderr = _text_stream(2, "w")
        self.stdin = _text_stream(0, "r")


class _ChildSpec:
    """What a worker hands to the child it forks."""

    def __init__(self, worker: _Worker, fds: dict[int, int]):
        self.settings = worker.settings
        self.uid = worker.uid
        self.workdir = worker.workdir
        self.streams = worker.streams
        self.fds = fds  # target fd -> fd to install there (1-2 output, 3 commands, 4 outcomes)
        self.outcome_fd = fds[4]  # becomes 4 once the fds are installed
        self.parent = worker.pid


def _enter_child(spec: _ChildSpec) -> _CountingFile:
    """Confine a freshly forked child, short of the per-command limits; returns its stdout file.

    Runs before the code is known (children are forked ahead of requests).
    Address space and CPU limits come with each command: lowering limits
    needs no privilege, so they can be set after the uid switch.
    """
    settings = spec.settings
    os.setpgid(0, 0)
    _prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
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
    limits = {
        resource.RLIMIT_FSIZE: settings["max_file_mb"] * 2**20,
        resource.RLIMIT_NOFILE: settings["max_open_files"],
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_NPROC: settings["nproc_base"] + settings["max_processes"],
    }
    for limit, value in limits.items():
        resource.setrlimit(limit, (value, value))
    if spec.uid is not None:
        os.setgroups([])
        os.setresgid(spec.uid, spec.uid, spec.uid)
        os.setresuid(spec.uid, spec.uid, spec.uid)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    if settings["isolation"] != "namespaces":
        _seccomp_block_network()
    if "numpy.random" in sys.modules:  # CPython reseeds `random` after a fork; numpy does not
        sys.modules["numpy.random"].seed()
    sys.stdout = sys.__stdout__ = spec.streams.stdout
    sys.stderr = sys.__stderr__ = spec.streams.stderr
    sys.stdin = sys.__stdin__ = spec.streams.stdin
    sys.argv = ["-c"]
    return spec.streams.stdout_file


def _apply_command_limits(command: dict, address_space: int) -> None:
    """Set the address-space and CPU limits of the coming command."""
    memory = address_space + command["memory_mb"] * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu = math.ceil(used.ru_utime + used.ru_stime + command["timeout_s"]) + 1
    # A run's hard limit kills it (SIGKILL) a second after SIGXCPU; a session
    # keeps its hard limit open so the next cell can get a fresh budget.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1 if command["once"] else resource.RLIM_INFINITY))
    if command["stdin"] is not None:
        stdin = os.memfd_create("stdin")
        os.write(stdin, command["stdin"].encode("utf-8"))
        os.lseek(stdin, 0, os.SEEK_SET)
        os.dup2(stdin, 0)
        os.close(stdin)
        sys.stdin = sys.__stdin__ = _text_stream(0, "r")


def _child_main(spec: _ChildSpec) -> None:
    """Body of a forked child: confine, then run commands (one, or a session's cells); never returns.

    Whatever happens -- even a program closing fd 3 or 4 -- the child ends here
    and never unwinds into the worker's frames it was forked from.
    """
    code = 70
    try:
        stdout = _enter_child(spec)
    except BaseException as exc:  # reported to the pool as a sandbox failure, not a program error
        try:
            _write_frame(spec.outcome_fd, {"outcome": "setup_error", "message": repr(exc)})
        finally:
            _exit(code)
    try:
        code = _run_commands(stdout)
    finally:
        _exit(code)


def _run_commands(stdout: _CountingFile) -> int:
    """Run commands from fd 3 in one `__main__` namespace, reporting on fd 4; the exit code."""
    main = types.ModuleType("__main__")
    sys.modules["__main__"] = main
    me = os.getpid()
    address_space = None
    for index in itertools.count(1):
        command = _read_frame(3)
        if command is None:
            return 0
        if address_space is None:
            with open("/proc/self/statm", "rb") as statm:
                address_space = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        _apply_command_limits(command, address_space)
        filename = "<sandbox>" if command["once"] else f"<cell {index}>"
        outcome = _run_source(command["code"], filename, main.__dict__, command["entrypoints"], stdout)
        _flush_streams()
        if os.getpid() != me:
            return 0  # a fork made by the program reached the end: the program's own process reports
        _write_frame(4, outcome)
        if command["once"] or outcome["outcome"] == "exit":
            return outcome["exit_code"] & 0xFF


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

    def __init__(self, worker: _Worker):
        self.worker = worker
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        cmd_r, self.commands = os.pipe()
        self.outcomes, outcome_w = os.pipe()
        spec = _ChildSpec(worker, {1: out_w, 2: err_w, 3: cmd_r, 4: outcome_w})
        self.pid = os.fork()
        if self.pid == 0:
            worker.sock.detach()  # its fd is closed with the others; never close it twice
            _child_main(spec)
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
                data = os.read(fd, _READ_CHUNK)
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
        buffer = self.streams[self.outcomes]
        if len(buffer) < _FRAME_HEADER.size:
            return None
        size = _FRAME_HEADER.size + _FRAME_HEADER.unpack_from(buffer)[0]
        if len(buffer) < size:
            return None
        body = bytes(buffer[_FRAME_HEADER.size : size])
        del buffer[:size]
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
        _kill_children(frozenset(), self.note_exit)

    def execute(self, command: dict) -> dict | None:
        """Run one command (a program or a cell); the reply for the pool, None if it went away."""
        self.reset_capture()
        started = time.monotonic()
        try:
            _write_frame(self.commands, command)
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


class _Worker:
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
        self.streams = _ChildStreams()

    def mount_private_directories(self) -> None:
        """Mount the worker's tmpfs working directory and /dev/shm (for multiprocessing)."""
        owner = f",uid={self.uid},gid={self.uid}" if self.uid is not None else ""
        size = f"size={self.settings['tmp_mb']}m"
        _mount("tmpfs", self.workdir, "tmpfs", MS_NOSUID | MS_NODEV, f"{size},mode=0700{owner}")
        if os.path.isdir("/dev/shm"):
            _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"{size},mode=1777")

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
        _prctl(PR_SET_DUMPABLE, 0)
        try:
            if self.isolated:
                _isolate_worker_filesystem(self.settings["expose"])
                self.mount_private_directories()
            else:
                _prctl(PR_SET_CHILD_SUBREAPER, 1)
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


class _Template:
    """Prepare once, then fork workers for the pool on `sock`."""

    def __init__(self, sock: socket.socket, settings: dict):
        self.sock = sock
        self.warnings: list[str] = []
        self.workers: dict[int, int] = {}  # pid -> uid slot
        self.free_slots = list(range(_UID_BLOCK - 1, -1, -1))
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        sys.path[:] = settings["sys_path"]
        for name in settings["preload_modules"]:
            try:
                importlib.import_module(name)
            except Exception as exc:  # a missing optional module only costs speed
                self.warnings.append(f"preload of {name!r} failed: {exc!r}")
        work_root = tempfile.mkdtemp(prefix="mathforge-sandbox-")
        os.chmod(work_root, 0o711)
        self.is_root = os.geteuid() == 0
        self.settings = dict(settings, work_root=work_root, expose=_needed_paths(), nproc_base=0)
        self.uid_base = settings["uid_base"] + (os.getpid() % 65536) * _UID_BLOCK
        isolation = "rlimits"
        if settings["isolation"] == "namespaces":
            refusal = self._probe_namespaces()
            if refusal is None:
                isolation = "namespaces"
            else:
                self.settings["refusal"] = refusal
        self.settings["isolation"] = isolation
        if isolation == "rlimits" and self.is_root and _blocked_ancestors(self.settings["expose"]):
            self.warnings.append(
                "the Python installation is not readable by other users: "
                "modules that were not preloaded cannot be imported"
            )
        if not self.is_root:
            # RLIMIT_NPROC counts every process of the uid: allow the ones already running.
            self.settings["nproc_base"] = sum(1 for _ in _tasks_of(os.getuid()))
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
                _unshare(_WORKER_NAMESPACES)
                inner = os.fork()
                if inner == 0:  # as a worker: pid 1 of the new namespaces
                    _isolate_worker_filesystem(self.settings["expose"])
                    _Worker(self.sock, self.settings, None).mount_private_directories()
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
            _kill_children(frozenset(), lambda pid, status: None)
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
            _kill_children(frozenset(self.workers), lambda pid, status: None)

    def _spawn(self) -> None:
        """Fork a worker (through a short-lived parent that creates its namespaces) and send its socket."""
        if not self.free_slots:
            send_message(self.sock, {"error": f"more than {_UID_BLOCK} workers"})
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
                    _unshare(_WORKER_NAMESPACES)
                worker = os.fork()
                if worker == 0:
                    os.close(writer)
                    try:
                        _Worker(worker_end, self.settings, uid).serve()
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


def _tasks_of(uid: int):
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    yield from os.listdir(f"/proc/{name}/task")
            except OSError:
                continue


def _thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def serve_template(fd: int) -> None:
    """Entry point of the template process: `fd` is its socket to the pool."""
    sock = socket.socket(fileno=fd)
    settings, _ = recv_message(sock)
    if settings is None:
        return
    _Template(sock, settings).serve()
