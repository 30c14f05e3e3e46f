"""Contention on one DuckDB warehouse file, and the daemon racing ``ecommerce-assets run`` on one landed batch.

1. **Three writers at once on one DuckDB file.** On one data dir (one ``warehouse.duckdb``), started together:
   ``ecommerce-assets run --pipeline orders --fetch`` (its runs end with a ``dbt build`` that writes the file
   from dbt's own process), ``run --pipeline retail --pipeline transactions`` and ``run --pipeline stream``
   (the stream sensor's micro-batch runs, one per run key, as the daemon asks for them). The last two are
   *slow warehouse writers* (fault injection, ``tests.faults._slow_warehouse``): each of their loads keeps the
   connection ``SLOW_LOAD_SECONDS`` longer once its rows are in, as a big load would; none of their warehouse
   connections opens before a gate file appears, and while it exists a load keeps its connection. The test
   opens the gate the moment the orders run's ``dbt build`` process appears and closes it when that process has
   ended: a slow writer waiting at the gate asks for the file within milliseconds, while dbt is still starting
   (seconds), and would hold it for as long as dbt runs. The contention is forced every time, on a loaded
   machine too, not left to the scheduler.
   Expected: 0 failed runs in the three commands, and every figure (rows, sums, duplicate rows, lake rows,
   quarantine counts, key-value items) equal to one sequential ``run --fetch`` over the same input.

   The project's serialization (``warehouse.file_lock``: an ``flock`` on ``<db>.lock`` taken around every
   warehouse connection, around the whole ``dbt build`` and around the lake catalog's views) is what makes it
   hold. Run the same test with it switched off in every child (``warehouse.SERIALIZE_WRITERS = False``)::

       FAULTS_WRITER_LOCK=off .venv/bin/pytest tests/test_contention.py -q -p no:cacheprovider -s

   and it fails: dbt-duckdb, which has no retry, opens the file while a slow writer holds it ("IO Error: Could
   not set lock on file ... Conflicting lock is held"), so the orders run's ``dbt build`` run FAILS (and so does
   a transactions run whose lake catalog view meets the held file: no retry there either). Our own writers
   alone would not show it: dagster-duckdb's ``get_connection`` retries a held file for ~100 s, which is why
   the test forces dbt to start while the file is held rather than the other way round.

2. **The daemon racing ``run`` on one landed batch.** ``dagster-daemon`` (sensors on, 5 s interval) runs on a
   data dir where the retail sample, two days of transactions and 400 stream records have landed; as soon as
   it has asked for a run of each arrival/stream sensor (its runs then queued or running),
   ``ecommerce-assets run`` starts on the same batches: a cron catch-up while the daemon works. Once nothing
   runs and nothing new is asked for, each batch (sensor run key) must have exactly one run in the instance,
   ``run`` must exit 0, every run must have succeeded, and the figures must equal the sequential run's (nothing
   lost, nothing duplicated). A batch processed twice is reported with its runs: by whom (the daemon's carry a
   code location origin, ``run`` executes in process), when each was created, started and ended, and what the
   first was doing when the second was created. (``FAULTS_WRITER_LOCK=off`` reaches ``run`` only here, not the
   daemon's run workers: the lock's proof is test 1.)
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path

import dagster as dg
import pytest

from tests import faults
from tests.conftest import RETAIL_SAMPLE_5000, SEED_SAMPLES
from tests.daemon import LOCATION, ROOT, descendants, running

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

STREAM_SAMPLE = Path(__file__).resolve().parents[1] / "ecommerce_assets" / "samples" / "online_retail_sample.csv"
SETTINGS = {"ECOMMERCE_STREAM_BATCH_RECORDS": "200"}  # one micro-batch per shard: four stream runs
ORDERS = (("orders", "orders.csv"), ("customers", "customers.json"), ("products", "products.csv"))
SLOW_LOAD_SECONDS = 1.0  # each load of a slow writer holds the file this much longer (and while the gate is open)
SENSOR_INTERVAL = "5"
ARRIVAL_SENSORS = ("online_retail_arrival_sensor", "transactions_arrival_sensor", "stream_sensor")
TERMINAL = ("SUCCESS", "FAILURE", "CANCELED")
SETTLED_SECONDS = 15  # no new run and nothing running for this long: the daemon has nothing left to do
HOLD = re.compile(rf"^{faults.SLOW_WAREHOUSE_MARK} (\d+) holds (\S+) from ([\d.]+)$", re.MULTILINE)
SUMMARY = re.compile(r"^(\d+) run\(s\) in ([\d.]+)s, (\d+) failed", re.MULTILINE)


@pytest.fixture(scope="module")
def transactions_landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two days of generated transactions (10,000 a day, 1,000 a file), made once by the CLI."""
    root = tmp_path_factory.mktemp("tx")
    out = faults.run(faults.cli_env(root), "generate", "--count", "20000", "--days", "2", "--per-file", "1000",
                     "--format", "lines", "--seed", "11", "--end-date", "2024-05-02")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return root / "lake" / "landing" / "transactions"


