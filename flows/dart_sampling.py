"""DART rejection sampling alone: ingest (skipped if done) → DART. `python -m flows.dart_sampling CONFIG`."""

import sys

from prefect import flow

from flows import tasks
from mathforge.config import load_config
from mathforge.store import StageResult


@flow(name="dart-sampling")
def dart_sampling(config_path: str) -> StageResult:
    """Sample verified solutions for the config's seed problems."""
    config = load_config(config_path)
    return tasks.dart(config, [tasks.ingest(config)])


if __name__ == "__main__":
    print(dart_sampling(sys.argv[1]).stage_dir)
