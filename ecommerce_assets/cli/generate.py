"""Land generated e-commerce transactions in the lake's landing/transactions/ (the shop's stand-in).

Without --days: one batch of --count transactions timed in the last five minutes, under today's date
prefix (what the 5-minute schedule does). With --days N: a backfill of --count transactions spread over
the N days ending --end-date (default today), --per-file transactions per file; fast enough to make
10 million rows for the benchmarks. The same --seed gives the same files.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

NAME = "generate"
HELP = "land generated transactions in landing/transactions/ (one batch, or a --days backfill)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, default=5, help="transactions to generate (default 5)")
    parser.add_argument("--days", type=int, default=None, help="backfill: spread --count over this many days")
    parser.add_argument("--end-date", type=dt.date.fromisoformat, default=None, help="last backfill day (YYYY-MM-DD)")
    parser.add_argument("--per-file", type=int, default=1, help="transactions per file (default 1)")
    parser.add_argument("--format", choices=("object", "array", "lines"), default="object",
                        help="object: one JSON object per file; array: a JSON array; lines: JSON lines")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the current epoch)")
    parser.add_argument("--catalog", action="store_true", help="print the product catalog as JSON and exit")


def main(args: argparse.Namespace) -> int:
    from ecommerce_assets.resources import build_resources
    from ecommerce_assets.services.transactions_generator import catalog_json, generate_files, land

    if args.catalog:
        print(catalog_json())
        return 0
    if args.format == "object" and args.per_file != 1:
        print("error: --format object holds one transaction per file (use --per-file 1)")
        return 2
    lake = build_resources(dbt=False)["lake"]
    start = time.monotonic()
    seed = args.seed if args.seed is not None else int(time.time())
    files, records, keys = land(
        lake,
        generate_files(args.count, per_file=args.per_file, fmt=args.format, seed=seed, days=args.days or 1,
                       end_date=args.end_date if args.days else None),
    )
    elapsed = time.monotonic() - start
    print(f"landed {records:,} transaction(s) in {files:,} file(s) below {lake.uri('landing/transactions/')} "
          f"in {elapsed:.1f} s (seed {seed})")
    for key in keys[:3]:
        print(f"  {key}")
    if files > 3:
        print(f"  ... and {files - 3:,} more")
    return 0
