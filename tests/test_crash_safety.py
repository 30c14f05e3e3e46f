"""Crash safety: the product's own ``ecommerce-assets run`` is SIGKILLed (its whole process group, dbt included)
in the middle of each kind of write, then run again; every figure must equal an uninterrupted run's.

Each kind of write is its own test, on a fresh data dir holding only its pipeline's input (as a user adopting
that one pipeline would have it):

* the Online Retail cleaned Iceberg table (the full UCI file; its data files being written, before the commit);
* a gold table load into DuckDB (``gold/sales_transactions.parquet`` being written, the warehouse WAL open);
* a transactions date partition (one partition done, the next one's staging being written);
* the orders ``dbt build`` (dbt's own process holding the warehouse file);
* a stream micro-batch (its archive written, its typed lines and warehouse rows not yet).

The moment is polled from outside (files in the lake, ``/proc/<pid>/fd`` of the process and its children). After
the kill a reader looks at everything: every Parquet / JSON file must be readable, and every lake unit (a file;
the retail cleaned zone as a whole) and every warehouse table either absent or exactly the uninterrupted run's.
Then ``ecommerce-assets run`` again must exit 0 and give the uninterrupted run's figures (``tests.faults.figures``:
warehouse rows, sums, duplicate rows; lake rows, quarantine counts per rule, reason files; key-value items), with
the killed run marked failed in the instance. The PostgreSQL load, the daemon and a full disk have their own
modules (test_crash_postgres.py, test_crash_daemon.py, test_disk_full.py).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from tests import faults
from tests.conftest import FULL_RETAIL, SEED_SAMPLES

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

STREAM_SAMPLE = Path(__file__).resolve().parents[1] / "ecommerce_assets" / "samples" / "online_retail_sample.csv"
SETTINGS = {"ECOMMERCE_STREAM_BATCH_RECORDS": "50"}  # eight micro-batches: one can be caught in the middle
GROWING = ("gold.firehose_transactions",)  # loaded batch by batch: partial between batches, never duplicated
LEDGER = faults.Ledger()


@pytest.fixture(scope="module", autouse=True)
def _print_ledger() -> object:
    yield
    print("\n" + LEDGER.summary())


@pytest.fixture(scope="module")
def transactions_landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three days of generated transactions (40,000 a day, 20 JSON-lines files a day), made once by the CLI."""
    root = tmp_path_factory.mktemp("tx")
    out = faults.run(faults.cli_env(root), "generate", "--count", "120000", "--days", "3", "--per-file", "2000",
                     "--format", "lines", "--seed", "7", "--end-date", "2024-03-03")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return root / "lake" / "landing" / "transactions"


def land(pipeline: str, data_dir: Path, transactions: Path) -> dict[str, str]:
    """Land one pipeline's input in a fresh ``data_dir``; return the environment of its CLI runs."""
    landing = data_dir / "lake" / "landing"
    env = faults.cli_env(data_dir, **SETTINGS)
    if pipeline == "retail":
        (landing / "online_retail").mkdir(parents=True)
        shutil.copy(FULL_RETAIL, landing / "online_retail")
    elif pipeline == "transactions":
        shutil.copytree(transactions, landing / "transactions")
    elif pipeline == "orders":
        for source, name in (("orders", "orders.csv"), ("customers", "customers.json"), ("products", "products.csv")):
            (landing / source).mkdir(parents=True)
            shutil.copy(SEED_SAMPLES / name, landing / source)
    elif pipeline == "stream":
        data_dir.mkdir(parents=True)
        summary = faults.put_stream_records(env, STREAM_SAMPLE)
        assert summary.startswith("400 accepted"), summary
    return env


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, transactions_landing: Path) -> Callable[[str], dict]:
    """The figures and lake units of an uninterrupted ``run`` of one pipeline (computed once per pipeline)."""
    cache: dict[str, dict] = {}

    def get(pipeline: str) -> dict:
        if pipeline not in cache:
            data_dir = tmp_path_factory.mktemp(f"uninterrupted-{pipeline}") / "data"
            env = land(pipeline, data_dir, transactions_landing)
            out = faults.run(env, "run", "--pipeline", pipeline, timeout=600)
            assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-3000:]
            cache[pipeline] = {"figures": faults.figures(data_dir), "units": faults.lake_units(data_dir / "lake")}
        return cache[pipeline]

    return get


