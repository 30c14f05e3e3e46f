"""The transactions fast path (one typed ``read_json`` pass) gives exactly what the checked path gives.

The fast path types every record with cheap tests and only sends a record that fails them through the
rules; these tests land records that break every rule in many ways (and good records that only look
odd) and compare the fast path with the checked path record by record: the same output rows and
columns, the same quarantined records with the same file, row, field, rule, reason and JSON text.
"""

from __future__ import annotations

import json
import random
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from ecommerce_assets.storage.lake import LocalLake
from ecommerce_assets.transforms import transactions as tx

DATE = "2024-03-05"
LANDING = f"landing/transactions/date={DATE}/"
ABSENT = object()  # a field left out of the record

# text values a string field may hold that cannot be JSON text: the typed read takes them as strings
PLAIN_TEXTS = [
    "Laptop",
    "4K Monitor",
    "Caf\u00e9 Noir",
    "\u65e5\u672c\u8a9e",
    "C00028",
    "Home & Kitchen",
    "T-Shirt Pack",
    "",
    " ",
    "   ",
    "\t",
    "\u3000",
    "\u00a0",
    " x",
    "x ",
    "\u00a0x",
    "\u3000x",
    "\u2028x",
    "x\u0001",
    "\u0001x",
    "a\u007fb",
    "a\u0085b",
    "a\u202eb",
    "a\u2066b",
    "a\u2069",
    "a\u202ab",
    "a\u200bb",
    "\u200bx",
    "\ufeffx",
    'say "hi"',
    "back\\slash",
    "a/b",
    "line\nbreak",
    "tent",
    "nice",
    "item",
    "Nike",
    "Ice",
    "fan",
    "/slash",
    ".dot",
    "-dash",
    "+plus",
    "1 2",
    "1,",
    "4 K",
    "2024-03-05",
    "\U0001f600 emoji",
    "\u00e9",
    "x\u061c",
    "=SUM(A1)",
    "@user",
]
# values of a string field the typed read cannot type for sure: other JSON types, and strings that are
# JSON text; the fast path then reads the text fields as JSON
JSON_LOOKING = [
    "1984",
    "12345",
    "-1",
    "1.5",
    "1e2",
    "0",
    "true",
    "false",
    "null",
    "NaN",
    "Infinity",
    "infinity",
    "-infinity",
    "[1]",
    "{}",
]
NOT_STRINGS = [123, 1.5, 0, True, False, None, [1], {"en": "x"}, [], {}, 1e30, 10**25]
TIMESTAMPS = [
    "2024-03-05T10:00:00",
    "2024-03-05 10:00:00",
    "2024-03-05T10:00:00Z",
    "2024-03-05T10:00:00+02:00",
    "2024-03-05T23:30:00-0130",
    "2024-03-05T10:00:00.123456",
    "2024-03-05T10:00:00.5+05:30",
    "2024-03-05",
    "2024/03/05 10:00",
    "yesterday",
    "1999-12-31T23:59:59",
    "2000-01-01T00:00:00",
    "2101-01-01T00:00:00",
    "2100-12-31T23:59:59",
    "2100-12-31T23:59:59-01:00",
    "2000-01-01T00:30:00+01:00",
    " 2024-03-05T10:00:00",
    "2024-03-05T10:00:00 ",
    "epoch",
    "",
    "  ",
    "2024-13-01",
    "2024-03-05T25:00:00",
    "2024-03-05T10:00",
    "2024-3-5 1:2:3",
    "\u00a02024-03-05T10:00:00",
    "2024-03-05T10:00:00\u0001",
]
QUANTITIES = [
    1,
    2,
    10,
    0,
    -2,
    3.0,
    "3",
    1e2,
    9223372036854775807,
    9223372036854775808,
    18446744073709551615,
    10**25,
    1e30,
    True,
    None,
    [1],
    1.5,
    -0.0,
    {"n": 1},
]
MONEY = [
    1.005,
    2.675,
    10.24,
    0,
    -1.5,
    1e2,
    "1.5",
    1e30,
    99999999999999999,
    1e-5,
    0.004,
    0.005,
    True,
    None,
    [1],
    5,
    -0.0,
    1e16,
    9999999999999999.99,
    123456789012345678,
    9007199254740993,
    0.1,
]


def _good(i: int) -> dict:
    return {
        "transaction_id": f"T{i:05d}",
        "timestamp": "2024-03-05T10:00:00",
        "customer_id": f"C{i % 7}",
        "product_id": "P0003",
        "product_name": "Laptop",
        "category": "Electronics",
        "quantity": 1 + i % 4,
        "price": 10.5,
        "total_amount": round(10.5 * (1 + i % 4), 2),
    }


