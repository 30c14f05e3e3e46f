"""Set up and run the whole platform on the embedded default: land the product's own sample data in
the local lake (no network, no account), run every pipeline once, and print what was built (tables,
row counts, paths) and how to open the UI. Safe to run again: re-runs change nothing.
"""

from __future__ import annotations

import argparse
import sys
import time

NAME = "demo"
HELP = "land the bundled samples and run every pipeline on the local lake + DuckDB"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    parser.add_argument("--verbose", action="store_true", help="also print Dagster's event logs")


def main(args: argparse.Namespace) -> int:
    from ecommerce_assets.dev.demo import run_demo
    from ecommerce_assets.runtime.summary import startup_problems

    problems = startup_problems()
    if problems:
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        return 2
    start = time.monotonic()
    ok = run_demo(echo=(lambda _msg: None) if args.quiet else print, verbose=args.verbose)
    print(f"\ndemo finished in {time.monotonic() - start:.1f}s: {'ok' if ok else 'FAILED'}")
    return 0 if ok else 1
