"""Hostile landing zones: links are never followed, and one bad file never blocks its batch.

Each test lands real files (and links, a FIFO, a file with a 250-character name, a .csv.gz holding one
200 MB line, a corrupt .gz, a file the process cannot read) next to the good sample, runs the real
pipeline, and checks that the good rows arrive, that each bad entry is quarantined with its reason, and
that nothing of a link's target was read: its content is in no lake file, no Parquet row, no log.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from ecommerce_assets.lib.metadata import registration_metadata
from ecommerce_assets.runtime.catchup import catch_up
from ecommerce_assets.samples import retail_sample_path
from ecommerce_assets.storage.lake import NAME_MAX, LocalLake, UnsafeObjectError, fit_name
from ecommerce_assets.storage.registration import register_landed
from ecommerce_assets.transforms.files import MAX_LINE_BYTES
from tests.retail_helpers import GOOD, write_csv
from tests.test_retail_pipeline import expected_from_csv

ROOT = Path(__file__).resolve().parents[1]
LANDING = Path("lake/landing/online_retail")
REJECTED = Path("lake/quarantine/online_retail/landing")  # reasons of entries refused at registration
BAD_FILES = Path("lake/quarantine/online_retail/files")  # reasons of registered files that cannot be read
OUTSIDE_MARKER = "OUTSIDE-DATA-DIR-SECRET-4471"
PASSWD_MARKER = "root:x:0:0:"  # the first line of /etc/passwd on every Linux


def _lines(path: Path, *invoices: str, description: str = GOOD[2]) -> Path:
    return write_csv(path, [[inv, GOOD[1], description, *GOOD[3:]] for inv in invoices])


def _every_text(data_dir: Path, dagster_home: Path | None, echoed: list[str]) -> str:
    """Everything the run left behind, as one text: every file's bytes (decompressing .gz), every Parquet
    row, the event log's messages and what the catch-up printed."""
    out: list[str] = list(echoed)
    con = duckdb.connect()
    for root in (data_dir, dagster_home):
        if root is None or not root.exists():
            continue
        for path in root.rglob("*"):
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()
            if path.name.endswith(".gz"):
                try:
                    with gzip.open(path, "rb") as fh:
                        data = fh.read(4 * MAX_LINE_BYTES)
                except (OSError, EOFError):
                    pass
            out.append(data.decode("latin-1"))
            if path.suffix == ".parquet":
                out.append(repr(con.execute("SELECT * FROM read_parquet(?)", [str(path)]).fetchall()))
    instance = dg.DagsterInstance.get()
    for run in instance.get_runs():
        out.extend(str(e.user_message) + str(e.dagster_event) for e in instance.all_logs(run.run_id))
    return "\n".join(out)


def _reasons(folder: Path) -> dict[str, dict]:
    return {p.name.removesuffix(".reason.json"): json.loads(p.read_text()) for p in folder.glob("*.reason.json")}


def _gold_invoices(data_dir: Path) -> set[str]:
    con = duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True)
    try:
        return {r[0] for r in con.execute("SELECT DISTINCT invoiceno FROM gold.sales_transactions").fetchall()}
    finally:
        con.close()


