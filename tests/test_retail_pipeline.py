"""The Online Retail pipeline materialized for real into a temporary lake + DuckDB warehouse."""



import csv
import gzip
import hashlib
import json
import re
import shutil
from collections import Counter
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from ecommerce_assets.runtime.catchup import catch_up, execute, load_definitions
from ecommerce_assets.samples import retail_sample_path
from ecommerce_assets.storage.iceberg import IcebergTables
from ecommerce_assets.transforms import retail
from tests.conftest import FULL_RETAIL
from tests.retail_helpers import GOOD, HEADER, write_csv

RETAIL_KEYS = [
    dg.AssetKey(["online_retail", "raw"]), dg.AssetKey(["online_retail", "cleaned"]),
    dg.AssetKey(["gold", "customers"]), dg.AssetKey(["gold", "products"]), dg.AssetKey(["gold", "sales_transactions"]),
]


def expected_from_csv(path: Path) -> dict:
    """The users' rules re-derived with the csv module alone (independent of the product's SQL)."""
    opener = gzip.open if path.suffix == ".gz" else open
    seen: set[tuple] = set()
    lines = []
    removed: Counter[str] = Counter()  # the first rule that removes a line, in the users' order
    with opener(path, "rt", encoding="utf-8", errors="strict", newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        for row in reader:
            key = tuple(row)
            if key in seen:
                removed["duplicate_row"] += 1
                continue
            seen.add(key)
            inv, stock, _desc, qty, _date, price, cust, _country = row
            blank = [name for name, v in (("invoiceno", inv), ("stockcode", stock), ("quantity", qty),
                                          ("unitprice", price)) if not v.strip()]
            if blank:
                removed[f"null_{blank[0]}"] += 1
                continue
            if int(qty) <= 0:
                removed["non_positive_quantity"] += 1
                continue
            if Decimal(price) <= 0:
                removed["non_positive_unitprice"] += 1
                continue
            lines.append((inv, stock, int(qty), Decimal(price), re.sub(r"\.0+$", "", cust.strip()) or "UNKNOWN"))
    return {
        "removed": dict(removed),
        "sales_transactions": len(lines),
        "customers": len({c for *_, c in lines}),
        "products": len({s for _, s, *_ in lines}),
        "total_sales": sum(q * p for _, _, q, p, _ in lines),
        "unknown_lines": sum(1 for *_, c in lines if c == "UNKNOWN"),
    }


def table_digest(data_dir: Path, table: str) -> str:
    con = duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True)
    rows = con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()  # noqa: S608 - test constant
    con.close()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def warehouse(data_dir: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True)


def land(data_dir: Path, name: str, source: Path) -> Path:
    dest = data_dir / "lake" / "landing" / "online_retail" / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dest)
    return dest


def test_definitions_load_with_every_retail_asset_and_blocking_gates(data_dir: Path) -> None:
    defs = load_definitions()
    keys = defs.resolve_asset_graph().get_all_asset_keys()
    assert set(RETAIL_KEYS) <= keys
    checks = {c.name: c.blocking for c in defs.resolve_asset_graph().asset_check_keys and [
        spec for a in defs.resolve_asset_graph().assets_defs for spec in a.check_specs]}
    for gate in ("no_null_invoiceno", "positive_quantity", "positive_unitprice", "counts_reconcile"):
        assert checks[gate] is True
    assert checks["unknown_customer_share"] is False


def test_sample_end_to_end_matches_independent_derivation(data_dir: Path) -> None:
    land(data_dir, "sample.csv", retail_sample_path())
    report = catch_up(echo=lambda _m: None)
    assert report.ok and set(RETAIL_KEYS) <= report.materialized
    expected = expected_from_csv(retail_sample_path())
    con = warehouse(data_dir)
    for table in ("sales_transactions", "customers", "products"):
        assert con.execute(f"SELECT count(*) FROM gold.{table}").fetchone()[0] == expected[table]  # noqa: S608
    assert con.execute("SELECT sum(total_sales) FROM gold.sales_transactions").fetchone()[0] == expected["total_sales"]
    manifest = json.loads((data_dir / "lake/processed/online_retail/cleaned_manifest.json").read_text())
    assert manifest["rows_in"] == 400
    assert manifest["rows_in"] == manifest["rows_out"] + sum(manifest["removed"].values())
    # a customer seen in two countries has one row, with the country of most of their lines
    per_country = Counter(
        r[7] for r in csv.reader(retail_sample_path().open()) if r[6].startswith("12583") and int(r[3]) > 0
    )
    assert con.execute("SELECT country FROM gold.customers WHERE customerid = '12583'").fetchone()[0] == \
        per_country.most_common(1)[0][0]


