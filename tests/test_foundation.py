"""Settings, the local lake, the DuckDB warehouse's writer lock, the CLI and the code location."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from ecommerce_assets.lib.arrival import ArrivalCursor, scan
from ecommerce_assets.resources import build_resources
from ecommerce_assets.settings import get_settings
from ecommerce_assets.storage.lake import LocalLake
from ecommerce_assets.storage.warehouses.base import quote_ident
from ecommerce_assets.storage.warehouses.duckdb import DuckDBWarehouse

ROOT = Path(__file__).resolve().parents[1]


def test_settings_defaults_and_switch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("ECOMMERCE_ENV", "ECOMMERCE_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    s = get_settings()
    assert s.env == "local" and s.data_dir == tmp_path / "data"
    assert s.lake_dir == tmp_path / "data" / "lake" and s.warehouse_path == tmp_path / "data" / "warehouse.duckdb"
    monkeypatch.setenv("ECOMMERCE_ENV", "staging")
    with pytest.raises(ValueError, match="ECOMMERCE_ENV: Input should be 'local' or 'aws'"):
        get_settings()


def test_local_resources_under_the_fixed_keys(data_dir: Path) -> None:
    res = build_resources()
    assert isinstance(res["lake"], LocalLake) and isinstance(res["warehouse"], DuckDBWarehouse)
    assert res["lake"].uri("landing/x.csv") == str(data_dir / "lake" / "landing" / "x.csv")


def test_local_lake_objects_and_prefixes(tmp_path: Path) -> None:
    lake = LocalLake(base_dir=str(tmp_path))
    lake.write_bytes("landing/t/date=2026-01-02/a.json", b"1")
    lake.write_bytes("landing/t/date=2026-01-01/b.json", b"22")
    lake.copy("landing/t/date=2026-01-01/b.json", "raw/t/b.json")
    assert [o.key for o in lake.list_objects("landing/t/")] == [
        "landing/t/date=2026-01-01/b.json", "landing/t/date=2026-01-02/a.json"]
    assert [o.key for o in lake.list_objects("landing/t/", start_after="landing/t/date=2026-01-01/b.json")] == [
        "landing/t/date=2026-01-02/a.json"]
    assert lake.list_prefixes("landing/t/") == ["landing/t/date=2026-01-01/", "landing/t/date=2026-01-02/"]
    assert lake.read_bytes("raw/t/b.json") == b"22" and lake.stat("raw/t/b.json").size == 2
    assert lake.delete_prefix("landing/t/") == 2 and not lake.exists("landing/t/date=2026-01-01/b.json")
    with pytest.raises(ValueError, match=r"\.\."):
        lake.read_bytes("../etc/passwd")


def test_scan_finds_new_objects_once(tmp_path: Path) -> None:
    lake = LocalLake(base_dir=str(tmp_path))
    lake.write_bytes("landing/s/a.csv", b"a")
    batches, cursor = scan(lake, "landing/s/", ArrivalCursor())
    assert [o.key for b in batches for o in b.objects] == ["landing/s/a.csv"]
    again, cursor = scan(lake, "landing/s/", ArrivalCursor.from_json(cursor.to_json()))
    assert again == []
    lake.write_bytes("landing/s/b.csv", b"b")
    later, _ = scan(lake, "landing/s/", cursor)
    assert [o.key for b in later for o in b.objects] == ["landing/s/b.csv"]


def test_quote_ident_refuses_injection() -> None:
    assert quote_ident("gold.customers") == '"gold"."customers"'
    for bad in ('x"; DROP TABLE y; --', "a.b.c", "1abc", ""):
        with pytest.raises(ValueError):
            quote_ident(bad)


_WRITER = """
import os, sys
from pathlib import Path
import duckdb
import ecommerce_assets.storage.warehouses.duckdb as w
w.SERIALIZE_WRITERS = os.environ.get("FAULTS_WRITER_LOCK", "on") != "off"
db, name, how = sys.argv[1], sys.argv[2], sys.argv[3]
wh = w.DuckDBWarehouse(database=db)
for i in range(10):
    if how == "resource":  # the warehouse: the lock, then its connection
        wh.execute("INSERT INTO t VALUES (?, ?, epoch(now()))", [name, i])  # the time it is written
    else:  # what dbt and the catalog do: the lock, then a plain connection that never retries
        with w.file_lock(Path(db)):
            con = duckdb.connect(db)
            con.execute("INSERT INTO t VALUES (?, ?, epoch(now()))", [name, i])
            con.close()