def test_links_and_special_files_in_landing_are_quarantined_unread(data_dir: Path, tmp_path: Path) -> None:
    landing = data_dir / LANDING
    landing.mkdir(parents=True)
    shutil.copyfile(retail_sample_path(), landing / "sample.csv")
    outside = tmp_path / "outside"
    _lines(outside / "secret.csv", "977001", description=OUTSIDE_MARKER)
    (landing / "passwd.csv").symlink_to("/etc/passwd")
    (landing / "outside.csv").symlink_to(outside / "secret.csv")
    (landing / "linked_folder").symlink_to(outside, target_is_directory=True)
    (landing / "dangling.csv").symlink_to(tmp_path / "nowhere.csv")
    os.mkfifo(landing / "pipe.csv")  # opening it would block the run forever

    echoed: list[str] = []
    report = catch_up(echo=echoed.append, pipelines=["retail"])
    assert report.ok

    reasons = _reasons(data_dir / REJECTED)
    assert {name: r["rule"] for name, r in reasons.items()} == {
        "passwd.csv": "symlink", "outside.csv": "symlink", "linked_folder": "symlink", "dangling.csv": "symlink",
        "pipe.csv": "not_a_regular_file",
    }
    for name, reason in reasons.items():
        assert reason["file"] == f"landing/online_retail/{name}" and reason["copied"] is False
        assert "never followed" in reason["problem"] or "not read" in reason["problem"]
    raw = sorted(p.name for p in (data_dir / "lake/raw/online_retail").rglob("*") if p.is_file())
    assert raw == ["sample.csv"]
    # the good file went on: exactly the sample's lines, nothing of the linked CSV
    expected = expected_from_csv(retail_sample_path())
    con = duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM gold.sales_transactions").fetchone()[0] == expected["sales_transactions"]
    con.close()
    assert "977001" not in _gold_invoices(data_dir)
    everything = _every_text(data_dir, Path(os.environ["DAGSTER_HOME"]), echoed)
    assert "passwd.csv" in everything  # the scan sees the reasons and the logs...
    assert OUTSIDE_MARKER not in everything and PASSWD_MARKER not in everything  # ...and no target's content
    # the links are still there (registration never deletes what users landed) and are refused again
    assert (landing / "passwd.csv").is_symlink()


def test_lake_never_reads_through_a_link(tmp_path: Path) -> None:
    """Below the listing: a key that is a link is refused by copy, read_bytes and open_local."""
    lake = LocalLake(base_dir=str(tmp_path / "lake"))
    lake.write_bytes("landing/online_retail/ok.csv", b"a\n")
    target = tmp_path / "target.csv"
    target.write_text(OUTSIDE_MARKER)
    (tmp_path / "lake/landing/online_retail/link.csv").symlink_to(target)
    assert [o.key for o in lake.list_objects("landing/")] == ["landing/online_retail/ok.csv"]
    assert [(r.key, r.rule) for r in lake.list_rejected("landing/")] == [("landing/online_retail/link.csv", "symlink")]
    assert not lake.exists("landing/online_retail/link.csv")
    for read in (lambda: lake.copy("landing/online_retail/link.csv", "raw/x.csv"),
                 lambda: lake.read_bytes("landing/online_retail/link.csv"),
                 lambda: lake.open_local("landing/online_retail/link.csv")):
        with pytest.raises(UnsafeObjectError, match="symbolic link"):
            read()
    assert not (tmp_path / "lake/raw").exists()


def test_registration_of_a_transactions_partition_isolates_a_link(tmp_path: Path) -> None:
    """The same registration serves every source: a link in a transactions date folder is quarantined."""
    lake = LocalLake(base_dir=str(tmp_path / "lake"))
    landing, raw = "landing/transactions/date=2024-03-01/", "raw/transactions/date=2024-03-01/"
    lake.write_bytes(landing + "a.json", b'{"transaction_id": "t1"}')
    (tmp_path / "lake" / landing / "b.json").symlink_to("/etc/passwd")
    logged: list[str] = []
    reg = register_landed(lake, landing, raw, log=logged.append)
    assert reg.registered == [raw + "a.json"]
    assert [(r["file"], r["rule"]) for r in reg.rejected] == [(landing + "b.json", "symlink")]
    reason = json.loads(lake.read_bytes("quarantine/transactions/landing/date=2024-03-01/b.json.reason.json"))
    assert reason["rule"] == "symlink" and PASSWD_MARKER not in json.dumps(reason) + "".join(logged)
    assert registration_metadata(reg, lake, raw)["quarantined_at_landing"] == 1


def test_long_names_fit_the_file_system() -> None:
    name = "é" * 200 + ".csv.reason.json"  # 416 bytes of UTF-8
    short = fit_name(name)
    assert len(short.encode()) <= NAME_MAX and short.endswith(".csv.reason.json") and short.startswith("é")
    assert fit_name(name) == short and fit_name(name + "x") != short and fit_name("ok.csv") == "ok.csv"


def _huge_line_gz(path: Path, megabytes: int = 200) -> Path:
    """A .csv.gz with the retail header and then ONE line of ``megabytes`` MB (a few hundred KB compressed)."""
    chunk = b"x" * (1 << 20)
    with gzip.open(path, "wb", compresslevel=6) as fh:
        fh.write(b"InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n")
        for _ in range(megabytes):
            fh.write(chunk)
        fh.write(b"\n")
    return path


