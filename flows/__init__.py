"""Prefect flows: load a config, call src/mathforge stage runners as tasks, write."""

import logging
import os

# Set before Prefect is imported. Our stage logs go through the `mathforge`
# logger, which Prefect then attaches to run logs; the temporary API server
# (no PREFECT_API_URL) took up to 21 s to start on a busy 2-core machine.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "mathforge")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
# The temporary server sends usage analytics on start; on a machine without
# internet that is a failed DNS lookup logged as an ERROR. Opt in by setting
# PREFECT_SERVER_ANALYTICS_ENABLED=true.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Prefect's client logs every API call (one per batch of run logs) at INFO through httpx.
logging.getLogger("httpx").setLevel(logging.WARNING)
