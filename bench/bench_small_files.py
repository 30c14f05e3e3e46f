"""1,000 small transaction files: batched by the sensor path vs one file at a time (the Lambda way).

Three ways over the same landed files (1,000 files x 100 records, JSON lines, one date partition):

* ``batched``: what the arrival sensor + ``transactions`` asset do: one ``scan`` of the landing zone,
  one run for the date, all files read by ONE DuckDB statement (``transform_partition``);
* ``per_file_in_process``: the Lambda handler called once per file in one warm process (a warm Lambda);
* ``per_file_process``: one fresh Python process per file (a cold Lambda: interpreter + imports +
  handler), measured on ``--cold-sample`` files (default 50) and extrapolated to all files.

Also measured: one arrival-sensor ``scan`` over a prefix with 100,000 objects (first tick, and a later
tick that lists only the look-back dates).

Prints a table and writes JSON (default ``bench/results/small_files.json``).

    .venv/bin/python bench/bench_small_files.py [--files 1000] [--records 100] [--cold-sample 50]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ecommerce_assets.lib.arrival import ArrivalCursor, ScanStats, scan  # noqa: E402
from ecommerce_assets.services.transactions_generator import generate_files, land  # noqa: E402
from ecommerce_assets.storage.lake import LocalLake  # noqa: E402
from ecommerce_assets.transforms.transactions import transform_partition  # noqa: E402

DATE = dt.date(2026, 11, 20)
LANDING = "landing/transactions/"

COLD_SCRIPT = """
import sys, time
t = time.perf_counter()
from ecommerce_assets.storage.lake import LocalLake
from lambdas.transaction_json_to_parquet import handler
lake = LocalLake(base_dir=sys.argv[1], duckdb_threads=1)
out = handler({"Records": [{"s3": {"bucket": {"name": "local"}, "object": {"key": sys.argv[2]}}}]}, lake=lake)
assert out["processed"][0]["records_out"] > 0
"""


def fresh_lake(root: Path, files: int, records: int) -> LocalLake:
    if root.exists():
        shutil.rmtree(root)
    lake = LocalLake(base_dir=str(root / "lake"), duckdb_threads=2, duckdb_memory_limit="1GB")
    land(lake, generate_files(files * records, per_file=records, fmt="lines", seed=7, days=1, end_date=DATE))
    return lake


def bench_batched(lake: LocalLake) -> dict:
    t0 = time.perf_counter()
    batches, _ = scan(lake, LANDING, ArrivalCursor(), today=DATE.isoformat())
    t1 = time.perf_counter()
    rows = 0
    for batch in batches:
        rows += transform_partition(lake, batch.date or "", list(batch.objects)).records_out
    t2 = time.perf_counter()
    return {"seconds": t2 - t0, "scan_seconds": t1 - t0, "transform_seconds": t2 - t1, "rows": rows,
            "runs": len(batches)}


def bench_per_file_in_process(lake: LocalLake) -> dict:
    from lambdas.transaction_json_to_parquet import handler

    keys = [o.key for o in lake.list_objects(LANDING)]
    t0 = time.perf_counter()
    rows = 0
    for key in keys:
        out = handler({"Records": [{"s3": {"bucket": {"name": "local"}, "object": {"key": key}}}]}, lake=lake)
        rows += out["processed"][0]["records_out"]
    return {"seconds": time.perf_counter() - t0, "rows": rows, "calls": len(keys)}


def bench_per_file_process(lake: LocalLake, sample: int) -> dict:
    keys = [o.key for o in lake.list_objects(LANDING)]
    env = {**os.environ, "ECOMMERCE_ENV": "local", "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    for key in keys[:sample]:
        subprocess.run([sys.executable, "-c", COLD_SCRIPT, lake.base_dir, key], check=True, env=env, cwd=ROOT)
    measured = time.perf_counter() - t0
    per_call = measured / max(1, min(sample, len(keys)))
    return {"seconds": per_call * len(keys), "measured_seconds": measured, "sampled_calls": min(sample, len(keys)),
            "seconds_per_call": per_call, "extrapolated": True}


def bench_sensor_100k(root: Path, objects: int = 100_000, dates: int = 100) -> dict:
    if root.exists():
        shutil.rmtree(root)
    lake = LocalLake(base_dir=str(root / "lake"))
    per_date = objects // dates
    t = time.perf_counter()
    for d in range(dates):
        folder = Path(lake.base_dir) / LANDING / f"date={(DATE - dt.timedelta(days=dates - 1 - d)).isoformat()}"
        folder.mkdir(parents=True)
        for i in range(per_date):
            (folder / f"t_{i:06d}.json").write_bytes(b"{}")
    made = time.perf_counter() - t
    stats: list[ScanStats] = []
    t0 = time.perf_counter()
    batches, cursor = scan(lake, LANDING, ArrivalCursor(), today=DATE.isoformat(), stats=stats)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    again, cursor = scan(lake, LANDING, cursor, today=DATE.isoformat(), stats=stats)
    later = time.perf_counter() - t0
    (Path(lake.base_dir) / LANDING / f"date={DATE.isoformat()}" / "new.json").write_bytes(b"{}")
    t0 = time.perf_counter()
    newest, cursor = scan(lake, LANDING, cursor, today=DATE.isoformat(), stats=stats)
    one_new = time.perf_counter() - t0
    _, settled = scan(lake, LANDING, cursor, today=DATE.isoformat(), now=time.time() + 301)  # a tick after the margin
    return {
        "objects": objects, "date_prefixes": dates, "setup_seconds": made,
        "cursor_bytes_after_margin": len(settled.to_json()),
        "first_tick_seconds": first, "first_tick_new_objects": sum(len(b.objects) for b in batches),
        "later_tick_seconds": later, "later_tick_objects_listed": stats[1].objects_listed,
        "tick_with_one_new_file_seconds": one_new, "new_found": sum(len(b.objects) for b in newest),
        "cursor_bytes": len(cursor.to_json()), "repeated": sum(len(b.objects) for b in again),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--records", type=int, default=100)
    parser.add_argument("--cold-sample", type=int, default=50)
    parser.add_argument("--sensor-objects", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "small_files.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-small-files-"))
    try:
        results: dict = {"files": args.files, "records_per_file": args.records,
                         "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                     "platform": platform.platform()}}
        lake = fresh_lake(work / "a", args.files, args.records)
        results["batched"] = bench_batched(lake)
        lake = fresh_lake(work / "b", args.files, args.records)
        results["per_file_in_process"] = bench_per_file_in_process(lake)
        lake = fresh_lake(work / "c", args.files, args.records)
        results["per_file_process"] = bench_per_file_process(lake, args.cold_sample)
        results["sensor_scan"] = bench_sensor_100k(work / "d", args.sensor_objects)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = args.files * args.records
    base = results["batched"]["seconds"]
    print(f"\n{args.files:,} files x {args.records} records = {rows:,} rows, one date partition\n")
    print("| way | seconds | rows/s | vs batched |\n|---|---:|---:|---:|")
    for name, label in (("batched", "batched (sensor path: 1 scan, 1 run, 1 DuckDB statement)"),
                        ("per_file_in_process", "one file per call, warm process"),
                        ("per_file_process", f"one process per file (cold; {args.cold_sample} measured, extrapolated)")):
        s = results[name]["seconds"]
        print(f"| {label} | {s:.2f} | {rows / s:,.0f} | {s / base:.1f}x |")
    sc = results["sensor_scan"]
    print(f"\narrival scan over {sc['objects']:,} objects in {sc['date_prefixes']} date prefixes: first tick "
          f"{sc['first_tick_seconds']:.2f} s ({sc['first_tick_new_objects']:,} new), later tick "
          f"{sc['later_tick_seconds']:.3f} s ({sc['later_tick_objects_listed']:,} objects listed), tick with one new "
          f"file {sc['tick_with_one_new_file_seconds']:.3f} s (found {sc['new_found']}), cursor {sc['cursor_bytes']:,} bytes "
          f"while the burst is inside the 5-minute margin, {sc['cursor_bytes_after_margin']:,} bytes after it")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
