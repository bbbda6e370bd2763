"""Prefect flows: load a config, call src/mathforge stage runners as tasks, write."""

import os

# Our stage logs go through the `mathforge` logger; Prefect attaches it to run logs.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "mathforge")
