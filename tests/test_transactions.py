"""Transactions: the generator, the JSON -> Parquet transform, quarantine, idempotent re-runs, analytics."""

from __future__ import annotations

import datetime as dt
import json
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from ecommerce_assets.services.transactions_generator import PRODUCTS, generate_files
from ecommerce_assets.storage.lake import LocalLake
from ecommerce_assets.transforms import transactions as tx

DATE = "2026-11-20"
LANDING = f"landing/transactions/date={DATE}/"


def _records(data: bytes) -> list[dict]:
    text = data.decode()
    try:
        doc = json.loads(text)
        return doc if isinstance(doc, list) else [doc]
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def _rec(i: int, **over: object) -> dict:
    p = PRODUCTS[i % len(PRODUCTS)]
    r = {"transaction_id": f"T{i}", "timestamp": f"{DATE}T{i % 24:02d}:15:00", "customer_id": f"C{i % 3}",
         "product_id": p.product_id, "product_name": p.product_name, "category": p.category,
         "quantity": 1 + i % 4, "price": p.price, "total_amount": round((1 + i % 4) * p.price, 2)}
    r.update(over)
    return {k: v for k, v in r.items() if v is not ...}


# --- generator -------------------------------------------------------------------------------------

def test_generator_is_seeded_and_consistent_with_its_catalog() -> None:
    kw = dict(per_file=7, fmt="lines", seed=5, days=2, end_date=dt.date(2026, 11, 20))
    a, b = list(generate_files(100, **kw)), list(generate_files(100, **kw))
    assert [(f.key, f.data) for f in a] == [(f.key, f.data) for f in b]
    assert list(generate_files(100, **{**kw, "seed": 6}))[0].data != a[0].data
    catalog = {p.product_id: p for p in PRODUCTS}
    records = [r for f in a for r in _records(f.data)]
    assert len(records) == 100 == sum(f.records for f in a)
    assert len({r["transaction_id"] for r in records}) == 100
    for f in a:
        for r in _records(f.data):
            p = catalog[r["product_id"]]
            assert (r["product_name"], r["category"], r["price"]) == (p.product_name, p.category, p.price)
            assert Decimal(str(r["total_amount"])) == Decimal(str(r["price"])) * r["quantity"]
            assert r["quantity"] >= 1 and set(r) == set(tx.FIELDS)
            # the date prefix is the transaction's date
            assert f.key.startswith(f"landing/transactions/date={r['timestamp'][:10]}/transactions_")
    assert {f.key.split("/")[2] for f in a} == {"date=2026-11-19", "date=2026-11-20"}


@pytest.mark.parametrize("fmt,per_file", [("object", 1), ("array", 4), ("lines", 4)])
def test_generator_formats(fmt: str, per_file: int) -> None:
    files = list(generate_files(9, per_file=per_file, fmt=fmt, seed=1, now=dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)))
    assert sum(len(_records(f.data)) for f in files) == 9
    first = files[0].data.lstrip()
    assert first.startswith(b"[" if fmt == "array" else b"{")
    if fmt == "object":
        assert all(isinstance(json.loads(f.data), dict) for f in files)


def test_generate_cli_backfill(data_dir: Path) -> None:
    import argparse

    from ecommerce_assets.cli import generate

    parser = argparse.ArgumentParser()
    generate.add_arguments(parser)
    args = parser.parse_args(["--count", "300", "--days", "3", "--per-file", "50", "--format", "array",
                              "--seed", "3", "--end-date", "2026-11-20"])
    assert generate.NAME == "generate" and generate.main(args) == 0
    files = sorted((data_dir / "lake" / "landing" / "transactions").rglob("*.json"))
    assert {p.parent.name for p in files} == {"date=2026-11-18", "date=2026-11-19", "date=2026-11-20"}
    assert sum(len(json.loads(p.read_bytes())) for p in files) == 300


# --- transform -------------------------------------------------------------------------------------

