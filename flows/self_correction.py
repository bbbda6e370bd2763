"""Self-correction traces alone: ingest → DART (both skipped if done) → self-correction.

`python -m flows.self_correction CONFIG`
"""

import sys

from prefect import flow

from flows import tasks
from mathforge.config import load_config
from mathforge.store import StageResult


@flow(name="self-correction")
def self_correction(config_path: str) -> StageResult:
    """Correct DART's wrong attempts (or write tool-integrated traces) with real execution."""
    config = load_config(config_path)
    problems = [tasks.ingest(config)]
    return tasks.self_correction(config, problems, tasks.dart(config, problems))


if __name__ == "__main__":
    print(self_correction(sys.argv[1]).stage_dir)