def test_rerun_is_idempotent_and_catch_up_skips_processed_batches(data_dir: Path) -> None:
    land(data_dir, "sample.csv", retail_sample_path())
    assert catch_up(echo=lambda _m: None).ok
    before = {t: table_digest(data_dir, f"gold.{t}") for t in ("customers", "products", "sales_transactions")}
    again = catch_up(echo=lambda _m: None)
    assert again.runs == []  # the landing is as the last catch-up left it: the pipeline is not even loaded
    assert any("retail" in n and "nothing new landed since the last catch-up" in n for n in again.notes), again.notes
    # without the landing signatures, the sensor's cursor moved past the batch; without the cursor too, the run key
    # still holds
    (data_dir / "state" / "catch_up_landing.json").unlink()
    assert catch_up(echo=lambda _m: None).runs == []
    (data_dir / "state" / "catch_up_cursors.json").unlink()
    (data_dir / "state" / "catch_up_landing.json").unlink()
    third = catch_up(echo=lambda _m: None)
    assert third.runs == [] and third.skipped_run_keys == 1  # the same batch is never processed twice
    defs = load_definitions()
    ok, _ = execute(defs, dg.DagsterInstance.get(), RETAIL_KEYS)  # an explicit re-materialization
    assert ok
    after = {t: table_digest(data_dir, f"gold.{t}") for t in before}
    assert after == before


def test_bad_files_are_quarantined_and_good_files_go_on(data_dir: Path, tmp_path: Path) -> None:
    land(data_dir, "sample.csv", retail_sample_path())
    latin = write_csv(tmp_path / "latin.csv", [["900001", *GOOD[1:2], "CAFÉ JUG", *GOOD[3:]]], encoding="latin-1")
    land(data_dir, "latin.csv", latin)
    land(data_dir, "missing_column.csv", write_csv(tmp_path / "m.csv", [GOOD[:7]], header=HEADER[:7]))
    (tmp_path / "n.csv").write_text('{"not": "csv"}\n')
    land(data_dir, "not_csv.csv", tmp_path / "n.csv")
    (tmp_path / "u.csv").write_bytes(",".join(HEADER).encode("utf-16"))
    land(data_dir, "utf16.csv", tmp_path / "u.csv")

    report = catch_up(echo=lambda _m: None)
    assert report.ok
    qdir = data_dir / "lake/quarantine/online_retail/files"
    reasons = {p.name: json.loads(p.read_text()) for p in qdir.glob("*.reason.json")}
    assert {r["rule"] for r in reasons.values()} == {"missing_column", "not_csv", "unknown_encoding"}
    assert reasons["missing_column.csv.reason.json"]["problem"].startswith("missing column(s) country")
    for name in ("missing_column.csv", "not_csv.csv", "utf16.csv"):
        assert (qdir / name).read_bytes() == (data_dir / "lake/landing/online_retail" / name).read_bytes()
    con = warehouse(data_dir)
    assert con.execute("SELECT description FROM gold.sales_transactions s JOIN gold.products p USING (stockcode) "
                       "WHERE invoiceno = '900001'").fetchone() is not None
    expected = expected_from_csv(retail_sample_path())
    assert con.execute("SELECT count(*) FROM gold.sales_transactions").fetchone()[0] == expected["sales_transactions"] + 1


