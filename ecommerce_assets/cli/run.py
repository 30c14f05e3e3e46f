"""Catch up, headless (for cron, CI and scripts): do once what the sensors would do, then materialize
everything downstream of what landed, partitions included. Prints progress; exits non-zero when any run
failed. Runs are recorded in DAGSTER_HOME (default <ECOMMERCE_DATA_DIR>/dagster_home) and show in the UI.
"""

from __future__ import annotations

import argparse
import time

NAME = "run"
HELP = "catch up headless: process everything that has landed, then everything downstream"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    parser.add_argument(
        "--fetch", action="store_true",
        help="also fetch the API sources first (the assets the schedules fetch, e.g. the products API)",
    )


def main(args: argparse.Namespace) -> int:
    from ecommerce_assets.orchestration import catch_up, load_definitions, scheduled_sources
    from ecommerce_assets.reporting import print_summary

    start = time.monotonic()
    defs = load_definitions()
    fetch = scheduled_sources(defs) if args.fetch else None
    report = catch_up(defs, echo=(lambda _msg: None) if args.quiet else print, fetch=fetch)
    if not report.runs:
        print(f"nothing new has landed ({report.skipped_run_keys} batch(es) already processed)")
    print_summary(report, time.monotonic() - start)
    return 0 if report.ok else 1
