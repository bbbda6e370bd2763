"""Serve the build-dataset flow on a schedule: `python -m flows.serve CONFIG [--cron "0 3 * * *" | --interval S]`.

Needs a real Prefect server (`prefect server start`; the temporary one refuses
schedules): `make serve` starts one. Scheduled runs are incremental: each
processes only seeds earlier runs of the series have not seen.
"""

from __future__ import annotations

import argparse
from datetime import timedelta

from flows.build_dataset import build_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--name", default="scheduled-build", help="Deployment name.")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--cron", default="0 3 * * *", help="Cron schedule (default: daily at 03:00).")
    when.add_argument("--interval", type=float, default=None, help="Seconds between runs instead of a cron schedule.")
    args = parser.parse_args()
    schedule = {"interval": timedelta(seconds=args.interval)} if args.interval else {"cron": args.cron}
    # One run at a time: an incremental run must see the ledger its predecessor wrote.
    build_dataset.serve(name=args.name, parameters={"config_path": args.config, "incremental": True}, limit=1, **schedule)


if __name__ == "__main__":
    main()
