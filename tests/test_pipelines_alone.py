"""Issue 11's "done when", locally: each pipeline adopted alone, through the product's own command.

Every case starts from a fresh data dir and a fresh ``DAGSTER_HOME``, gives the real console script
(``<venv>/bin/ecommerce-assets``, in a subprocess, with a minimal PATH that does not hold the venv's bin)
ONLY that pipeline's inputs and settings, runs ``ecommerce-assets run`` (``--fetch`` for an API source),
and checks the exit code, the run and skip lines it printed, and the warehouse tables with their row
counts, read from the DuckDB file afterwards. The expected contents are derived from the inputs without
the product (``tests/pipeline_inputs.py``).

* retail: the packaged Online Retail sample (with the real files' defects) -> gold.customers,
  gold.products, gold.sales_transactions; and ``run`` on an empty data dir creates the landing folders.
* catalog: a real catalog simulator over HTTP, one seller, the packaged distributor CSV, ``run --fetch``.
* orders: files only (``run``), the products API only (``run --fetch``), both.
* transactions: ``ecommerce-assets generate`` (a fixed end date) then ``run``.
* stream: ``ecommerce-assets ingest-api`` in a subprocess, ``ecommerce-assets replay``, then
  ``run --pipeline stream``.
* ``--pipeline``: with retail and transactions landed, ``run --pipeline retail`` processes only retail.
"""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

from tests.conftest import SEED_SAMPLES, free_port
from tests.pipeline_inputs import (
    CLI,
    DISTRIBUTOR_SAMPLE,
    ORDERS_FILES,
    RETAIL_SAMPLE,
    CliResult,
    cli_env,
    duckdb_column,
    duckdb_rows,
    duckdb_tables,
    landing,
    read_transaction_files,
    retail_expected,
    run_cli,
    transactions_expected,
)

pytestmark = pytest.mark.slow

LANDING_SOURCES = ("online_retail", "distributor", "orders", "customers", "products", "transactions")
PIPELINE_LANDING = {"retail": "online_retail", "catalog": "distributor", "orders": "orders",
                    "transactions": "transactions"}  # the folder each skip line must name
GENERATE = ["generate", "--count", "50", "--days", "2", "--end-date", "2024-03-02", "--seed", "7"]
TRANSACTION_DATES = ("2024-03-01", "2024-03-02")
ANALYTICS = ("transactions_sales_by_category", "transactions_hourly_pattern", "transactions_top_customers",
             "transactions_product_performance", "transactions_daily_trend", "transactions_day_of_week_pattern",
             "transactions_large_transactions")


def data_dir(env: dict[str, str]) -> Path:
    return Path(env["ECOMMERCE_DATA_DIR"])


def warehouse(env: dict[str, str]) -> Path:
    return data_dir(env) / "warehouse.duckdb"


def assert_clean_run(result: CliResult, pipeline: str) -> None:
    """Exit 0, at least one run, every run line of ``pipeline`` and ok, no failure, the summary agreeing."""
    assert result.returncode == 0, result.show()
    assert result.runs, f"no run line\n{result.show()}"
    assert {ln.pipeline for ln in result.runs} == {pipeline}, result.show()
    assert all(ln.status == "ok" for ln in result.runs), result.show()
    assert not result.sensor_failures, result.show()
    assert result.summary == {"runs": len(result.runs), "failed": 0, "sensors": 0}, result.show()
    assert "Traceback" not in result.stdout + result.stderr, result.show()


def assert_skipped(result: CliResult, env: dict[str, str], pipelines: set[str]) -> None:
    """One skip line for each of ``pipelines``, naming the landing folder that turns it on."""
    skipped = result.of("skip")
    for name in pipelines:
        lines = [ln for ln in skipped if ln.pipeline == name and "nothing landed" in ln.text]
        assert len(lines) == 1, f"expected one 'nothing landed' line for {name}\n{result.show()}"
        folder = data_dir(env) / "lake" / "landing" / PIPELINE_LANDING[name]
        assert f"{folder}/" in lines[0].text, lines[0].text


