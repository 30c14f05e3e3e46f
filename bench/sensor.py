"""Path 4: one tick of the product's transactions arrival sensor over a prefix of 100,000 objects.

The objects sit in 100 date prefixes of 1,000 files (``landing/transactions/date=.../``), the layout the
generator and the shop produce. Measured through the real sensor definition
(``transactions_arrival_sensor``, evaluated with ``dg.build_sensor_context``):

* ``first tick``: an empty cursor, every object is new (one run request per date);
* ``next tick``: the cursor of the first tick, after 100 new files landed in today's prefix: only
  recent/new date prefixes (+ the rolling sweep) are listed, so the tick is O(new objects), not O(prefix).

Lakes: the local folder, and S3 served by moto (``ThreadedMotoServer``, real boto3 HTTP calls). The S3
objects are put straight into moto's in-process backend (setup only; uploading 100,000 objects over HTTP
would dominate the suite); every listing of the tick goes over HTTP. moto runs in the measuring process,
so its own (Python) listing work is inside the tick time: a real S3 lists 1,000 keys per call in ~20-50 ms.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

from bench.common import timed

BODY = b'{"transaction_id":"T","timestamp":"2024-01-01T00:00:00"}\n'


def _keys(objects: int, dates: int) -> list[str]:
    today = dt.datetime.now(dt.UTC).date()
    per = objects // dates
    return [f"landing/transactions/date={(today - dt.timedelta(days=d)).isoformat()}/transactions_{d:03d}_{i:05d}.json"
            for d in range(dates) for i in range(per)]


def _tick(lake, cursor: str | None) -> tuple[float, object]:
    import dagster as dg

    from ecommerce_assets.defs.transactions.sensors import transactions_arrival_sensor

    with dg.build_sensor_context(cursor=cursor, resources={"lake": lake}) as ctx:
        return timed(lambda: transactions_arrival_sensor(ctx))


def _measure(lake, put, keys: list[str], new: int) -> dict:
    first_s, first = _tick(lake, None)
    today = dt.datetime.now(dt.UTC).date().isoformat()
    for i in range(new):
        put(f"landing/transactions/date={today}/transactions_new_{i:05d}.json")
    next_s, nxt = _tick(lake, first.cursor)  # type: ignore[attr-defined]
    third_s, third = _tick(lake, nxt.cursor)  # type: ignore[attr-defined]
    return {
        "seconds": first_s, "objects": len(keys), "first_tick_runs": len(first.run_requests),  # type: ignore[attr-defined]
        "first_tick_seconds": first_s, "next_tick_seconds": next_s, "next_tick_new_objects": new,
        "next_tick_runs": len(nxt.run_requests),  # type: ignore[attr-defined]
        "idle_tick_seconds": third_s, "idle_tick_runs": len(third.run_requests),  # type: ignore[attr-defined]
    }


def local(params: dict, work: Path) -> dict:
    from ecommerce_assets.storage.lake import LocalLake

    lake = LocalLake(base_dir=str(work / "lake"))
    keys = _keys(params["objects"], params["dates"])
    root = work / "lake"
    made: set[Path] = set()
    for k in keys:
        p = root / k
        if p.parent not in made:
            p.parent.mkdir(parents=True, exist_ok=True)
            made.add(p.parent)
        p.write_bytes(BODY)

    def put(key: str) -> None:
        time.sleep(0.001)
        lake.write_bytes(key, BODY)

    return _measure(lake, put, keys, params.get("new", 100))


def s3(params: dict, work: Path) -> dict:
    import socket

    import boto3
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer

    from ecommerce_assets.storage.s3_lake import S3Lake

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="bench-lake")
        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        keys = _keys(params["objects"], params["dates"])
        for k in keys:
            backend.put_object("bench-lake", f"lake/{k}", BODY)
        lake = S3Lake(bucket="bench-lake", prefix="lake", endpoint_url=endpoint, region_name="us-east-1")
        return _measure(lake, lambda key: lake.write_bytes(key, BODY), keys, params.get("new", 100))
    finally:
        server.stop()