@pytest.fixture
def lake(tmp_path: Path) -> LocalLake:
    return LocalLake(base_dir=str(tmp_path / "lake"))


def _land_mixed(lake: LocalLake) -> dict[str, list[dict]]:
    good = [_rec(i) for i in range(10)]
    files = {
        "one.json": [good[0]],
        "arr.json": good[1:4],
        "lines.json": good[4:7],
        "bad_records.json": [
            good[7],
            _rec(100, quantity=0),                      # row 2: non_positive_quantity
            _rec(101, price=-1.5),                      # row 3: non_positive_price
            _rec(102, timestamp=...),                   # row 4: missing_timestamp
            _rec(103, quantity="3"),                    # row 5: wrong_type_quantity
            _rec(104, timestamp="yesterday"),           # row 6: wrong_type_timestamp
            good[8],
            _rec(105, customer_id=""),                  # row 8: missing_customer_id
            good[9],
        ],
    }
    lake.write_bytes(LANDING + "one.json", json.dumps(files["one.json"][0]).encode())
    lake.write_bytes(LANDING + "arr.json", json.dumps(files["arr.json"], indent=1).encode())
    lake.write_bytes(LANDING + "lines.json", "\n".join(json.dumps(r) for r in files["lines.json"]).encode())
    lake.write_bytes(LANDING + "bad_records.json", "\n".join(json.dumps(r) for r in files["bad_records.json"]).encode())
    lake.write_bytes(LANDING + "not_json.json", b"id,quantity\n1,2\n")
    lake.write_bytes(LANDING + "broken.json", b'{"transaction_id": "X"}\n{"transaction_id": \n')
    lake.write_bytes(LANDING + "empty.json", b"")
    return {"good": good}


def test_transform_types_derives_quarantines_and_reconciles(lake: LocalLake) -> None:
    good = _land_mixed(lake)["good"]
    result = tx.transform_partition(lake, DATE, list(lake.list_objects(LANDING)))
    assert result.reconciles
    assert (result.files_in, result.files_ok, result.files_quarantined) == (7, 4, 3)
    assert {b["file"].rsplit("/", 1)[-1]: b["rule"] for b in result.bad_files} == {
        "not_json.json": "not_json", "broken.json": "not_json", "empty.json": "empty_file"}
    assert (result.records_in, result.records_out, result.records_quarantined) == (16, 10, 6)
    con = lake.engine()
    q = con.execute(
        "SELECT file, row, field, rule FROM read_parquet(?) ORDER BY row",
        [lake.uri(f"quarantine/transactions/date={DATE}/records.parquet")],
    ).fetchall()
    assert q == [
        (LANDING + "bad_records.json", 2, "quantity", "non_positive_quantity"),
        (LANDING + "bad_records.json", 3, "price", "non_positive_price"),
        (LANDING + "bad_records.json", 4, "timestamp", "missing_timestamp"),
        (LANDING + "bad_records.json", 5, "quantity", "wrong_type_quantity"),
        (LANDING + "bad_records.json", 6, "timestamp", "wrong_type_timestamp"),
        (LANDING + "bad_records.json", 8, "customer_id", "missing_customer_id"),
    ]
    for name in ("not_json.json", "broken.json", "empty.json"):
        assert lake.exists(f"quarantine/transactions/date={DATE}/files/{name}")
        reason = json.loads(lake.read_bytes(f"quarantine/transactions/date={DATE}/files/{name}.reason.json"))
        assert reason["file"] == LANDING + name
    rows = con.execute("SELECT * FROM read_parquet(?, hive_partitioning = false) ORDER BY transaction_id",
                       [lake.uri(result.output_key)]).to_arrow_table().to_pylist()
    assert sorted(r["transaction_id"] for r in rows) == sorted(r["transaction_id"] for r in good)
    by_id = {r["transaction_id"]: r for r in good}
    for row in rows:
        src = by_id[row["transaction_id"]]
        ts = dt.datetime.fromisoformat(src["timestamp"])
        assert row["timestamp"] == ts
        assert (row["year"], row["month"], row["day"], row["hour"]) == (ts.year, ts.month, ts.day, ts.hour)
        assert row["day_of_week"] == ts.weekday()  # Monday = 0
        total = Decimal(str(src["total_amount"])).quantize(Decimal("0.01"))
        rate = Decimal("0.10") if total >= 500 else Decimal("0.05") if total >= 100 else Decimal(0)
        discount = (total * rate).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        assert (row["total_amount"], row["discount"], row["final_amount"]) == (total, discount, total - discount)
        assert row["quantity"] == src["quantity"] and row["source_file"].startswith(LANDING)


