"""Schema evolution of the incoming transactions JSON (issue 15), on the real SQLite catalog and Glue on moto.

A new optional field becomes a nullable column in the partition's own commit, recorded in the metadata; a value
of another type than the column's is quarantined with its reason, never cast; a key that cannot become a column
is quarantined too. Both read paths (the fast typed read and the checked one) give the same rows.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import dagster as dg
import duckdb
import pytest

from ecommerce_assets.transforms import transactions as tx
from tests.conftest import MOTO_REGION
from tests.test_transactions_iceberg import DAY_A, DAY_B, _commits, _materialize, _rec

DAY_C = "2026-11-22"


def _land(lake: Any, day: str, name: str, records: list[Any], *, lines: bool = False) -> None:
    body = "\n".join(json.dumps(r) for r in records) if lines else json.dumps(records)
    lake.write_bytes(f"landing/transactions/date={day}/{name}.json", body.encode())


def _run(lake: Any, store: Any, day: str) -> tx.PartitionResult:
    objects = list(lake.list_objects(f"landing/transactions/date={day}/"))
    return tx.transform_partition(lake, day, objects, tables=store)


def _quarantine(lake: Any, day: str) -> list[tuple]:
    uri = lake.uri(f"quarantine/transactions/date={day}/records.parquet")
    return duckdb.sql(f"SELECT row, field, rule, reason FROM read_parquet('{uri}') ORDER BY row").fetchall()  # noqa: S608


def _by_id(store: Any, *columns: str) -> dict[str, tuple]:
    rows = store.read(tx.TABLE).to_pylist()
    return {r["transaction_id"]: tuple(r.get(c) for c in columns) for r in rows}


def test_a_new_optional_field_becomes_a_nullable_column_in_the_partitions_commit(local_resources: dict) -> None:
    lake, store = local_resources["lake"], local_resources["iceberg"]
    _land(lake, DAY_A, "a", [_rec(DAY_A, i) for i in range(3)])
    with dg.instance_for_test() as instance:
        _materialize(local_resources, instance, DAY_A)
        # the next day's producer sends three new fields: a text, a flag and a number (integers and decimals)
        _land(lake, DAY_B, "b", [
            _rec(DAY_B, 0, channel="web", gift=True, weight=2),
            _rec(DAY_B, 1, channel="app", gift=False, weight=0.5),
            _rec(DAY_B, 2, channel=None),  # optional: absent or null is no value
        ])
        result = _materialize(local_resources, instance, DAY_B)
    md = result.asset_materializations_for_node("transactions__processed")[0].metadata
    assert md["iceberg/new_columns"].value == ["channel", "gift", "weight"]
    assert md["extra_fields"].value == {"channel": "string", "gift": "boolean", "weight": "number"}
    assert md["records_out"].value == 3 and md["records_quarantined"].value == 0
    assert len(_commits(store)) == 2  # the schema change went in day B's own commit

    fields = {f.name: (str(f.field_type), f.required) for f in store.load(tx.TABLE).schema().fields}
    assert fields["channel"] == ("string", False) and fields["gift"] == ("boolean", False)
    assert fields["weight"] == ("double", False)
    rows = _by_id(store, "channel", "gift", "weight")
    assert rows[f"{DAY_B}-T0"] == ("web", True, 2.0) and rows[f"{DAY_B}-T1"] == ("app", False, 0.5)
    assert rows[f"{DAY_B}-T2"] == (None, None, None)
    assert all(rows[f"{DAY_A}-T{i}"] == (None, None, None) for i in range(3))  # day A's rows, untouched
    schema = md["dagster/column_schema"].value
    assert {c.name for c in schema.columns} >= {"channel", "gift", "weight"}


def test_a_value_of_another_type_than_the_column_is_quarantined_with_its_reason_never_cast(
    local_resources: dict,
) -> None:
    lake, store = local_resources["lake"], local_resources["iceberg"]
    _land(lake, DAY_A, "a", [_rec(DAY_A, 0, channel="web", units=3)])
    assert _run(lake, store, DAY_A).extra_fields == {"channel": "string", "units": "integer"}
    # day C: a number where the table has text, a decimal and a text where it has integers, one good record
    _land(lake, DAY_C, "c", [
        _rec(DAY_C, 0, channel=7),
        _rec(DAY_C, 1, channel="app", units=2.5),
        _rec(DAY_C, 2, units="4"),
        _rec(DAY_C, 3, channel="store", units=5),
    ], lines=True)
    result = _run(lake, store, DAY_C)
    assert result.reconciles and (result.records_in, result.records_out, result.records_quarantined) == (4, 1, 3)
    assert result.by_rule == {"wrong_type_channel": 1, "wrong_type_units": 2}
    assert _quarantine(lake, DAY_C) == [
        (1, "channel", "wrong_type_channel",
         "channel must be a string (an object or array is kept as its JSON text): the type of the column channel"),
        (2, "units", "wrong_type_units", "units must be an integer (64-bit): the type of the column units"),
        (3, "units", "wrong_type_units", "units must be an integer (64-bit): the type of the column units"),
    ]
    fields = {f.name: str(f.field_type) for f in store.load(tx.TABLE).schema().fields}
    assert fields["channel"] == "string" and fields["units"] == "long"  # the table's types did not change
    assert _by_id(store, "channel", "units")[f"{DAY_C}-T3"] == ("store", 5)


def test_a_new_fields_kind_is_that_of_most_of_its_values_and_the_others_are_quarantined(
    local_resources: dict,
) -> None:
    lake, store = local_resources["lake"], local_resources["iceberg"]
    _land(lake, DAY_A, "a", [
        _rec(DAY_A, 0, coupon="SPRING"), _rec(DAY_A, 1, coupon="FALL"), _rec(DAY_A, 2, coupon=10),
        _rec(DAY_A, 3, tags=["a", "b"]), _rec(DAY_A, 4, tags="gift"),  # an array in a string field: its JSON text
        _rec(DAY_A, 5, big=2**63), _rec(DAY_A, 6, big=1),  # beyond 64 bits: the field is a number
    ])
    result = _run(lake, store, DAY_A)
    assert result.extra_fields == {"big": "number", "coupon": "string", "tags": "string"}
    assert result.by_rule == {"wrong_type_coupon": 1} and result.records_out == 6
    rows = _by_id(store, "coupon", "tags", "big")
    assert rows[f"{DAY_A}-T3"][1] == '["a","b"]' and rows[f"{DAY_A}-T4"][1] == "gift"
    assert rows[f"{DAY_A}-T5"][2] == float(2**63) and rows[f"{DAY_A}-T6"][2] == 1.0


def test_a_key_that_cannot_become_a_column_is_quarantined_and_the_others_go_on(local_resources: dict) -> None:
    lake, store = local_resources["lake"], local_resources["iceberg"]
    _land(lake, DAY_A, "a", [
        _rec(DAY_A, 0, Discount=5),  # a column the pipeline derives, in another case
        _rec(DAY_A, 1, **{"unit price": 3}),  # not a column name
        _rec(DAY_A, 2, Promo="x", promo="y"),  # two keys, one column name: the lower-case one is kept
        _rec(DAY_A, 3, promo="z"),
        _rec(DAY_A, 4, filename="x.json"),  # a name the statements use for their own columns
        _rec(DAY_A, 5, j1=1),
    ])
    result = _run(lake, store, DAY_A)
    assert result.reconciles and result.records_out == 1 and result.extra_fields == {"promo": "string"}
    assert result.by_rule == {"unsupported_field_Discount": 1, "unsupported_field_Promo": 1,
                              "unsupported_field_unit price": 1, "unsupported_field_filename": 1,
                              "unsupported_field_j1": 1}
    reasons = {row: (field, reason) for row, field, _, reason in _quarantine(lake, DAY_A)}
    assert reasons[2][0] == "unit price" and "cannot become a column" in reasons[2][1]
    assert _by_id(store, "promo") == {f"{DAY_A}-T3": ("z",)}


@pytest.mark.parametrize("force_checked", [False, True])
def test_both_read_paths_give_the_same_rows_and_counts_with_new_fields(
    local_resources: dict, force_checked: bool
) -> None:
    lake, store = local_resources["lake"], local_resources["iceberg"]
    records: list[Any] = [_rec(DAY_A, i, channel=["web", "app"][i % 2], score=i) for i in range(6)]
    records += [_rec(DAY_A, 6, channel=1), _rec(DAY_A, 7, quantity=0, channel="web")]
    if force_checked:
        records.append(3)  # a record that is not an object: the typed read refuses it, the checked path runs
    _land(lake, DAY_A, "a", records)
    result = _run(lake, store, DAY_A)
    expected_rules = {"wrong_type_channel": 1, "non_positive_quantity": 1}
    if force_checked:
        expected_rules["not_an_object"] = 1
    assert result.by_rule == expected_rules and result.records_out == 6 and result.reconciles
    assert _by_id(store, "channel", "score") == {
        f"{DAY_A}-T{i}": (["web", "app"][i % 2], i) for i in range(6)
    }


@pytest.mark.parametrize("force_checked", [False, True])
def test_a_control_character_in_a_new_text_field_is_quarantined_as_in_the_declared_ones(
    local_resources: dict, force_checked: bool
) -> None:
    lake, store = local_resources["lake"], local_resources["iceberg"]
    records: list[Any] = [
        _rec(DAY_A, 0, note="fine"),
        _rec(DAY_A, 1, note="\u0000"),  # NUL
        _rec(DAY_A, 2, note="gnp.\u202eexe"),  # a right-to-left override
        _rec(DAY_A, 3, note={"nested": "\u202e"}),  # an object's JSON text would carry it unescaped
    ]
    if force_checked:
        records.append(3)
    _land(lake, DAY_A, "a", records)
    result = _run(lake, store, DAY_A)
    expected = {"control_character_note": 3, **({"not_an_object": 1} if force_checked else {})}
    assert result.by_rule == expected and result.records_out == 1 and result.reconciles
    assert _by_id(store, "note") == {f"{DAY_A}-T0": ("fine",)}
    reasons = {row: (field, rule, reason) for row, field, rule, reason in _quarantine(lake, DAY_A)}
    assert reasons[2] == ("note", "control_character_note", "note holds a control or bidirectional-override character")


def test_rerunning_an_evolved_partition_gives_the_same_rows(local_resources: dict) -> None:
    lake, store = local_resources["lake"], local_resources["iceberg"]
    _land(lake, DAY_A, "a", [_rec(DAY_A, 0)])
    _run(lake, store, DAY_A)
    _land(lake, DAY_B, "b", [_rec(DAY_B, i, channel="web") for i in range(4)])
    first = _run(lake, store, DAY_B)
    before = store.read(tx.TABLE).sort_by("transaction_id").to_pylist()
    again = _run(lake, store, DAY_B)
    assert first.commit is not None and first.commit.new_columns == ("channel",)
    assert again.commit is not None and again.commit.new_columns == () and again.commit.total_records == 5
    assert store.read(tx.TABLE).sort_by("transaction_id").to_pylist() == before


def test_on_aws_the_glue_table_gets_the_new_column(aws_storage: dict[str, Any], moto_endpoint: str) -> None:
    lake, store, catalog = aws_storage["lake"], aws_storage["iceberg"], aws_storage["table_catalog"]
    _land(lake, DAY_A, "a", [_rec(DAY_A, 0)])
    _run(lake, store, DAY_A)
    _land(lake, DAY_B, "b", [_rec(DAY_B, 0, channel="web")])
    result = _run(lake, store, DAY_B)
    assert result.commit is not None and result.commit.new_columns == ("channel",)
    glue = boto3.client("glue", endpoint_url=moto_endpoint, region_name=MOTO_REGION)
    entry = glue.get_table(DatabaseName=store.namespace, Name=tx.TABLE)["Table"]
    assert entry["Parameters"]["table_type"] == "ICEBERG"
    assert entry["Parameters"]["metadata_location"] == result.commit.metadata_location
    assert {"name": "channel", "type": "string"} in [
        {"name": c["Name"], "type": c["Type"]} for c in entry["StorageDescriptor"]["Columns"]
    ]
    assert catalog is not None