"""


def test_duckdb_writers_in_several_processes_are_serialized(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three processes write while this one holds the warehouse: each must wait for the writers' lock, so
    every row they write is written after this process let go. Without the lock (``FAULTS_WRITER_LOCK=off``)
    the plain connections (dbt's and the catalog's way) fail at once with DuckDB's "Could not set lock on file"."""
    import ecommerce_assets.storage.warehouses.duckdb as warehouse
    from tests.faults import WRITER_LOCK

    monkeypatch.setattr(warehouse, "SERIALIZE_WRITERS", WRITER_LOCK)
    db = tmp_path / "w.duckdb"
    wh = DuckDBWarehouse(database=str(db))
    wh.execute("CREATE TABLE t (writer VARCHAR, i INTEGER, written_at DOUBLE)")
    with wh.connect():  # holds the lock and the file while the writers start and try
        procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(db), f"p{n}", how], stderr=subprocess.PIPE)
                 for n, how in enumerate(("plain", "resource", "plain"))]
        deadline = time.monotonic() + 8  # long enough for each to import and reach the lock
        while time.monotonic() < deadline and not any(p.poll() is not None for p in procs):
            time.sleep(0.05)
        released = time.time()
    errors = [p.communicate(timeout=180)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], "\n".join(e[-600:] for e in errors)
    rows = wh.query("SELECT count(*) AS n, min(written_at) AS first FROM t").to_pylist()[0]
    assert rows["n"] == 30
    early = wh.query("SELECT writer, min(written_at) - ? AS s FROM t GROUP BY writer", [released]).to_pylist()
    assert rows["first"] >= released, f"a writer wrote while another process held the warehouse: {early}"


def test_replace_rows_upserts_by_key(tmp_path: Path) -> None:
    wh = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))
    con = duckdb.connect()
    first, second = tmp_path / "1.parquet", tmp_path / "2.parquet"
    con.execute("COPY (SELECT * FROM (VALUES ('a', 1), ('b', 2)) t(k, v)) TO ?", [str(first)])
    con.execute("COPY (SELECT * FROM (VALUES ('b', 20), ('c', 3)) t(k, v)) TO ?", [str(second)])
    assert wh.replace_rows("gold.kv", [str(first)], ["k"]) == 2
    assert wh.replace_rows("gold.kv", [str(second)], ["k"]) == 3
    assert wh.replace_rows("gold.kv", [str(second)], ["k"]) == 3  # idempotent
    assert wh.query("SELECT k, v FROM gold.kv ORDER BY k").to_pylist() == [
        {"k": "a", "v": 1}, {"k": "b", "v": 20}, {"k": "c", "v": 3}]


def _cli(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ecommerce_assets.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, timeout=timeout)


def test_cli_help_lists_every_command() -> None:
    out = _cli("--help")
    assert out.returncode == 0
    for command in ("demo", "run", "ui"):
        assert command in out.stdout
    assert "headless" in _cli("run", "--help").stdout


def test_demo_command_builds_the_warehouse_and_is_rerunnable(tmp_path: Path) -> None:
    env = {"ECOMMERCE_DATA_DIR": str(tmp_path / "d"), "ECOMMERCE_ENV": "local", "DAGSTER_HOME": ""}
    first = _cli("demo", env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "sales_transactions 364" in first.stdout and "demo finished" in first.stdout
    con = duckdb.connect(str(tmp_path / "d" / "warehouse.duckdb"), read_only=True)
    rows = con.execute("SELECT count(*) FROM gold.sales_transactions").fetchone()[0]
    con.close()
    assert rows > 0
    second = _cli("run", env=env)
    assert second.returncode == 0 and "nothing new to process" in second.stdout, second.stdout[-3000:]


def test_dg_check_defs_passes() -> None:
    dg_bin = Path(sys.executable).parent / "dg"
    out = subprocess.run([str(dg_bin), "check", "defs"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "All definitions loaded successfully" in out.stdout + out.stderr