def test_timestamp_offsets_are_converted_to_utc(lake: LocalLake) -> None:
    lake.write_bytes(LANDING + "tz.json", json.dumps([
        _rec(1, transaction_id="A", timestamp=f"{DATE}T10:00:00+02:00"),
        _rec(2, transaction_id="B", timestamp=f"{DATE}T10:00:00Z"),
        _rec(3, transaction_id="C", timestamp=f"{DATE}T10:00:00-0130"),
    ]).encode())
    result = tx.transform_partition(lake, DATE, list(lake.list_objects(LANDING)))
    got = dict(lake.engine().execute("SELECT transaction_id, hour * 60 + minute(timestamp) FROM read_parquet(?)",
                                     [lake.uri(result.output_key)]).fetchall())
    assert got == {"A": 8 * 60, "B": 10 * 60, "C": 11 * 60 + 30}


def test_rerun_replaces_the_partition_exactly(lake: LocalLake) -> None:
    _land_mixed(lake)
    objs = list(lake.list_objects(LANDING))
    first = tx.transform_partition(lake, DATE, objs)
    # a leftover from the Lambda way must not survive a partition run either
    lake.write_bytes(f"processed/transactions/date={DATE}/part-old.parquet", b"stale")
    second = tx.transform_partition(lake, DATE, objs)
    assert first.as_metadata() == second.as_metadata()
    assert [o.key for o in lake.list_objects(f"processed/transactions/date={DATE}/")] == [second.output_key]
    n = lake.engine().execute("SELECT count(*), count(DISTINCT transaction_id) FROM read_parquet(?)",
                              [tx.processed_glob(lake)]).fetchone()
    assert n == (10, 10)
    q = list(lake.list_objects(f"quarantine/transactions/date={DATE}/"))
    assert len([o for o in q if o.key.endswith(".reason.json")]) == 3


def test_analytics_on_known_data(lake: LocalLake) -> None:
    recs = [
        _rec(0, transaction_id="a", customer_id="C1", category="X", quantity=2, price=300.0, total_amount=600.0,
             timestamp="2026-11-16T09:00:00"),  # Monday
        _rec(1, transaction_id="b", customer_id="C2", category="X", quantity=1, price=50.0, total_amount=50.0,
             timestamp="2026-11-17T09:30:00"),
        _rec(2, transaction_id="c", customer_id="C1", category="Y", quantity=3, price=400.0, total_amount=1200.0,
             timestamp="2026-11-17T18:00:00"),
        _rec(3, transaction_id="d", customer_id="C3", category="Y", quantity=1, price=120.0, total_amount=120.0,
             timestamp="2026-11-22T18:10:00"),  # Sunday
    ]
    lake.write_bytes(LANDING + "k.json", json.dumps(recs).encode())
    tx.transform_partition(lake, DATE, list(lake.list_objects(LANDING)))
    con = lake.engine()

    def run(name: str) -> list[dict]:
        out = str(Path(lake.base_dir) / f"{name}.parquet")
        tx.build_analytics(con, tx.processed_glob(lake), name, out)
        return con.execute("SELECT * FROM read_parquet(?)", [out]).to_arrow_table().to_pylist()

    # net = total - discount: a 600 -> 540, b 50 -> 50, c 1200 -> 1080, d 120 -> 114
    cats = {r["category"]: r for r in run("sales_by_category")}
    assert cats["X"]["net_sales"] == Decimal("590.00") and cats["Y"]["net_sales"] == Decimal("1194.00")
    assert cats["X"]["units"] == 3 and cats["Y"]["transactions"] == 2
    top = run("top_customers")
    assert [(r["customer_id"], r["lifetime_value"]) for r in top] == [
        ("C1", Decimal("1620.00")), ("C3", Decimal("114.00")), ("C2", Decimal("50.00"))]
    assert top[0]["first_purchase"] == dt.datetime(2026, 11, 16, 9) and top[0]["last_purchase"] == dt.datetime(2026, 11, 17, 18)
    assert [r["transaction_id"] for r in run("large_transactions")] == ["c"]
    assert {r["hour"]: r["transactions"] for r in run("hourly_pattern")} == {9: 2, 18: 2}
    assert {r["day_of_week"]: r["transactions"] for r in run("day_of_week_pattern")} == {0: 1, 1: 2, 6: 1}
    assert [(str(r["day"]), r["transactions"]) for r in run("daily_trend")] == [
        ("2026-11-16", 1), ("2026-11-17", 2), ("2026-11-22", 1)]
    assert {r["product_id"] for r in run("product_performance")} == {r["product_id"] for r in recs}


