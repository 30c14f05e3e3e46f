"""Contention on one DuckDB warehouse file, and two catch-ups racing on one landed batch.

* Three writers at once on one data dir (one DuckDB file): ``ecommerce-assets run`` of the retail and
  transactions pipelines, the stream's sensor runs (``run --pipeline stream``: one run per micro-batch,
  by run key, as the daemon's sensor asks for them) and the orders pipeline, whose ``dbt build`` writes the
  same file from dbt's own process. 0 failed runs, and every figure (rows, sums, duplicate rows, quarantine)
  equals a sequential run's: nothing lost, nothing duplicated.
  The project's serialization (``warehouse.SERIALIZE_WRITERS``: the writers' file lock) is what makes it
  hold: ``FAULTS_WRITER_LOCK=off`` runs the same children without it, and this test fails.
* Two ``ecommerce-assets run`` started together on the same landed files (the daemon and a cron ``run``
  racing is the same race: both evaluate the arrival sensors from the same instance) process each batch
  exactly once: one run per sensor run key in the instance, and no duplicated row.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest

from tests import faults
from tests.conftest import RETAIL_SAMPLE_5000, SEED_SAMPLES

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

STREAM_SAMPLE = Path(__file__).resolve().parents[1] / "ecommerce_assets" / "samples" / "online_retail_sample.csv"
SETTINGS = {"ECOMMERCE_STREAM_BATCH_RECORDS": "50"}  # eight micro-batches, eight warehouse loads
ORDERS = (("orders", "orders.csv"), ("customers", "customers.json"), ("products", "products.csv"))


@pytest.fixture(scope="module")
def transactions_landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two days of generated transactions (10,000 a day), made once by the CLI."""
    root = tmp_path_factory.mktemp("tx")
    out = faults.run(faults.cli_env(root), "generate", "--count", "20000", "--days", "2", "--per-file", "1000",
                     "--format", "lines", "--seed", "11", "--end-date", "2024-05-02")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return root / "lake" / "landing" / "transactions"


@pytest.fixture(scope="module")
def products_api() -> object:
    from ecommerce_assets.products_api_sim import start_products_api_sim

    sim = start_products_api_sim()
    yield sim
    sim.stop()


def land(data_dir: Path, transactions: Path, orders: bool = True) -> dict[str, str]:
    """Land the retail sample, the transactions, the stream's lines (and the orders files) in ``data_dir``."""
    landing = data_dir / "lake" / "landing"
    (landing / "online_retail").mkdir(parents=True)
    shutil.copy(RETAIL_SAMPLE_5000, landing / "online_retail")
    shutil.copytree(transactions, landing / "transactions")
    if orders:
        for source, name in ORDERS:
            (landing / source).mkdir(parents=True)
            shutil.copy(SEED_SAMPLES / name, landing / source)
    env = faults.cli_env(data_dir, **SETTINGS)
    assert faults.put_stream_records(env, STREAM_SAMPLE).startswith("400 accepted")
    return env


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory, transactions_landing: Path, products_api) -> dict:
    """The figures of one sequential ``run --fetch`` over the same input."""
    data_dir = tmp_path_factory.mktemp("sequential") / "data"
    env = land(data_dir, transactions_landing)
    out = faults.run({**env, "ECOMMERCE_PRODUCTS_API_URL": products_api.url}, "run", "--fetch", timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-3000:]
    figs = faults.figures(data_dir)
    assert figs["warehouse gold.firehose_transactions"]["rows"] == 400  # type: ignore[index]
    assert figs["warehouse marts.fct_orders"]["rows"] > 0  # type: ignore[index]
    return figs


