"""``ECOMMERCE_ENGINE=spark`` for the Online Retail cleaning: the same rules on local PySpark, launched through
Dagster Pipes, must give exactly the DuckDB path's outputs.

* The rules, written once (``transforms.retail.ruled_sql``), run on both engines over rows built to hit every
  rule and the values where the two engines' own casts differ: every output row and every quarantined row equal.
* ``ecommerce-assets run`` on the full Online Retail file, UTF-8 and ISO-8859-1, in fresh data dirs, with
  ``ECOMMERCE_ENGINE=spark`` and with the default: the same warehouse rows (every row of the three gold tables),
  the same sum of total_sales to the cent, the same quarantine counts per rule; the materialization says which
  engine made it.
* A re-run on Spark gives the same rows in one more commit; without PySpark or Java the step fails saying so.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from ecommerce_assets.resources import spark as spark_resource
from ecommerce_assets.transforms import retail
from ecommerce_assets.transforms.files import open_csv
from tests.conftest import FULL_RETAIL
from tests.pipeline_inputs import RETAIL_SAMPLE, cli_env, landing, run_cli
from tests.retail_helpers import GOOD, run_clean, run_clean_spark, write_csv

GOLD = ("customers", "products", "sales_transactions")


def _row(**changes: str) -> list[str]:
    names = [c.lower() for c in ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice",
                                 "CustomerID", "Country")]
    row = list(GOOD)
    for name, value in changes.items():
        row[names.index(name)] = value
    return row


# every rule, and the values the engines' casts and parsers read differently unless the rules guard them
EDGE_ROWS = [
    _row(),
    _row(),  # duplicate_row
    _row(invoiceno=""), _row(invoiceno="2", stockcode="  "), _row(invoiceno="3", quantity=""),
    _row(invoiceno="4", unitprice=""),
    _row(invoiceno="5", quantity="1.5"),  # DuckDB's cast would round it to 2, Spark's give NULL: not whole
    _row(invoiceno="6", quantity="6.0"),  # a spreadsheet's integer: kept as 6
    _row(invoiceno="7", quantity="1e3"), _row(invoiceno="8", quantity="0x10"), _row(invoiceno="9", quantity="1_000"),
    _row(invoiceno="10", quantity="99999999999999999999"),  # beyond BIGINT
    _row(invoiceno="11", unitprice="1e3"), _row(invoiceno="12", unitprice="2,55"), _row(invoiceno="13", unitprice=".5"),
    _row(invoiceno="14", unitprice="5."), _row(invoiceno="15", unitprice="1.2345"),  # rounds to 1.235 in both
    _row(invoiceno="16", unitprice="nan"), _row(invoiceno="17", unitprice="-0"),
    _row(invoiceno="C18", quantity="-1"),
    _row(invoiceno="19", invoicedate="1/1/99 8:26"),  # 1999: out of range (Spark's yy would read 2099)
    _row(invoiceno="20", invoicedate="1/13/11 18:05"), _row(invoiceno="21", invoicedate="2/30/2010 8:26"),
    _row(invoiceno="22", invoicedate="1/1/2010 24:00"), _row(invoiceno="23", invoicedate="1/1/2010 8:60"),
    _row(invoiceno="24", invoicedate="2011-12-09T12:50:59"), _row(invoiceno="25", invoicedate="2011-12-09 12:50:60"),
    _row(invoiceno="26", invoicedate="12/31/2100 23:59"), _row(invoiceno="27", invoicedate="1/1/2101 0:00"),
    _row(invoiceno="28", invoicedate=" 12/1/2010 8:26 "), _row(invoiceno="29", invoicedate="yesterday"),
    _row(invoiceno="30", quantity="1000000000", unitprice="1000000"),  # 10^15: out_of_range_total_sales
    _row(invoiceno="31", description="BAD\x1b[31mESC"), _row(invoiceno="32", customerid="178\t50"),
    _row(invoiceno="33", country="gnp.\u202eexe"), _row(invoiceno="34", description='BOX "SET", OF\tTHREE'),
    _row(invoiceno="35", customerid=""), _row(invoiceno="36", customerid="12680.00"),
    _row(invoiceno="37", description="  "), _row(invoiceno="38", description="line\nbreak"),
]


@pytest.mark.slow
def test_the_rules_give_the_same_rows_on_both_engines(tmp_path: Path) -> None:
    utf8 = write_csv(tmp_path / "in" / "a.csv", EDGE_ROWS)
    latin = write_csv(tmp_path / "in" / "b.csv", [_row(invoiceno="40", description="CAFÉ CRÈME"), _row()],
                      encoding="latin-1")
    duck, duck_rows, duck_quarantine = run_clean(tmp_path / "duckdb", utf8, latin)
    spark, spark_rows, spark_quarantine = run_clean_spark(tmp_path / "spark", utf8, latin)

    assert duck.reconciles and spark.reconciles
    assert (spark.rows_in, spark.rows_out, spark.removed) == (duck.rows_in, duck.rows_out, duck.removed)
    key = lambda r: sorted((k, str(v)) for k, v in r.items())  # noqa: E731
    assert sorted(spark_rows, key=key) == sorted(duck_rows, key=key)
    assert spark_quarantine == duck_quarantine  # ordered by file and row: every field, rule and reason

    # and what the rules say, on both
    rule_of = {q["invoiceno"]: q["rule"] for q in duck_quarantine}
    assert rule_of["5"] == rule_of["7"] == rule_of["8"] == rule_of["9"] == rule_of["10"] == "unparseable_quantity"
    assert rule_of["11"] == rule_of["12"] == rule_of["16"] == "unparseable_unitprice"
    assert rule_of["19"] == rule_of["27"] == "out_of_range_invoicedate"
    assert rule_of["21"] == rule_of["22"] == rule_of["23"] == rule_of["25"] == rule_of["29"] == "unparseable_invoicedate"
    assert rule_of["30"] == "out_of_range_total_sales"
    assert rule_of["31"] == rule_of["32"] == rule_of["33"] == "control_character"
    kept = {r["invoiceno"]: r for r in duck_rows}
    assert kept["6"]["quantity"] == 6 and str(kept["15"]["unitprice"]) == "1.235"
    assert str(kept["20"]["invoicedate"]) == "2011-01-13 18:05:00" and kept["26"]["invoice_month"] == "2100-12"
    assert kept["34"]["description"] == "BOX SET  OF THREE" and kept["36"]["customerid"] == "12680"
    assert kept["35"]["customerid"] == "UNKNOWN" and kept["37"]["description"] is None
    assert kept["40"]["description"] == "CAFÉ CRÈME"


def _run_retail(root: Path, csv: Path, engine: str) -> tuple[Path, Path]:
    """``ecommerce-assets run --pipeline retail`` on ``csv`` landed in a fresh data dir; the data dir and home."""
    env = cli_env(root, {"ECOMMERCE_ENGINE": engine})
    shutil.copy(csv, landing(Path(env["ECOMMERCE_DATA_DIR"]), "online_retail") / csv.name)
    result = run_cli(["run", "--pipeline", "retail"], env, cwd=root)
    assert result.returncode == 0, result.show()
    assert [ln.status for ln in result.runs] == ["ok"], result.show()
    assert "WARN" not in result.stderr and "Traceback" not in result.stderr, result.show()
    return Path(env["ECOMMERCE_DATA_DIR"]), Path(env["DAGSTER_HOME"])


def _outputs(data: Path) -> dict[str, object]:
    """What a user compares: the gold tables' rows (as a sorted list), sum of total_sales, the quarantine per rule."""
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    try:
        out: dict[str, object] = {f"gold.{t}": con.execute(f"SELECT * FROM gold.{t} ORDER BY ALL").fetchall()  # noqa: S608
                                  for t in GOLD}
        out["total_sales"] = con.execute("SELECT sum(total_sales) FROM gold.sales_transactions").fetchone()[0]
    finally:
        con.close()
    quarantine = data / "lake" / "quarantine" / "online_retail" / "rows"
    out["quarantine"] = dict(duckdb.sql(
        f"SELECT rule, count(*) FROM read_parquet('{quarantine}/*.parquet') GROUP BY rule"  # noqa: S608
    ).fetchall())
    return out


