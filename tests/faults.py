"""Fault injection for the crash and contention tests: the product's own console script in a subprocess,
SIGKILLed (its whole process group: dbt included) the moment an observable intermediate state appears,
and the figures a user would check afterwards (warehouse tables, lake datasets, quarantine).

* ``command(*args)``: ``ecommerce-assets <args>``. With ``writer_lock=False`` the same CLI runs with the
  warehouse's writer serialization switched off (``warehouse.SERIALIZE_WRITERS = False`` in that child
  only): ``python -m tests.faults --no-writer-lock <args>``. ``FAULTS_WRITER_LOCK=off`` in the test
  process's environment switches it off for every child the tests start, to show the tests fail without it.
* ``start`` / ``kill_when``: start a command in its own session and SIGKILL its process group as soon as
  a condition on the lake or on the process (``open_paths``) holds. A command that finishes before the
  condition held did not get its fault: ``FaultNotInjected``.
* ``figures(data_dir)``: every warehouse table (rows, sums of numeric columns, duplicate rows) and every
  lake dataset (Parquet rows, JSON-lines records, reason files), leaving out values that depend on when a
  run happened (load timestamps, dbt snapshot validity). Two runs over the same input must give equal
  figures, however often they were killed.
* ``unreadable_files(lake_dir)``: every Parquet / JSON file of the lake that a reader cannot open.
* The processed zone's Iceberg tables (``processed/<table>/`` with ``data/`` and ``metadata/``) are read as a
  reader reads them: through the data dir's catalog, at the current snapshot (``iceberg_tables``). The files in
  their folders are not figures: a killed writer leaves data files no snapshot references, invisible to readers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from tests.daemon import ROOT, descendants, env_for, running

WRITER_LOCK = os.environ.get("FAULTS_WRITER_LOCK", "on").strip().lower() != "off"
CONSOLE_SCRIPT = Path(sys.executable).parent / "ecommerce-assets"
TMP_MARKERS = (".tmp-", "tmp_")  # the lake's in-flight names, DuckDB's own temporary COPY files
# columns whose value is the time a run happened, never a figure of the data
VOLATILE_COLUMNS = ("_ingested_at", "_loaded_at", "loaded_at", "dbt_valid_from", "dbt_valid_to", "dbt_updated_at",
                    "dbt_scd_id", "valid_from", "valid_to", "_snapshot_at", "updated_at", "run_started_at")
NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
           "FLOAT", "DOUBLE", "DECIMAL")


class FaultNotInjected(AssertionError):
    """The command finished (or the time ran out) before the state where the fault was to be injected."""


def command(*args: str, writer_lock: bool | None = None, slow_warehouse: float = 0.0,
            warehouse_gate: Path | None = None) -> list[str]:
    """``ecommerce-assets <args>`` (the installed console script), or the same CLI with faults injected in that
    child only: without writer lock (``writer_lock=False``); a slow warehouse writer (``slow_warehouse``
    seconds more per load; no warehouse connection before ``warehouse_gate`` exists, and loads held while it
    does: ``_slow_warehouse``)."""
    lock = WRITER_LOCK if writer_lock is None else writer_lock
    if lock and not slow_warehouse and warehouse_gate is None:
        return [str(CONSOLE_SCRIPT), *args]
    options = [] if lock else ["--no-writer-lock"]
    if slow_warehouse or warehouse_gate is not None:
        options += ["--slow-warehouse", str(slow_warehouse)]
    if warehouse_gate is not None:
        options += ["--warehouse-gate", str(warehouse_gate)]
    return [sys.executable, "-m", "tests.faults", *options, *args]


def cli_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """A clean local-mode environment on ``data_dir`` (its Dagster instance inside it), plus ``settings``."""
    return env_for({"ECOMMERCE_ENV": "local", "ECOMMERCE_DATA_DIR": str(data_dir),
                    "PYTHONPATH": str(ROOT), **settings})


def run(env: Mapping[str, str], *args: str, timeout: float = 170, writer_lock: bool | None = None,
        ) -> subprocess.CompletedProcess[str]:
    """Run ``ecommerce-assets <args>`` to its end; the completed process (never raises on exit codes)."""
    return subprocess.run(command(*args, writer_lock=writer_lock), cwd=ROOT, env=dict(env), capture_output=True,
                          text=True, timeout=timeout, check=False, start_new_session=True)


def start(env: Mapping[str, str], log: Path, *args: str, writer_lock: bool | None = None) -> subprocess.Popen[bytes]:
    """Start ``ecommerce-assets <args>`` in its own session (so its process group can be killed), output to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(command(*args, writer_lock=writer_lock), cwd=ROOT, env=dict(env),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def open_paths(pid: int) -> set[str]:
    """Every file ``pid`` and the processes it started have open (their ``/proc/<pid>/fd`` links)."""
    paths: set[str] = set()
    for p in {pid} | descendants(pid):
        try:
            fds = os.listdir(f"/proc/{p}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                paths.add(os.readlink(f"/proc/{p}/fd/{fd}"))
            except OSError:
                pass
    return paths


def cmdline(pid: int) -> str:
    """The command line of ``pid`` ("" once it has gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass
class Kill:
    """One injected fault: what it aimed at, after how long it landed, and what the command had printed."""

    point: str
    after_s: float
    log_tail: str


def kill_when(proc: subprocess.Popen[bytes], condition: Callable[[], bool], point: str, log: Path,
              timeout: float = 170, every: float = 0.002) -> Kill:
    """SIGKILL ``proc``'s process group as soon as ``condition()`` holds; wait until every process is gone.

    Raises ``FaultNotInjected`` when the command ends (or ``timeout`` passes) before the condition held."""
    started = time.monotonic()
    seen: set[int] = set()
    while True:
        seen |= descendants(proc.pid)
        if proc.poll() is not None:
            raise FaultNotInjected(f"the command exited ({proc.returncode}) before {point}:\n{tail(log)}")
        if condition():
            break
        if time.monotonic() - started > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            raise FaultNotInjected(f"{point} not reached within {timeout:.0f} s:\n{tail(log)}")
        time.sleep(every)
    after = time.monotonic() - started
    seen |= descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while running(seen) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(seen), f"processes survived SIGKILL of the group: {sorted(running(seen))}"
    return Kill(point=point, after_s=after, log_tail=tail(log))


def tail(log: Path, lines: int = 30) -> str:
    if not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def files_below(folder: Path, suffix: str = "") -> list[Path]:
    """Every regular file below ``folder`` whose name ends with ``suffix`` (none when it does not exist)."""
    found = []
    for root, _dirs, names in os.walk(folder):  # a folder removed meanwhile (a writer's staging) is skipped
        for name in names:
            path = Path(root) / name
            if name.endswith(suffix) and path.is_file() and not path.is_symlink():
                found.append(path)
    return sorted(found)


def is_temporary(path: Path) -> bool:
    """An in-flight name (file, or any folder above it) or one of DuckDB's own temporary COPY files."""
    return path.name.startswith(TMP_MARKERS) or any(part.startswith(".tmp-") for part in path.parts)


# --- the processed zone's Iceberg tables -----------------------------------------------------------------
# what one commit of a table replaces, beyond its partition columns (a stream batch inside its date partition)
SLICE_COLUMNS = {"stream_order_lines": ("batch",)}


@dataclass(frozen=True)
class IcebergState:
    """One Iceberg table as a reader sees it: its folder, and its current snapshot's data files and rows, in all
    and per slice (the rows of each value of its partition columns, and of its ``SLICE_COLUMNS``): what one commit
    replaces, so that a run killed between two commits shows some slices whole and the others absent."""

    folder: Path
    data_files: tuple[Path, ...]
    rows: int | None  # None: the table exists but no snapshot was ever committed (a reader sees no table yet)
    slices: dict[str, int] = field(default_factory=dict)


def _is_iceberg_folder(folder: Path) -> bool:
    return any((folder / "metadata").glob("*.metadata.json")) if (folder / "metadata").is_dir() else False


def iceberg_folders(lake_dir: Path) -> list[Path]:
    """The folders of the processed zone that hold an Iceberg table (``metadata/*.metadata.json`` below them)."""
    processed = lake_dir / "processed"
    return sorted(p for p in processed.glob("*") if p.is_dir() and _is_iceberg_folder(p)) if processed.is_dir() else []


def iceberg_tables(data_dir: Path) -> dict[str, IcebergState]:
    """Every table of the data dir's local Iceberg catalog (``iceberg_catalog.db``), read at the snapshot the
    catalog points at, exactly as DuckDB's ``iceberg_scan`` or pyiceberg would."""
    import sqlite3

    from pyiceberg.table import StaticTable

    path = data_dir / "iceberg_catalog.db"
    if not path.exists():
        return {}
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT table_name, metadata_location FROM iceberg_tables ORDER BY 1").fetchall()
    finally:
        con.close()
    out: dict[str, IcebergState] = {}
    for name, location in rows:
        table = StaticTable.from_metadata(location)
        folder = Path(table.location().removeprefix("file://"))
        if table.current_snapshot() is None:
            out[name] = IcebergState(folder, (), None)
            continue
        tasks = list(table.scan().plan_files())
        schema = table.schema()
        columns = [schema.find_column_name(f.source_id) for f in table.spec().fields]
        columns += [c for c in SLICE_COLUMNS.get(name, ()) if c in schema.column_names]
        slices: dict[str, int] = {}
        if columns:
            for row in table.scan(selected_fields=tuple(columns)).to_arrow().group_by(columns).aggregate(
                [([], "count_all")]
            ).to_pylist():
                slices[",".join(f"{c}={row[c]}" for c in columns)] = row["count_all"]
        out[name] = IcebergState(
            folder,
            tuple(Path(t.file.file_path.removeprefix("file://")) for t in tasks),
            sum(t.file.record_count for t in tasks),
            slices,
        )
    return out


def _in_iceberg_folder(path: Path, folders: list[Path]) -> bool:
    return any(path.is_relative_to(f) for f in folders)


# --- what a reader sees -------------------------------------------------------------------------------
def unreadable_files(lake_dir: Path) -> list[str]:
    """Every Parquet, JSON-lines and JSON file of the lake's read zones that cannot be read whole, with the
    reason (DuckDB's own ``tmp_`` names included: a ``*.parquet`` glob would see them). For an Iceberg table:
    the data files of its current snapshot."""
    bad = []
    tables = iceberg_tables(lake_dir.parent)
    for name, state in tables.items():
        for path in state.data_files:
            try:
                pq.ParquetFile(path).read()  # the file alone: its folder's name=value is no partition to infer
            except Exception as exc:  # noqa: BLE001 - every failure is a finding, named
                bad.append(f"iceberg {name} {path.name}: {type(exc).__name__}: {str(exc)[:200]}")
    folders = iceberg_folders(lake_dir)
    for path in files_below(lake_dir):
        rel = path.relative_to(lake_dir)
        if rel.parts[0] in ("landing", "raw", "intermediate") or any(p.startswith(".tmp-") for p in rel.parts):
            continue  # the users' bytes as they arrived (inbox and raw copies, e.g. JSON lines named .json); the
            # product's scratch zone and in-flight names, which no reader lists
        if _in_iceberg_folder(path, folders):
            continue  # read above, through the catalog
        name = path.name
        try:
            if name.endswith(".parquet"):
                pq.read_table(path)
            elif name.endswith(".jsonl"):
                for line in path.read_text().splitlines():
                    json.loads(line)
            elif name.endswith(".json"):
                json.loads(path.read_text())
        except Exception as exc:  # noqa: BLE001 - every failure is a finding, named
            bad.append(f"{path.relative_to(lake_dir)}: {type(exc).__name__}: {str(exc)[:200]}")
    return bad


def temporary_files(lake_dir: Path) -> list[str]:
    """Files with an in-flight name left in the lake (a killed writer's leftovers)."""
    return [str(p.relative_to(lake_dir)) for p in files_below(lake_dir) if is_temporary(p)]


def dataset_rows(folder: Path) -> int | None:
    """The rows of every Parquet file below ``folder`` (what ``read_parquet('<folder>/**/*.parquet')`` sees);
    None when there is none."""
    files = [p for p in files_below(folder, ".parquet")]
    if not files:
        return None
    return sum(pq.read_metadata(p).num_rows for p in files)


def lake_units(lake_dir: Path) -> dict[str, int]:
    """What one write puts in place, with its rows: every Parquet / JSON-lines file of the processed,
    quarantine and archive zones (DuckDB's ``tmp_`` names included: a glob reader sees them), and each slice of
    every Iceberg table (``iceberg <table> <partition>``: its rows at the current snapshot; absent until committed)."""
    units: dict[str, int] = {}
    for name, state in iceberg_tables(lake_dir.parent).items():
        if state.slices:  # a partitioned table: each slice is what one commit puts in place
            units |= {f"iceberg {name} {key}": rows for key, rows in state.slices.items()}
        elif state.rows is not None:
            units[f"iceberg {name}"] = state.rows
    folders = iceberg_folders(lake_dir)
    for zone in ("processed", "quarantine", "archive"):
        for path in files_below(lake_dir / zone):
            if any(p.startswith(".tmp-") for p in path.relative_to(lake_dir).parts):
                continue  # an in-flight name (or below one): never listed by the lake, never matched by a glob
            if _in_iceberg_folder(path, folders):
                continue  # counted through the catalog
            rel = path.relative_to(lake_dir).as_posix()
            if path.name.endswith(".parquet"):
                try:
                    rows = pq.read_metadata(path).num_rows
                except Exception:  # noqa: BLE001 - unreadable: reported by unreadable_files
                    rows = -1
            elif path.name.endswith(".jsonl"):
                rows = len(path.read_text(errors="replace").splitlines())
            else:
                continue
            units[rel] = units.get(rel, 0) + rows
    return units


def torn_writes(expected_units: Mapping[str, int], expected: Mapping[str, object], data_dir: Path,
                growing: tuple[str, ...] = ()) -> list[str]:
    """What a reader would see half-written right now: a lake unit that is neither absent nor the
    uninterrupted run's, an unreadable file, a warehouse table that is neither absent nor the uninterrupted
    run's figures (``growing`` tables, loaded batch by batch, must only have no duplicate and no more rows)."""
    problems = [f"unreadable: {b}" for b in unreadable_files(data_dir / "lake")]
    for unit, rows in sorted(lake_units(data_dir / "lake").items()):
        if expected_units.get(unit) != rows:
            problems.append(f"lake {unit}: {rows} rows, the uninterrupted run has {expected_units.get(unit)}")
    try:
        tables = _warehouse_figures(data_dir / "warehouse.duckdb")
    except duckdb.Error as exc:
        return [*problems, f"warehouse cannot be opened: {exc}"]
    for key, got in tables.items():
        want = expected.get(key)
        if key.removeprefix("warehouse ") in growing:
            assert isinstance(got, dict) and isinstance(want, dict)
            if got["duplicate_rows"] or got["rows"] > want["rows"]:
                problems.append(f"{key}: {got}, the uninterrupted run has {want}")
        elif got != want:
            problems.append(f"{key}: {got}, the uninterrupted run has {want}")
    return problems


# --- the figures a user checks --------------------------------------------------------------------------
def _warehouse_figures(db: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    if not db.exists():
        return out
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE NOT temporary ORDER BY 1, 2").fetchall()
        for schema, table in tables:
            cols = con.execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE schema_name = ? AND table_name = ? "
                "ORDER BY column_index", [schema, table]).fetchall()
            q = f'"{schema}"."{table}"'
            stable = [c for c, _t in cols if c.lower() not in VOLATILE_COLUMNS]
            numeric = [c for c, t in cols if c.lower() not in VOLATILE_COLUMNS and t.split("(")[0] in NUMERIC]
            exprs = ["count(*)"] + [f'round(CAST(sum("{c}") AS DOUBLE), 4)' for c in numeric]
            row = con.execute(f"SELECT {', '.join(exprs)} FROM {q}").fetchone()  # noqa: S608 - catalog names
            distinct = con.execute(
                f"SELECT count(*) FROM (SELECT DISTINCT {', '.join(f'{chr(34)}{c}{chr(34)}' for c in stable)} "  # noqa: S608
                f"FROM {q})").fetchone()[0] if stable else row[0]
            out[f"warehouse {schema}.{table}"] = {
                "rows": row[0], "duplicate_rows": row[0] - distinct,
                **{f"sum({c})": v for c, v in zip(numeric, row[1:], strict=True)},
            }
    finally:
        con.close()
    return out


def _rule_counts(parquet_files: list[Path]) -> dict[str, int]:
    """Quarantined rows per rule (the ``rule`` column of the quarantine's Parquet files)."""
    counts: dict[str, int] = {}
    for path in parquet_files:
        table = pq.read_table(path)
        if "rule" in table.column_names:
            for rule in table.column("rule").to_pylist():
                counts[str(rule)] = counts.get(str(rule), 0) + 1
    return dict(sorted(counts.items()))


def _lake_figures(lake: Path) -> dict[str, object]:
    """Per ``<zone>/<source>/`` (and ``<zone>/<source>/<dataset>/`` for processed): Parquet rows, JSON-lines
    records and reason files; per Iceberg table (``iceberg <table>``), its current snapshot's rows."""
    out: dict[str, object] = {
        f"iceberg {name}": {"rows": state.rows} for name, state in iceberg_tables(lake.parent).items()
    }
    folders = iceberg_folders(lake)
    for zone in ("raw", "processed", "quarantine", "archive"):
        for source in sorted(p for p in (lake / zone).glob("*") if p.is_dir()) if (lake / zone).is_dir() else []:
            if source in folders:
                continue  # an Iceberg table: its figure is its current snapshot's rows
            groups = [source] + sorted(p for p in source.glob("*") if p.is_dir() and zone == "processed"
                                       and not p.name.startswith(("date=", ".tmp-")))
            for folder in groups:
                files = [p for p in files_below(folder) if not is_temporary(p)]
                # how many Parquet files an engine writes depends on its threads: only rows are figures there
                figure: dict[str, int] = {"files": len(files)} if zone in ("raw", "archive") else {}
                rows = dataset_rows(folder)
                if rows is not None:
                    figure["parquet_rows"] = rows
                jsonl = [p for p in files if p.name.endswith(".jsonl")]
                if jsonl:
                    figure["jsonl_records"] = sum(len(p.read_text().splitlines()) for p in jsonl)
                if zone == "quarantine":
                    by_rule = _rule_counts([p for p in files if p.name.endswith(".parquet")])
                    if by_rule:
                        figure["quarantined_by_rule"] = by_rule  # type: ignore[assignment]
                reasons = [p for p in files if p.name.endswith(".reason.json")]
                if reasons:
                    figure["reason_files"] = len(reasons)
                out[f"lake {folder.relative_to(lake)}"] = figure
    return out


def _kv_figures(state_dir: Path) -> dict[str, object]:
    """Items per table of the local key-value store (the stream's ``customers`` / ``invoices``)."""
    import sqlite3

    path = state_dir / "kv.sqlite"
    if not path.exists():
        return {}
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {f"kv {n}": con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}  # noqa: S608
    finally:
        con.close()


def figures(data_dir: Path) -> dict[str, object]:
    """Every figure of ``data_dir``: its warehouse tables, its lake datasets and its key-value tables."""
    return {**_warehouse_figures(data_dir / "warehouse.duckdb"), **_lake_figures(data_dir / "lake"),
            **_kv_figures(data_dir / "state")}


def differences(expected: Mapping[str, object], got: Mapping[str, object]) -> list[str]:
    """One line per figure that differs (missing, extra or another value)."""
    lines = []
    for key in sorted(set(expected) | set(got)):
        if expected.get(key) != got.get(key):
            lines.append(f"{key}: expected {expected.get(key)}, got {got.get(key)}")
    return lines


@dataclass
class Ledger:
    """Faults injected and survived, printed as ``N/N`` at the end of a module."""

    injected: list[str] = field(default_factory=list)
    survived: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"faults injected and survived: {len(self.survived)}/{len(self.injected)}"
                + "".join(f"\n  {'ok  ' if p in self.survived else 'LOST'} {p}" for p in self.injected))


def put_stream_records(env: Mapping[str, str], sample: Path, batch: int = 20) -> str:
    """Post ``sample`` (an Online Retail CSV) line by line, in order, through the product's ingestion API
    (a real HTTP server on loopback) onto the data dir's local stream, as a shop would. Returns the summary."""
    out = subprocess.run([sys.executable, "-m", "tests.faults", "--put-stream", str(sample), str(batch)], cwd=ROOT,
                         env=dict(env), capture_output=True, text=True, timeout=170, check=False)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out.stdout.strip()


def _put_stream(sample: Path, batch: int) -> int:
    from ecommerce_assets.dev.replay import replay_file
    from ecommerce_assets.resources import build_resources
    from ecommerce_assets.services.ingest_api import ApiServer, create_app
    from ecommerce_assets.settings import get_settings

    settings = get_settings()
    resources = build_resources(settings)
    with ApiServer(create_app(resources["stream"], resources["kv_store"], settings)) as server:
        summary = replay_file(sample, server.url, concurrency=1, batch=batch, progress=False)
    print(f"{summary.accepted} accepted, {summary.rejected} rejected, {summary.failed} failed")
    return 0 if summary.failed == 0 else 1


SLOW_WAREHOUSE_MARK = "faults: slow warehouse"


def _slow_warehouse(seconds: float, gate: Path | None) -> None:
    """Fault: this process is a slow warehouse writer. Each load (``replace_table``, ``replace_rows``) keeps its
    connection to the DuckDB file (and the writers' lock, when it is on) ``seconds`` longer once its rows are
    in, as a big load would. With ``gate``, the test chooses when the writer loads and for how long at least:
    no warehouse connection opens before that file appears, and from then on a load also keeps its connection
    as long as the file exists. On stderr (``faults: slow warehouse <pid> ...``): ``waits at the gate`` when the
    first connection finds it closed, ``holds <table> from <epoch>`` as a hold starts, ``released <table>
    after <s> s`` as it ends."""
    import threading
    from collections.abc import Iterator
    from contextlib import contextmanager
    from typing import Any

    from ecommerce_assets.storage.warehouses.duckdb import DuckDBWarehouse

    loading = threading.local()  # the table a load of this thread is writing
    opened = threading.Event()  # the gate appeared once: connections no longer wait for it
    connect = DuckDBWarehouse.connect

    def say(what: str) -> None:
        print(f"{SLOW_WAREHOUSE_MARK} {os.getpid()} {what}", file=sys.stderr, flush=True)

    @contextmanager
    def slow_connect(self: DuckDBWarehouse) -> Iterator[Any]:
        if gate is not None and not opened.is_set():
            if not gate.exists():
                say("waits at the gate")
            while not gate.exists():
                time.sleep(0.005)
            opened.set()
        with connect(self) as con:
            yield con
            table = getattr(loading, "table", None)
            if table:
                began = time.time()
                say(f"holds {table} from {began:.3f}")
                time.sleep(seconds)
                while gate is not None and gate.exists():
                    time.sleep(0.005)
                say(f"released {table} after {time.time() - began:.1f} s")

    def slow_load(load: Callable[..., int]) -> Callable[..., int]:
        def wrapper(self: DuckDBWarehouse, table: str, *args: Any, **kwargs: Any) -> int:
            loading.table = table
            try:
                return load(self, table, *args, **kwargs)
            finally:
                loading.table = None

        return wrapper

    DuckDBWarehouse.connect = slow_connect  # type: ignore[method-assign]
    DuckDBWarehouse.replace_table = slow_load(DuckDBWarehouse.replace_table)  # type: ignore[method-assign]
    DuckDBWarehouse.replace_rows = slow_load(DuckDBWarehouse.replace_rows)  # type: ignore[method-assign]


def _main(argv: list[str]) -> int:
    """``python -m tests.faults [--no-writer-lock] [--slow-warehouse SECONDS [--warehouse-gate PATH]] <args>``:
    ``ecommerce-assets <args>`` without writer lock (``warehouse.SERIALIZE_WRITERS = False``) and/or as a slow
    warehouse writer (``_slow_warehouse``); ``--put-stream FILE BATCH``: ``put_stream_records`` in this process."""
    if argv[:1] == ["--put-stream"]:
        return _put_stream(Path(argv[1]), int(argv[2]))
    if argv[:1] == ["--no-writer-lock"]:
        import ecommerce_assets.storage.warehouses.duckdb as warehouse

        warehouse.SERIALIZE_WRITERS = False
        argv = argv[1:]
    if argv[:1] == ["--slow-warehouse"]:
        seconds, argv = float(argv[1]), argv[2:]
        gate = None
        if argv[:1] == ["--warehouse-gate"]:
            gate, argv = Path(argv[1]), argv[2:]
        _slow_warehouse(seconds, gate)
    from ecommerce_assets.cli import main

    return main(argv)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