class Changes:
    """Files below a folder that are new or changed since this object was made."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.before = {p: p.stat().st_mtime_ns for p in faults.files_below(folder)}

    def new(self, suffix: str = "") -> list[Path]:
        out = []
        for p in faults.files_below(self.folder, suffix):
            try:
                if self.before.get(p) != p.stat().st_mtime_ns:
                    out.append(p)
            except FileNotFoundError:
                continue
        return out


def retail_cleaned(data_dir: Path, proc: subprocess.Popen) -> Callable[[], bool]:
    """The cleaned rows' data files being written into the Iceberg table's folder, before the catalog commit."""
    table = Changes(data_dir / "lake" / "processed" / "online_retail_cleaned")
    return lambda: any("invoice_month=" in p.as_posix() for p in table.new(".parquet"))


def gold_load(data_dir: Path, proc: subprocess.Popen) -> Callable[[], bool]:
    gold = Changes(data_dir / "lake" / "processed" / "online_retail" / "gold")
    wal = str(data_dir / "warehouse.duckdb.wal")

    def cond() -> bool:
        return any(p.name == "sales_transactions.parquet" for p in gold.new()) and wal in faults.open_paths(proc.pid)

    return cond


def stream_batch(data_dir: Path, proc: subprocess.Popen) -> Callable[[], bool]:
    archive = Changes(data_dir / "lake" / "archive" / "stream")
    return lambda: len(archive.new(".jsonl")) >= 2  # batch 1 done, batch 2 archived but not yet typed/loaded


def transactions_partition(data_dir: Path, proc: subprocess.Popen) -> Callable[[], bool]:
    processed = Changes(data_dir / "lake" / "processed" / "transactions")
    staging = Changes(data_dir / "lake" / "intermediate")
    return lambda: bool(processed.new(".parquet")) and bool(staging.new())


def dbt_build(data_dir: Path, proc: subprocess.Popen) -> Callable[[], bool]:
    db = str(data_dir / "warehouse.duckdb")

    def cond() -> bool:
        dbt = [p for p in faults.descendants(proc.pid) if " build" in faults.cmdline(p) and "dbt" in faults.cmdline(p)]
        return any(db in faults.open_paths(p) for p in dbt)

    return cond


@dataclass(frozen=True)
class KillPoint:
    name: str
    pipeline: str
    condition: Callable[[Path, subprocess.Popen], Callable[[], bool]]


KILL_POINTS = [
    KillPoint("retail cleaned Iceberg commit", "retail", retail_cleaned),
    KillPoint("gold table load (DuckDB)", "retail", gold_load),
    KillPoint("transactions date partition", "transactions", transactions_partition),
    KillPoint("orders dbt build", "orders", dbt_build),
    KillPoint("stream micro-batch", "stream", stream_batch),
]


def _killed_runs_marked_failed(home: Path) -> tuple[int, int]:
    """(runs still shown as running, runs marked failed because their process died) in the instance."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        running = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        failed = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
        return len(running), len(failed)


@pytest.mark.parametrize("point", KILL_POINTS, ids=[p.name for p in KILL_POINTS])
def test_sigkill_mid_write_then_run_again_gives_the_uninterrupted_figures(
    point: KillPoint, tmp_path: Path, transactions_landing: Path, uninterrupted: Callable[[str], dict]
) -> None:
    expected = uninterrupted(point.pipeline)
    data_dir = tmp_path / "data"
    env = land(point.pipeline, data_dir, transactions_landing)
    log = tmp_path / "killed.log"
    proc = faults.start(env, log, "run", "--pipeline", point.pipeline)
    kill = faults.kill_when(proc, point.condition(data_dir, proc), point.name, log, timeout=600)
    LEDGER.injected.append(point.name)
    torn = faults.torn_writes(expected["units"], expected["figures"], data_dir, growing=GROWING)
    print(f"\nSIGKILL after {kill.after_s:.1f} s in the {point.name}; a reader sees "
          + ("nothing half-written" if not torn else f"{len(torn)} problem(s)"))

    started = time.monotonic()
    again = faults.run(env, "run", "--pipeline", point.pipeline, timeout=600)
    print(f"run again: {time.monotonic() - started:.0f} s, exit {again.returncode}\n{again.stdout[-1500:]}")
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-3000:]
    diff = faults.differences(expected["figures"], faults.figures(data_dir))
    leftovers = faults.temporary_files(data_dir / "lake")
    still_running, failed = _killed_runs_marked_failed(data_dir / "dagster_home")
    assert not torn, f"half-written state visible to a reader after the kill in the {point.name}:\n" + "\n".join(torn)
    assert not diff, "figures differ from the uninterrupted run:\n" + "\n".join(diff)
    assert still_running == 0 and failed >= 1, f"killed run not marked failed: {still_running} running, {failed} failed"
    assert "was left running by a killed process" in again.stdout
    print(f"in-flight files left in the lake: {len(leftovers)} {leftovers[:3]}")
    LEDGER.survived.append(point.name)
