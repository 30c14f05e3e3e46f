"""The key-value tables: local SQLite tables and DynamoDB on moto's server, same behaviour."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from ecommerce_assets.storage.kv_store import DynamoDBKeyValueStore, KeyValueStore, LocalKeyValueStore
from ecommerce_assets.transforms.stream_batches import invoice_document


def _item(invoice: str, stock: str, seq: int, qty: int, customer: str | None, price: str = "2.550") -> dict:
    return {
        "invoice_no": invoice,
        "line_key": f"{stock}#shardId-000000000000#{seq:020d}",
        "stock_code": stock,
        "description": f"item {stock}",
        "quantity": qty,
        "unit_price": price,
        "invoice_date": "2010-12-01T08:26:00",
        "customer_id": customer,
        "country": "United Kingdom",
        "cancelled": invoice.startswith("C"),
        "shard_id": "shardId-000000000000",
        "sequence_number": f"{seq:020d}",
    }


BATCH_1 = [
    _item("536365", "85123A", 1, 6, "17850"),
    _item("536365", "85123A", 2, 2, "17850"),  # the same stock code twice in one invoice: two lines
    _item("536365", "71053", 3, 6, "17850", "3.390"),
    _item("C536379", "D", 4, -1, "14527", "27.500"),  # a cancellation
    _item("536414", "22139", 5, 56, None, "0.000"),  # no customer
]
BATCH_2 = [
    _item("536366", "22633", 6, 6, "17850", "1.850"),
    _item("536414", "22140", 7, 3, None, "1.000"),
]


@pytest.fixture(params=["local", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> KeyValueStore:
    if request.param == "local":
        kv: KeyValueStore = LocalKeyValueStore(path=str(tmp_path / "kv.sqlite"))
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        kv = DynamoDBKeyValueStore(
            table_prefix=f"t{uuid.uuid4().hex[:8]}-", endpoint_url=endpoint, region_name="us-east-1"
        )
    kv.ensure()
    kv.ensure()  # idempotent
    return kv


def test_invoices_and_customers(store: KeyValueStore) -> None:
    written = store.put_lines(BATCH_1)
    assert (written.lines, written.invoices, written.customers) == (5, 3, 2)
    store.put_lines(BATCH_2)

    lines = store.get_invoice_lines("536365")
    assert sorted((i["stock_code"], i["quantity"]) for i in lines) == [("71053", 6), ("85123A", 2), ("85123A", 6)]
    doc = invoice_document("536365", lines)
    assert [len(v) for v in doc["lines_by_stock_code"].values()] == [1, 2]
    assert doc["total"] == "40.740"  # 6*2.55 + 2*2.55 + 6*3.39 = 15.30 + 5.10 + 20.34
    assert doc["customer_id"] == "17850" and not doc["cancelled"]

    cancelled = store.get_invoice_lines("C536379")
    assert cancelled[0]["cancelled"] is True and cancelled[0]["quantity"] == -1
    assert invoice_document("C536379", cancelled)["total"] == "-27.500"

    anonymous = store.get_invoice_lines("536414")
    assert len(anonymous) == 2 and all(i["customer_id"] is None for i in anonymous)
    assert store.get_invoice_lines("999999") == []

    assert store.get_customer_invoices("17850") == {"536365", "536366"}  # sets grow across batches
    assert store.get_customer_invoices("14527") == {"C536379"}
    assert set(store.scan_customers()) == {"17850", "14527"}  # blank customers are not a key


def test_processing_a_batch_twice_changes_nothing(store: KeyValueStore) -> None:
    store.put_lines(BATCH_1)
    store.put_lines(BATCH_2)
    before_lines = sorted((i["invoice_no"], i["line_key"], i["quantity"]) for i in store.scan_invoice_lines())
    before_customers = store.scan_customers()
    store.put_lines(BATCH_1)  # a retry / a replay under the same sequence numbers
    store.put_lines(list(reversed(BATCH_2)))
    after_lines = sorted((i["invoice_no"], i["line_key"], i["quantity"]) for i in store.scan_invoice_lines())
    assert after_lines == before_lines and len(after_lines) == len(BATCH_1) + len(BATCH_2)
    assert store.scan_customers() == before_customers


def test_table_prefix_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ECOMMERCE_KV_TABLE_PREFIX"):
        LocalKeyValueStore(path=str(tmp_path / "kv.sqlite"), table_prefix='x"; DROP').ensure()


def test_dynamodb_ensure_waits_for_a_table_another_process_created(moto_endpoint: str) -> None:
    """``ensure`` finds a table missing, and another process creates it first (ResourceInUseException on our
    CreateTable): not an error; ``ensure`` waits until both tables are ACTIVE (boto3's ``table_exists`` waiter)."""
    import boto3

    kv = DynamoDBKeyValueStore(
        table_prefix=f"t{uuid.uuid4().hex[:8]}-", endpoint_url=moto_endpoint, region_name="us-east-1"
    )
    other = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1")
    raced: list[str] = []

    def create_first(params: dict, **_: object) -> None:  # runs just before each CreateTable of ours is sent
        other.create_table(
            TableName=params["TableName"],
            KeySchema=params["KeySchema"],
            AttributeDefinitions=params["AttributeDefinitions"],
            BillingMode="PAY_PER_REQUEST",
        )
        raced.append(params["TableName"])

    client = kv._dynamodb().meta.client
    client.meta.events.register("before-parameter-build.dynamodb.CreateTable", create_first)
    try:
        kv.ensure()
    finally:
        client.meta.events.unregister("before-parameter-build.dynamodb.CreateTable", create_first)
    assert sorted(raced) == sorted([kv._name("invoices"), kv._name("customers")])
    for name in raced:
        assert other.describe_table(TableName=name)["Table"]["TableStatus"] == "ACTIVE"
    assert kv.put_lines(BATCH_2).lines == 2 and len(kv.get_invoice_lines("536414")) == 1
