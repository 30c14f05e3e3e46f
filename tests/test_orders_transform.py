"""The orders cleaning: schema enforcement, text IDs, latest wins, quarantine with reasons, reconciled counts."""

from __future__ import annotations

import json
import os
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
    first = A.register_source(lake, "orders")
    assert len(first) == 2 and A.register_source(lake, "orders") == []
    assert first == sorted(first)  # file order = raw key order
    result = A.clean_from_lake(lake, "orders", local_resources["iceberg"])
    assert result.rows_out == 1 and len(result.rejected_files) == 1
    reasons = [o.key for o in lake.list_objects("quarantine/orders/files/") if o.key.endswith(".reason.json")]
    assert len(reasons) == 1
    reason = json.loads(lake.read_bytes(reasons[0]))
    assert reason["rule"] == "missing_column" and reason["file"] == first[1]


# --- hostile input (issue 13): read what can be read, quarantine the rest with a named rule ------------------


def _bytes_file(tmp: Path, name: str, data: bytes) -> SourceFile:
    path = tmp / name
    path.write_bytes(data)
    return SourceFile(key=f"raw/test/{name}", path=path, ingested_at="2026-01-01 00:00:00")


def test_csv_header_spaces_case_order_and_repeats_are_read(tmp_path: Path) -> None:
    text = (b'\xef\xbb\xbf AMOUNT ,order_id,Customer_ID, product_id ,order_date,quantity,,order_id\r\n'
            b'10,O1,C1,P1,2026-01-01,1,x,IGNORED\r\n')
    result, rows, bad = _clean(tmp_path, "orders", [_bytes_file(tmp_path, "o.csv", text)])
    assert not result.rejected_files and bad == []
    assert [(r["order_id"], r["customer_id"], r["product_id"], r["amount"]) for r in rows] == [("O1", "C1", "P1", 10)]
    products = b" product_id ,PRODUCT_NAME,category,price\nP1,Mug,Home,2.5\n"
    result, rows, _ = _clean(tmp_path, "products", [_bytes_file(tmp_path, "p.csv", products)])
    assert [(r["product_id"], r["product_name"]) for r in rows] == [("P1", "Mug")] and result.reconciles


def test_csv_windows_1252_and_a_quoted_line_break_with_a_short_row_are_read(tmp_path: Path) -> None:
    cp1252 = _bytes_file(tmp_path, "a.csv", HEADER.encode() + b"O1,caf\x80,P1,2026-01-01,1,10,\x93placed\x94,\n")
    short = _bytes_file(tmp_path, "b.csv", HEADER.encode() + b'O2,C1,P1,2026-01-01,1,10,"a\nb",\nO3,C1\n')
    result, rows, bad = _clean(tmp_path, "orders", [cp1252, short])
    assert not result.rejected_files
    by_id = {r["order_id"]: r for r in rows}
    assert by_id["O1"]["customer_id"] == "caf\u20ac" and by_id["O1"]["status"] == "\u201cplaced\u201d"
    assert by_id["O2"]["status"] == "a\nb"  # a line break in a text field is data; in an ID it is not
    assert [(b["source_file"], b["source_row"], b["rule"]) for b in bad] == [("raw/test/b.csv", 2, "null_product_id")]
    assert (result.rows_in, result.rows_out, result.rows_quarantined) == (3, 2, 1)


def test_csv_the_engine_cannot_read_is_quarantined_and_the_batch_goes_on(tmp_path: Path) -> None:
    good = _file(tmp_path, "good.csv", HEADER + "O1,C1,P1,2026-01-01,1,10,,\n")
    unbalanced = _bytes_file(tmp_path, "bad.csv", HEADER.encode() + b'O2,C1,P1,2026-01-01,1,10,"open\nO3,C1\n')
    result, rows, _ = _clean(tmp_path, "orders", [good, unbalanced])
    assert [r["order_id"] for r in rows] == ["O1"]
    assert [(e.file, e.rule) for e in result.rejected_files] == [("raw/test/bad.csv", "unreadable_csv")]
    assert "O3" not in result.rejected_files[0].problem  # the engine's message, never the file's content


def test_dates_out_of_range_and_control_characters_are_quarantined_by_name(tmp_path: Path) -> None:
    f = _file(tmp_path, "o.csv", HEADER
              + "O1,C1,P1,2026-01-01,1,10,placed,2026-01-01 10:00:00\n"
              + "O2,C1,P1,0001-01-01,1,10,,\n"
              + "O3,C1,P1,2101-01-01,1,10,,\n"
              + "O4,C1,P1,2026-01-01,1,10,,9999-12-31 00:00:00\n"
              + "O5,C1,P1,2026-01-01,1,10,\x1b[31mred,\n"
              + "O6,C\u202e1,P1,2026-01-01,1,10,,\n"
              + "O7\t,C1,P1,2026-01-01,1,10,,\n"
              + "O8,C1,P1,2026/01/01,1,10,,\n"
              + "O9,C1,P1,2026-01-01,1,0x10,,\n"
              + "O10,C1,P1,2000-01-01,1,1e3,,2100-12-31 23:59:59\n")
    result, rows, bad = _clean(tmp_path, "orders", [f])
    assert sorted(r["order_id"] for r in rows) == ["O1", "O10"]
    assert {(b["order_id"], b["field"], b["rule"]) for b in bad} == {
        ("O2", "order_date", "out_of_range_order_date"), ("O3", "order_date", "out_of_range_order_date"),
        ("O4", "updated_at", "out_of_range_updated_at"), ("O5", "status", "control_character"),
        ("O6", "customer_id", "control_character"), ("O7\t", "order_id", "control_character"),
        ("O8", "order_date", "unparseable_order_date"), ("O9", "amount", "unparseable_amount"),
    }
    assert result.quarantined["control_character"] == 3 and result.quarantined["out_of_range_order_date"] == 2
    assert result.rows_in == result.rows_out + result.rows_quarantined + result.superseded == 10


