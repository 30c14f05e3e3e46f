"""The console script as a user runs it: a fresh data dir, only the settings given, from any shell."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import duckdb
import pytest

from ecommerce_assets.storage.warehouses.duckdb import warehouse_config

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / ".venv" / "bin" / "ecommerce-assets"
RUN_LINE = re.compile(r"^(ok|FAILED) +\d+\.\d+s  \w+ ")


def user_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment: no ECOMMERCE_* or AWS_* of the test process, a fresh data dir and DAGSTER_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ECOMMERCE_", "AWS_", "DAGSTER_", "VIRTUAL_ENV"))}
    env.update({"ECOMMERCE_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "dagster_home"), **extra})
    return env


def tables(database: Path) -> dict[str, int]:
    """``{schema.table: rows}`` of every table in a DuckDB file (opened read-only, as the product opens it: the
    ``lake.*`` views of the Iceberg tables load the offline iceberg extension of the data dir)."""
    config = warehouse_config(str(database.parent / "duckdb_extensions"))
    with duckdb.connect(str(database), read_only=True, config=config) as con:
        names = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('information_schema', 'pg_catalog')"
        ).fetchall()
        return {f"{schema}.{table}": con.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()[0]  # noqa: S608
                for schema, table in names}


def test_run_on_a_fresh_data_dir_creates_the_landing_folders_and_says_where(tmp_path: Path) -> None:
    done = subprocess.run([str(CLI), "run"], cwd=tmp_path, env=user_env(tmp_path), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    landing = tmp_path / "data" / "lake" / "landing"
    for source in ("online_retail", "distributor", "orders", "customers", "products", "transactions"):
        assert (landing / source).is_dir(), source
    skips = [line for line in done.stdout.splitlines() if line.startswith("skip")]
    assert len(skips) == 4  # retail, catalog, orders, transactions; the local stream is on but has nothing
    assert f"{landing}/online_retail/" in skips[0] and "ECOMMERCE_CATALOG_API_URL" in skips[1]
    assert "Traceback" not in done.stdout + done.stderr and "0 run(s)" in done.stdout


def test_a_data_dir_that_cannot_be_written_is_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data dir should be")
    env = user_env(tmp_path, ECOMMERCE_DATA_DIR=str(blocker))
    for command in ("run", "demo"):
        done = subprocess.run([str(CLI), command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.splitlines() == [
            f"error: ECOMMERCE_DATA_DIR: {blocker} cannot be written (File exists); point ECOMMERCE_DATA_DIR at a "
            "writable folder"
        ] and "Traceback" not in done.stdout


def test_console_script_works_without_the_venv_on_path(tmp_path: Path) -> None:
    """`.venv/bin/ecommerce-assets` from a shell whose PATH has no venv: dbt is found next to the interpreter."""
    from ecommerce_assets.samples.orders import land_batch
    from ecommerce_assets.storage.lake import LocalLake

    land_batch(LocalLake(base_dir=str(tmp_path / "data" / "lake")), 1)
    env = user_env(tmp_path, PATH="/usr/bin:/bin")
    done = subprocess.run([str(CLI), "run", "--pipeline", "orders"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    built = {name.split(".", 1)[1]: n for name, n in tables(tmp_path / "data" / "warehouse.duckdb").items()}
    assert built["fct_orders"] > 0 and built["dim_customers"] > 0 and built["dim_products"] > 0


@pytest.mark.slow
def test_demo_is_short_and_a_second_demo_changes_nothing(tmp_path: Path) -> None:
    env = user_env(tmp_path)
    first = subprocess.run([str(CLI), "demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    lines = (first.stdout + first.stderr).splitlines()
    assert len(lines) <= 60, "\n".join(lines)  # a line per run and the summary; the event stream is in the UI
    runs = [line for line in lines if RUN_LINE.match(line)]
    assert runs and all(line.startswith("ok") for line in runs)
    assert not any(" - dagster - " in line or "DEBUG" in line for line in lines)
    before = tables(tmp_path / "data" / "warehouse.duckdb")
    assert before["gold.firehose_transactions"] == 400 and before["gold.sales_transactions"] > 0
    second = subprocess.run([str(CLI), "demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    assert "nothing sent again" in second.stdout
    assert tables(tmp_path / "data" / "warehouse.duckdb") == before
