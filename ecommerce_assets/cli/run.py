"""Catch up, headless (for cron, CI and scripts): do once what the schedules (with --fetch) and the sensors
would do, then materialize everything downstream of what landed, partitions included.

Prints one line per run (its assets, row counts and time), one line per pipeline skipped saying what turns
it on, then a summary. Dagster's event logs stay in the instance (DAGSTER_HOME, default
<ECOMMERCE_DATA_DIR>/dagster_home) and show in the UI; --verbose prints them too. Exits 0 when everything
configured succeeded, 1 when a run or a sensor failed, 2 on invalid settings.
"""

from __future__ import annotations

import argparse
import sys
import time

from ecommerce_assets.pipelines import PIPELINE_NAMES

NAME = "run"
HELP = "catch up headless: fetch (--fetch), process everything that has landed, then everything downstream"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fetch", action="store_true",
                        help="first do what the API schedules do: every configured seller's catalog, the products API")
    parser.add_argument("--pipeline", action="append", choices=PIPELINE_NAMES, metavar="NAME", default=None,
                        help=f"limit the catch-up to this pipeline (repeatable): {', '.join(PIPELINE_NAMES)}")
    parser.add_argument("--verbose", action="store_true", help="also print Dagster's event logs")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")


def storage_failure(exc: BaseException) -> str:
    """One line for a failure of the Dagster instance or the data dir, naming a full disk when it is one."""
    import shutil

    from ecommerce_assets.settings import get_settings

    settings = get_settings()
    places = {"DAGSTER_HOME": settings.dagster_home_dir, "data dir": settings.data_dir}
    full = []
    for name, path in places.items():
        try:
            usage = shutil.disk_usage(path)
        except OSError:
            continue
        if usage.free < 1 << 20:
            full.append(f"{name} {path} ({usage.free // 1024} KB free)")
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    if full:
        return f"no space left on device: {'; '.join(full)}; free some space and run again ({first})"
    return f"the run stopped: {type(exc).__name__}: {first}"


def main(args: argparse.Namespace) -> int:
    from ecommerce_assets.runtime.catchup import catch_up, load_definitions
    from ecommerce_assets.runtime.summary import print_summary, startup_problems, startup_warnings

    start = time.monotonic()
    problems = startup_problems()
    if problems:
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        return 2
    for line in startup_warnings():
        print(f"warning: {line}")
    try:
        report = catch_up(
            load_definitions(), echo=(lambda _msg: None) if args.quiet else print, fetch=args.fetch,
            pipelines=args.pipeline, verbose=args.verbose,
        )
    except Exception as exc:  # the instance or the data dir itself failed (a full disk, an I/O error): one line
        print(f"error: {storage_failure(exc)}", file=sys.stderr)
        return 1
    if not report.runs and not report.failures:
        print(f"nothing new to process ({report.skipped_run_keys} batch(es) already processed)")
    print_summary(report, time.monotonic() - start)
    return 0 if report.ok else 1
