"""The arrival-sensor design: cursors, look-back, late files, sweeps, run keys, restarts, S3 pagination.

Everything runs against real lakes: a ``LocalLake`` folder, and an ``S3Lake`` on moto's server (real
HTTP) for pagination past 1,000 keys. Sensors are evaluated with ``build_sensor_context``.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import dagster as dg
import pytest

from ecommerce_assets.lib.arrival import (
    ArrivalCursor,
    Arrivals,
    ScanStats,
    arrival_sensor,
    plan_buckets,
    scan,
)
from ecommerce_assets.storage.lake import LakeObject, LocalLake

SRC = "landing/things/"
TODAY = "2026-11-22"


class CountingLake(LocalLake):
    """A real ``LocalLake`` that records which prefixes were listed object by object."""

    def list_objects(self, prefix: str, start_after: str | None = None) -> Iterator[LakeObject]:
        calls = self.__dict__.setdefault("_calls", [])
        calls.append(prefix)
        yield from super().list_objects(prefix, start_after)


def _anchor() -> float:
    """A clock the test controls, whatever day it runs: an hour ahead of the real one.

    A local file's arrival time is the later of its mtime and its ctime (the real clock at write), so
    mtimes set from this anchor always win and every arrival time in the test is the one it chose.
    """
    return time.time() + 3600


def _drop(lake: LocalLake, key: str, data: bytes = b"{}", mtime: float | None = None) -> None:
    lake.write_bytes(key, data)
    if mtime is not None:
        os.utime(lake.uri(key), (mtime, mtime))


def _keys(batches: list[Arrivals]) -> list[str]:
    return sorted(o.key for b in batches for o in b.objects)


@pytest.fixture
def lake(tmp_path: Path) -> CountingLake:
    return CountingLake(base_dir=str(tmp_path / "lake"))


def test_first_tick_batches_per_date_then_nothing_new(lake: CountingLake) -> None:
    for d in ("2026-11-20", "2026-11-21"):
        for i in range(3):
            _drop(lake, f"{SRC}date={d}/f{i}.json")
    batches, cursor = scan(lake, SRC, ArrivalCursor(), today=TODAY)
    assert [b.date for b in batches] == ["2026-11-20", "2026-11-21"]
    assert [len(b.objects) for b in batches] == [3, 3]
    again, cursor2 = scan(lake, SRC, cursor, today=TODAY)
    assert again == []
    # the same cursor evaluated twice asks for the same batches: same run keys (Dagster dedups them)
    replay, _ = scan(lake, SRC, ArrivalCursor(), today=TODAY)
    assert [b.run_key for b in replay] == [b.run_key for b in batches]
    assert cursor2.latest_date == "2026-11-21"


def test_cursor_json_round_trip_and_reads_the_first_format(lake: CountingLake) -> None:
    _drop(lake, f"{SRC}date=2026-11-22/a.json")
    _, cursor = scan(lake, SRC, ArrivalCursor(), today=TODAY)
    restored = ArrivalCursor.from_json(cursor.to_json())
    assert restored == cursor
    first_format = '{"latest_date":"2026-11-22","buckets":{"date=2026-11-22/":{"wm":1.0,"recent":{"k":"v"}}}}'
    old = ArrivalCursor.from_json(first_format)
    assert old.latest_date == "2026-11-22" and old.buckets["date=2026-11-22/"].recent == {"k": "v"}
    assert old.sweep_after is None


def test_new_and_rewritten_objects_are_new_exactly_once(lake: CountingLake) -> None:
    _drop(lake, f"{SRC}date=2026-11-22/a.json", b"1")
    _, cursor = scan(lake, SRC, ArrivalCursor(), today=TODAY)
    _drop(lake, f"{SRC}date=2026-11-22/b.json", b"2")
    st = lake.stat(f"{SRC}date=2026-11-22/a.json")
    _drop(lake, f"{SRC}date=2026-11-22/a.json", b"1 changed", mtime=st.last_modified + 1)  # new version
    batches, cursor = scan(lake, SRC, cursor, today=TODAY)
    assert _keys(batches) == [f"{SRC}date=2026-11-22/a.json", f"{SRC}date=2026-11-22/b.json"]
    assert scan(lake, SRC, cursor, today=TODAY)[0] == []


def test_out_of_order_upload_inside_the_margin_is_not_missed(lake: CountingLake) -> None:
    now = _anchor()
    _drop(lake, f"{SRC}date=2026-11-22/late_start.json", mtime=now + 100)
    _, cursor = scan(lake, SRC, ArrivalCursor(), today=TODAY, margin_seconds=300)
    # an upload that started earlier but became visible after the tick: older mtime than the watermark
    _drop(lake, f"{SRC}date=2026-11-22/slow_upload.json", mtime=now - 60)
    batches, cursor = scan(lake, SRC, cursor, today=TODAY, margin_seconds=300)
    assert _keys(batches) == [f"{SRC}date=2026-11-22/slow_upload.json"]
    assert scan(lake, SRC, cursor, today=TODAY, margin_seconds=300)[0] == []


def test_only_lookback_dates_are_listed_and_a_new_old_date_is_found(lake: CountingLake) -> None:
    dates = [(dt.date(2026, 10, 1) + dt.timedelta(days=i)).isoformat() for i in range(53)]  # .. 2026-11-22
    for d in dates:
        _drop(lake, f"{SRC}date={d}/f.json")
    _, cursor = scan(lake, SRC, ArrivalCursor(), today=TODAY, sweep_buckets=0)
    lake.__dict__["_calls"] = []
    stats: list[ScanStats] = []
    batches, cursor = scan(lake, SRC, cursor, today=TODAY, lookback_days=2, sweep_buckets=0, stats=stats)
    assert batches == []
    listed = sorted(lake.__dict__["_calls"])
    assert listed == [f"{SRC}date={d}/" for d in ("2026-11-20", "2026-11-21", "2026-11-22")]
    assert stats[0].buckets_total == 53 and stats[0].buckets_listed == 3
    # a late file for a date that had no folder yet is found at once
    _drop(lake, f"{SRC}date=2025-01-01/late.json")
    batches, cursor = scan(lake, SRC, cursor, today=TODAY, sweep_buckets=0)
    assert [(b.date, len(b.objects)) for b in batches] == [("2025-01-01", 1)]


def test_late_file_in_an_old_date_folder_is_found_by_the_sweep_once(lake: CountingLake) -> None:
    dates = [(dt.date(2026, 11, 1) + dt.timedelta(days=i)).isoformat() for i in range(22)]
    for d in dates:
        _drop(lake, f"{SRC}date={d}/f.json")
    _, cursor = scan(lake, SRC, ArrivalCursor(), today=TODAY, sweep_buckets=3)
    _drop(lake, f"{SRC}date=2026-11-05/late.json")
    found: list[str] = []
    old_buckets = 22 - 3  # everything outside the look-back
    for _ in range(-(-old_buckets // 3) + 1):  # one full sweep cycle, plus one tick
        batches, cursor = scan(lake, SRC, cursor, today=TODAY, sweep_buckets=3)
        found += _keys(batches)
    assert found == [f"{SRC}date=2026-11-05/late.json"]


def test_plan_buckets_sweeps_round_robin() -> None:
    dated = [(f"date=2026-01-0{i}/", f"2026-01-0{i}") for i in range(1, 8)]
    cursor = ArrivalCursor(latest_date="2026-01-07", buckets={b: ArrivalCursor().buckets.get(b) or _state() for b, _ in dated})
    first, sweep = plan_buckets(dated, cursor, lookback_days=1, sweep_buckets=2, today="2026-01-07")
    assert first == ["date=2026-01-06/", "date=2026-01-07/"]
    assert sweep == ["date=2026-01-01/", "date=2026-01-02/"]
    cursor.sweep_after = "date=2026-01-04/"
    assert plan_buckets(dated, cursor, lookback_days=1, sweep_buckets=2, today="2026-01-07")[1] == [
        "date=2026-01-05/", "date=2026-01-01/"]


def _state():
    from ecommerce_assets.lib.arrival import BucketState

    return BucketState(watermark=1.0)


def test_future_date_prefix_does_not_blind_the_sensor(lake: CountingLake) -> None:
    _drop(lake, f"{SRC}date=2099-01-01/typo.json")
    _drop(lake, f"{SRC}date={TODAY}/a.json")
    _, cursor = scan(lake, SRC, ArrivalCursor(), today=TODAY, sweep_buckets=0)
    _drop(lake, f"{SRC}date={TODAY}/b.json")
    batches, _ = scan(lake, SRC, cursor, today=TODAY, sweep_buckets=0)
    assert _keys(batches) == [f"{SRC}date={TODAY}/b.json"]


def test_time_budget_carries_unlisted_buckets_to_the_next_tick(lake: CountingLake) -> None:
    for d in ("2026-11-20", "2026-11-21", "2026-11-22"):
        _drop(lake, f"{SRC}date={d}/f.json")
    cursor, seen = ArrivalCursor(), []
    for _ in range(3):
        stats: list[ScanStats] = []
        batches, cursor = scan(lake, SRC, cursor, today=TODAY, time_budget_seconds=0.0, stats=stats)
        assert stats[0].buckets_listed == 1  # one bucket per tick with no time left
        seen += _keys(batches)
    assert sorted(seen) == [f"{SRC}date={d}/f.json" for d in ("2026-11-20", "2026-11-21", "2026-11-22")]
    assert scan(lake, SRC, cursor, today=TODAY)[0] == []


def test_undated_source_and_suffix_filter(lake: CountingLake) -> None:
    _drop(lake, "landing/inbox/a.csv")
    _drop(lake, "landing/inbox/readme.txt")
    batches, cursor = scan(lake, "landing/inbox", ArrivalCursor(), suffixes=[".csv"])
    assert [(b.bucket, b.date, _keys([b])) for b in batches] == [("", None, ["landing/inbox/a.csv"])]
    _drop(lake, "landing/inbox/sub/b.CSV")
    assert _keys(scan(lake, "landing/inbox", cursor, suffixes=[".csv"])[0]) == ["landing/inbox/sub/b.CSV"]


# --- the sensor itself, through build_sensor_context ------------------------------------------------

@dg.asset(partitions_def=dg.DailyPartitionsDefinition(start_date="2020-01-01", end_offset=1))
def things() -> None:
    pass


def _sensor(**kwargs) -> dg.SensorDefinition:
    return arrival_sensor(name="things_arrival", source_prefix=SRC, target=[things], description="test", **kwargs)


def _tick(sensor: dg.SensorDefinition, lake: LocalLake, cursor: str | None, instance: dg.DagsterInstance):
    ctx = dg.build_sensor_context(cursor=cursor, resources={"lake": lake}, instance=instance)
    result = sensor(ctx)
    assert isinstance(result, dg.SensorResult)
    return result


def test_sensor_run_keys_tags_and_restart(lake: CountingLake, data_dir: Path) -> None:
    today = dt.datetime.now(dt.UTC).date().isoformat()
    yesterday = (dt.date.fromisoformat(today) - dt.timedelta(days=1)).isoformat()
    for name in ("a", "b"):
        _drop(lake, f"{SRC}date={today}/{name}.json")
    _drop(lake, f"{SRC}date={yesterday}/c.json")
    sensor = _sensor()
    assert sensor.tags.get("ecommerce/arrival") == "true"
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING  # local mode
    with dg.instance_for_test() as instance:
        r1 = _tick(sensor, lake, None, instance)
        assert sorted(r.partition_key for r in r1.run_requests) == sorted([today, yesterday])
        by_date = {r.partition_key: r for r in r1.run_requests}
        assert by_date[today].tags["ecommerce/arrival_objects"] == "2"
        assert by_date[today].run_key.startswith(f"things_arrival:date={today}/:")
        # a daemon restart before the cursor was stored evaluates the old cursor again: same run keys
        assert sorted(r.run_key for r in _tick(_sensor(), lake, None, instance).run_requests) == sorted(
            r.run_key for r in r1.run_requests)
        # a restart after it was stored (a new sensor object, the stored cursor): nothing again
        r2 = _tick(_sensor(), lake, r1.cursor, instance)
        assert r2.run_requests == [] and r2.skip_reason
        _drop(lake, f"{SRC}date={today}/d.json")
        r3 = _tick(_sensor(), lake, r2.cursor, instance)
        assert [(r.partition_key, r.tags["ecommerce/arrival_objects"]) for r in r3.run_requests] == [(today, "1")]
        assert r3.run_requests[0].run_key not in {r.run_key for r in r1.run_requests}


def test_sensor_defers_a_batch_its_request_builder_refuses(lake: CountingLake, data_dir: Path) -> None:
    _drop(lake, f"{SRC}date=2026-11-22/a.json")
    allow = {"ok": False}

    def build(batch: Arrivals) -> dg.RunRequest | None:
        return dg.RunRequest(partition_key=batch.date) if allow["ok"] else None

    with dg.instance_for_test() as instance:
        r1 = _tick(_sensor(build_request=build), lake, None, instance)
        assert r1.run_requests == []
        allow["ok"] = True
        r2 = _tick(_sensor(build_request=build), lake, r1.cursor, instance)
        assert [r.partition_key for r in r2.run_requests] == ["2026-11-22"]
        assert _tick(_sensor(build_request=build), lake, r2.cursor, instance).run_requests == []


# --- S3: pagination past 1,000 keys, through the same Lake interface --------------------------------



def test_s3_pagination_past_1000_keys_exactly_once(moto_endpoint: str) -> None:

    from ecommerce_assets.storage.s3_lake import S3Lake

    bucket = f"arrivals-{uuid.uuid4().hex[:10]}"
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    s3_lake = S3Lake(bucket=bucket, prefix="lake", endpoint_url=moto_endpoint, region_name="us-east-1")
    keys = [f"{SRC}date=2026-11-22/f{i:05d}.json" for i in range(1_150)]
    keys += [f"{SRC}date=2026-11-21/g{i:03d}.json" for i in range(30)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=f"lake/{k}", Body=b"{}"), keys))

    batches, cursor = scan(s3_lake, SRC, ArrivalCursor(), today=TODAY)
    assert {b.date: len(b.objects) for b in batches} == {"2026-11-21": 30, "2026-11-22": 1_150}
    assert sorted(o.key for b in batches for o in b.objects) == sorted(keys)
    assert all(o.version for b in batches for o in b.objects)  # the ETag
    assert scan(s3_lake, SRC, ArrivalCursor.from_json(cursor.to_json()), today=TODAY)[0] == []
    client.put_object(Bucket=bucket, Key=f"lake/{SRC}date=2026-11-22/z-late.json", Body=b"[]")
    batches, _ = scan(s3_lake, SRC, cursor, today=TODAY)
    assert _keys(batches) == [f"{SRC}date=2026-11-22/z-late.json"]


def test_a_burst_leaves_the_cursor_once_the_margin_has_passed(lake: CountingLake) -> None:
    t = _anchor()
    for i in range(50):
        _drop(lake, f"{SRC}date={TODAY}/b{i:03d}.json", mtime=t + i * 0.01)
    batches, cursor = scan(lake, SRC, ArrivalCursor(), today=TODAY, now=t + 5)
    assert sum(len(b.objects) for b in batches) == 50
    assert len(cursor.buckets[f"date={TODAY}/"].recent) == 50  # all inside the margin of this listing
    batches, cursor = scan(lake, SRC, cursor, today=TODAY, now=t + 600)
    assert batches == [] and len(cursor.buckets[f"date={TODAY}/"].recent) == 1  # only the newest remains
    # an upload that started inside the margin of the last listing but finished after it is still new
    _drop(lake, f"{SRC}date={TODAY}/slow.json", mtime=t + 600 - 120)
    batches, _ = scan(lake, SRC, cursor, today=TODAY, now=t + 700)
    assert _keys(batches) == [f"{SRC}date={TODAY}/slow.json"]


def test_a_file_copied_in_with_an_old_mtime_arrives_when_it_is_copied(lake: CountingLake, tmp_path: Path) -> None:
    """``cp -p`` / ``mv`` keep a file's old mtime; its arrival time is when it appeared in the landing zone."""
    _drop(lake, f"{SRC}date={TODAY}/first.json")
    first, cursor = scan(lake, SRC, ArrivalCursor(), today=TODAY, margin_seconds=0)
    assert _keys(first) == [f"{SRC}date={TODAY}/first.json"]
    source = tmp_path / "exported.json"
    source.write_text("{}")
    old = time.time() - 30 * 86400
    os.utime(source, (old, old))
    before = time.time()
    target = Path(lake.uri(f"{SRC}date={TODAY}/exported.json"))
    shutil.copy2(source, target)  # keeps the 30-day-old mtime, as `cp -p` does
    listed = {o.key: o for o in lake.list_objects(f"{SRC}date={TODAY}/")}
    assert listed[f"{SRC}date={TODAY}/exported.json"].last_modified >= before - 1  # the copy's ctime
    # the cursor has passed the old mtime long ago, yet the copied file is new
    batches, _ = scan(lake, SRC, cursor, today=TODAY, margin_seconds=0)
    assert _keys(batches) == [f"{SRC}date={TODAY}/exported.json"]
