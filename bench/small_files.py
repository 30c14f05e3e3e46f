"""Path 3: many small files: 1,000 files of 100 transactions in one date prefix, three ways.

* ``batched``: the sensor's path: ONE ``transform_partition`` call over every file of the date (one
  DuckDB statement reads them all);
* ``per_call``: the Lambda handler (``lambdas/transaction_json_to_parquet.handler``) called once per file
  inside one warm process;
* ``per_process``: the Lambda way with cold starts: one fresh Python process per file running that
  handler. 1,000 cold processes would take most of the suite's budget, so ``sample`` files are run and
  the time is scaled to all files (the per-process cost is constant: start-up + one file); the figure
  says so.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.common import CACHE, ROOT, timed

DATE = "2024-03-10"


def prepare(files: int, per_file: int = 100) -> Path:
    from ecommerce_assets.services.transactions_generator import generate_files, land
    from ecommerce_assets.storage.lake import LocalLake

    root = CACHE / f"small_files_{files}x{per_file}"
    if not (root / ".complete").exists():
        shutil.rmtree(root, ignore_errors=True)
        land(LocalLake(base_dir=str(root)), generate_files(files * per_file, per_file=per_file, fmt="lines", seed=3,
                                                           days=1, end_date=dt.date.fromisoformat(DATE)))
        (root / ".complete").write_text("ok")
    return root


def _lake_copy(params: dict, work: Path):
    from ecommerce_assets.storage.lake import LocalLake

    src = prepare(params["files"])
    data_dir = work / "data"
    shutil.copytree(src / "landing", data_dir / "lake" / "landing")
    return data_dir, LocalLake(base_dir=str(data_dir / "lake"))


def _event(key: str) -> dict:
    return {"Records": [{"eventSource": "aws:s3", "s3": {"bucket": {"name": "local"}, "object": {"key": key}}}]}


def batched(params: dict, work: Path) -> dict:
    from ecommerce_assets.transforms.transactions import transform_partition

    _, lake = _lake_copy(params, work)
    prefix = f"landing/transactions/date={DATE}/"

    def run() -> int:
        return transform_partition(lake, DATE, list(lake.list_objects(prefix))).records_out

    seconds, rows = timed(run)
    return {"seconds": seconds, "files": params["files"], "rows_out": rows, "per_file_ms": 1000 * seconds / params["files"]}


def per_call(params: dict, work: Path) -> dict:
    sys.path.insert(0, str(ROOT))
    from lambdas.transaction_json_to_parquet import handler

    _, lake = _lake_copy(params, work)
    keys = [o.key for o in lake.list_objects(f"landing/transactions/date={DATE}/")]

    def run() -> int:
        return sum(handler(_event(k), lake=lake)["processed"][0]["records_out"] for k in keys)

    seconds, rows = timed(run)
    return {"seconds": seconds, "files": len(keys), "rows_out": rows, "per_file_ms": 1000 * seconds / len(keys)}


def per_process(params: dict, work: Path) -> dict:
    data_dir, lake = _lake_copy(params, work)
    keys = [o.key for o in lake.list_objects(f"landing/transactions/date={DATE}/")]
    sample = keys[: params["sample"]]
    env = {**os.environ, "ECOMMERCE_ENV": "local", "ECOMMERCE_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    code = ("import json, sys\nfrom lambdas.transaction_json_to_parquet import handler\n"
            "print(json.dumps(handler(json.loads(sys.argv[1]))))")

    def run() -> int:
        rows = 0
        for k in sample:
            out = subprocess.run([sys.executable, "-c", code, json.dumps(_event(k))], env=env, cwd=str(work),
                                 capture_output=True, text=True, check=True)
            rows += json.loads(out.stdout.strip().splitlines()[-1])["processed"][0]["records_out"]
        return rows

    seconds, rows = timed(run)
    scale = len(keys) / len(sample)
    return {"seconds": seconds * scale, "measured_seconds": seconds, "files": len(keys), "sampled_files": len(sample),
            "rows_out_sampled": rows, "per_file_ms": 1000 * seconds / len(sample),
            "note": f"{len(sample)} cold processes measured, scaled x{scale:g} to {len(keys)} files"}