def _records(seed: int, n: int, *, json_looking: bool) -> list[dict]:
    """``n`` records, each field replaced at random (one in eight) by an odd value or left out."""
    rng = random.Random(seed)
    texts = PLAIN_TEXTS + (JSON_LOOKING + NOT_STRINGS if json_looking else [])
    pools = {f: texts for f in tx.STRING_FIELDS}
    pools |= {
        "timestamp": TIMESTAMPS + (JSON_LOOKING + NOT_STRINGS if json_looking else []),
        "quantity": QUANTITIES,
        "price": MONEY,
        "total_amount": MONEY,
    }
    out = []
    for i in range(n):
        rec = _good(i)
        for f in tx.FIELDS:
            if rng.random() < 0.125:
                value = rng.choice([*pools[f], ABSENT])
                if value is ABSENT:
                    del rec[f]
                else:
                    rec[f] = value
        if rng.random() < 0.02:
            rec["extra"] = {"k": [1]}  # an unknown key is ignored
        if rng.random() < 0.01:
            rec["Quantity"] = 1  # keys are case-sensitive
        out.append(rec)
    return out


def _land(lake: LocalLake, records: list[dict], seed: int) -> None:
    """JSON-lines and JSON-array files of 250 records each, escaped or raw UTF-8 at random."""
    rng = random.Random(seed)
    for k in range(0, len(records), 250):
        chunk = records[k : k + 250]
        if (k // 250) % 2:
            data = json.dumps(chunk, indent=1, ensure_ascii=rng.random() < 0.5)
        else:
            data = "\n".join(json.dumps(r, ensure_ascii=rng.random() < 0.5) for r in chunk) + "\n"
        lake.write_bytes(f"{LANDING}f{k // 250:03d}.json", data.encode())


def _outputs(lake: LocalLake, result: tx.PartitionResult) -> tuple[list[str], list[tuple], list[tuple]]:
    con = lake.engine()
    try:
        rows = con.execute(
            "SELECT * FROM read_parquet(?) ORDER BY ALL", [lake.uri(result.output_key)]
        ).fetchall()
        cols = [d[0] for d in con.description]
        q_key = f"quarantine/transactions/date={DATE}/records.parquet"
        q = (
            con.execute("SELECT * FROM read_parquet(?) ORDER BY file, row", [lake.uri(q_key)]).fetchall()
            if lake.exists(q_key)
            else []
        )
    finally:
        con.close()
    return cols, rows, q


def _fast_and_checked(
    tmp_path: Path, records: list[dict], seed: int
) -> tuple[tx.PartitionResult, tuple, tx.PartitionResult, tuple]:
    """The partition through the fast path, and through the checked path (a file that is not JSON makes
    the fast statement raise, so that partition takes the checked path)."""
    fast_lake, checked_lake = (
        LocalLake(base_dir=str(tmp_path / "fast")),
        LocalLake(base_dir=str(tmp_path / "checked")),
    )
    for lk in (fast_lake, checked_lake):
        _land(lk, records, seed)
    checked_lake.write_bytes(LANDING + "zz_not_json.json", b"id;quantity\n1;2\n")
    fast = tx.transform_partition(fast_lake, DATE, list(fast_lake.list_objects(LANDING)))
    checked = tx.transform_partition(checked_lake, DATE, list(checked_lake.list_objects(LANDING)))
    assert not fast.bad_files and [b["rule"] for b in checked.bad_files] == ["not_json"]
    return fast, _outputs(fast_lake, fast), checked, _outputs(checked_lake, checked)


def _typed_read_raises(lake: LocalLake) -> str | None:
    """The message the typed read (text fields as VARCHAR) raises over the landed files, or None."""
    con = lake.engine()
    try:
        uris = [lake.uri(o.key) for o in lake.list_objects(LANDING)]
        con.execute(f"SET VARIABLE {tx._FILES_VARIABLE} = ?", [uris])
        fast = tx._fast_sql(f"getvariable('{tx._FILES_VARIABLE}')")
        con.execute(f"SELECT count(*), count(rule) FROM ({fast})").fetchall()  # noqa: S608
        return None
    except duckdb.InvalidInputException as exc:
        return str(exc)
    finally:
        con.close()


@pytest.mark.parametrize("seed", [1, 2])
def test_typed_read_gives_the_checked_paths_rows_and_reasons(tmp_path: Path, seed: int) -> None:
    records = _records(seed, 2000, json_looking=False)
    fast, (f_cols, f_rows, f_q), checked, (c_cols, c_rows, c_q) = _fast_and_checked(tmp_path, records, seed)
    # every text in these records is a string that is not JSON text: the typed read needs no second try
    assert _typed_read_raises(LocalLake(base_dir=str(tmp_path / "fast"))) is None
    assert fast.reconciles and checked.reconciles
    assert (fast.records_in, fast.records_out, fast.records_quarantined) == (
        checked.records_in,
        checked.records_out,
        checked.records_quarantined,
    )
    assert fast.by_rule == checked.by_rule
    # every kind of rule was met, and plenty of records are good
    assert {r.split("_")[0] for r in fast.by_rule} >= {"missing", "wrong", "non", "out", "control"}
    assert fast.records_out > 800
    assert f_cols == c_cols and f_rows == c_rows
    assert f_q == c_q and len(f_q) == fast.records_quarantined


@pytest.mark.parametrize("seed", [3, 4])
def test_text_fields_that_look_like_json_are_typed_from_their_json(tmp_path: Path, seed: int) -> None:
    records = _records(seed, 2000, json_looking=True)
    fast, (f_cols, f_rows, f_q), checked, (c_cols, c_rows, c_q) = _fast_and_checked(tmp_path, records, seed)
    # a text field holding a number, or a string such as "1984": the typed read cannot type it and stops
    assert tx._AMBIGUOUS in (_typed_read_raises(LocalLake(base_dir=str(tmp_path / "fast"))) or "")
    assert fast.by_rule == checked.by_rule and fast.reconciles
    assert {r for r in fast.by_rule if r.startswith("wrong_type_")} >= {
        f"wrong_type_{f}" for f in ("transaction_id", "customer_id", "product_name", "timestamp", "quantity")
    }
    assert f_cols == c_cols and f_rows == c_rows and f_q == c_q


def test_strings_that_are_json_text_are_kept_as_text(lake: LocalLake) -> None:
    names = ["1984", "true", "null", "[1]", "-1", "NaN"]
    lake.write_bytes(
        LANDING + "a.json",
        "\n".join(json.dumps({**_good(i), "product_name": name}) for i, name in enumerate(names)).encode(),
    )
    lake.write_bytes(LANDING + "b.json", json.dumps({**_good(9), "product_name": None}).encode())
    result = tx.transform_partition(lake, DATE, list(lake.list_objects(LANDING)))
    assert (result.records_out, result.by_rule) == (6, {"missing_product_name": 1})
    con = lake.engine()
    got = [
        r[0]
        for r in con.execute(
            "SELECT product_name FROM read_parquet(?) ORDER BY transaction_id", [lake.uri(result.output_key)]
        ).fetchall()
    ]
    assert got == names


def test_a_clean_partition_is_written_once_and_a_dirty_one_keeps_only_its_good_records(
    tmp_path: Path,
) -> None:
    for name, bad in (("clean", None), ("dirty", {**_good(99), "quantity": 0})):
        lk = LocalLake(base_dir=str(tmp_path / name))
        recs = [_good(i) for i in range(300)] + ([bad] if bad else [])
        lk.write_bytes(LANDING + "a.json", "\n".join(json.dumps(r) for r in recs).encode())
        uris = [lk.uri(o.key) for o in lk.list_objects(LANDING)]
        con = lk.engine()
        con.register("files_map", pa.table({"filename": uris, "file": [lk.key_of(u) for u in uris]}))
        staged, counts = tx._fast_write(lk, con, uris, "intermediate/probe/")
        rows = con.execute(
            "SELECT count(*), count(transaction_id) FROM read_parquet(?)", [lk.uri(staged)]
        ).fetchone()
        con.close()
        assert rows == (300, 300)  # no bad record in the output, every transaction_id there
        if bad:
            assert staged == f"intermediate/probe/{tx.DATA_FILE}"
            assert sorted(counts, key=repr) == sorted(
                [(uris[0], None, 300), (uris[0], "non_positive_quantity", 1)], key=repr
            )
        else:  # the file the one pass wrote is the output: nothing copied
            assert staged == "intermediate/probe/records.parquet" and counts == [(uris[0], None, 300)]


def test_a_large_amount_gets_its_discount_instead_of_an_overflow(lake: LocalLake) -> None:
    # 10^14 and more overflowed DECIMAL(18,4) in total_amount * 0.10 and failed the whole partition
    lake.write_bytes(
        LANDING + "a.json",
        json.dumps(
            {**_good(1), "quantity": 1, "price": 9007199254740993, "total_amount": 9007199254740993}
        ).encode(),
    )
    result = tx.transform_partition(lake, DATE, list(lake.list_objects(LANDING)))
    con = lake.engine()
    got = con.execute(
        "SELECT total_amount, discount, final_amount FROM read_parquet(?)", [lake.uri(result.output_key)]
    ).fetchall()
    assert got == [
        (Decimal("9007199254740993.00"), Decimal("900719925474099.30"), Decimal("8106479329266893.70"))
    ]


def test_whitespace_only_files_give_an_empty_output(lake: LocalLake) -> None:
    lake.write_bytes(LANDING + "blank.json", b"\n   \n")
    result = tx.transform_partition(lake, DATE, list(lake.list_objects(LANDING)))
    assert result.reconciles and (result.records_in, result.records_out, result.files_ok) == (0, 0, 1)
    cols, rows, q = _outputs(lake, result)
    assert rows == [] and q == [] and cols[:2] == ["transaction_id", "timestamp"] and "final_amount" in cols


@pytest.fixture
def lake(tmp_path: Path) -> LocalLake:
    return LocalLake(base_dir=str(tmp_path / "lake"))