# --- assets, catalog, lambdas ----------------------------------------------------------------------

def test_assets_materialize_register_the_catalog_and_rerun_idempotently(local_resources: dict) -> None:
    from ecommerce_assets.defs.transactions.assets import analytics_assets, transactions, transactions_raw

    lake = local_resources["lake"]
    good = _land_mixed(lake)["good"]
    with dg.instance_for_test() as instance:
        for _ in range(2):
            result = dg.materialize([transactions_raw, transactions], partition_key=DATE,
                                    resources=local_resources, instance=instance)
            assert result.success
            checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
            assert checks == {"counts_reconcile": True, "transaction_id_unique": True, "no_quarantined_files": False}
        md = result.asset_materializations_for_node("transactions__processed")[0].metadata
        assert md["dagster/row_count"].value == 10 and md["records_quarantined"].value == 6
        raw_md = result.asset_materializations_for_node("transactions__raw")[0].metadata
        assert raw_md["raw_files"].value == 7 and raw_md["newly_registered"].value == 0  # second run: nothing new
        warehouse = local_resources["warehouse"]
        assert warehouse.query("SELECT count(*) AS n FROM lake.transactions").column("n")[0].as_py() == 10
        assert dg.materialize([*analytics_assets], resources=local_resources, instance=instance,
                              selection=[a.key for a in analytics_assets]).success
        assert warehouse.row_count("analytics.transactions_large_transactions") == sum(
            1 for r in good if r["total_amount"] > 1000)
        assert warehouse.row_count("analytics.transactions_top_customers") == len({r["customer_id"] for r in good})


def test_lambda_handlers_one_file_per_call(local_resources: dict) -> None:
    from lambdas import transaction_generator, transaction_json_to_parquet

    lake = local_resources["lake"]
    # a fixed day: "the last five minutes" would straddle two dates just after midnight
    event = {"count": 4, "format": "array", "per_file": 2, "seed": 9, "date": "2026-01-15"}
    out = transaction_generator.handler(event, lake=lake)
    assert out["files"] == 2 and out["records"] == 4
    assert all(k.startswith("landing/transactions/date=2026-01-15/") for k in out["keys"])
    event = {"Records": [{"s3": {"bucket": {"name": "b"}, "object": {"key": k}}} for k in out["keys"]]
             + [{"s3": {"bucket": {"name": "b"}, "object": {"key": "landing/other/x.json"}}}]}
    res = transaction_json_to_parquet.handler(event, lake=lake)
    assert res["skipped"] == ["landing/other/x.json"]
    assert sum(p["records_out"] for p in res["processed"]) == 4
    assert all(p["output"].split("/")[-1].startswith("part-transactions_") for p in res["processed"])