@pytest.fixture(scope="module")
def products_api() -> Iterator[object]:
    from ecommerce_assets.dev.products_api_sim import start_products_api_sim

    sim = start_products_api_sim()
    yield sim
    sim.stop()


def land(data_dir: Path, transactions: Path, orders: bool = True) -> dict[str, str]:
    """Land the retail sample, the transactions, the stream's records (and the orders files) in ``data_dir``;
    return the environment of its CLI."""
    landing = data_dir / "lake" / "landing"
    (landing / "online_retail").mkdir(parents=True)
    shutil.copy(RETAIL_SAMPLE_5000, landing / "online_retail")
    shutil.copytree(transactions, landing / "transactions")
    if orders:
        for source, name in ORDERS:
            (landing / source).mkdir(parents=True)
            shutil.copy(SEED_SAMPLES / name, landing / source)
    env = faults.cli_env(data_dir, **SETTINGS)
    summary = faults.put_stream_records(env, STREAM_SAMPLE)
    assert summary.startswith("400 accepted"), summary
    return env


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory, transactions_landing: Path, products_api) -> dict:
    """The figures of one sequential ``run --fetch`` over the same input."""
    data_dir = tmp_path_factory.mktemp("sequential") / "data"
    env = land(data_dir, transactions_landing)
    began = time.monotonic()
    out = faults.run({**env, "ECOMMERCE_PRODUCTS_API_URL": products_api.url}, "run", "--fetch", timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-3000:]
    figs = faults.figures(data_dir)
    assert figs["warehouse gold.firehose_transactions"]["rows"] == 400  # type: ignore[index]
    assert figs["warehouse marts.fct_orders"]["rows"] > 0  # type: ignore[index]
    print(f"\nsequential run --fetch: {_summary(out.stdout)} ({time.monotonic() - began:.0f} s)")
    return figs


def _summary(log: str) -> str:
    """``N run(s) in S s, F failed`` of a catch-up's output ("no summary" when it printed none)."""
    m = SUMMARY.search(log)
    return f"{m.group(1)} run(s) in {m.group(2)} s, {m.group(3)} failed" if m else "no summary"


def _stop(procs: Mapping[str, subprocess.Popen[bytes]]) -> None:
    """SIGKILL the process group of every command still running (after a failed test)."""
    for proc in procs.values():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _without_fault_lines(log: str) -> str:
    return "\n".join(line for line in log.splitlines() if not line.startswith(faults.SLOW_WAREHOUSE_MARK))


def _dbt_build_started(proc: subprocess.Popen[bytes]) -> bool:
    return any("dbt" in faults.cmdline(p) and " build" in faults.cmdline(p) for p in descendants(proc.pid))


