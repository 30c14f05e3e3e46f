"""End to end: the real ``dagster dev`` (webserver + daemon) processes dropped transaction files exactly once.

Files are dropped into the local lake while Dagster runs: good files in all three formats, a file
with bad records, a file that is not JSON, and a late file for an old date. Nobody clicks: the arrival
sensor asks for the runs. The test then restarts Dagster and drops more (a new file today, and a late
file into an old date folder that only the rolling sweep lists): still exactly once, nothing lost.

"Exactly once" is checked on both sides: every dropped file is in exactly one sensor-launched run
(the sum of the runs' ``ecommerce/arrival_objects`` tags equals the number of files), and every good
transaction id is in the processed zone exactly once, every bad record and bad file in quarantine.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest

from ecommerce_assets.services.transactions_generator import generate_files
from ecommerce_assets.storage.lake import LocalLake
from tests.conftest import free_port

pytestmark = pytest.mark.slow

SENSOR = "transactions_arrival_sensor"
ROOT = Path(__file__).resolve().parents[1]
DAGSTER_YAML = """\
telemetry:
  enabled: false
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 3
    tag_concurrency_limits:
      - key: dagster/partition
        value:
          applyLimitPerUniqueValue: true
        limit: 1
"""


class Dagster:
    """``dagster dev`` in its own process group (stopped by signalling the group)."""

    def __init__(self, env: dict[str, str], log: Path):
        self.env, self.log, self.proc = env, log, None

    def start(self) -> None:
        port = free_port()
        self.log_handle = self.log.open("a")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster"), "dev", "-m", "ecommerce_assets.definitions",
             "-h", "127.0.0.1", "-p", str(port)],
            cwd=ROOT, env=self.env, stdout=self.log_handle, stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_for(lambda: _http_ok(f"http://127.0.0.1:{port}/server_info"), 180, "the webserver to answer", self)

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        self.log_handle.close()
        self.proc = None

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-60:])


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def wait_for(cond: Callable[[], bool], timeout: float, what: str, dagster: Dagster) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dagster.proc is not None and dagster.proc.poll() is not None:
            raise AssertionError(f"dagster dev exited while waiting for {what}:\n{dagster.tail()}")
        if "Error loading repository location" in dagster.log.read_text(errors="replace"):
            raise AssertionError(f"the code location failed to load:\n{dagster.tail()}")
        if cond():
            return
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}:\n{dagster.tail()}")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    e = {k: v for k, v in os.environ.items() if not k.startswith(("ECOMMERCE_", "DAGSTER_", "AWS_"))}
    e.update({
        "ECOMMERCE_ENV": "local", "ECOMMERCE_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(home),
        "ECOMMERCE_SENSOR_INTERVAL_SECONDS": "3", "ECOMMERCE_DUCKDB_THREADS": "1",
        # the venv's executables (dagster, dbt) first, as in an activated environment
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    })
    return e


@pytest.fixture
def dagster(env: dict[str, str], tmp_path: Path) -> Iterator[Dagster]:
    d = Dagster(env, tmp_path / "dagster.log")
    try:
        yield d
    finally:
        d.stop()


def _sensor_runs(home: str) -> list:
    import dagster as dg
    from dagster._core.storage.dagster_run import RunsFilter

    with dg.DagsterInstance.from_config(home) as instance:
        return list(instance.get_runs(filters=RunsFilter(tags={"dagster/sensor_name": SENSOR})))


def _runs_done(home: str, expected_files: int) -> bool:
    runs = _sensor_runs(home)
    if sum(int(r.tags.get("ecommerce/arrival_objects", "0")) for r in runs) < expected_files:
        return False
    failed = [r for r in runs if r.status.value in ("FAILURE", "CANCELED")]
    if failed:
        raise AssertionError(f"sensor runs failed: {[(r.run_id, r.tags.get('dagster/partition')) for r in failed]}")
    return all(r.is_finished for r in runs)


def _processed_ids(lake: LocalLake) -> list[tuple[str, str]]:
    """(date, transaction_id) of every row of the Iceberg table ``transactions`` now (the local catalog)."""
    from ecommerce_assets.storage.iceberg import CATALOG_FILE, IcebergTables

    base = Path(lake.base_dir).resolve()
    store = IcebergTables(catalog_kind="sql", warehouse=base.as_uri(), sqlite_path=str(base.parent / CATALOG_FILE))
    if not store.exists("transactions"):
        return []
    rows = store.read("transactions").select(["date", "transaction_id"]).to_pylist()
    return [(str(r["date"]), r["transaction_id"]) for r in rows]


def _quarantined_rows(lake: LocalLake) -> list[tuple]:
    files = [o.key for o in lake.list_objects("quarantine/transactions/") if o.key.endswith("records.parquet")]
    if not files:
        return []
    return duckdb.connect().execute(
        "SELECT file, row, rule FROM read_parquet(?) ORDER BY ALL", [[lake.uri(k) for k in files]]
    ).fetchall()


def _land(lake: LocalLake, count: int, fmt: str, per_file: int, seed: int, date: dt.date) -> tuple[list[str], list[dict]]:
    keys: list[str] = []
    recs: list[dict] = []
    for f in generate_files(count, per_file=per_file, fmt=fmt, seed=seed, days=1, end_date=date):
        lake.write_bytes(f.key, f.data)
        keys.append(f.key)
        text = f.data.decode()
        recs += json.loads(text) if fmt == "array" else [json.loads(x) for x in text.splitlines() if x.strip()]
    return keys, recs


def test_dagster_dev_processes_every_dropped_file_exactly_once(env: dict[str, str], dagster: Dagster) -> None:
    lake = LocalLake(base_dir=str(Path(env["ECOMMERCE_DATA_DIR"]) / "lake"))
    home = env["DAGSTER_HOME"]
    today = dt.datetime.now(dt.UTC).date()
    old = today - dt.timedelta(days=12)
    dagster.start()

    # --- phase 1: good files (three formats), bad records, not JSON, a late file for an old date --------
    dropped: list[str] = []
    expected: dict[tuple[str, str], int] = {}
    for fmt, per_file, seed in (("object", 1, 1), ("array", 5, 2), ("lines", 5, 3)):
        keys, recs = _land(lake, 5, fmt, per_file, seed, today)
        dropped += keys
        expected.update({(today.isoformat(), r["transaction_id"]): 1 for r in recs})
    keys, recs = _land(lake, 4, "lines", 4, 4, old)  # late-arriving: an old date with no folder yet
    dropped += keys
    expected.update({(old.isoformat(), r["transaction_id"]): 1 for r in recs})
    bad_key = f"landing/transactions/date={today.isoformat()}/transactions_bad_records.json"
    good_one = {"transaction_id": "E2E-OK", "timestamp": f"{today}T01:00:00", "customer_id": "C1", "product_id": "P0001",
                "product_name": "Wireless Earbuds", "category": "Electronics", "quantity": 1, "price": 5.0,
                "total_amount": 5.0}
    lake.write_bytes(bad_key, "\n".join(json.dumps(r) for r in (
        good_one, {**good_one, "transaction_id": "E2E-BAD-1", "quantity": -1},
        {k: v for k, v in good_one.items() if k != "price"} | {"transaction_id": "E2E-BAD-2"},
    )).encode())
    expected[(today.isoformat(), "E2E-OK")] = 1
    not_json = f"landing/transactions/date={today.isoformat()}/transactions_not_json.json"
    lake.write_bytes(not_json, b"<html>not json</html>")
    dropped += [bad_key, not_json]

    def phase_done() -> bool:
        return _runs_done(home, len(dropped)) and sorted(_processed_ids(lake)) == sorted(expected)

    raw_bad = bad_key.replace("landing/", "raw/", 1)  # records are processed from their registered raw copy
    wait_for(phase_done, 300, "phase 1 files to be processed", dagster)
    assert sum(int(r.tags["ecommerce/arrival_objects"]) for r in _sensor_runs(home)) == len(dropped)
    assert _quarantined_rows(lake) == [(raw_bad, 2, "non_positive_quantity"), (raw_bad, 3, "missing_price")]
    assert lake.exists(f"quarantine/transactions/date={today.isoformat()}/files/transactions_not_json.json")

    # --- restart: the cursor survives; nothing is processed again -----------------------------------
    dagster.stop()
    dagster.start()
    keys, recs = _land(lake, 3, "array", 3, 5, today)
    dropped += keys
    expected.update({(today.isoformat(), r["transaction_id"]): 1 for r in recs})
    # a late file into the old date folder, which is outside the look-back: the rolling sweep finds it
    late_key = f"landing/transactions/date={old.isoformat()}/transactions_late_second.json"
    late = {**good_one, "transaction_id": "E2E-LATE", "timestamp": f"{old}T02:00:00"}
    lake.write_bytes(late_key, json.dumps(late).encode())
    dropped.append(late_key)
    expected[(old.isoformat(), "E2E-LATE")] = 1

    wait_for(phase_done, 300, "phase 2 files to be processed", dagster)
    ids = _processed_ids(lake)
    assert len(ids) == len(set(ids)) == len(expected)  # no duplicates, nothing lost
    runs = _sensor_runs(home)
    assert sum(int(r.tags["ecommerce/arrival_objects"]) for r in runs) == len(dropped)  # each file once
    assert len({r.tags["dagster/run_key"] for r in runs}) == len(runs)
    assert _quarantined_rows(lake) == [(raw_bad, 2, "non_positive_quantity"), (raw_bad, 3, "missing_price")]
