"""The orders cleaning: schema enforcement, text IDs, latest wins, quarantine with reasons, reconciled counts."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from ecommerce_assets.defs.orders import assets as A
from ecommerce_assets.transforms.orders import SourceFile, clean_source


def _file(tmp: Path, name: str, text: str, stamp: str = "2026-01-01 00:00:00") -> SourceFile:
    path = tmp / name
    path.write_text(text)
    return SourceFile(key=f"raw/test/{name}", path=path, ingested_at=stamp)


def _clean(tmp: Path, source: str, files: list[SourceFile]):
    con = duckdb.connect()
    out, q = tmp / "out" / "cleaned.parquet", tmp / "out" / "q.parquet"
    result = clean_source(con, source, files, out, q)
    rows = con.execute("SELECT * FROM read_parquet(?)", [str(out)]).fetchdf().to_dict("records")
    bad = con.execute("SELECT * FROM read_parquet(?)", [str(q)]).fetchdf().to_dict("records")
    return result, rows, bad


HEADER = "order_id,customer_id,product_id,order_date,quantity,amount,status,updated_at\n"


def test_orders_ids_stay_text_and_latest_update_wins(tmp_path: Path) -> None:
    a = _file(tmp_path, "a.csv", HEADER + "O1001,C001,P001,2026-01-01,1,1200,placed,2026-01-01 10:00:00\n"
                                          "00042,C002,P002,2026-01-02,2,10.5,,\n")
    b = _file(tmp_path, "b.csv", HEADER + "O1001,C001,P001,2026-01-01,3,3600,shipped,2026-01-03 10:00:00\n"
                                          "O1001,C001,P001,2026-01-01,9,9,stale,2026-01-02 10:00:00\n")
    result, rows, bad = _clean(tmp_path, "orders", [a, b])
    by_id = {r["order_id"]: r for r in rows}
    assert set(by_id) == {"O1001", "00042"}  # leading zeros kept: IDs are text
    assert by_id["O1001"]["quantity"] == 3 and by_id["O1001"]["status"] == "shipped"
    assert (result.rows_in, result.rows_out, result.superseded, result.rows_quarantined) == (4, 2, 2, 0)
    assert result.reconciles and bad == []


def test_orders_without_updated_at_latest_file_then_row_wins(tmp_path: Path) -> None:
    head = "order_id,customer_id,product_id,order_date,quantity,amount\n"
    a = _file(tmp_path, "a.csv", head + "O1,C1,P1,2026-01-01,1,1\nO1,C1,P1,2026-01-01,2,2\n")
    b = _file(tmp_path, "b.csv", head + "O1,C1,P1,2026-01-01,3,3\n")
    _, rows, _ = _clean(tmp_path, "orders", [a, b])
    assert [r["quantity"] for r in rows] == [3]
    _, rows, _ = _clean(tmp_path, "orders", [a])
    assert [r["quantity"] for r in rows] == [2]


def test_orders_bad_rows_are_quarantined_with_reason(tmp_path: Path) -> None:
    f = _file(tmp_path, "o.csv", HEADER + "O1,C1,P1,2026-01-01,1,10,,\n"
                                          ",C1,P1,2026-01-01,1,10,,\n"
                                          "O3,C1,P1,01/02/2026,1,10,,\n"
                                          "O4,C1,P1,2026-01-01,1.5,10,,\n"
                                          "O5,C1,P1,2026-01-01,1,ten,,\n"
                                          "O6,C1,P1,2026-01-01,1,10,,yesterday\n")
    result, rows, bad = _clean(tmp_path, "orders", [f])
    assert [r["order_id"] for r in rows] == ["O1"]
    reasons = {(b["source_row"], b["field"], b["rule"]) for b in bad}
    assert reasons == {(2, "order_id", "null_order_id"), (3, "order_date", "unparseable_order_date"),
                       (4, "quantity", "unparseable_quantity"), (5, "amount", "unparseable_amount"),
                       (6, "updated_at", "unparseable_updated_at")}
    assert all(b["source_file"] == "raw/test/o.csv" for b in bad)
    assert result.rows_in == result.rows_out + result.rows_quarantined + result.superseded == 6


def test_csv_missing_a_column_rejects_the_file_and_keeps_the_others(tmp_path: Path) -> None:
    good = _file(tmp_path, "good.csv", HEADER + "O1,C1,P1,2026-01-01,1,10,,\n")
    bad = _file(tmp_path, "bad.csv", "order_id,customer_id,order_date,quantity,amount\nO2,C1,2026-01-01,1,10\n")
    result, rows, _ = _clean(tmp_path, "orders", [good, bad])
    assert [r["order_id"] for r in rows] == ["O1"]
    assert len(result.rejected_files) == 1
    err = result.rejected_files[0]
    assert err.file == "raw/test/bad.csv" and err.rule == "missing_column" and "product_id" in err.problem


@pytest.mark.parametrize("layout", ["array", "lines"])
def test_customers_json_array_or_lines_emails_lowercased(tmp_path: Path, layout: str) -> None:
    recs = [{"customer_id": "C001", "customer_name": "A", "email": " Amit@Gmail.COM ", "city": "Kolkata"},
            {"customer_id": 7, "customer_name": "B", "email": "b@x.org", "city": "Delhi"},
            {"customer_id": "C001", "customer_name": "A", "email": "amit@gmail.com", "city": "Pune"},
            {"customer_id": None, "customer_name": "C", "email": "c@x.org", "city": "Goa"},
            {"customer_id": "C9", "customer_name": "D", "email": "not-an-email", "city": "Goa"}]
    text = json.dumps(recs) if layout == "array" else "\n".join(json.dumps(r) for r in recs)
    result, rows, bad = _clean(tmp_path, "customers", [_file(tmp_path, "c.json", text)])
    by_id = {r["customer_id"]: r for r in rows}
    assert set(by_id) == {"C001", "7"}
    assert by_id["C001"]["city"] == "Pune" and by_id["C001"]["email"] == "amit@gmail.com"
    assert {(b["source_row"], b["rule"]) for b in bad} == {(4, "null_customer_id"), (5, "unparseable_email")}
    assert result.superseded == 1 and result.reconciles


def test_json_that_is_not_json_is_rejected_with_a_clear_error(tmp_path: Path) -> None:
    good = _file(tmp_path, "good.json", '[{"customer_id":"C1","customer_name":"A","email":"a@b.c","city":"X"}]')
    broken = _file(tmp_path, "broken.json", '[{"customer_id": "C2", "email": ')
    text = _file(tmp_path, "text.json", "customer_id,email\nC3,x@y.z\n")
    result, rows, _ = _clean(tmp_path, "customers", [good, broken, text])
    assert [r["customer_id"] for r in rows] == ["C1"]
    rejected = {e.file: e for e in result.rejected_files}
    assert set(rejected) == {"raw/test/broken.json", "raw/test/text.json"}
    assert all(e.rule == "not_json" for e in rejected.values())
    assert "not valid JSON" in rejected["raw/test/broken.json"].problem


def test_api_products_are_renamed_and_bad_items_quarantined(tmp_path: Path) -> None:
    items = [{"id": 1, "title": "A", "price": 9.5, "description": "d", "category": "c", "image": "i",
              "rating": {"rate": 4.5, "count": 10}},
             {"id": 2, "title": "", "price": 1},
             {"id": 3, "title": "C", "price": "abc"}]
    result, rows, bad = _clean(tmp_path, "api_products", [_file(tmp_path, "p.json", json.dumps(items))])
    assert rows[0]["product_id"] == "1" and rows[0]["product_name"] == "A"
    assert rows[0]["rating_rate"] == 4.5 and rows[0]["rating_count"] == 10 and rows[0]["image_url"] == "i"
    assert {(b["source_row"], b["rule"]) for b in bad} == {(2, "null_title"), (3, "unparseable_price")}
    assert result.reconciles


def test_registration_is_once_and_quarantine_lands_in_the_lake(local_resources: dict) -> None:
    lake = local_resources["lake"]
    lake.write_bytes("landing/orders/date=2026-01-01/orders.csv", (HEADER + "O1,C1,P1,2026-01-01,1,10,,\n").encode())
    lake.write_bytes("landing/orders/date=2026-01-02/orders.csv", b"order_id\nO2\n")
    first = A.register_landed(lake, "orders")
    assert len(first) == 2 and A.register_landed(lake, "orders") == []
    assert first == sorted(first)  # file order = raw key order
    result = A.clean_from_lake(lake, "orders")
    assert result.rows_out == 1 and len(result.rejected_files) == 1
    reasons = [o.key for o in lake.list_objects("quarantine/orders/files/") if o.key.endswith(".reason.json")]
    assert len(reasons) == 1
    reason = json.loads(lake.read_bytes(reasons[0]))
    assert reason["rule"] == "missing_column" and reason["file"] == first[1]
