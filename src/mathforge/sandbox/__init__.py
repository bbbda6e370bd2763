"""Sandboxed execution of model-written Python: programs, verifiers, tool-integrated traces.

Untrusted code never runs in the pipeline's process. A `SandboxPool` starts a
fresh interpreter (the template: clean environment, modules like sympy and
numpy preloaded, garbage collector frozen) and keeps pre-forked workers; each
execution is one more fork from a worker, which costs milliseconds instead of
an interpreter start. The worker is the program's parent and supervisor; it is
disposable, and the pool replaces it if it dies.

Every execution gets:
- its own process group, and a parent (the worker) that is a subreaper or the
  init of its pid namespace, so nothing it starts can escape the final kill;
- resource limits: address space (`memory_mb` above the preloaded interpreter),
  CPU time (timeout + 1 s), file size, open files, processes (RLIMIT_NPROC of a
  uid private to the worker, when the pipeline runs as root), no core dumps;
- a fresh empty working directory (also HOME and TMPDIR) and a scrubbed
  environment (PATH, locale, PYTHONHASHSEED=0, one BLAS thread);
- no new privileges (PR_SET_NO_NEW_PRIVS) and a non-dumpable process;
- stdout and stderr captured, each truncated to `max_output_bytes` keeping head
  and tail around a "[... sandbox: N bytes of output truncated ...]" marker.

Isolation modes (`SandboxConfig.isolation`, achieved mode in `SandboxPool.isolation`):

- 'namespaces' (default; needs root or CAP_SYS_ADMIN): each worker is the init
  of its own pid, network, mount, IPC and UTS namespaces, created with
  unshare(2) through ctypes -- no external tool. The network namespace has only
  a down loopback (no network at all, not even 127.0.0.1); every mount is
  remounted read-only, nosuid; /proc is the namespace's own (no other process
  is visible); the worker mounts a private tmpfs of `tmp_mb` as the working
  directory and another on /dev/shm (for multiprocessing), the only writable
  places, and empties both after every execution. Directories the unprivileged
  uid could not traverse on the way to the Python installation (e.g. a 0700
  /root) are covered with a tmpfs exposing only what Python needs. A timeout
  kills every process of the namespace (kill(-1) from its init).
- 'rlimits' (the weaker fallback, used when unshare or mount is refused, e.g. a
  container without CAP_SYS_ADMIN, with one logged warning per process): the
  same limits, fresh directory and environment; a private uid when root; a
  seccomp filter refusing every socket family but AF_UNIX; whole trees killed
  through the process group and the subreaper. Not provided: a read-only
  filesystem (only permissions protect it; world-writable places like /tmp and
  /dev/shm stay writable), a private /proc (other processes are visible), and --
  when the pipeline is not root, so no uid switch is possible -- protection of
  the pipeline's own processes (same uid: they can be signalled and their /proc
  environ read). If the Python installation is not readable by other users, a
  program can import only the preloaded modules (a warning says so).
  `allow_weaker_isolation=False` makes a refusal an error instead.

Needs Linux 5.3 or later (pidfd) and no external tool or Debian package.

Statuses: 'timeout' (wall clock, or CPU limit via SIGXCPU), 'memory'
(MemoryError, i.e. allocation refused under the address-space limit), 'killed'
(ended by any other signal, e.g. a segfault, or its worker died), 'error'
(uncaught exception or non-zero exit), 'ok'.

Entry points: `run_python` (shared default pool), `SandboxPool.run` /
`run_many`, sessions for tool-integrated traces (`SandboxPool.session`,
`run_cells`), and `verify_program` (the code verifier).
"""

from mathforge.sandbox.config import SandboxConfig
from mathforge.sandbox.pool import (
    SandboxError,
    SandboxPool,
    SandboxSession,
    SandboxUnavailableError,
    run_cells,
    run_python,
    shared_pool,
)
from mathforge.sandbox.result import ExecutionResult, ExecutionStatus
from mathforge.sandbox.verifier import program_answer, verify_program

__all__ = [
    "ExecutionResult",
    "ExecutionStatus",
    "SandboxConfig",
    "SandboxError",
    "SandboxPool",
    "SandboxSession",
    "SandboxUnavailableError",
    "program_answer",
    "run_cells",
    "run_python",
    "shared_pool",
    "verify_program",
]
