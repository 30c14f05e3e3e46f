"""Writes published whole (``Lake.writing``): a reader, a failure or a killed writer never leaves a
half-written file or folder in the lake, locally and on S3 (moto's server)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from ecommerce_assets.storage.lake import TMP_PREFIX, LocalLake

FOLDER = "processed/demo/cleaned/"


def _write_folder(con: duckdb.DuckDBPyConnection, uri: str, n: int) -> None:
    con.execute("CREATE OR REPLACE TEMP TABLE t AS SELECT i, i % 3 AS part FROM range(?) r(i)", [n])
    con.execute("COPY t TO ? (FORMAT parquet, PARTITION_BY (part))", [uri])


def _rows(con: duckdb.DuckDBPyConnection, glob: str) -> int:
    return int(con.execute("SELECT count(*) FROM read_parquet(?)", [glob]).fetchone()[0])


@pytest.fixture
def lake(tmp_path: Path) -> LocalLake:
    return LocalLake(base_dir=str(tmp_path / "lake"))


def test_a_folder_is_published_whole_and_replaces_the_old_one(lake: LocalLake) -> None:
    con = lake.engine()
    glob = lake.uri(FOLDER + "*/*.parquet")
    with lake.writing(FOLDER) as uri:
        _write_folder(con, uri, 30)
        assert not Path(lake.uri(FOLDER)).exists(), "visible before the block ended"
    assert _rows(con, glob) == 30
    with lake.writing(FOLDER) as uri:
        _write_folder(con, uri, 12)
        assert _rows(con, glob) == 30, "a reader during the write sees the old folder"
        assert [o.key for o in lake.list_objects("processed/demo/")] == sorted(
            o.key for o in lake.list_objects(FOLDER)), "the in-flight folder is listed"
    assert _rows(con, glob) == 12
    assert not [p for p in Path(lake.uri("processed/demo/")).iterdir() if p.name.startswith(TMP_PREFIX)]


def test_a_failed_write_leaves_the_previous_content(lake: LocalLake) -> None:
    con = lake.engine()
    with lake.writing(FOLDER) as uri:
        _write_folder(con, uri, 9)
    with pytest.raises(duckdb.Error), lake.writing(FOLDER) as uri:
        _write_folder(con, uri, 5)
        con.execute("SELECT * FROM no_such_table")
    assert _rows(con, lake.uri(FOLDER + "*/*.parquet")) == 9
    lake.write_bytes("processed/demo/one.json", b"{}")
    with pytest.raises(RuntimeError), lake.writing("processed/demo/one.json") as path:
        Path(path).write_bytes(b'{"half": ')
        raise RuntimeError("disk went away")
    assert lake.read_bytes("processed/demo/one.json") == b"{}"
    assert sorted(p.name for p in Path(lake.uri("processed/demo/")).iterdir()) == ["cleaned", "one.json"]


def test_a_file_block_that_writes_nothing_leaves_the_target(lake: LocalLake) -> None:
    lake.write_bytes("quarantine/demo/rows.parquet", b"old")
    with lake.writing("quarantine/demo/rows.parquet"):
        pass
    assert lake.read_bytes("quarantine/demo/rows.parquet") == b"old"


def test_a_killed_writer_leaves_the_old_folder_and_the_next_write_sweeps_its_leftovers(lake: LocalLake) -> None:
    con = lake.engine()
    with lake.writing(FOLDER) as uri:
        _write_folder(con, uri, 7)
    script = textwrap.dedent(f"""
        import os, signal, duckdb
        from ecommerce_assets.storage.lake import LocalLake
        lake = LocalLake(base_dir={lake.base_dir!r})
        with lake.writing({FOLDER!r}) as uri:
            duckdb.execute("COPY (SELECT 1 AS i, 0 AS part) TO ? (FORMAT parquet, PARTITION_BY (part))", [uri])
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[1], check=False)
    assert proc.returncode == -signal.SIGKILL
    parent = Path(lake.uri("processed/demo/"))
    leftovers = [p for p in parent.iterdir() if p.name.startswith(TMP_PREFIX)]
    assert len(leftovers) == 1, "the killed writer's staging folder"
    assert _rows(con, lake.uri(FOLDER + "*/*.parquet")) == 7
    assert all(".tmp-" not in o.key for o in lake.list_objects("processed/"))
    with lake.writing(FOLDER) as uri:
        _write_folder(con, uri, 4)
    assert [p.name for p in parent.iterdir()] == ["cleaned"]
    assert _rows(con, lake.uri(FOLDER + "*/*.parquet")) == 4
    assert os.getpid()  # this process's own in-flight writes are never swept (it is alive)
