"""Prefect flows: load a config, call src/mathforge stage runners as tasks, write."""

import os

# Set before Prefect is imported. Our stage logs go through the `mathforge`
# logger, which Prefect then attaches to run logs; the temporary API server
# (no PREFECT_API_URL) took up to 21 s to start on a busy 2-core machine.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "mathforge")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