def test_products_csv_negative_and_non_decimal_prices_are_quarantined(tmp_path: Path) -> None:
    f = _file(tmp_path, "p.csv", "product_id,product_name,category,price\nP1,=1+2,c,0\nP2,x,c,-1\nP3,x,c,1_000\nP4,x,c,NaN\n")
    result, rows, bad = _clean(tmp_path, "products", [f])
    assert [(r["product_id"], r["product_name"]) for r in rows] == [("P1", "=1+2")]  # formula-like text is data
    assert {(b["product_id"], b["rule"]) for b in bad} == {
        ("P2", "negative_price"), ("P3", "unparseable_price"), ("P4", "unparseable_price")}
    assert result.reconciles


def test_json_lines_with_lone_cr_and_records_that_are_not_good_objects(tmp_path: Path) -> None:
    ok = '{"customer_id": "C1", "customer_name": "@SUM(A1)", "email": "a@b.c", "city": "Paris"}'
    records = [ok, "1e400", "[1, 2]", '{"customer_id": "C2", "city": "P", "city": "Q"}', '{"customer_id": 1.5}',
               '{"customer_id": "C4", "customer_name": {"a": [1]}}', '{"customer_id": "C5", "email": true}',
               '{"customer_id": "C6", "city": "\\u001b[31m"}', '{"customer_id": "C7\\t"}', "null", '{"customer_id": 8}']
    f = _bytes_file(tmp_path, "c.json", "\ufeff".encode() + "\r".join(records).encode() + b"\r")
    result, rows, bad = _clean(tmp_path, "customers", [f])
    assert not result.rejected_files
    assert {(r["customer_id"], r["customer_name"]) for r in rows} == {("C1", "@SUM(A1)"), ("8", None)}
    assert [(b["source_row"], b["field"], b["rule"]) for b in bad] == [
        (2, "*", "not_an_object"), (3, "*", "not_an_object"), (4, "city", "repeated_field"),
        (5, "customer_id", "wrong_type_customer_id"), (6, "customer_name", "wrong_type_customer_name"),
        (7, "email", "wrong_type_email"), (8, "city", "control_character"), (9, "customer_id", "control_character"),
        (10, "*", "not_an_object"),
    ]
    assert bad[0]["record"] == "1e400" and bad[4]["customer_name"] == '{"a":[1]}'  # what arrived, for a person to see
    assert (result.rows_in, result.rows_out, result.rows_quarantined) == (11, 2, 9) and result.reconciles


@pytest.mark.parametrize(("data", "rule"), [
    (b"", "empty_file"),
    ('[{"customer_id": "C1", "city": "Besan\u00e7on"}]'.encode("latin-1"), "unknown_encoding"),
    ('[{"customer_id": "C1"}]'.encode("utf-16"), "unknown_encoding"),
    (b'[{"customer_id": "C1", "email": ', "not_json"),
    (b'{"customer_id": "C1", "email": "a\x1bb"}', "not_json"),
    (b'[{"id": 1}, {"name": "x"}]', "missing_column"),
])
def test_json_files_that_cannot_be_read_are_rejected_whole_with_a_rule(tmp_path: Path, data: bytes, rule: str) -> None:
    result, rows, bad = _clean(tmp_path, "customers", [_bytes_file(tmp_path, "c.json", data)])
    assert [e.rule for e in result.rejected_files] == [rule] and rows == [] and bad == [] and result.rows_in == 0


@pytest.mark.parametrize(("data", "rows_in"), [(b" \r\n\t", 0), (b"[]", 0), (b"42", 1), (b'["x"]', 1)])
def test_json_without_objects_is_read_and_its_records_quarantined(tmp_path: Path, data: bytes, rows_in: int) -> None:
    result, rows, bad = _clean(tmp_path, "customers", [_bytes_file(tmp_path, "c.json", data)])
    assert not result.rejected_files and rows == []
    assert result.rows_in == rows_in and [b["rule"] for b in bad] == ["not_an_object"] * rows_in


