"""Helpers of the "each pipeline alone" matrix (``tests/test_pipelines_alone.py``, ``tests/aws/test_pipelines_alone_aws.py``).

* ``cli_env`` builds a child environment from scratch: a minimal ``PATH`` without the venv's bin (the
  console script must find dbt by itself), a fresh ``HOME``, the data dir and ``DAGSTER_HOME``, plus the
  settings of one pipeline; nothing leaks in from the test process (no ``ECOMMERCE_*``, no AWS variable).
* ``run_cli`` runs the real console script ``<venv>/bin/ecommerce-assets`` in a subprocess and parses
  what it printed (``CliResult``): its run lines (``ok``/``FAILED``), skip and wait lines, the summary.
* The expected contents are derived independently of the product: ``retail_expected`` applies the
  README's cleaning rules to the CSV with the ``csv`` module; ``transactions_expected`` reads the JSON
  files that landed; ``transaction_records`` writes such files for the aws tests.
* ``duckdb_tables`` / ``postgres_tables`` read the warehouse after the run, tables found by name (not by
  schema: dbt schema names depend on the target and environment).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).parent / "ecommerce-assets"  # the venv's console script
MINIMAL_PATH = "/usr/local/bin:/usr/bin:/bin"  # the venv's bin is deliberately not on it
SAMPLES = REPO / "ecommerce_assets" / "samples"
RETAIL_SAMPLE = SAMPLES / "online_retail_sample.csv"
DISTRIBUTOR_SAMPLE = SAMPLES / "catalog" / "distributor_inventory_sample.csv"
ORDERS_BATCH_1 = SAMPLES / "orders" / "batch_1"
ORDERS_FILES = {"orders": "orders.csv", "customers": "customers.json", "products": "products.csv"}
CLI_TIMEOUT = 900  # seconds; a run takes 20-60 s on a quiet machine, several times that on a busy one

# one console line per run / skipped pipeline / waiting asset (orchestration.RunLine.render, CatchUp.note)
_LINE = re.compile(r"^(?P<status>ok|FAILED|skip|wait)\s+(?:(?P<seconds>\d+\.\d)s)?\s+(?P<pipeline>[a-z]+)\s+(?P<text>\S.*)$")
_SUMMARY = re.compile(r"^(?P<runs>\d+) run\(s\) in [\d.]+s, (?P<failed>\d+) failed(?:, (?P<sensors>\d+) sensor[^;]*)?;")
_ROWS = re.compile(r"([\w/]+) ([\d,]+) rows")


@dataclass
class Line:
    """One status line of ``ecommerce-assets run``."""

    status: str  # ok | FAILED | skip | wait
    pipeline: str
    text: str

    @property
    def rows(self) -> dict[str, int]:
        """``{asset: rows}`` as the run line reports them (``gold/customers 13 rows``)."""
        return {k: int(n.replace(",", "")) for k, n in _ROWS.findall(self.text)}


@dataclass
class CliResult:
    """A finished ``ecommerce-assets`` command and what it printed."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    lines: list[Line] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lines = [Line(m["status"], m["pipeline"], m["text"])
                      for m in map(_LINE.match, self.stdout.splitlines()) if m]

    def show(self) -> str:
        """Everything the command printed, for an assertion message."""
        return (f"$ ecommerce-assets {' '.join(self.args)}  -> exit {self.returncode} in {self.seconds:.0f} s\n"
                f"--- stdout\n{self.stdout}\n--- stderr (last 4000 characters)\n{self.stderr[-4000:]}")

    def of(self, status: str, pipeline: str | None = None) -> list[Line]:
        return [ln for ln in self.lines if ln.status == status and (pipeline is None or ln.pipeline == pipeline)]

    @property
    def runs(self) -> list[Line]:
        return [ln for ln in self.lines if ln.status in ("ok", "FAILED") and not ln.text.startswith("sensor ")]

    @property
    def sensor_failures(self) -> list[Line]:
        return [ln for ln in self.lines if ln.status == "FAILED" and ln.text.startswith("sensor ")]

    @property
    def summary(self) -> dict[str, int]:
        """``{"runs", "failed", "sensors"}`` from the summary line (an AssertionError when there is none)."""
        found = [m for m in map(_SUMMARY.match, self.stdout.splitlines()) if m]
        assert len(found) == 1, f"expected one summary line\n{self.show()}"
        return {k: int(v or 0) for k, v in found[0].groupdict().items()}

    def reported_rows(self) -> dict[str, int]:
        """The row counts of the last run line that reported each asset."""
        out: dict[str, int] = {}
        for line in self.runs:
            out.update(line.rows)
        return out