# --- retail ------------------------------------------------------------------------------------------
def test_retail_alone(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    shutil.copy(RETAIL_SAMPLE, landing(data_dir(env), "online_retail"))
    expected = retail_expected(RETAIL_SAMPLE)

    result = run_cli(["run"], env, tmp_path)

    assert_clean_run(result, "retail")
    assert_skipped(result, env, {"catalog", "orders", "transactions"})
    reported = result.reported_rows()
    assert reported["gold/sales_transactions"] == expected.sales, result.show()
    assert reported["gold/customers"] == len(expected.customers)
    assert reported["gold/products"] == len(expected.products)
    tables = duckdb_tables(warehouse(env), ["gold.sales_transactions", "gold.customers", "gold.products"])
    assert tables == {"gold.sales_transactions": expected.sales, "gold.customers": len(expected.customers),
                      "gold.products": len(expected.products)}
    assert set(duckdb_column(warehouse(env), "gold.customers", "customerid")) == expected.customers
    assert set(duckdb_column(warehouse(env), "gold.products", "stockcode")) == expected.products


def test_run_on_an_empty_data_dir_creates_the_landing_folders(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    assert not data_dir(env).exists()

    result = run_cli(["run"], env, tmp_path)

    assert result.returncode == 0, result.show()
    assert not result.runs and not result.sensor_failures, result.show()
    assert_skipped(result, env, {"retail", "catalog", "orders", "transactions"})
    assert result.summary == {"runs": 0, "failed": 0, "sensors": 0}
    for source in LANDING_SOURCES:
        assert (data_dir(env) / "lake" / "landing" / source).is_dir(), source


# --- catalog -----------------------------------------------------------------------------------------
def test_catalog_alone_with_fetch(tmp_path: Path) -> None:
    import re

    from ecommerce_assets.dev.catalog_sim import CatalogSimulator

    key = "alone-test-key-3f9a"
    sim = CatalogSimulator(port=0, required_key=key).start()
    try:
        seller = sorted(sim.catalog.sellers)[-1]  # one of the simulator's sellers, not the whole list
        asins = {p["asin"] for p in sim.catalog.sellers[seller]
                 if isinstance(p, dict) and isinstance(p.get("asin"), str) and re.fullmatch(r"[A-Za-z0-9]{10}", p["asin"])}
        env = cli_env(tmp_path, {"ECOMMERCE_CATALOG_API_URL": sim.url, "ECOMMERCE_CATALOG_API_KEY": key,
                                 "ECOMMERCE_SELLERS": seller})
        shutil.copy(DISTRIBUTOR_SAMPLE, landing(data_dir(env), "distributor"))
        with DISTRIBUTOR_SAMPLE.open(newline="", encoding="utf-8") as fh:
            skus = {row["sku"] for row in csv.DictReader(fh)}

        result = run_cli(["run", "--fetch"], env, tmp_path)
        requested = {r.seller_id for r in sim.requests}
    finally:
        sim.stop()

    assert_clean_run(result, "catalog")
    assert any(ln.text.startswith("fetch ") and f"[{seller}]" in ln.text for ln in result.runs), result.show()
    assert_skipped(result, env, {"retail", "orders", "transactions"})
    assert any(ln.pipeline == "orders" and "ECOMMERCE_PRODUCTS_API_URL" in ln.text for ln in result.of("skip")), \
        result.show()
    assert requested == {seller}, f"the simulator was asked for {requested}"
    assert key not in result.stdout + result.stderr

    wh = warehouse(env)
    assert set(duckdb_column(wh, "gold.amazon_data", "seller_id")) == {seller}
    amazon = duckdb_column(wh, "gold.amazon_data", "asin")
    assert sorted(amazon) == sorted(asins)  # one row per distinct valid ASIN of that seller
    assert sorted(duckdb_column(wh, "gold.distributor_inventory", "sku")) == sorted(skus)
    matched = duckdb_tables(wh, ["gold.distributor_availability_matches"])["gold.distributor_availability_matches"]
    assert matched > 0
    assert set(duckdb_column(wh, "gold.distributor_availability_matches", "seller_id")) == {seller}
    assert set(duckdb_column(wh, "gold.distributor_availability_matches", "asin")) <= asins
    assert set(duckdb_column(wh, "gold.distributor_availability_matches", "distributor_sku")) <= skus
    assert result.reported_rows()["gold/amazon_data"] == len(asins)


# --- orders ------------------------------------------------------------------------------------------
def orders_files_expected() -> dict[str, int]:
    with (SEED_SAMPLES / "orders.csv").open(newline="", encoding="utf-8") as fh:
        orders = list(csv.DictReader(fh))
    customers = json.loads((SEED_SAMPLES / "customers.json").read_text(encoding="utf-8"))
    with (SEED_SAMPLES / "products.csv").open(newline="", encoding="utf-8") as fh:
        products = {row["product_id"] for row in csv.DictReader(fh)}
    return {"orders": len({o["order_id"] for o in orders}), "customers": len({c["customer_id"] for c in customers}),
            "products": len(products)}


@pytest.mark.parametrize("sources", ["files", "api", "both"])
def test_orders_alone(tmp_path: Path, sources: str) -> None:
    from ecommerce_assets.dev.products_api_sim import SAMPLE_PRODUCTS, start_products_api_sim

    settings: dict[str, str] = {}
    sim = None
    if sources in ("api", "both"):
        sim = start_products_api_sim()  # serves SAMPLE_PRODUCTS
        settings["ECOMMERCE_PRODUCTS_API_URL"] = sim.url
    api_products = {str(p["id"]) for p in SAMPLE_PRODUCTS} if sim else set()
    env = cli_env(tmp_path, settings)
    if sources in ("files", "both"):
        for source, name in ORDERS_FILES.items():
            shutil.copy(SEED_SAMPLES / name, landing(data_dir(env), source))
    try:
        result = run_cli(["run", "--fetch"] if sim else ["run"], env, tmp_path)
    finally:
        if sim:
            sim.stop()

    if sim:
        assert ("/products", 200) in sim.requests, sim.requests
        assert any(ln.text.startswith("fetch ") for ln in result.runs), result.show()
    assert_clean_run(result, "orders")
    assert_skipped(result, env, {"retail", "catalog", "transactions"})
    files = orders_files_expected() if sources != "api" else {"orders": 0, "customers": 0, "products": 0}
    tables = duckdb_tables(warehouse(env), ["dim_customers", "dim_products", "fct_orders"])
    assert tables.get("dim_products") == files["products"] + len(api_products), (tables, result.show())
    if sources == "api":  # nothing landed for the customer and order marts: absent or empty, never a failure
        assert tables.get("dim_customers", 0) == 0 and tables.get("fct_orders", 0) == 0, tables
    else:
        assert tables["dim_customers"] == files["customers"], tables
        assert tables["fct_orders"] == files["orders"], tables


# --- transactions ------------------------------------------------------------------------------------
def test_transactions_alone(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    generated = run_cli(GENERATE, env, tmp_path)
    assert generated.returncode == 0, generated.show()
    records = read_transaction_files(data_dir(env) / "lake" / "landing" / "transactions")
    assert len(records) == 50
    expected = transactions_expected(records)

    result = run_cli(["run"], env, tmp_path)

    assert_clean_run(result, "transactions")
    assert_skipped(result, env, {"retail", "catalog", "orders"})
    partitions = {d for d in TRANSACTION_DATES if any(f"[{d}]" in ln.text for ln in result.runs)}
    assert partitions == set(TRANSACTION_DATES), result.show()
    assert sum(ln.rows.get("transactions/processed", 0) for ln in result.runs) == expected["transactions"], result.show()
    assert duckdb_tables(warehouse(env), ["transactions", *ANALYTICS]) == expected


def test_transactions_alone_with_a_new_field_and_a_type_conflict(tmp_path: Path) -> None:
    """The user's own JSON: day 1 as documented, day 2 with a new field ``channel`` (one record sends a number).
    ``channel`` becomes a nullable text column of ``lake.transactions``; the number is quarantined, not cast."""

    def record(day: str, i: int, **extra: object) -> dict[str, object]:
        return {"transaction_id": f"{day}-{i}", "timestamp": f"{day}T10:0{i}:00Z", "customer_id": f"C{i}",
                "product_id": "P1", "product_name": "Mouse", "category": "Electronics", "quantity": 1,
                "price": 25.5, "total_amount": 25.5, **extra}

    env = cli_env(tmp_path)
    folder = landing(data_dir(env), "transactions")
    day1, day2 = TRANSACTION_DATES
    (folder / f"date={day1}").mkdir()
    (folder / f"date={day1}" / "a.json").write_text(json.dumps([record(day1, i) for i in range(2)]))
    first = run_cli(["run"], env, tmp_path)
    assert_clean_run(first, "transactions")

    (folder / f"date={day2}").mkdir()
    (folder / f"date={day2}" / "b.json").write_text("\n".join(json.dumps(r) for r in [
        record(day2, 0, channel="web"), record(day2, 1, channel="app"), record(day2, 2, channel=3)]))
    second = run_cli(["run"], env, tmp_path)
    assert_clean_run(second, "transactions")
    assert sum(ln.rows.get("transactions/processed", 0) for ln in second.runs) == 2, second.show()

    wh = warehouse(env)
    got = dict(duckdb_rows(wh, "lake.transactions", "transaction_id", "channel"))
    assert got == {f"{day1}-0": None, f"{day1}-1": None, f"{day2}-0": "web", f"{day2}-1": "app"}
    quarantine = data_dir(env) / "lake" / "quarantine" / "transactions" / f"date={day2}" / "records.parquet"
    rows = duckdb.sql(f"SELECT row, field, rule FROM read_parquet('{quarantine}')").fetchall()  # noqa: S608
    assert rows == [(3, "channel", "wrong_type_channel")]


# --- stream ------------------------------------------------------------------------------------------
STREAM_LINES = [  # (line, accepted by the API)
    ("536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850.0,United Kingdom", True),
    ("536365,71053,WHITE METAL LANTERN,6,12/1/2010 8:26,3.39,17850.0,United Kingdom", True),
    ("536366,22633,HAND WARMER UNION JACK,6,12/1/2010 8:28,1.85,,United Kingdom", True),
    ("C536379,D,Discount,-1,12/1/2010 9:41,27.5,14527.0,United Kingdom", True),
    ("536367,84879,ASSORTED COLOUR BIRD ORNAMENT,0,12/1/2010 8:34,1.69,13047.0,United Kingdom", False),
    ("536368,22960,JAM MAKING SET WITH JARS,6,not a date,4.25,13047.0,United Kingdom", False),
    ("536369,21756,BATH BUILDING BLOCK WORD,3,2010-12-01 08:35:00,5.95,13047,United Kingdom", True),
]


def wait_for_health(url: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None:
            raise AssertionError(f"ingest-api exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"ingest-api did not answer on {url} within {seconds} s")
        time.sleep(0.25)


def test_stream_alone(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    source = tmp_path / "lines.csv"
    source.write_text("InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
                      + "".join(f"{line}\n" for line, _ in STREAM_LINES), encoding="utf-8")
    accepted = [line.split(",") for line, ok in STREAM_LINES if ok]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    api = subprocess.Popen([str(CLI), "ingest-api", "--port", str(port), "--log-level", "warning"], env=env,
                           cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)
    try:
        wait_for_health(url, api)
        replay = run_cli(["replay", str(source), "--url", url, "--no-progress"], env, tmp_path, timeout=300)
    finally:
        api.send_signal(signal.SIGTERM)
        try:
            api_out, _ = api.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            api.kill()
            api_out, _ = api.communicate()
    assert api.returncode == 0, api_out
    assert replay.returncode == 0, replay.show()
    assert f"accepted: {len(accepted)}  rejected: {len(STREAM_LINES) - len(accepted)}  failed: 0" in replay.stdout

    result = run_cli(["run", "--pipeline", "stream"], env, tmp_path)

    assert_clean_run(result, "stream")
    assert not result.of("skip"), result.show()  # only the stream was asked for
    wh = warehouse(env)
    assert duckdb_tables(wh, ["gold.firehose_transactions"]) == {"gold.firehose_transactions": len(accepted)}
    got = sorted(duckdb_rows(wh, "gold.firehose_transactions", "invoiceno", "stockcode"))
    assert got == sorted((line[0], line[1]) for line in accepted)


# --- --pipeline --------------------------------------------------------------------------------------
def test_pipeline_option_limits_the_catch_up(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    shutil.copy(RETAIL_SAMPLE, landing(data_dir(env), "online_retail"))
    generated = run_cli(GENERATE, env, tmp_path)
    assert generated.returncode == 0, generated.show()
    expected = retail_expected(RETAIL_SAMPLE)

    result = run_cli(["run", "--pipeline", "retail"], env, tmp_path)

    assert_clean_run(result, "retail")
    assert {ln.pipeline for ln in result.lines} == {"retail"}, result.show()
    tables = duckdb_tables(warehouse(env), ["gold.sales_transactions", "transactions", *ANALYTICS])
    assert tables == {"gold.sales_transactions": expected.sales}, tables

    # the transactions were left for their own catch-up, which then processes them (and no retail again)
    then = run_cli(["run", "--pipeline", "transactions"], env, tmp_path)
    assert_clean_run(then, "transactions")
    assert {ln.pipeline for ln in then.lines} == {"transactions"}, then.show()
    assert duckdb_tables(warehouse(env), ["transactions"]) == {"transactions": 50}