# --- 1. three writers, one DuckDB file ----------------------------------------------------------------
def test_run_sensor_runs_and_dbt_build_at_once_on_one_duckdb_file(
    tmp_path: Path, transactions_landing: Path, expected: dict, products_api
) -> None:
    data_dir = tmp_path / "data"
    env = land(data_dir, transactions_landing)
    gate = tmp_path / "warehouse_gate"
    writers: dict[str, tuple[Mapping[str, str], tuple[str, ...], bool]] = {  # name -> env, args, slow writer
        "orders + dbt build": ({**env, "ECOMMERCE_PRODUCTS_API_URL": products_api.url},
                               ("run", "--pipeline", "orders", "--fetch"), False),
        "retail + transactions": (env, ("run", "--pipeline", "retail", "--pipeline", "transactions"), True),
        "stream sensor runs": (env, ("run", "--pipeline", "stream"), True),
    }
    slow = [name for name, (_e, _a, is_slow) in writers.items() if is_slow]
    logs = {name: tmp_path / f"{name.split()[0]}.log" for name in writers}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    started = time.monotonic()
    try:
        for name, (e, args, is_slow) in writers.items():
            cmd = faults.command(*args, slow_warehouse=SLOW_LOAD_SECONDS, warehouse_gate=gate) if is_slow \
                else faults.command(*args)
            with logs[name].open("ab") as out:
                procs[name] = subprocess.Popen(cmd, cwd=ROOT, env=dict(e), stdin=subprocess.DEVNULL, stdout=out,
                                               stderr=subprocess.STDOUT, start_new_session=True)
        orders = procs["orders + dbt build"]
        building = False
        while not building and orders.poll() is None and time.monotonic() - started < 400:
            building = _dbt_build_started(orders)
            time.sleep(0 if building else 0.02)
        if not building:
            raise faults.FaultNotInjected(f"no dbt build started:\n{faults.tail(logs['orders + dbt build'])}")
        waiting = [name for name in slow if "waits at the gate" in logs[name].read_text(errors="replace")]
        opened = time.time()
        gate.touch()  # the slow writers load now, while dbt is starting, and hold the file until dbt has ended
        gate_at = time.monotonic() - started
        while orders.poll() is None and _dbt_build_started(orders) and time.monotonic() - started < 500:
            time.sleep(0.02)
        gate.unlink()
        dbt_ended = time.monotonic() - started
        if not waiting:
            raise faults.FaultNotInjected(f"no slow writer waited at the gate when the dbt build started at "
                                          f"{gate_at:.0f} s:\n" + "\n".join(faults.tail(logs[n]) for n in slow))
        ended = {}
        for name, proc in procs.items():
            proc.wait(timeout=max(1.0, 600 - (time.monotonic() - started)))
            ended[name] = time.monotonic() - started
    finally:
        _stop(procs)

    text = {name: log.read_text(errors="replace") for name, log in logs.items()}
    holds = {name: [(float(at) - opened, table) for _pid, table, at in HOLD.findall(text[name])] for name in slow}
    first = min((at, table, name) for name, held in holds.items() for at, table in held) if any(holds.values()) \
        else None
    print(f"\nwriter lock {'on' if faults.WRITER_LOCK else 'OFF'}; the orders run's dbt build ran from {gate_at:.1f} s "
          f"to {dbt_ended:.1f} s, the gate open meanwhile ({', '.join(waiting)} waiting at it); loads held "
          f"{SLOW_LOAD_SECONDS:.0f} s more: " + ", ".join(f"{n} {len(h)}" for n, h in holds.items())
          + (f"; first load {first[1]} by {first[2]} from +{first[0]:.2f} s" if first else ""))
    for name, proc in procs.items():
        print(f"  {name}: exit {proc.returncode} after {ended[name]:.0f} s; {_summary(text[name])}")
    for name, held in holds.items():
        assert held, f"{name} never held the warehouse: the fault was not injected\n{text[name][-2000:]}"
    failed_runs = [line for t in text.values() for line in t.splitlines() if line.startswith("FAILED")]
    failed = {name: proc.returncode for name, proc in procs.items() if proc.returncode != 0}
    detail = "\n".join(f"--- {name} (exit {code})\n{_without_fault_lines(text[name])[-2500:]}"
                       for name, code in failed.items())
    assert not failed and not failed_runs, f"{len(failed_runs)} failed run(s):\n" + "\n".join(failed_runs) \
        + f"\n{detail}"
    got = faults.figures(data_dir)
    diff = faults.differences(expected, got)
    assert not diff, "figures differ from the sequential run:\n" + "\n".join(diff)
    print(f"  figures equal to the sequential run's: {len(got)} (e.g. gold.firehose_transactions "
          f"{got['warehouse gold.firehose_transactions']}, marts.fct_orders {got['warehouse marts.fct_orders']})")


