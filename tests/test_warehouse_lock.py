"""The DuckDB warehouse writers' lock (``warehouses.duckdb.file_lock``, ``filelock.FileLock`` on ``<db>.lock``).

Re-entrant in a thread; another thread of the process, or another process, waits until the holder's outermost
block ends; a killed holder's lock is released by the kernel; ``SERIALIZE_WRITERS = False`` turns it off.
Real threads and real processes on a real lock file; each wait is bounded so a deadlock fails the test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import ecommerce_assets.storage.warehouses.duckdb as warehouse
from ecommerce_assets.storage.warehouses.duckdb import DuckDBWarehouse, file_lock

ROOT = Path(__file__).resolve().parents[1]
HOLDER = """
import sys, time
from pathlib import Path
from ecommerce_assets.storage.warehouses.duckdb import file_lock
with file_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
print("released", flush=True)
"""


def _in_thread(target, *args) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def _holder(db: Path, seconds: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db), str(seconds)],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_nested_in_one_thread_and_held_until_the_outermost_block_ends(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    inner_done, entered = threading.Event(), threading.Event()
    release_outer = threading.Event()

    def owner() -> None:
        with file_lock(db):
            with file_lock(db), file_lock(db):  # re-entrant: no self-deadlock
                pass
            inner_done.set()
            release_outer.wait(10)

    def other() -> None:
        with file_lock(db):
            entered.set()

    first = _in_thread(owner)
    assert inner_done.wait(10), "a nested file_lock in one thread deadlocked"
    second = _in_thread(other)
    assert not entered.wait(0.5), "another thread entered after the inner blocks ended, the outer still held"
    release_outer.set()
    assert entered.wait(10), "the waiting thread never got the lock after the owner released it"
    first.join(10)
    second.join(10)
    assert Path(f"{db}.lock").exists()


def test_threads_take_turns(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    inside: list[int] = []
    overlaps: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for _ in range(5):
            with file_lock(db):
                with lock:
                    if inside:
                        overlaps.append(n)
                    inside.append(n)
                time.sleep(0.01)
                with lock:
                    inside.remove(n)

    threads = [_in_thread(worker, n) for n in range(4)]
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert overlaps == []


def test_another_process_waits_for_the_holder(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    with file_lock(db):
        child = _holder(db, 0)
        time.sleep(1.0)
        assert child.poll() is None, child.communicate()  # it cannot take the lock while this process holds it
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert out.split() == ["locked", "released"]


def test_a_killed_holder_leaves_the_lock_free(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    child = _holder(db, 600)
    try:
        assert child.stdout.readline().strip() == "locked"
        got = threading.Event()

        def take() -> None:
            with file_lock(db):
                got.set()

        waiter = _in_thread(take)
        assert not got.wait(0.5)  # held by the child
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        assert got.wait(10), "the lock of a killed holder was not released"
        waiter.join(10)
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate()


def test_serialize_writers_off_takes_no_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(warehouse, "SERIALIZE_WRITERS", False)
    db = tmp_path / "w.duckdb"
    entered = threading.Event()

    def take() -> None:
        with file_lock(db):
            entered.set()

    with file_lock(db):
        _in_thread(take).join(10)
        assert entered.is_set()  # nothing serialized: the other thread went in while this one was inside
    assert not Path(f"{db}.lock").exists()


def test_a_warehouse_connection_holds_the_lock(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    wh = DuckDBWarehouse(database=str(db))
    with wh.connect() as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS x")
        child = _holder(db, 0)
        time.sleep(0.5)
        assert child.poll() is None  # the other process waits for the connection to close
    assert child.communicate(timeout=30)[0].split() == ["locked", "released"]
    assert wh.row_count("t") == 1