def test_long_name_huge_line_and_corrupt_gzip_are_isolated(data_dir: Path, tmp_path: Path) -> None:
    landing = data_dir / LANDING
    landing.mkdir(parents=True)
    shutil.copyfile(retail_sample_path(), landing / "sample.csv")
    long_name = "orders_" + "n" * 239 + ".csv"  # 250 characters: ".tmp-<pid>-<name>" would exceed 255 bytes
    assert len(long_name) == 250
    _lines(landing / long_name, "978001", "978002")
    huge = _huge_line_gz(landing / "huge_line.csv.gz")
    assert huge.stat().st_size < 1_000_000  # 200 MB of text in a small file
    full = gzip.compress((landing / "sample.csv").read_bytes())
    (landing / "truncated.csv.gz").write_bytes(full[: len(full) // 2])

    echoed: list[str] = []
    report = catch_up(echo=echoed.append, pipelines=["retail"])
    assert report.ok, echoed[-20:]
    assert (data_dir / "lake/raw/online_retail" / long_name).is_file()  # registered under its own name
    reasons = _reasons(data_dir / BAD_FILES)
    assert {n: r["rule"] for n, r in reasons.items()} == {
        "huge_line.csv.gz": "line_too_long", "truncated.csv.gz": "unreadable_file"}
    assert f"longer than {MAX_LINE_BYTES:,} bytes" in reasons["huge_line.csv.gz"]["problem"]
    assert (data_dir / BAD_FILES / "huge_line.csv.gz").read_bytes() == huge.read_bytes()  # kept whole
    # the others went on: the sample's lines + the long-named file's two lines
    invoices = _gold_invoices(data_dir)
    assert {"978001", "978002"} <= invoices
    con = duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True)
    expected = expected_from_csv(retail_sample_path())["sales_transactions"] + 2
    assert con.execute("SELECT count(*) FROM gold.sales_transactions").fetchone()[0] == expected
    con.close()
    # and the next run is not blocked by the same files
    (landing / "more.csv").write_bytes(_lines(tmp_path / "more.csv", "978003").read_bytes())
    again = catch_up(echo=echoed.append, pipelines=["retail"])
    assert again.ok and "978003" in _gold_invoices(data_dir)


def _run_cli(data_dir: Path) -> subprocess.CompletedProcess:
    """``ecommerce-assets run --pipeline retail`` in its own process. As root (who reads any file) it runs
    without the capabilities that bypass file permissions (``setpriv`` drops CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH), so a mode-000 file is really unreadable to it."""
    env = {**os.environ, "ECOMMERCE_DATA_DIR": str(data_dir), "ECOMMERCE_ENV": "local",
           "DAGSTER_HOME": str(data_dir / "dagster_home")}
    drop = "-dac_override,-dac_read_search"
    prefix = ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, sys.executable, "-m", "ecommerce_assets.cli", "run", "--pipeline", "retail"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


def test_run_quarantines_an_unreadable_file_and_exits_0(tmp_path: Path) -> None:
    """``ecommerce-assets run`` in a fresh data dir with a landed file the process may not read: exit 0,
    the file's reason in quarantine, the other files processed; once readable, the next run takes it."""
    data_dir = tmp_path / "fresh"
    landing = data_dir / LANDING
    landing.mkdir(parents=True)
    shutil.copyfile(retail_sample_path(), landing / "sample.csv")
    locked = _lines(landing / "locked.csv", "979001")
    locked.chmod(0)
    out = _run_cli(data_dir)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    reason = json.loads((data_dir / REJECTED / "locked.csv.reason.json").read_text())
    assert reason["rule"] == "unreadable_file" and "Permission denied" in reason["problem"]
    assert not (data_dir / "lake/raw/online_retail/locked.csv").exists()
    invoices = _gold_invoices(data_dir)
    assert "979001" not in invoices and len(invoices) > 0
    # readable again and landed again: the next run registers it, and its old reason goes
    locked.chmod(0o644)
    os.utime(locked)
    again = _run_cli(data_dir)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "979001" in _gold_invoices(data_dir)
    assert not (data_dir / REJECTED / "locked.csv.reason.json").exists()