def _engine_of_last_run(home: Path) -> dict[str, object]:
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey(["online_retail", "cleaned"]))
        assert event is not None and event.asset_materialization is not None
        return {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}


@pytest.mark.slow
def test_ecommerce_assets_run_on_spark_gives_the_duckdb_outputs_for_utf8_and_iso_8859_1(tmp_path: Path) -> None:
    utf8 = tmp_path / "utf8" / "online_retail.csv"
    utf8.parent.mkdir()
    with gzip.open(FULL_RETAIL, "rb") as src, utf8.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    # The ISO-8859-1 form: the data set's text as a Latin-1 export writes it. The CSV's only text beyond ASCII is
    # "Â£" (the pound sign of the original, encoded twice); its Latin-1 bytes would be valid UTF-8 again, so the
    # form has the original's "£" (one byte, 0xA3: not UTF-8), which the product must read as ISO-8859-1.
    latin = tmp_path / "latin1" / "online_retail.csv"
    latin.parent.mkdir()
    latin.write_bytes(utf8.read_text(encoding="utf-8").replace("Â£", "£").encode("latin-1"))
    assert open_csv(latin, retail.SOURCE_COLUMNS).encoding == "latin-1"

    for name, csv in (("utf8", utf8), ("latin1", latin)):
        expected = _outputs(_run_retail(tmp_path / f"duckdb-{name}", csv, "duckdb")[0])
        assert len(expected["gold.sales_transactions"]) == 524_878  # type: ignore[arg-type]
        data, home = _run_retail(tmp_path / f"spark-{name}", csv, "spark")
        got = _outputs(data)
        for table in GOLD:
            assert len(got[f"gold.{table}"]) == len(expected[f"gold.{table}"]), (name, table)  # type: ignore[arg-type]
            assert got[f"gold.{table}"] == expected[f"gold.{table}"], (name, table)
        assert got["total_sales"] == expected["total_sales"], name  # DECIMAL: to the cent and below
        assert got["quarantine"] == expected["quarantine"], name
        md = _engine_of_last_run(home)
        assert md["engine"] == "spark" and md["rows_in"] == 541_909 and md["rows_out"] == 524_878
        assert md["iceberg/data_files_added"] == 13  # one file per invoice month, committed as Spark wrote them
    products = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True).execute(
        "SELECT count(*) FROM gold.products WHERE description LIKE '%£%' AND description NOT LIKE '%Â%'"
    ).fetchone()[0]
    assert products > 0  # the ISO-8859-1 text was read as such: "£", not mojibake


