"""Selection alone over DART's accepted samples: ingest → DART (skipped if done) → select.

`python -m flows.select CONFIG`
"""

import sys

from prefect import flow

from flows import tasks
from mathforge.config import load_config
from mathforge.store import StageResult


@flow(name="select")
def select(config_path: str) -> StageResult:
    """Apply the config's selection steps (GRAPE, k-means, S2L) to the accepted samples."""
    config = load_config(config_path)
    if config.selection is None:
        raise ValueError(f"{config_path}: no `selection` section")
    dart = tasks.dart(config, [tasks.ingest(config)])
    return tasks.select(config, [(dart, "accepted")], dart=[dart])


if __name__ == "__main__":
    print(select(sys.argv[1]).stage_dir)