def test_run_sensor_runs_and_dbt_build_at_once_on_one_duckdb_file(
    tmp_path: Path, transactions_landing: Path, expected: dict, products_api
) -> None:
    data_dir = tmp_path / "data"
    env = land(data_dir, transactions_landing)
    writers = {
        "orders + dbt build": ({**env, "ECOMMERCE_PRODUCTS_API_URL": products_api.url},
                               ("run", "--pipeline", "orders", "--fetch")),
        "run transactions+retail": (env, ("run", "--pipeline", "transactions", "--pipeline", "retail")),
        "stream sensor runs": (env, ("run", "--pipeline", "stream")),
    }
    started = time.monotonic()
    procs = {}
    for name, (e, args) in writers.items():
        procs[name] = proc = faults.start(e, tmp_path / f"{name.split()[0]}.log", *args)
        if len(procs) == 1:  # the others start when dbt is writing the file, so that they meet it there
            db = str(data_dir / "warehouse.duckdb")
            deadline = time.monotonic() + 500
            while proc.poll() is None and time.monotonic() < deadline and not any(
                "dbt" in faults.cmdline(p) and " build" in faults.cmdline(p) and db in faults.open_paths(p)
                for p in faults.descendants(proc.pid)
            ):
                time.sleep(0.05)
            assert proc.poll() is None, f"the orders run ended before its dbt build:\n{faults.tail(tmp_path / 'orders.log')}"
    spans = {}
    for name, proc in procs.items():
        proc.wait(timeout=600)
        spans[name] = time.monotonic() - started
    logs = {name: (tmp_path / f"{name.split()[0]}.log").read_text(errors="replace") for name in writers}
    print(f"\nwriter lock {'on' if faults.WRITER_LOCK else 'OFF'}; finished after (s): "
          + ", ".join(f"{n} {s:.0f}" for n, s in spans.items()))
    failed = {name: proc.returncode for name, proc in procs.items() if proc.returncode != 0}
    failed_runs = [line for log in logs.values() for line in log.splitlines() if line.startswith("FAILED")]
    detail = "\n".join(f"--- {name} (exit {procs[name].returncode})\n{logs[name][-2500:]}" for name in failed)
    assert not failed and not failed_runs, f"{len(failed_runs)} failed run(s): {failed_runs}\n{detail}"
    diff = faults.differences(expected, faults.figures(data_dir))
    assert not diff, "figures differ from the sequential run:\n" + "\n".join(diff)


def _orders_figure(key: str) -> bool:
    """A figure of the orders pipeline (not landed in the race test)."""
    kind, _, name = key.partition(" ")
    if kind == "warehouse":
        return name.split(".")[0] in ("raw_orders", "staging", "snapshots", "marts")
    return kind == "lake" and name.split("/")[1:2] in (["orders"], ["customers"], ["products"], ["api"],
                                                        ["api_products"])


def _runs_by_key(home: Path) -> Counter:
    """(sensor, run key) -> number of runs recorded in the data dir's Dagster instance."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        return Counter((r.tags.get("dagster/sensor_name"), r.tags["dagster/run_key"]) for r in runs
                       if "dagster/run_key" in r.tags)


def test_two_runs_racing_on_one_landed_batch_process_it_exactly_once(
    tmp_path: Path, transactions_landing: Path, expected: dict
) -> None:
    data_dir = tmp_path / "data"
    env = land(data_dir, transactions_landing, orders=False)
    procs = [faults.start(env, tmp_path / f"run{n}.log", "run", "--pipeline", "retail", "--pipeline", "stream",
                          "--pipeline", "transactions") for n in (1, 2)]
    for proc in procs:
        proc.wait(timeout=600)
    logs = [(tmp_path / f"run{n}.log").read_text(errors="replace") for n in (1, 2)]
    assert [p.returncode for p in procs] == [0, 0], "\n---\n".join(log[-3000:] for log in logs)
    by_key = _runs_by_key(data_dir / "dagster_home")
    twice = {k: n for k, n in by_key.items() if n != 1}
    print(f"\n{len(by_key)} run keys, {sum(by_key.values())} runs; processed more than once: {len(twice)}")
    assert by_key and not twice, f"batches processed more than once: {twice}\n" + "\n---\n".join(logs)
    got = {k: v for k, v in faults.figures(data_dir).items() if not _orders_figure(k)}
    diff = faults.differences({k: v for k, v in expected.items() if not _orders_figure(k)}, got)
    assert not diff, "figures differ from the sequential run:\n" + "\n".join(diff)
