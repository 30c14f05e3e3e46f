"""Check the configuration, in the spirit of `dbt debug`: for the environment (local/aws, data dir,
DAGSTER_HOME, sensors, lake, warehouse, alerts) and for each pipeline, what is configured, what is reachable
(checked for real: the folder or bucket, `select 1` on the warehouse, the stream and key-value tables, each
API with its key, dbt) and what is missing, with the setting or command that fixes it.

One line per item with a status word: ok, set (a setting that is given), off (an optional part not turned
on: never a failure), missing, unreachable. Secrets (API key, ingest tokens, passwords) are never printed.
Exits 0 when every configured part is reachable, 1 otherwise, 2 on invalid settings.
"""

from __future__ import annotations

import argparse

NAME = "doctor"
HELP = "check what is configured, what is reachable and what is missing, for each pipeline"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the report as JSON (for machines)")


def main(args: argparse.Namespace) -> int:
    from ecommerce_assets.runtime.doctor import run_doctor

    report = run_doctor()
    print(report.to_json() if args.json else report.render())
    return 0 if report.ok else 1
