"""Each Online Retail cleaning rule, one at a time, through the real DuckDB transform."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from ecommerce_assets.transforms.files import BadFileError, open_csv, standardize_column
from ecommerce_assets.transforms.retail import RULES, SOURCE_COLUMNS
from tests.retail_helpers import GOOD, HEADER, run_clean, write_csv


def with_(**changes: str) -> list[str]:
    row = list(GOOD)
    for name, value in changes.items():
        row[[h.lower() for h in HEADER].index(name)] = value
    return row


def test_standardize_column_names() -> None:
    assert standardize_column("  Invoice No ") == "invoice_no"
    assert standardize_column("\ufeffInvoiceNo") == "invoiceno"
    assert standardize_column("UnitPrice") == "unitprice"


def test_header_with_spaces_and_case_is_accepted(tmp_path: Path) -> None:
    header = [" invoiceNo", "STOCKCODE", "Description", "Quantity ", "InvoiceDate", "UnitPrice", "CustomerID", "country"]
    f = write_csv(tmp_path / "a.csv", [GOOD], header=header)
    result, cleaned, _ = run_clean(tmp_path, f)
    assert result.rows_out == 1 and cleaned[0]["invoiceno"] == "536365"


def test_exact_duplicates_are_removed_once(tmp_path: Path) -> None:
    f = write_csv(tmp_path / "a.csv", [GOOD, GOOD, GOOD, with_(quantity="7")])
    result, cleaned, quarantined = run_clean(tmp_path, f)
    assert result.rows_out == 2
    assert result.removed["duplicate_row"] == 2
    assert [q["source_row"] for q in quarantined] == [2, 3]
    assert {q["rule"] for q in quarantined} == {"duplicate_row"}


@pytest.mark.parametrize("field", ["invoiceno", "stockcode", "quantity", "unitprice"])
def test_null_required_field_is_quarantined_with_field(tmp_path: Path, field: str) -> None:
    f = write_csv(tmp_path / "a.csv", [GOOD, with_(**{field: ""}), with_(**{"invoiceno": "536999", field: "  "})])
    result, _, quarantined = run_clean(tmp_path, f)
    assert result.rows_out == 1
    assert result.removed[f"null_{field}"] == 2
    assert {(q["rule"], q["field"], q["source_file"]) for q in quarantined} == {(f"null_{field}", field, "a.csv")}


def test_non_positive_quantity_and_price_and_cancellations(tmp_path: Path) -> None:
    rows = [GOOD, with_(invoiceno="C536379", quantity="-1"), with_(quantity="0", invoiceno="2"),
            with_(unitprice="0", invoiceno="3"), with_(unitprice="-11062.06", invoiceno="4")]
    result, cleaned, quarantined = run_clean(tmp_path, write_csv(tmp_path / "a.csv", rows))
    assert result.rows_out == 1 and cleaned[0]["invoiceno"] == "536365"
    assert result.removed["non_positive_quantity"] == 2
    assert result.removed["non_positive_unitprice"] == 2
    assert not any(r["invoiceno"].startswith("C") for r in cleaned)


def test_unparseable_values(tmp_path: Path) -> None:
    rows = [GOOD, with_(quantity="six", invoiceno="2"), with_(unitprice="2,55", invoiceno="3"),
            with_(invoicedate="2010-13-45 99:99:99", invoiceno="4"), with_(invoicedate="yesterday", invoiceno="5")]
    result, _, quarantined = run_clean(tmp_path, write_csv(tmp_path / "a.csv", rows))
    assert result.rows_out == 1
    assert result.removed["unparseable_quantity"] == 1
    assert result.removed["unparseable_unitprice"] == 1
    assert result.removed["unparseable_invoicedate"] == 2
    assert {q["field"] for q in quarantined} == {"quantity", "unitprice", "invoicedate"}


def test_casts_and_derived_columns(tmp_path: Path) -> None:
    rows = [
        GOOD,
        with_(invoiceno="2", invoicedate="1/13/11 18:05", customerid="", unitprice="0.001", quantity="12"),
        with_(invoiceno="3", invoicedate="2011-12-09 12:50:00", customerid="12680",
              description='BOX "SET", OF\tTHREE', country='"EIRE",'),
    ]
    result, cleaned, _ = run_clean(tmp_path, write_csv(tmp_path / "a.csv", rows))
    by_inv = {r["invoiceno"]: r for r in cleaned}
    assert by_inv["536365"]["invoicedate"] == dt.datetime(2010, 12, 1, 8, 26)
    assert by_inv["536365"]["quantity"] == 6 and by_inv["536365"]["unitprice"] == Decimal("2.550")
    assert by_inv["536365"]["total_sales"] == Decimal("15.300")  # exact, not 15.299999
    assert by_inv["536365"]["customerid"] == "17850"
    assert by_inv["2"]["invoicedate"] == dt.datetime(2011, 1, 13, 18, 5)
    assert by_inv["2"]["customerid"] == "UNKNOWN"
    assert by_inv["2"]["total_sales"] == Decimal("0.012")
    assert by_inv["3"]["invoicedate"] == dt.datetime(2011, 12, 9, 12, 50)
    assert by_inv["3"]["description"] == "BOX SET  OF THREE"
    assert by_inv["3"]["country"] == "EIRE"
    assert by_inv["3"]["invoice_date"] == dt.date(2011, 12, 9)
    assert by_inv["3"]["invoice_month"] == "2011-12"  # the partition key: one folder a month


def test_rule_order_first_rule_wins_and_counts_reconcile(tmp_path: Path) -> None:
    dup_of_bad = with_(invoiceno="", quantity="-1")
    rows = [GOOD, dup_of_bad, dup_of_bad, with_(quantity="-1", unitprice="0", invoiceno="9")]
    result, _, quarantined = run_clean(tmp_path, write_csv(tmp_path / "a.csv", rows))
    assert [q["rule"] for q in quarantined] == ["null_invoiceno", "duplicate_row", "non_positive_quantity"]
    assert result.reconciles
    assert result.rows_in == 4 == result.rows_out + len(quarantined)
    assert set(result.removed) == set(RULES)


def test_latin1_and_utf8_files(tmp_path: Path) -> None:
    latin = write_csv(tmp_path / "latin.csv", [with_(description="CAFÉ CRÈME JUG", invoiceno="1")], encoding="latin-1")
    utf8 = write_csv(tmp_path / "utf8.csv", [with_(description="CAFÉ CRÈME JUG", invoiceno="2")], encoding="utf-8")
    assert open_csv(latin, SOURCE_COLUMNS).encoding == "latin-1"
    assert open_csv(utf8, SOURCE_COLUMNS).encoding == "utf-8"
    _, cleaned, _ = run_clean(tmp_path, latin, utf8)
    assert [r["description"] for r in cleaned] == ["CAFÉ CRÈME JUG", "CAFÉ CRÈME JUG"]


def test_bad_files_raise_clear_errors(tmp_path: Path) -> None:
    missing = write_csv(tmp_path / "missing.csv", [GOOD[:7]], header=HEADER[:7])
    with pytest.raises(BadFileError, match=r"missing\.csv: missing column\(s\) country") as err:
        open_csv(missing, SOURCE_COLUMNS)
    assert err.value.rule == "missing_column"
    not_csv = tmp_path / "orders.json"
    not_csv.write_text('{"orders": [1, 2, 3]}\n')
    with pytest.raises(BadFileError, match=r"orders\.json: not a CSV file") as err:
        open_csv(not_csv, SOURCE_COLUMNS)
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes(",".join(HEADER).encode("utf-16"))
    with pytest.raises(BadFileError, match=r"utf16\.csv: unknown encoding") as err:
        open_csv(utf16, SOURCE_COLUMNS)
    assert err.value.rule == "unknown_encoding"
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(BadFileError, match="empty file"):
        open_csv(empty, SOURCE_COLUMNS)


def test_gzip_files_are_read(tmp_path: Path) -> None:
    import gzip

    plain = write_csv(tmp_path / "a.csv", [GOOD, with_(invoiceno="536366")])
    gz = tmp_path / "b.csv.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    assert open_csv(gz, SOURCE_COLUMNS).encoding == "utf-8"
    result, cleaned, _ = run_clean(tmp_path, gz)
    assert result.rows_out == 2 and {r["invoiceno"] for r in cleaned} == {"536365", "536366"}


def test_files_read_in_one_pass_keep_their_row_numbers_and_a_refused_file_is_rejected(tmp_path: Path) -> None:
    """Several files: each row keeps its place in its own file; a file the parallel reader refuses (a quoted line
    break before a short row) is read by the serial one; a file no reader can read is rejected by name while the
    others are cleaned, and the counts reconcile."""
    import duckdb

    from ecommerce_assets.transforms import retail

    head = ",".join(HEADER).encode() + b"\n"
    ok = ",".join(GOOD).encode() + b"\n"
    first = write_csv(tmp_path / "a.csv", [GOOD, with_(invoiceno="C1", quantity="-1"), with_(invoiceno="536366")])
    serial = tmp_path / "b.csv"
    serial.write_bytes(head + ok.replace(b"536365", b"7") + b'8,85123A,"a\nb",6,12/1/2010 8:26,2.55,1,UK\n9,85123A\n')
    broken = tmp_path / "c.csv"
    broken.write_bytes(head + ok + b'2,85123A,"abc,6,12/1/2010 8:26,2.55,1,UK\n' + ok)
    last = write_csv(tmp_path / "d.csv", [with_(invoiceno="536367", unitprice="0")])
    files = [first, serial, broken, last]
    con = duckdb.connect()
    rejected: list[BadFileError] = []
    rows_in = retail.load_source(con, [open_csv(f, SOURCE_COLUMNS) for f in files], [f.name for f in files], rejected)
    assert [(e.file, e.rule) for e in rejected] == [("c.csv", "unreadable_csv")]
    assert "cannot read it as CSV" in rejected[0].problem and "abc" not in rejected[0].problem
    assert rows_in == 3 + 3 + 1
    result = retail.clean(con, str(tmp_path / "cleaned"), str(tmp_path / "q.parquet"))
    assert result.reconciles and result.rows_in == rows_in
    quarantined = con.execute(
        "SELECT source_file, source_row, rule, field FROM read_parquet(?) ORDER BY source_file, source_row",
        [str(tmp_path / "q.parquet")],
    ).fetchall()
    assert quarantined == [
        ("a.csv", 2, "non_positive_quantity", "quantity"),
        ("b.csv", 3, "null_quantity", "quantity"),  # the short row, padded by the serial reader
        ("d.csv", 1, "non_positive_unitprice", "unitprice"),
    ]
    assert result.rows_out == 4  # a.csv rows 1 and 3, b.csv rows 1 and 2


def test_every_file_refused_leaves_an_empty_ruled_table(tmp_path: Path) -> None:
    import duckdb

    from ecommerce_assets.transforms import retail

    broken = tmp_path / "c.csv"
    broken.write_bytes(",".join(HEADER).encode() + b'\n2,85123A,"abc,6,12/1/2010 8:26,2.55,1,UK\n')
    con = duckdb.connect()
    rejected: list[BadFileError] = []
    assert retail.load_source(con, [open_csv(broken, SOURCE_COLUMNS)], ["c.csv"], rejected) == 0
    assert [e.rule for e in rejected] == ["unreadable_csv"]
    with pytest.raises(BadFileError, match=r"c\.csv: the engine cannot read it as CSV"):
        retail.load_source(con, [open_csv(broken, SOURCE_COLUMNS)], ["c.csv"])
