"""Confinement: namespaces, mounts, uid, resource limits, seccomp, and killing whole process trees.

Everything that stands between a program and the host is set up here, through
libc (ctypes) and the standard library only -- no external tool.

Guarantees, for the process that calls each function:
- `SANDBOX_ENV` is the whole environment of the template, hence of every
  worker and child: nothing of the pipeline's environment reaches a program.
- `WORKER_NAMESPACES` (unshare) and `isolate_worker_filesystem`: the caller's
  mount namespace is private, every mount in it read-only and nosuid, /proc is
  that of its own pid namespace, and directories the sandbox uid could not
  traverse on the way to the Python installation are covered by a tmpfs that
  exposes only what Python needs; `mount_private_directories` adds the only
  writable places, a tmpfs working directory and /dev/shm.
- `confine_child`: file size, open files, processes (RLIMIT_NPROC) and core
  dumps are limited, the uid is the worker's private one when there is one,
  no new privileges can be gained, and without namespaces a seccomp filter
  refuses every socket family but AF_UNIX. None of it can be undone by the
  program: limits are hard, and the uid switch drops every privilege.
- `limit_command`: address space (`memory_mb` above what the child already
  maps) and CPU time (timeout + 1 s) for the next command.
- `kill_children`: every child of the caller except those kept is killed and
  reaped (within a deadline, 5 s by default); the caller is a subreaper or a pid-namespace init, so grandchildren
  are re-parented to it and caught on a later pass.
"""

from __future__ import annotations

import ctypes
import errno
import math
import os
import re
import resource
import signal
import socket
import struct
import sys
import time

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
WORKER_NAMESPACES = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET
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


def unshare(flags: int) -> None:
    """unshare(2): move the caller into new namespaces (`flags`: CLONE_NEW*)."""
    _check(_libc.unshare(flags), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    """mount(2); raises OSError naming the target."""

    def raw(text: str | None) -> bytes | None:
        return None if text is None else os.fsencode(text)

    _check(_libc.mount(raw(source), raw(target), raw(fstype), flags, raw(data)), f"mount {target}")


def prctl(option: int, value: int, arg3: int = 0) -> None:
    """prctl(2) with up to two arguments."""
    _check(_libc.prctl(option, value, arg3, 0, 0), f"prctl {option}")


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


def kill_children(keep: frozenset[int], on_exit, deadline_s: float = 5.0) -> None:
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


def tasks_of(uid: int):
    """Thread ids of every process owned by `uid` (what RLIMIT_NPROC counts)."""
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    yield from os.listdir(f"/proc/{name}/task")
            except OSError:
                continue


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


def needed_paths() -> list[str]:
    """Directories the interpreter reads from: prefixes and import path."""
    candidates = [os.path.dirname(os.path.realpath(sys.executable)), sys.prefix, sys.base_prefix, *sys.path]
    return sorted({os.path.realpath(path) for path in candidates if path and os.path.isdir(path)})


def blocked_ancestors(paths: list[str]) -> dict[str, set[str]]:
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
        blocked = blocked_ancestors(paths)
        if not blocked:
            return
        for directory, children in blocked.items():
            handles = {child: os.open(os.path.join(directory, child), os.O_PATH | os.O_CLOEXEC) for child in children}
            mount("tmpfs", directory, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
            for child, handle in handles.items():
                target = os.path.join(directory, child)
                if os.path.isdir(f"/proc/self/fd/{handle}"):
                    os.mkdir(target)
                else:
                    open(target, "x").close()
                mount(f"/proc/self/fd/{handle}", target, None, MS_BIND | MS_REC)
                os.close(handle)
    raise OSError(errno.ELOOP, f"could not expose {paths}")


def isolate_worker_filesystem(expose: list[str]) -> None:
    """Turn this (new) mount namespace read-only and give it its own /proc."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    _expose(expose)
    for mountpoint, flags in _mounts():
        mount(None, mountpoint, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | flags)
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def mount_private_directories(workdir: str, uid: int | None, tmp_mb: int) -> None:
    """Mount a worker's tmpfs working directory and /dev/shm (for multiprocessing), `tmp_mb` each."""
    owner = f",uid={uid},gid={uid}" if uid is not None else ""
    size = f"size={tmp_mb}m"
    mount("tmpfs", workdir, "tmpfs", MS_NOSUID | MS_NODEV, f"{size},mode=0700{owner}")
    if os.path.isdir("/dev/shm"):
        mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"{size},mode=1777")


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
    prctl(PR_SET_SECCOMP, 2, ctypes.addressof(prog))


def confine_child(settings: dict, uid: int | None) -> None:
    """Apply the limits a child keeps for life: rlimits, the uid switch, no new privileges, seccomp.

    Runs before the code is known (children are forked ahead of requests);
    the per-command limits come later from `limit_command`.
    """
    limits = {
        resource.RLIMIT_FSIZE: settings["max_file_mb"] * 2**20,
        resource.RLIMIT_NOFILE: settings["max_open_files"],
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_NPROC: settings["nproc_base"] + settings["max_processes"],
    }
    for limit, value in limits.items():
        resource.setrlimit(limit, (value, value))
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    if settings["isolation"] != "namespaces":
        _seccomp_block_network()


def limit_command(command: dict, address_space: int) -> None:
    """Set the address-space and CPU limits of the coming command.

    Lowering limits needs no privilege, so this works after the uid switch.
    """
    memory = address_space + command["memory_mb"] * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu = math.ceil(used.ru_utime + used.ru_stime + command["timeout_s"]) + 1
    # A run's hard limit kills it (SIGKILL) a second after SIGXCPU; a session
    # keeps its hard limit open so the next cell can get a fresh budget.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1 if command["once"] else resource.RLIM_INFINITY))