@pytest.mark.slow
def test_a_rerun_on_spark_commits_the_same_rows_once_more(local_resources: dict) -> None:
    from ecommerce_assets.defs.retail.assets import online_retail_cleaned, online_retail_raw
    from ecommerce_assets.resources.spark import TransformEngine

    lake, tables = local_resources["lake"], local_resources["iceberg"]
    lake.write_bytes("landing/online_retail/sample.csv", RETAIL_SAMPLE.read_bytes())
    resources = {**local_resources, "engine": TransformEngine(kind="spark", spark_master="local[2]")}
    results, staged = [], []
    with dg.instance_for_test() as instance:
        for _ in range(2):
            result = dg.materialize([online_retail_raw, online_retail_cleaned], resources=resources, instance=instance)
            assert result.success
            results.append(result.asset_materializations_for_node("online_retail__cleaned")[0].metadata)
            staged.append(sorted(tables.data_files(retail.TABLE)))
    first, second = results
    assert first["engine"].value == second["engine"].value == "spark"
    assert second["iceberg/records_deleted"].value == first["iceberg/records_added"].value == first["rows_out"].value
    assert second["iceberg/total_records"].value == first["iceberg/total_records"].value
    # (a snapshot id is text in the metadata: 64-bit ids exceed the UI's integers)
    assert str(tables.current_snapshot_id(retail.TABLE)) == second["iceberg/snapshot_id"].value
    # the table reads the second run's files only, and the same rows as the first run's snapshot
    assert staged[0] and staged[1] and not set(staged[0]) & set(staged[1])
    now = sorted(map(str, tables.read(retail.TABLE).to_pylist()))
    then = sorted(map(str, tables.read(retail.TABLE, snapshot_id=int(first["iceberg/snapshot_id"].value)).to_pylist()))
    assert now == then and len(now) == first["rows_out"].value


def test_without_pyspark_or_java_the_step_fails_saying_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert "no Java runtime" in (spark_resource.local_spark_problem() or "")
    monkeypatch.setattr(spark_resource, "_pyspark_installed", lambda: False)
    assert "pip install 'ecommerce-assets[spark]'" in (spark_resource.local_spark_problem() or "")
