"""Where namespaces are refused, the pool falls back to 'rlimits' with one warning, or refuses to start.

The refusal is real: the pipeline runs in a child without CAP_SYS_ADMIN (what
a container without that capability gives), made with util-linux `setpriv`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, logging
records = []

class Collect(logging.Handler):
    def emit(self, record):
        records.append(record)

logging.getLogger("mathforge.sandbox").addHandler(Collect())
from mathforge.sandbox import SandboxConfig, SandboxPool, SandboxUnavailableError

config = SandboxConfig(preload_modules=(), n_workers=1, timeout_s=2)
report = {}
for attempt in range(2):
    with SandboxPool(config) as pool:
        report["isolation"] = pool.isolation
        report["uid"] = pool.run("import os; print(os.getuid())").stdout.strip()
        report["network"] = pool.run("import socket; socket.socket()").stderr.splitlines()[-1]
        report["loop"] = pool.run("while True: pass", timeout_s=0.5).status
        report["canary"] = pool.run("print(6 * 7)").stdout
report["fallback_warnings"] = sum("falling back" in record.getMessage() for record in records)
try:
    SandboxPool(config.model_copy(update={"allow_weaker_isolation": False}))
    report["strict"] = "started"
except SandboxUnavailableError as exc:
    report["strict"] = "refused: " + str(exc)
print(json.dumps(report))
"""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_pool_without_cap_sys_admin_falls_back_and_warns_once():
    completed = subprocess.run(
        ["setpriv", "--bounding-set=-sys_admin", sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.splitlines()[-1])
    assert report["isolation"] == "rlimits"
    assert int(report["uid"]) >= 2**30  # still a private uid: CAP_SETUID remains
    assert report["network"] == "PermissionError: [Errno 13] Permission denied"
    assert report["loop"] == "timeout"
    assert report["canary"] == "42\n"
    assert report["fallback_warnings"] == 1
    assert report["strict"].startswith("refused: sandbox namespaces are not permitted here")
