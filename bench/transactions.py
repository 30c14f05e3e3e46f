"""Path 2: transactions JSON lines -> typed, date-partitioned Parquet, at 1 M and 10 M rows.

Inputs come from the product's own generator (``ecommerce_assets.services.transactions_generator``): 10 landing
dates, files of 10,000 JSON lines (1 M rows: 100 files, 230 MB; 10 M rows: 1,000 files, 2.3 GB).

* ``product``: ``transforms.transactions.transform_partition`` for each date, as the ``transactions``
  asset runs it (rules, quarantine, reconciliation, each date's rows committed to the Iceberg table
  ``transactions`` of a SQLite catalog in the work dir);
* ``pandas``: ``pd.read_json(lines=True)`` per file, concatenated, the same rules and discount, then
  ``to_parquet(partition_cols=["date"])``: the straightforward way (run under an address-space cap);
* ``floor``: one DuckDB statement: ``read_json`` over every file -> the rules and derived columns ->
  ``COPY ... PARTITION_BY (date)``;
* ``floor_per_partition``: the same statement once per date, each on its own connection, as the asset
  contract runs the product (one partition = one date = one call): what the floor pays for that contract.

The floor checks less than the product must: its typed read takes ``"3"`` for a quantity and ``123`` for a
customer id, it does not look for control characters, convert UTC offsets or check the timestamp's range,
and it names no reason, writes no quarantine and counts nothing (the product does all of it, in the same
single read of the JSON).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from bench.common import CACHE, dir_bytes, timed

SIZES = {"1m": 1_000_000, "10m": 10_000_000, "100k": 100_000}
DAYS = 10
PER_FILE = 10_000


def prepare(size: str) -> Path:
    """The lake root holding ``landing/transactions/date=.../*.json`` for ``size`` (made once)."""
    from ecommerce_assets.services.transactions_generator import generate_files, land
    from ecommerce_assets.storage.lake import LocalLake

    root = CACHE / f"transactions_{size}"
    done = root / ".complete"
    if not done.exists():
        import shutil

        shutil.rmtree(root, ignore_errors=True)
        lake = LocalLake(base_dir=str(root))
        land(lake, generate_files(SIZES[size], per_file=min(PER_FILE, SIZES[size] // DAYS), fmt="lines", seed=8,
                                  days=DAYS, end_date=dt.date(2024, 3, 10)))
        done.write_text("ok")
    return root


def _landing(root: Path) -> Path:
    return root / "landing" / "transactions"


def product(params: dict, work: Path) -> dict:
    import shutil

    from ecommerce_assets.storage.iceberg import IcebergTables
    from ecommerce_assets.storage.lake import LocalLake
    from ecommerce_assets.transforms.transactions import transform_partition

    root = Path(params["root"]) if params.get("root") else prepare(params["size"])
    # the product's lake: landing files hard-linked into a fresh lake (no copy, no shared state between runs)
    lake_dir = work / "lake"
    shutil.copytree(_landing(root), lake_dir / "raw" / "transactions", copy_function=lambda s, d: Path(d).hardlink_to(s))
    lake = LocalLake(base_dir=str(lake_dir), duckdb_memory_limit=params.get("duckdb_memory_limit", "2GB"))
    # as the asset runs: each date's rows committed to the Iceberg table (a SQLite catalog in the work dir)
    tables = IcebergTables(catalog_kind="sql", warehouse=lake_dir.resolve().as_uri(),
                           sqlite_path=str(work / "iceberg_catalog.db"))

    def run() -> dict:
        rows = 0
        for prefix in lake.list_prefixes("raw/transactions/"):
            date = prefix.rstrip("/").rsplit("=", 1)[1]
            result = transform_partition(lake, date, list(lake.list_objects(prefix)), tables=tables)
            rows += result.records_out
        return {"rows_out": rows}

    seconds, out = timed(run)
    return {"seconds": seconds, "rows_per_second": out["rows_out"] / seconds,  # type: ignore[index]
            "output_bytes": dir_bytes(lake_dir / "processed"), **out}  # type: ignore[dict-item]


FLOOR_SQL = """
COPY (
    SELECT transaction_id, ts AS "timestamp", customer_id, product_id, product_name, category, quantity, price,
           total_amount, discount, total_amount - discount AS final_amount,
           year(ts)::INTEGER AS year, month(ts)::INTEGER AS month, day(ts)::INTEGER AS day,
           hour(ts)::INTEGER AS hour, (isodow(ts) - 1)::INTEGER AS day_of_week, filename AS source_file, date
    FROM (
        SELECT *, try_cast("timestamp" AS TIMESTAMP) AS ts,
               round(CASE WHEN total_amount >= 500 THEN total_amount * 0.10
                          WHEN total_amount >= 100 THEN total_amount * 0.05 ELSE 0 END, 2)::DECIMAL(18,2) AS discount
        FROM read_json($1, format = 'newline_delimited', hive_partitioning = true, filename = true,
                       columns = {transaction_id: 'VARCHAR', "timestamp": 'VARCHAR', customer_id: 'VARCHAR',
                                  product_id: 'VARCHAR', product_name: 'VARCHAR', category: 'VARCHAR',
                                  quantity: 'BIGINT', price: 'DECIMAL(18,2)', total_amount: 'DECIMAL(18,2)'})
    )
    WHERE coalesce(trim(transaction_id), '') <> '' AND coalesce(trim(customer_id), '') <> ''
      AND coalesce(trim(product_id), '') <> '' AND coalesce(trim(product_name), '') <> ''
      AND coalesce(trim(category), '') <> '' AND ts IS NOT NULL AND quantity > 0 AND price > 0
      AND total_amount IS NOT NULL
) TO $2 (FORMAT parquet, PARTITION_BY (date), COMPRESSION zstd)
"""


def floor(params: dict, work: Path) -> dict:
    import duckdb

    root = Path(params["root"]) if params.get("root") else prepare(params["size"])

    def run() -> dict:
        con = duckdb.connect()
        con.execute("SET memory_limit = ?", [params.get("duckdb_memory_limit", "2GB")])
        con.execute("SET threads = 2; SET preserve_insertion_order = false; SET enable_progress_bar = false")
        con.execute("SET temp_directory = ?", [str(work / "spill")])
        con.execute(FLOOR_SQL, [str(_landing(root) / "*" / "*.json"), str(work / "out")])
        return {"rows_out": con.execute("SELECT count(*) FROM read_parquet(?)", [str(work / "out/*/*.parquet")])
                .fetchone()[0]}

    seconds, out = timed(run)
    return {"seconds": seconds, "rows_per_second": out["rows_out"] / seconds,  # type: ignore[index]
            "output_bytes": dir_bytes(work / "out"), **out}  # type: ignore[dict-item]