# --- fast path (one typed read_json) vs the checked path: same outputs -----------------------------

def _land_tricky(lake: LocalLake) -> None:
    """Well-formed JSON files whose records break every record rule the fast path can see."""
    recs = [
        _rec(0),
        _rec(1, customer_id=123),                           # wrong_type_customer_id (a number)
        _rec(2, quantity=3.0),                              # wrong_type_quantity (a double)
        _rec(3, quantity="3"),                              # wrong_type_quantity (a string)
        _rec(4, price="1.5"),                               # wrong_type_price
        _rec(5, category=True),                             # wrong_type_category
        _rec(6, product_name={"en": "x"}),                  # wrong_type_product_name
        _rec(7, transaction_id=None),                       # missing_transaction_id (null)
        _rec(8, product_id="   "),                          # missing_product_id (blank)
        _rec(9, total_amount=1e30),                         # wrong_type_total_amount (no DECIMAL(18,2))
        _rec(10, quantity=-2),                              # non_positive_quantity
        _rec(11, price=0),                                  # non_positive_price
        _rec(12, timestamp="2026-11-20 10:00:00"),          # good (space separator)
        _rec(13, timestamp=f"{DATE}T23:30:00-0130"),        # good, offset -> next day UTC
        _rec(14, price=1.005, total_amount=2.675),          # good, rounding to cents
        _rec(15, product_name='Caf\u00e9 "Noir" \\ 1', extra={"k": [1]}),  # good: escapes, unknown key
        _rec(16, quantity=...),                             # missing_quantity (absent)
        {**{k: v for k, v in _rec(17).items() if k != "quantity"}, "Quantity": 2},  # missing_quantity (key case)
        _rec(18, timestamp=20261120),                       # wrong_type_timestamp (a number)
        _rec(19, price=1e2, total_amount=2e2),              # good, exponent notation
    ]
    lake.write_bytes(LANDING + "a_lines.json", ("\n\n".join(json.dumps(r) for r in recs[:10]) + "\n").encode())
    lake.write_bytes(LANDING + "b_array.json", json.dumps(recs[10:], indent=2).encode())
    lake.write_bytes(LANDING + "c_object.json", json.dumps(_rec(20)).encode())
    lake.write_bytes(LANDING + "d_blank.json", b"\n  \n")


def _outputs(lake: LocalLake, result: tx.PartitionResult) -> tuple:
    con = lake.engine()
    rows = con.execute("SELECT * FROM read_parquet(?) ORDER BY transaction_id", [lake.uri(result.output_key)]).fetchall()
    cols = [d[0] for d in con.description]
    q = con.execute("SELECT * FROM read_parquet(?) ORDER BY file, row",
                    [lake.uri(f"quarantine/transactions/date={DATE}/records.parquet")]).fetchall()
    return cols, rows, q