# --- 2. the daemon racing run ---------------------------------------------------------------------------
class DagsterDaemon:
    """``dagster-daemon run -m ecommerce_assets.definitions`` in its own session, its output in ``log``."""

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        self.env, self.log = dict(env), log
        self.proc: subprocess.Popen[bytes] | None = None
        self.seen: set[int] = set()  # every process it started (code server, run workers)

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([str(Path(sys.executable).parent / "dagster-daemon"), "run", "-m",
                                          LOCATION], cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def check_alive(self) -> None:
        assert self.proc is not None
        self.seen |= descendants(self.proc.pid)
        assert self.proc.poll() is None, f"dagster-daemon exited ({self.proc.returncode}):\n{faults.tail(self.log, 60)}"

    def stop(self, bound: float = 30.0) -> float:
        """SIGTERM to its process group; every process it started must be gone within ``bound`` s."""
        assert self.proc is not None
        self.seen |= descendants(self.proc.pid)
        began = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGTERM)
        while time.monotonic() - began < bound and (self.proc.poll() is None or running(self.seen)):
            time.sleep(0.2)
        left = running(self.seen | ({self.proc.pid} if self.proc.poll() is None else set()))
        self.kill_everything()
        assert not left, f"still running {bound:.0f} s after SIGTERM: {sorted(left)}\n{faults.tail(self.log)}"
        return time.monotonic() - began

    def kill_everything(self) -> None:
        if self.proc is None:
            return
        for pid in running(self.seen | descendants(self.proc.pid) | {self.proc.pid}):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def _runs(home: Path) -> list[dict]:
    """Every run of the instance: id, sensor, run key, status, who ran it (the daemon's have a code location
    origin; ``run`` executes in its own process), start and end (epoch seconds)."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return [{
            "id": r.dagster_run.run_id[:8], "sensor": r.dagster_run.tags.get("dagster/sensor_name"),
            "key": r.dagster_run.tags.get("dagster/run_key"), "status": r.dagster_run.status.value,
            "by": "daemon" if r.dagster_run.remote_job_origin is not None else "run",
            "created": r.create_timestamp.timestamp(), "start": r.start_time, "end": r.end_time,
        } for r in instance.get_run_records()]


def _race_report(runs: list[dict], batches: list[tuple[str, str]], t0: float) -> str:
    """One line per batch of ``batches``: its runs, by whom, when (seconds since ``t0``), and what the first
    run was doing when each next one was created (queued, running or done)."""
    def at(value: float | None) -> str:
        return "-" if value is None else f"{value - t0:.0f}"

    def state(first: dict, when: float) -> str:
        if first["start"] is None or when < first["start"]:
            return "queued"
        return "running" if first["end"] is None or when < first["end"] else "done"

    lines = []
    for sensor, key in sorted(batches):
        runs_of = sorted((r for r in runs if (r["sensor"], r["key"]) == (sensor, key)), key=lambda r: r["created"])
        first = runs_of[0]
        lines.append(f"{sensor} {key[-24:]}: {len(runs_of)} run(s): " + "; ".join(
            f"{r['by']} {r['id']} {r['status']} created {at(r['created'])} s"
            + (f" (the {first['by']}'s run {state(first, r['created'])})" if r is not first else "")
            + f", started {at(r['start'])} s, ended {at(r['end'])} s" for r in runs_of))
    return "\n".join(lines)


def test_daemon_and_run_racing_on_one_landed_batch_process_it_exactly_once(
    tmp_path: Path, transactions_landing: Path, expected: dict
) -> None:
    data_dir = tmp_path / "data"
    env = land(data_dir, transactions_landing, orders=False)
    home = data_dir / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(home)) as instance:  # its SQLite schema, before two processes race on it
        instance.get_runs(limit=1)
    env = {**env, "DAGSTER_HOME": str(home), "ECOMMERCE_SENSORS": "on",
           "ECOMMERCE_SENSOR_INTERVAL_SECONDS": SENSOR_INTERVAL}
    daemon = DagsterDaemon(env, tmp_path / "daemon.log")
    t0 = time.time()
    began = time.monotonic()
    run_proc: subprocess.Popen[bytes] | None = None
    try:
        daemon.start()
        deadline = time.monotonic() + 240
        while not set(ARRIVAL_SENSORS) <= {r["sensor"] for r in _runs(home)}:  # the daemon has asked for each
            daemon.check_alive()
            assert time.monotonic() < deadline, f"a sensor got no run from the daemon:\n{faults.tail(daemon.log, 60)}"
            time.sleep(0.5)
        asked = time.monotonic() - began
        run_proc = faults.start(env, tmp_path / "run.log", "run", "--pipeline", "retail", "--pipeline", "stream",
                                "--pipeline", "transactions")
        run_proc.wait(timeout=400)
        run_done = time.monotonic() - began
        settled_since, count = time.monotonic(), -1
        while time.monotonic() - settled_since < SETTLED_SECONDS:  # nothing running, nothing new for a while
            daemon.check_alive()
            runs = _runs(home)
            if len(runs) != count or any(r["status"] not in TERMINAL for r in runs):
                settled_since, count = time.monotonic(), len(runs)
            assert time.monotonic() - began < 600, f"runs never settled: {runs}\n{faults.tail(daemon.log, 60)}"
            time.sleep(1)
        stopped = daemon.stop()
    finally:
        daemon.kill_everything()
        if run_proc is not None:
            _stop({"run": run_proc})

    log = (tmp_path / "run.log").read_text(errors="replace")
    runs = _runs(home)
    keys = Counter((r["sensor"], r["key"]) for r in runs if r["key"])  # every run of a batch
    done = Counter((r["sensor"], r["key"]) for r in runs if r["key"] and r["status"] == "SUCCESS")
    by = Counter(r["by"] for r in runs if r["key"])
    twice = [k for k, n in done.items() if n > 1]
    never = [k for k in keys if not done[k]]
    print(f"\ndaemon asked for a run of each sensor at {asked:.0f} s; run started then, ended at {run_done:.0f} s "
          f"(exit {run_proc.returncode}; {_summary(log)}); daemon stopped in {stopped:.1f} s\n"
          f"  {len(keys)} batches (run keys), {sum(keys.values())} sensor runs ({by['daemon']} by the daemon, "
          f"{by['run']} by run), {len(runs) - sum(keys.values())} other (automation); statuses "
          f"{dict(Counter(r['status'] for r in runs))}; batches processed more than once: {len(twice)}")
    problems = [f"ecommerce-assets run exited {run_proc.returncode}:\n{log[-3000:]}"] if run_proc.returncode else []
    if {s for s, _ in keys} != set(ARRIVAL_SENSORS):
        problems.append(f"sensors with runs: {sorted({s for s, _ in keys})}, expected {sorted(ARRIVAL_SENSORS)}")
    failed = [r for r in runs if r["status"] != "SUCCESS"]
    if failed:
        problems.append(f"runs did not succeed: {failed}\n{faults.tail(daemon.log, 60)}")
    if never:
        problems.append(f"batches never processed:\n{_race_report(runs, never, t0)}")
    if twice:
        problems.append("batches processed more than once (times in s since the daemon started):\n"
                        + _race_report(runs, twice, t0))
    got = {k: v for k, v in faults.figures(data_dir).items() if not _orders_figure(k)}
    diff = faults.differences({k: v for k, v in expected.items() if not _orders_figure(k)}, got)
    print(f"  figures: {len(got)}, {len(diff)} differ from the sequential run's")
    if diff:
        problems.append("figures differ from the sequential run:\n" + "\n".join(diff))
    assert not problems, "\n".join(problems)


def _orders_figure(key: str) -> bool:
    """A figure of the orders pipeline (not landed in the race test)."""
    kind, _, name = key.partition(" ")
    if kind == "warehouse":
        return name.split(".")[0] in ("raw_orders", "staging", "snapshots", "marts")
    if kind == "iceberg":
        return name.startswith("orders_")  # the cleaned sources' tables, orders_<source>
    return kind == "lake" and name.split("/")[1:2] in (["orders"], ["customers"], ["products"], ["api"],
                                                        ["api_products"])