def floor_per_partition(params: dict, work: Path) -> dict:
    import duckdb

    root = Path(params["root"]) if params.get("root") else prepare(params["size"])
    per_date = FLOOR_SQL.replace(", date\n", "\n").replace("PARTITION_BY (date), ", "")

    def run() -> dict:
        rows = 0
        for folder in sorted(_landing(root).iterdir()):
            con = duckdb.connect()
            try:
                con.execute("SET memory_limit = ?", [params.get("duckdb_memory_limit", "2GB")])
                con.execute("SET threads = 2; SET preserve_insertion_order = false; SET enable_progress_bar = false")
                out = work / "out" / folder.name
                out.mkdir(parents=True)
                con.execute(per_date, [str(folder / "*.json"), str(out / "data.parquet")])
                rows += con.execute("SELECT count(*) FROM read_parquet(?)", [str(out / "data.parquet")]).fetchone()[0]
            finally:
                con.close()
        return {"rows_out": rows}

    seconds, out = timed(run)
    return {"seconds": seconds, "rows_per_second": out["rows_out"] / seconds,  # type: ignore[index]
            "output_bytes": dir_bytes(work / "out"), **out}  # type: ignore[dict-item]


def pandas_impl(params: dict, work: Path) -> dict:
    import numpy as np
    import pandas as pd

    root = Path(params["root"]) if params.get("root") else prepare(params["size"])
    files = sorted(_landing(root).glob("*/*.json"))

    def run() -> dict:
        frames = []
        for f in files:
            df = pd.read_json(f, lines=True, dtype=False)
            df["source_file"] = str(f)
            df["date"] = f.parent.name.split("=", 1)[1]
            frames.append(df)
        df = pd.concat(frames, ignore_index=True)
        del frames
        text = ["transaction_id", "customer_id", "product_id", "product_name", "category"]
        ok = np.ones(len(df), dtype=bool)
        for c in text:
            ok &= df[c].notna() & (df[c].astype(str).str.strip() != "")
        df["timestamp"] = pd.to_datetime(df["timestamp"], errors="coerce", utc=True).dt.tz_localize(None)
        ok &= df["timestamp"].notna() & (df["quantity"] > 0) & (df["price"] > 0) & df["total_amount"].notna()
        df = df[ok].copy()
        df["discount"] = np.where(df["total_amount"] >= 500, df["total_amount"] * 0.10,
                                  np.where(df["total_amount"] >= 100, df["total_amount"] * 0.05, 0.0)).round(2)
        df["final_amount"] = (df["total_amount"] - df["discount"]).round(2)
        ts = df["timestamp"].dt
        df["year"], df["month"], df["day"], df["hour"], df["day_of_week"] = ts.year, ts.month, ts.day, ts.hour, ts.dayofweek
        df.to_parquet(work / "out", partition_cols=["date"], index=False, compression="zstd")
        return {"rows_out": len(df)}

    seconds, out = timed(run)
    return {"seconds": seconds, "rows_per_second": out["rows_out"] / seconds,  # type: ignore[index]
            "output_bytes": dir_bytes(work / "out"), **out}  # type: ignore[dict-item]


def product_e2e(params: dict, work: Path) -> dict:
    """``ecommerce-assets run`` in a fresh process on a fresh data dir with the generated days landed (hard links),
    on the engine ``params["engine"]`` (``ECOMMERCE_ENGINE``): one run per date, then the analytics, as a user
    waits for it. For ``python -m bench.run --engines``."""
    import shutil

    import duckdb

    from bench.common import run_product
    from ecommerce_assets.storage.warehouses.duckdb import warehouse_config

    root = Path(params["root"]) if params.get("root") else prepare(params["size"])
    data_dir = work / "data"
    shutil.copytree(_landing(root), data_dir / "lake" / "landing" / "transactions",
                    copy_function=lambda s, d: Path(d).hardlink_to(s))
    seconds, _ = run_product(["run", "--quiet", "--pipeline", "transactions"], data_dir,
                             {"ECOMMERCE_ENGINE": params.get("engine", "duckdb")})
    db = data_dir / "warehouse.duckdb"
    con = duckdb.connect(str(db), read_only=True, config=warehouse_config(str(data_dir / "duckdb_extensions")))
    try:
        rows = con.execute("SELECT count(*) FROM lake.transactions").fetchone()[0]  # type: ignore[index]
    finally:
        con.close()
    return {"seconds": seconds, "rows_out": rows, "rows_per_second": rows / seconds}