def test_api_products_with_wrong_types_are_quarantined(tmp_path: Path) -> None:
    items = '[{"id": 1, "title": "A", "price": 9.5, "rating": {"rate": 4.5, "count": 10}}, ' \
            '{"id": 2, "title": "B", "price": 1, "rating": 5}, {"id": 3, "title": "C", "price": 1, "rating": {"rate": NaN}}, ' \
            '{"id": 4, "title": ["x"], "price": 1}, {"id": 5, "title": "E", "price": Infinity}, {"id": true, "title": "F", "price": 1}]'
    result, rows, bad = _clean(tmp_path, "api_products", [_file(tmp_path, "p.json", items)])
    assert [r["product_id"] for r in rows] == ["1"]
    assert [(b["source_row"], b["rule"]) for b in bad] == [
        (2, "wrong_type_rating"), (3, "unparseable_rating"), (4, "wrong_type_title"), (5, "unparseable_price"),
        (6, "wrong_type_id")]
    assert result.reconciles


def test_links_and_special_files_in_landing_get_a_reason_and_the_batch_goes_on(local_resources: dict,
                                                                               tmp_path: Path) -> None:
    lake = local_resources["lake"]
    lake.write_bytes("landing/orders/date=2026-01-01/orders.csv", (HEADER + "O1,C1,P1,2026-01-01,1,10,,\n").encode())
    secret = tmp_path / "secret.csv"
    secret.write_text(HEADER + "TOP-SECRET,C1,P1,2026-01-01,1,10,,\n")
    landing = Path(lake.uri("landing/orders/date=2026-01-01/"))
    (landing / "passwd.csv").symlink_to(secret)
    os.mkfifo(landing / "pipe.csv")
    refused: list[dict[str, str]] = []
    new = A.register_source(lake, "orders", rejected=refused)
    assert [k.rsplit("-", 1)[-1] for k in new] == ["orders.csv"]
    assert sorted((r["file"].rsplit("/", 1)[-1], r["rule"]) for r in refused) == [
        ("passwd.csv", "symlink"), ("pipe.csv", "not_a_regular_file")]
    for r in refused:
        reason = json.loads(lake.read_bytes(r["reason_key"]))
        assert r["reason_key"].startswith("quarantine/orders/landing/date=2026-01-01/")
        assert reason["rule"] == r["rule"] and reason["copied"] is False
    result = A.clean_from_lake(lake, "orders", local_resources["iceberg"])
    assert result.rows_out == 1 and not result.rejected_files
    lake_root = Path(lake.uri("x")).parent
    assert not any(b"TOP-SECRET" in p.read_bytes() for p in lake_root.rglob("*") if p.is_file() and not p.is_symlink())
    # the link replaced by a regular file: registered, and its old reason goes
    (landing / "passwd.csv").unlink()
    (landing / "passwd.csv").write_text(HEADER + "O2,C1,P1,2026-01-01,1,10,,\n")
    assert len(A.register_source(lake, "orders")) == 1
    assert not lake.exists(A.landing_reason_key("orders", "landing/orders/date=2026-01-01/passwd.csv"))


def test_a_raw_file_that_cannot_be_cleaned_is_quarantined_and_the_others_go_on(local_resources: dict) -> None:
    lake = local_resources["lake"]
    lake.write_bytes("landing/orders/date=2026-01-01/orders.csv", (HEADER + "O1,C1,P1,2026-01-01,1,10,,\n").encode())
    A.register_source(lake, "orders")
    lake.write_bytes("raw/orders/date=2026-01-01/dropped-by-hand.csv", (HEADER + "O2,C1,P1,2026-01-01,1,10,,\n").encode())
    result = A.clean_from_lake(lake, "orders", local_resources["iceberg"])
    assert result.rows_out == 1 and result.files_in == 2
    assert [(e.file, e.rule) for e in result.rejected_files] == [
        ("raw/orders/date=2026-01-01/dropped-by-hand.csv", "not_registered")]
    reason = json.loads(lake.read_bytes("quarantine/orders/files/dropped-by-hand.csv.reason.json"))
    assert reason["rule"] == "not_registered" and reason["copied"] is True


def test_fields_beyond_the_sources_contract_are_named_not_dropped_silently(tmp_path: Path) -> None:
    a = _file(tmp_path, "a.csv", "order_id,customer_id,product_id,order_date,quantity,amount,Coupon Code\n"
                                 "O1,C1,P1,2026-01-01,1,10,SPRING\n")
    b = _file(tmp_path, "b.csv", HEADER + "O2,C1,P1,2026-01-02,1,10,placed,2026-01-02 10:00:00\n")
    result, rows, _ = _clean(tmp_path, "orders", [a, b])
    assert len(rows) == 2 and result.reconciles
    assert result.unread_fields == {"coupon_code": ["raw/test/a.csv"]}
    assert result.as_metadata()["unread_fields"] == {"coupon_code": ["raw/test/a.csv"]}

    recs = [{"customer_id": "C1", "customer_name": "A", "email": "a@x.org", "city": "Pune", "tier": "gold"},
            {"customer_id": "C2", "customer_name": "B", "email": "b@x.org", "city": "Goa", "loyalty": {"p": 1}}]
    result, rows, _ = _clean(tmp_path, "customers", [_file(tmp_path, "c.json", json.dumps(recs))])
    assert len(rows) == 2 and result.unread_fields == {"loyalty": ["raw/test/c.json"], "tier": ["raw/test/c.json"]}