def cli_env(root: Path, settings: Mapping[str, str] | None = None) -> dict[str, str]:
    """A child environment built from scratch: minimal PATH, HOME, the data dir, DAGSTER_HOME, ``settings``."""
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": MINIMAL_PATH,
        "HOME": str(home),
        "ECOMMERCE_DATA_DIR": str(root / "data"),
        "DAGSTER_HOME": str(root / "dagster_home"),
        **(settings or {}),
    }


def run_cli(args: list[str], env: Mapping[str, str], cwd: Path, timeout: float = CLI_TIMEOUT) -> CliResult:
    """Run ``ecommerce-assets ARGS`` (the installed console script) in ``cwd`` with exactly ``env``."""
    started = time.monotonic()
    proc = subprocess.run([str(CLI), *args], env=dict(env), cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)
    return CliResult(args, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


def landing(data_dir: Path, source: str) -> Path:
    """``<data>/lake/landing/<source>/``, created."""
    folder = data_dir / "lake" / "landing" / source
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# --- expected contents, derived without the product ---------------------------------------------------
@dataclass(frozen=True)
class RetailExpected:
    sales: int  # gold.sales_transactions rows
    customers: frozenset[str]  # gold.customers customerid values (UNKNOWN for blank)
    products: frozenset[str]  # gold.products stockcode values


def retail_expected(path: Path) -> RetailExpected:
    """The README's cleaning rules, in order: exact duplicates dropped; null invoiceno / stockcode /
    quantity / unitprice dropped; quantity > 0 and unitprice > 0 kept; customerid without ``.0``, blank ->
    ``UNKNOWN``. One sales row per kept line, one customer per customerid, one product per stock code."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("iso-8859-1")
    reader = csv.reader(text.splitlines())
    header = [h.strip().lower() for h in next(reader)]
    seen: set[tuple[str, ...]] = set()
    sales, customers, products = 0, set(), set()
    for row in reader:
        if tuple(row) in seen:
            continue
        seen.add(tuple(row))
        line = dict(zip(header, row, strict=True))
        if any(not line[k].strip() for k in ("invoiceno", "stockcode", "quantity", "unitprice")):
            continue
        if float(line["quantity"]) <= 0 or float(line["unitprice"]) <= 0:
            continue
        customer = line["customerid"].strip().removesuffix(".0") or "UNKNOWN"
        sales += 1
        customers.add(customer)
        products.add(line["stockcode"].strip())
    return RetailExpected(sales, frozenset(customers), frozenset(products))


def transactions_expected(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Rows of the processed transactions and of each analytics table (docs/transactions.md's queries),
    for valid records."""
    recs = list(records)
    stamps = [dt.datetime.fromisoformat(r["timestamp"]) for r in recs]
    return {
        "transactions": len(recs),
        "transactions_sales_by_category": len({r["category"] for r in recs}),
        "transactions_hourly_pattern": len({s.hour for s in stamps}),
        "transactions_top_customers": min(20, len({r["customer_id"] for r in recs})),
        "transactions_product_performance": len({r["product_id"] for r in recs}),
        "transactions_daily_trend": len({s.date() for s in stamps}),
        "transactions_day_of_week_pattern": len({s.weekday() for s in stamps}),
        "transactions_large_transactions": sum(1 for r in recs if float(r["total_amount"]) > 1000),
    }


def read_transaction_files(folder: Path) -> list[dict[str, Any]]:
    """Every record of the JSON files (object, array or JSON lines) below ``folder``."""
    out: list[dict[str, Any]] = []
    for path in sorted(folder.rglob("*.json*")):
        text = path.read_text(encoding="utf-8").strip()
        if text.startswith("["):
            out += json.loads(text)
        elif "\n" in text:
            out += [json.loads(ln) for ln in text.splitlines() if ln.strip()]
        else:
            out.append(json.loads(text))
    return out


def transaction_records(count: int, days: list[dt.date], seed: int = 11) -> dict[str, list[dict[str, Any]]]:
    """``count`` valid transactions in the documented shape, spread over ``days``: ``{date: [record]}``."""
    rng = random.Random(seed)
    catalog = [("P0001", "Desk Lamp", "Home", 24.5), ("P0002", "Laptop", "Electronics", 1299.0),
               ("P0003", "Yoga Mat", "Sports & Outdoors", 19.99), ("P0004", "Coffee Beans", "Grocery", 12.0)]
    out: dict[str, list[dict[str, Any]]] = {d.isoformat(): [] for d in days}
    for i in range(count):
        day = days[i % len(days)]
        product_id, name, category, price = catalog[i % len(catalog)]
        quantity = 1 + i % 3
        stamp = dt.datetime.combine(day, dt.time(hour=rng.randrange(24), minute=rng.randrange(60)))
        out[day.isoformat()].append({
            "transaction_id": f"TXN-alone-{i:06d}", "timestamp": stamp.isoformat(), "customer_id": f"C{i % 7:05d}",
            "product_id": product_id, "product_name": name, "category": category, "quantity": quantity,
            "price": price, "total_amount": round(price * quantity, 2),
        })
    return out


# --- reading the warehouse ------------------------------------------------------------------------------
def quote_ident(name: str) -> str:
    """An SQL identifier, double-quoted (identifiers cannot be bound as parameters)."""
    return '"' + name.replace('"', '""') + '"'


def _locate(rows: list[tuple[str, str]], name: str) -> str | None:
    """The ``schema.table`` among ``rows`` (schema, table) that ``name`` (``table`` or ``schema.table``) names."""
    schema, _, table = name.rpartition(".")
    found = [f"{s}.{t}" for s, t in rows if t == table and (not schema or s == schema)]
    assert len(found) <= 1, f"{name} is in several schemas: {found}"
    return found[0] if found else None


def _connect(path: Path) -> Any:
    """The warehouse file opened read-only as the product opens it: the ``lake.*`` views of the Iceberg tables
    load the data dir's offline iceberg extension (nothing is downloaded)."""
    import duckdb

    from ecommerce_assets.storage.warehouses.duckdb import warehouse_config

    return duckdb.connect(str(path), read_only=True, config=warehouse_config(str(path.parent / "duckdb_extensions")))


def duckdb_tables(path: Path, names: Iterable[str]) -> dict[str, int]:
    """``{name: rows}`` for each of ``names`` (``table``: any schema, or ``schema.table``) in the DuckDB
    file; a table that does not exist is left out."""

    out: dict[str, int] = {}
    con = _connect(path)
    try:
        rows = con.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall()
        for name in names:
            where = _locate(rows, name)
            if where is not None:
                schema, table = where.split(".")
                query = f"SELECT count(*) FROM {quote_ident(schema)}.{quote_ident(table)}"  # noqa: S608 (quoted identifiers)
                out[name] = con.execute(query).fetchone()[0]  # type: ignore[index]
    finally:
        con.close()
    return out


def duckdb_column(path: Path, table: str, column: str) -> list[Any]:
    """Every value of ``table.column`` (``schema.table``) in the DuckDB file."""

    schema, name = table.split(".")
    con = _connect(path)
    try:
        query = f"SELECT {quote_ident(column)} FROM {quote_ident(schema)}.{quote_ident(name)}"  # noqa: S608 (quoted identifiers)
        return [r[0] for r in con.execute(query).fetchall()]
    finally:
        con.close()


def duckdb_rows(path: Path, table: str, *columns: str) -> list[tuple[Any, ...]]:
    """The rows of ``table`` (``schema.table``) in the DuckDB file, as tuples of ``columns``, read in one query
    (two column reads need not return the rows in the same order)."""

    schema, name = table.split(".")
    con = _connect(path)
    try:
        query = (f"SELECT {', '.join(quote_ident(c) for c in columns)} "  # noqa: S608 (quoted identifiers)
                 f"FROM {quote_ident(schema)}.{quote_ident(name)}")
        return [tuple(r) for r in con.execute(query).fetchall()]
    finally:
        con.close()


def postgres_tables(dsn: str, names: Iterable[str]) -> dict[str, int]:
    """``{name: rows}`` for each of ``names`` (``table``: any schema, or ``schema.table``) in the PostgreSQL
    database (tables and views); a table that does not exist is left out."""
    import psycopg
    from psycopg import sql

    out: dict[str, int] = {}
    with psycopg.connect(dsn) as con:
        rows = con.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall()
        for name in names:
            where = _locate(rows, name)
            if where is not None:
                schema, table = where.split(".")
                query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
                out[name] = con.execute(query).fetchone()[0]  # type: ignore[index]
    return out


def postgres_column(dsn: str, table: str, column: str) -> list[Any]:
    """Every value of ``table.column`` (``schema.table``) in the PostgreSQL database."""
    import psycopg
    from psycopg import sql

    schema, name = table.split(".")
    with psycopg.connect(dsn) as con:
        query = sql.SQL("SELECT {} FROM {}.{}").format(sql.Identifier(column), sql.Identifier(schema), sql.Identifier(name))
        return [r[0] for r in con.execute(query).fetchall()]
