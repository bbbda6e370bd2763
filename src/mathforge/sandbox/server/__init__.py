"""Run untrusted Python: the template, worker and child processes behind `SandboxPool`.

Nothing here runs in the pipeline's process. The pool starts a fresh interpreter
(the *template*) that loads this package by path, as the top-level package
`mathforge_sandbox_server` -- its files import only the standard library and
each other (relatively), so none of the pipeline's modules, memory or
environment reach it -- preloads the modules programs usually import, and then
only forks:

    pipeline (SandboxPool) --socket-- template    fresh interpreter, preloaded, subreaper
                                         worker   one per concurrent execution, reused;
                                                  init of its own pid/net/mount/ipc/uts
                                                  namespaces (namespace isolation)
                                           child  forked per execution or session: runs the
                                                  code in a fresh `__main__` namespace

A worker is a disposable supervisor: it holds no state the pool needs, so if
the code manages to kill it (possible only without namespaces and a uid switch)
the pool discards it and forks another from the template.

Files by role, each stating what it guarantees:
- `protocol`: length-prefixed JSON frames, shared with the pool; worker
  sockets reach the pool over SCM_RIGHTS.
- `isolation`: namespaces, mounts, uid, resource limits, seccomp, and killing
  whole process trees.
- `template`: the template process (preload, isolation probe, forking workers).
- `worker`: a worker's request loop (supervising one execution at a time).
- `child`: what a forked child runs (confine itself, run the code).
"""

from .isolation import SANDBOX_ENV
from .protocol import encode_message, recv_message, send_message
from .template import serve_template

__all__ = ["SANDBOX_ENV", "encode_message", "recv_message", "send_message", "serve_template"]