def test_fast_path_gives_the_checked_paths_outputs(tmp_path: Path) -> None:
    fast_lake, checked_lake = LocalLake(base_dir=str(tmp_path / "fast")), LocalLake(base_dir=str(tmp_path / "checked"))
    for lk in (fast_lake, checked_lake):
        _land_tricky(lk)
    # one file that is not JSON makes the fast statement raise: that partition takes the checked path
    checked_lake.write_bytes(LANDING + "z_not_json.json", b"id;quantity\n1;2\n")
    fast_objs, checked_objs = list(fast_lake.list_objects(LANDING)), list(checked_lake.list_objects(LANDING))

    con = fast_lake.engine()
    uris = [fast_lake.uri(o.key) for o in fast_objs]
    con.register("files_map", pa.table({"filename": uris, "file": [o.key for o in fast_objs]}))
    assert tx._fast_write(fast_lake, con, uris, "intermediate/probe/") is not None
    fast_lake.delete_prefix("intermediate/probe/")
    con = checked_lake.engine()
    uris = [checked_lake.uri(o.key) for o in checked_objs]
    con.register("files_map", pa.table({"filename": uris, "file": [o.key for o in checked_objs]}))
    assert tx._fast_write(checked_lake, con, uris, "intermediate/probe/") is None
    assert not checked_lake.exists("intermediate/probe/")

    fast = tx.transform_partition(fast_lake, DATE, fast_objs)
    checked = tx.transform_partition(checked_lake, DATE, checked_objs)
    assert checked.bad_files[0]["rule"] == "not_json" and not fast.bad_files
    assert (fast.records_in, fast.records_out, fast.records_quarantined) == (21, 7, 14)
    assert fast.by_rule == checked.by_rule and fast.reconciles and checked.reconciles
    assert (fast.records_in, fast.records_out, fast.files_ok) == (checked.records_in, checked.records_out,
                                                                 checked.files_ok)
    f_cols, f_rows, f_q = _outputs(fast_lake, fast)
    c_cols, c_rows, c_q = _outputs(checked_lake, checked)
    assert f_cols == c_cols and f_rows == c_rows and f_q == c_q
    # row numbers: JSON lines count non-blank lines, arrays count elements
    assert [(r[0].rsplit("/", 1)[-1], r[1], r[3]) for r in f_q][:3] == [
        ("a_lines.json", 2, "wrong_type_customer_id"), ("a_lines.json", 3, "wrong_type_quantity"),
        ("a_lines.json", 4, "wrong_type_quantity")]
    assert ("b_array.json", 8, "missing_quantity") in [(r[0].rsplit("/", 1)[-1], r[1], r[3]) for r in f_q]
    # the partition's output is one file, the staging area is gone
    assert [o.key for o in fast_lake.list_objects(f"processed/transactions/date={DATE}/")] == [fast.output_key]
    assert not list(fast_lake.list_objects("intermediate/"))


@pytest.mark.parametrize("content,by_rule", [
    (b'[{"transaction_id": "A"}, 5]', {"missing_timestamp": 1, "not_an_object": 1}),  # not an object
    (b'{"transaction_id": "A"}\n"just text"\n', {"missing_timestamp": 1, "not_an_object": 1}),  # in JSON lines
    (b'{"transaction_id": "A", "transaction_id": "B"}', {"missing_timestamp": 1}),  # a repeated key
])
def test_fast_path_refuses_what_only_the_checked_path_can_name(
    lake: LocalLake, content: bytes, by_rule: dict[str, int]
) -> None:
    lake.write_bytes(LANDING + "x.json", content)
    lake.write_bytes(LANDING + "y.json", json.dumps(_rec(1)).encode())
    objs = list(lake.list_objects(LANDING))
    con = lake.engine()
    uris = [lake.uri(o.key) for o in objs]
    con.register("files_map", pa.table({"filename": uris, "file": [o.key for o in objs]}))
    assert tx._fast_write(lake, con, uris, "intermediate/probe/") is None
    result = tx.transform_partition(lake, DATE, objs)
    assert result.reconciles and result.records_out == 1 and result.by_rule == by_rule


def test_fast_path_with_no_good_record_writes_an_empty_output_like_the_checked_path(tmp_path: Path) -> None:
    outputs = []
    for name, extra in (("fast", None), ("checked", b"not json")):
        lk = LocalLake(base_dir=str(tmp_path / name))
        lk.write_bytes(LANDING + "bad.json", json.dumps([_rec(1, quantity=0), _rec(2, price="x")]).encode())
        if extra:
            lk.write_bytes(LANDING + "zz.json", extra)
        result = tx.transform_partition(lk, DATE, list(lk.list_objects(LANDING)))
        assert result.reconciles and (result.records_out, result.records_quarantined) == (0, 2)
        assert result.by_rule == {"non_positive_quantity": 1, "wrong_type_price": 1}
        outputs.append(_outputs(lk, result))
    assert outputs[0] == outputs[1] and outputs[0][1] == []