def test_failed_blocking_check_stops_the_star_schema(data_dir: Path, local_resources: dict) -> None:
    """The real gates and gold assets, with a stand-in for the cleaning step that lets a bad line through."""
    from ecommerce_assets.defs.retail import assets, checks

    @dg.asset(key=assets.CLEANED_KEY)
    def defective_cleaned(iceberg: dg.ResourceParam[IcebergTables]) -> None:
        rows = duckdb.sql(
            "SELECT 'X1' AS invoiceno, 'S' AS stockcode, NULL::VARCHAR AS description, -5::BIGINT AS quantity, "
            "1.000::DECIMAL(18,3) AS unitprice, TIMESTAMP '2010-12-01 10:00' AS invoicedate, 'UNKNOWN' AS customerid, "
            "'UK' AS country, -5.000::DECIMAL(18,3) AS total_sales, DATE '2010-12-01' AS invoice_date, "
            "'2010-12' AS invoice_month"
        ).to_arrow_table()
        iceberg.ensure_table(retail.TABLE, rows.schema, retail.PARTITION_BY)
        iceberg.write(retail.TABLE, rows)

    result = dg.materialize(
        [defective_cleaned, checks.cleaned_checks, assets.gold_star_schema],
        resources=local_resources, raise_on_error=False,
    )
    evaluations = {e.asset_check_key.name: e.passed for e in result.get_asset_check_evaluations()}
    # the stand-in wrote no manifest: counts_reconcile fails and says so, every other gate evaluated on its own
    assert evaluations == {"no_null_invoiceno": True, "positive_quantity": False, "positive_unitprice": True,
                           "counts_reconcile": False, "unknown_customer_share": False}
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert materialized == {assets.CLEANED_KEY}  # the gate held: no gold table was built
    assert not (data_dir / "warehouse.duckdb").exists() or not duckdb.connect(
        str(data_dir / "warehouse.duckdb"), read_only=True
    ).execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'gold'").fetchone()[0]


@pytest.mark.slow
def test_full_data_set_end_to_end(data_dir: Path) -> None:
    dest = data_dir / "lake/landing/online_retail/online_retail.csv"
    dest.parent.mkdir(parents=True)
    with gzip.open(FULL_RETAIL, "rb") as src, dest.open("wb") as out:
        shutil.copyfileobj(src, out)
    report = catch_up(echo=lambda _m: None)
    assert report.ok
    expected = expected_from_csv(FULL_RETAIL)
    con = warehouse(data_dir)
    got = {t: con.execute(f"SELECT count(*) FROM gold.{t}").fetchone()[0]  # noqa: S608
           for t in ("sales_transactions", "customers", "products")}
    assert got == {t: expected[t] for t in got}
    assert con.execute("SELECT sum(total_sales) FROM gold.sales_transactions").fetchone()[0] == expected["total_sales"]
    assert con.execute("SELECT count(*) FROM gold.sales_transactions WHERE customerid = 'UNKNOWN'").fetchone()[0] == \
        expected["unknown_lines"]
    manifest = json.loads((data_dir / "lake/processed/online_retail/cleaned_manifest.json").read_text())
    assert manifest["rows_in"] == 541_909
    assert manifest["rows_in"] == manifest["rows_out"] + sum(manifest["removed"].values())
    # the per-rule counts of the materialization's metadata: the csv module's derivation, and the README's figures
    event = dg.DagsterInstance.get().get_latest_materialization_event(dg.AssetKey(["online_retail", "cleaned"]))
    metadata = event.asset_materialization.metadata
    by_rule = {rule: n for rule, n in metadata["removed_by_rule"].value.items() if n}
    assert by_rule == expected["removed"]
    assert (by_rule["duplicate_row"], by_rule["non_positive_quantity"], by_rule["non_positive_unitprice"]) == \
        (5_268, 10_587, 1_176)
    assert metadata["rows_in"].value == 541_909
    assert metadata["rows_out"].value == expected["sales_transactions"] == 524_878
    assert metadata["rows_removed"].value == sum(expected["removed"].values())
    # referential integrity and keys in the warehouse itself
    assert con.execute("SELECT count(*) FROM gold.sales_transactions s ANTI JOIN gold.customers c "
                       "USING (customerid)").fetchone()[0] == 0
    assert con.execute("SELECT count(*) - count(DISTINCT stockcode) FROM gold.products").fetchone()[0] == 0
