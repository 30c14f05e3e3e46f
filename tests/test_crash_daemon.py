"""Crash safety of the sensors: the Dagster daemon is SIGKILLed (its whole process group: the daemon, its code
server, its run workers, as when the host or container dies) in the middle of a sensor tick, then restarted;
every landed file must be processed exactly once and every figure must equal an uninterrupted run's.

Local mode, the way a deployment runs the sensors: ``dagster-daemon run -m ecommerce_assets.definitions`` on
the data dir's instance (``DAGSTER_HOME`` made by the product, ``ensure_dagster_home``), with
``ECOMMERCE_SENSORS=on`` and a 2 s sensor interval. Six days of generated transactions (two JSON-lines
files a day, made by ``ecommerce-assets generate``) have landed before the daemon starts, so the first tick of
``transactions_arrival_sensor`` asks for six runs, one per date.

The ticks and runs are watched from outside through the instance's storage (``DagsterInstance.from_config``,
read only), and the process group is killed

1. while the first tick submits its runs: it has reserved the six runs and created some, not all (the tick
   is STARTED);
2. while a later tick of the same sensor is being evaluated and runs of the first tick are executing (a run
   worker has started a run).

The daemon is then started again and left alone until every run has ended and the seven analytics have been
refreshed after the last partition. Then:

* one run per run key, each successful, and the run keys are the first tick's (the restart resumed the tick
  instead of asking for the same files again);
* one successful run per landed date; the processed rows are the landed records, no transaction id twice;
* every figure (``tests.faults.figures``: warehouse tables, lake datasets) equals an uninterrupted
  ``ecommerce-assets run`` on a copy of the same landing folder.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from tests import faults
from tests.daemon import ROOT
from tests.fault_probes import Daemon, SensorTicks, TickView

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SENSOR = "transactions_arrival_sensor"
DATES = [f"2024-03-0{d}" for d in range(1, 7)]
ANALYTICS = (
    "sales_by_category",
    "hourly_pattern",
    "top_customers",
    "product_performance",
    "daily_trend",
    "day_of_week_pattern",
    "large_transactions",
)
SETTLE_SECONDS = 360  # from the restart until every run has ended and the analytics are fresh
# nothing but the killed runs left, and no run changed status for this long: stuck. A killed run is marked failed
# within the dead-run sensor's 30 s (STARTED) or the instance's run-monitoring start timeout of 90 s (STARTING),
# then retried: this is longer than both
STALLED_SECONDS = 150
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six days of transactions, 500 a day in two JSON-lines files, landed by the product's CLI."""
    root = tmp_path_factory.mktemp("generated")
    out = faults.run(
        faults.cli_env(root),
        "generate",
        "--count",
        str(500 * len(DATES)),
        "--days",
        str(len(DATES)),
        "--per-file",
        "250",
        "--format",
        "lines",
        "--seed",
        "11",
        "--end-date",
        DATES[-1],
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    folder = root / "lake" / "landing" / "transactions"
    assert sorted(p.name for p in folder.iterdir()) == [f"date={d}" for d in DATES]
    return folder


def land(data_dir: Path, landing: Path) -> dict[str, str]:
    """A fresh data dir with ``landing`` copied in and the product's instance made; the daemon's environment."""
    shutil.copytree(landing, data_dir / "lake" / "landing" / "transactions")
    env = faults.cli_env(
        data_dir,
        DAGSTER_HOME=str(data_dir / "dagster_home"),
        ECOMMERCE_SENSORS="on",
        ECOMMERCE_SENSOR_INTERVAL_SECONDS="2",
        ECOMMERCE_DUCKDB_THREADS="1",
    )
    made = subprocess.run(
        [
            sys.executable,
            "-c",
            "from ecommerce_assets.runtime.catchup import ensure_dagster_home; print(ensure_dagster_home())",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr[-2000:]
    return env


class Reference:
    """The uninterrupted ``ecommerce-assets run`` on a copy of the landing folder, started in the background."""

    def __init__(self, root: Path, landing: Path) -> None:
        self.data_dir, self.log = root / "uninterrupted", root / "uninterrupted.log"
        self.proc = faults.start(land(self.data_dir, landing), self.log, "run")
        self._figures: dict[str, Any] | None = None

    def figures(self) -> dict[str, Any]:
        """Its figures, once it has ended (exit 0)."""
        if self._figures is None:
            assert self.proc.wait(timeout=400) == 0, faults.tail(self.log)
            self._figures = faults.figures(self.data_dir)
        return self._figures


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, landing: Path) -> Iterator[Reference]:
    ref = Reference(tmp_path_factory.mktemp("reference"), landing)
    yield ref
    if ref.proc.poll() is None:
        ref.proc.kill()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """The daemons a test starts; whatever is still running at the end is killed."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.kill_everything()


def landed_records(landing: Path) -> dict[str, int]:
    """Records per date, counted in the landed JSON-lines files."""
    return {
        p.name.removeprefix("date="): sum(len(f.read_text().splitlines()) for f in p.iterdir())
        for p in sorted(landing.iterdir())
    }


def awaited(ticks: SensorTicks) -> str | None:
    """None once every run of the instance has ended, every landed date has a successful run of the sensor and the
    analytics were materialized after the last partition; else what is still awaited."""
    instance = ticks.instance
    busy = [r for r in instance.get_runs() if r.status.value not in TERMINAL]
    if busy:
        return f"{len(busy)} run(s) not ended: {sorted(r.status.value for r in busy)}"
    # a killed run marked failed is retried by the daemon a moment later: only a successful run counts
    dates = {r.tags.get("dagster/partition") for r in ticks.runs() if r.status.value == "SUCCESS"}
    if not set(DATES) <= dates:
        return f"no successful run for {sorted(set(DATES) - dates)}"
    last = instance.get_latest_materialization_event(dg.AssetKey(["transactions", "processed"]))
    if last is None:
        return "no partition materialized yet"
    for name in ANALYTICS:
        event = instance.get_latest_materialization_event(dg.AssetKey(["analytics", f"transactions_{name}"]))
        if event is None or event.timestamp < last.timestamp:
            return f"transactions_{name} not refreshed after the last partition"
    return None


def restart_and_settle(
    env: dict[str, str], ticks: SensorTicks, log: Path, daemons: list[Daemon], killed_runs: set[str]
) -> tuple[str | None, float]:
    """Start the daemon again and leave it alone until nothing is awaited (None), or ``SETTLE_SECONDS`` pass,
    or only ``killed_runs`` (in flight at the kill) are left unfinished with no run changing status for
    ``STALLED_SECONDS`` (stuck: what is awaited). Stops the daemon; returns what is awaited and the seconds."""
    daemon = Daemon(env, log)
    daemons.append(daemon)
    daemon.start()
    began = changed = time.monotonic()
    last: dict[str, str] = {}
    waiting: str | None = "nothing looked at yet"
    while time.monotonic() - began < SETTLE_SECONDS:
        assert daemon.proc.poll() is None, f"the daemon exited ({daemon.proc.returncode}):\n{daemon.tail()}"
        waiting = awaited(ticks)
        if waiting is None:
            break
        now = {r.run_id: r.status.value for r in ticks.instance.get_runs()}
        if now != last:
            last, changed = now, time.monotonic()
        unfinished = {r for r, s in now.items() if s not in TERMINAL}
        if unfinished and unfinished <= killed_runs and time.monotonic() - changed > STALLED_SECONDS:
            break
        time.sleep(1.0)
    took = time.monotonic() - began
    daemon.stop()
    return waiting, took


def runs_by_key(ticks: SensorTicks) -> dict[str, list[str]]:
    """``{run key: ["<run id> <status> [<date>]", ...]}`` of the sensor's runs."""
    out: dict[str, list[str]] = {}
    for run in ticks.runs():
        out.setdefault(run.tags.get("dagster/run_key", ""), []).append(
            f"{run.run_id[:8]} {run.status.value} [{run.tags.get('dagster/partition', '')}]"
        )
    return out


def processed(data_dir: Path) -> dict[str, object]:
    """Rows per date and duplicate transaction ids of the Iceberg table ``transactions`` at the snapshot its
    catalog points at (what every reader sees)."""
    state = faults.iceberg_tables(data_dir).get("transactions")
    files = [str(p) for p in state.data_files] if state is not None else []
    if not files:
        return {"rows_per_date": {}, "duplicate_ids": 0}
    con = duckdb.connect()
    try:
        per_date = dict(
            con.execute(
                "SELECT CAST(date AS VARCHAR), count(*) FROM read_parquet(?, hive_partitioning = false) "
                "GROUP BY 1 ORDER BY 1",
                [files],
            ).fetchall()
        )
        ids = con.execute(
            "SELECT count(*), count(DISTINCT transaction_id) FROM read_parquet(?, hive_partitioning = false)", [files]
        ).fetchone()
    finally:
        con.close()
    assert ids is not None
    return {"rows_per_date": per_date, "duplicate_ids": ids[0] - ids[1]}


def crash_and_restart(
    landing: Path,
    reference: Reference,
    daemons: list[Daemon],
    tmp_path: Path,
    point: str,
    condition: Callable[[SensorTicks, dict[str, Any]], bool],
) -> None:
    """Start the daemon, SIGKILL its process group once ``condition(ticks, state)`` holds (``state`` keeps
    what it saw), restart it, then check that every file was processed once and the figures."""
    began = time.monotonic()
    data_dir = tmp_path / "faulty"
    env = land(data_dir, landing)
    ticks = SensorTicks(data_dir / "dagster_home", SENSOR)
    first = Daemon(env, tmp_path / "daemon-1.log")
    daemons.append(first)
    state: dict[str, Any] = {}
    kill = faults.kill_when(first.start(), lambda: condition(ticks, state), point, first.log, timeout=180, every=0.01)
    tick: TickView = state["tick"]
    stored = ticks.latest()
    in_flight = {r.run_id: r.status.value for r in ticks.runs() if r.status.value not in TERMINAL}
    print(
        f"\nSIGKILL {kill.after_s:.1f} s after the daemon started, {point}: tick {tick.tick_id} "
        f"({len(tick.reserved)} runs reserved, {len(tick.created)} created); runs not ended: "
        f"{sorted(in_flight.values())}"
    )
    assert stored is not None and stored.tick_id == tick.tick_id and stored.status == "STARTED", stored
    waiting, took = restart_and_settle(env, ticks, tmp_path / "daemon-2.log", daemons, set(in_flight))
    by_key = runs_by_key(ticks)
    print(
        f"restart: {'settled' if waiting is None else 'still ' + waiting} after {took:.0f} s; runs per run key: "
        + json.dumps({k.rsplit(":", 2)[-2]: v for k, v in sorted(by_key.items())})
    )
    stuck = {
        r.run_id[:8]: f"{r.status.value} [{r.tags.get('dagster/partition')}]"
        for r in ticks.runs()
        if r.status.value not in TERMINAL
    }
    assert waiting is None, (
        f"after the restart the daemon never finished: still {waiting}; runs in flight at "
        f"the kill that never ended: {stuck}; runs per run key: {by_key}"
    )

    # every landed file processed exactly once
    if tick.run_keys:  # the tick killed while it submitted: its runs, no other
        assert set(by_key) == set(tick.run_keys), f"run keys other than the killed tick's: {by_key}"
    assert sorted(k.split(":")[1] for k in by_key) == [f"date={d}/" for d in DATES], by_key
    # exactly one successful run a batch; any other run of it is the killed one, marked failed (then retried)
    not_once = {k: v for k, v in by_key.items()
                if sum(" SUCCESS " in r for r in v) != 1 or any(" SUCCESS " not in r and " FAILURE " not in r for r in v)}
    assert not not_once, f"run keys not run exactly once with success: {not_once}"
    succeeded = sorted(r.tags.get("dagster/partition", "") for r in ticks.runs() if r.status.value == "SUCCESS")
    assert succeeded == DATES, by_key
    got = processed(data_dir)
    assert got == {"rows_per_date": landed_records(landing), "duplicate_ids": 0}, got

    diff = faults.differences(reference.figures(), faults.figures(data_dir))
    print(f"test {time.monotonic() - began:.0f} s; " + ("figures equal" if not diff else f"{len(diff)} differ"))
    assert not diff, "figures differ from the uninterrupted run:\n" + "\n".join(diff)


def test_sigkill_of_the_daemon_while_a_tick_submits_its_runs(
    landing: Path, reference: Reference, daemons: list[Daemon], tmp_path: Path
) -> None:
    def submitting(ticks: SensorTicks, state: dict[str, Any]) -> bool:
        tick = ticks.latest()
        if tick is None or not tick.submitting:
            return False
        state.update(tick=tick)
        return True

    crash_and_restart(landing, reference, daemons, tmp_path, "while the first tick submits its runs", submitting)


def test_sigkill_of_the_daemon_during_a_tick_while_its_runs_execute(
    landing: Path, reference: Reference, daemons: list[Daemon], tmp_path: Path
) -> None:
    def evaluating_while_running(ticks: SensorTicks, state: dict[str, Any]) -> bool:
        tick = ticks.latest()
        if tick is None or tick.status != "STARTED" or tick.reserved:
            return False  # not evaluating, or the first tick (runs reserved)
        if not any(r.status.value == "STARTED" for r in ticks.runs()):
            return False
        state.update(tick=tick)
        return True

    crash_and_restart(
        landing,
        reference,
        daemons,
        tmp_path,
        "while a later tick is evaluated and runs of the first execute",
        evaluating_while_running,
    )
