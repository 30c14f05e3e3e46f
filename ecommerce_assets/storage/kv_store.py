"""Key-value tables the ingestion API answers from: local SQLite tables, or DynamoDB in aws mode.

Two tables (names prefixed with ``ECOMMERCE_KV_TABLE_PREFIX``):

* ``invoices``: partition key ``invoice_no``, sort key ``line_key = <stock code>#<shard>#<sequence>``;
  one item per order line read from the stream, so "an invoice's lines by stock code" is one query on
  the partition key (sorted by stock code), and two lines with the same stock code in one invoice (the
  Online Retail data has them) stay two lines. Writing the same stream record again rewrites the same
  key: a retried or replayed batch changes nothing.
* ``customers``: key ``customer_id``, the set of the customer's invoice numbers (DynamoDB ``ADD`` to a
  string set, which is idempotent too).

Cancellations (``C536379``) are invoices like any other, flagged ``cancelled`` and with negative
quantities. Order lines without a customer (blank CustomerID) are kept in ``invoices`` with
``customer_id`` null and are *not* added to ``customers``: an anonymous "customer" would be one hot key
whose invoice set grows past DynamoDB's 400 KB item limit (the original consumer crashed on the empty key).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ecommerce_assets.settings import Settings
from ecommerce_assets.storage.base import StorageModel
from ecommerce_assets.storage.connections import per_thread, sqlite_connection, wait_until_active

_PREFIX = re.compile(r"^[A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class KvWrite:
    """What one ``put_lines`` call wrote."""

    lines: int
    invoices: int
    customers: int


def _group_customers(items: Sequence[Mapping[str, Any]]) -> dict[str, set[str]]:
    by_customer: dict[str, set[str]] = {}
    for item in items:
        if item.get("customer_id"):
            by_customer.setdefault(item["customer_id"], set()).add(item["invoice_no"])
    return by_customer


def _normalize(item: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(item)
    out["quantity"] = int(out["quantity"])
    out["unit_price"] = str(Decimal(str(out["unit_price"])).quantize(Decimal("0.001")))
    out["cancelled"] = bool(out.get("cancelled"))
    return out


class KeyValueStore(StorageModel):
    """Interface of the key-value tables; the assets, the API and the lambdas use only these methods."""

    table_prefix: str = ""

    def _name(self, table: str) -> str:
        if not _PREFIX.match(self.table_prefix):
            raise ValueError(
                f"ECOMMERCE_KV_TABLE_PREFIX may only hold letters, digits, _ . and -: {self.table_prefix!r}"
            )
        return f"{self.table_prefix}{table}"

    def ensure(self) -> None:
        """Create the tables when they do not exist."""
        raise NotImplementedError

    def put_lines(self, items: Sequence[Mapping[str, Any]]) -> KvWrite:
        """Upsert invoice-line items (``transforms.stream_batches.kv_items``) and the customers' invoice sets."""
        raise NotImplementedError

    def get_invoice_lines(self, invoice_no: str) -> list[dict[str, Any]]:
        """Every line item of an invoice, sorted by ``line_key`` (empty when the invoice is unknown)."""
        raise NotImplementedError

    def get_customer_invoices(self, customer_id: str) -> set[str]:
        raise NotImplementedError

    def scan_invoice_lines(self) -> Iterator[dict[str, Any]]:
        """Every line item (audits and tests; a full scan)."""
        raise NotImplementedError

    def scan_customers(self) -> dict[str, set[str]]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class LocalKeyValueStore(KeyValueStore):
    """The key-value tables as SQLite tables in one file (WAL: the API reads while Dagster writes)."""

    path: str

    def _con(self) -> Any:
        inv, cust = self._name("invoices"), self._name("customers")
        return sqlite_connection(
            self.path,
            f"""
            CREATE TABLE IF NOT EXISTS "{inv}" (
                invoice_no TEXT NOT NULL, line_key TEXT NOT NULL, item TEXT NOT NULL,
                PRIMARY KEY (invoice_no, line_key)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS "{cust}" (
                customer_id TEXT NOT NULL, invoice_no TEXT NOT NULL,
                PRIMARY KEY (customer_id, invoice_no)) WITHOUT ROWID;
        """,
        )

    def ensure(self) -> None:
        self._con()

    def put_lines(self, items: Sequence[Mapping[str, Any]]) -> KvWrite:
        con = self._con()
        inv, cust = self._name("invoices"), self._name("customers")
        customers = _group_customers(items)
        con.execute("BEGIN IMMEDIATE")
        try:
            con.executemany(
                f'INSERT INTO "{inv}" (invoice_no, line_key, item) VALUES (?, ?, ?) '  # noqa: S608 - checked name
                "ON CONFLICT (invoice_no, line_key) DO UPDATE SET item = excluded.item",
                [(i["invoice_no"], i["line_key"], json.dumps(_normalize(i), sort_keys=True)) for i in items],
            )
            con.executemany(
                f'INSERT OR IGNORE INTO "{cust}" (customer_id, invoice_no) VALUES (?, ?)',  # noqa: S608
                [(c, invoice) for c, invoices in customers.items() for invoice in sorted(invoices)],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return KvWrite(lines=len(items), invoices=len({i["invoice_no"] for i in items}), customers=len(customers))

    def get_invoice_lines(self, invoice_no: str) -> list[dict[str, Any]]:
        rows = (
            self._con()
            .execute(
                f'SELECT item FROM "{self._name("invoices")}" WHERE invoice_no = ? ORDER BY line_key',  # noqa: S608
                [invoice_no],
            )
            .fetchall()
        )
        return [json.loads(r[0]) for r in rows]

    def get_customer_invoices(self, customer_id: str) -> set[str]:
        sql = f'SELECT invoice_no FROM "{self._name("customers")}" WHERE customer_id = ?'  # noqa: S608 - checked name
        return {r[0] for r in self._con().execute(sql, [customer_id]).fetchall()}

    def scan_invoice_lines(self) -> Iterator[dict[str, Any]]:
        for (item,) in self._con().execute(f'SELECT item FROM "{self._name("invoices")}"'):  # noqa: S608
            yield json.loads(item)

    def scan_customers(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for c, invoice in self._con().execute(f'SELECT customer_id, invoice_no FROM "{self._name("customers")}"'):  # noqa: S608
            out.setdefault(c, set()).add(invoice)
        return out

    def describe(self) -> str:
        return f"sqlite://{os.path.abspath(self.path)}"


class DynamoDBKeyValueStore(KeyValueStore):
    """The key-value tables in DynamoDB (``endpoint_url`` for moto/LocalStack, else AWS_ENDPOINT_URL)."""

    endpoint_url: str | None = None
    region_name: str | None = None

    def _dynamodb(self) -> Any:
        import boto3

        return per_thread("dynamodb", (self.endpoint_url, self.region_name),
                          lambda: boto3.resource("dynamodb", endpoint_url=self.endpoint_url, region_name=self.region_name))

    def ensure(self) -> None:
        """Create the two tables unless they exist, then wait (up to ~120 s) until both are ACTIVE.

        Waits with boto3's ``table_exists`` waiter; a table still not ACTIVE raises ``TimeoutError``. Another
        process creating the same table at the same time is not an error.
        """
        db = self._dynamodb()
        client = db.meta.client
        specs = {
            self._name("invoices"): [("invoice_no", "HASH"), ("line_key", "RANGE")],
            self._name("customers"): [("customer_id", "HASH")],
        }
        for name, keys in specs.items():
            try:
                client.describe_table(TableName=name)
                continue
            except client.exceptions.ResourceNotFoundException:
                pass
            try:
                client.create_table(
                    TableName=name,
                    KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in keys],
                    AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k, _ in keys],
                    BillingMode="PAY_PER_REQUEST",
                )
            except client.exceptions.ResourceInUseException:
                pass  # created meanwhile by another process: wait for it like for ours
        for name in specs:
            wait_until_active(client, "table_exists", f"DynamoDB table {name}", TableName=name)

    def put_lines(self, items: Sequence[Mapping[str, Any]]) -> KvWrite:
        db = self._dynamodb()
        table = db.Table(self._name("invoices"))
        with table.batch_writer(overwrite_by_pkeys=["invoice_no", "line_key"]) as batch:
            for item in items:
                normalized = _normalize(item)
                normalized["unit_price"] = Decimal(normalized["unit_price"])
                batch.put_item(Item={k: v for k, v in normalized.items() if v is not None})
        customers = _group_customers(items)
        cust_table = db.Table(self._name("customers"))
        for customer_id, invoices in sorted(customers.items()):
            cust_table.update_item(
                Key={"customer_id": customer_id},
                UpdateExpression="ADD invoices :new",
                ExpressionAttributeValues={":new": set(invoices)},
            )
        return KvWrite(lines=len(items), invoices=len({i["invoice_no"] for i in items}), customers=len(customers))

    @staticmethod
    def _from_dynamo(item: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in item.items()}
        out.setdefault("description", None)
        out.setdefault("customer_id", None)
        return _normalize(out)

    def get_invoice_lines(self, invoice_no: str) -> list[dict[str, Any]]:
        from boto3.dynamodb.conditions import Key

        table = self._dynamodb().Table(self._name("invoices"))
        kwargs: dict[str, Any] = {"KeyConditionExpression": Key("invoice_no").eq(invoice_no)}
        out: list[dict[str, Any]] = []
        while True:
            page = table.query(**kwargs)
            out.extend(self._from_dynamo(i) for i in page["Items"])
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def get_customer_invoices(self, customer_id: str) -> set[str]:
        item = self._dynamodb().Table(self._name("customers")).get_item(Key={"customer_id": customer_id}).get("Item")
        return set(item.get("invoices", set())) if item else set()

    def _scan(self, table: str) -> Iterator[dict[str, Any]]:
        t = self._dynamodb().Table(self._name(table))
        kwargs: dict[str, Any] = {}
        while True:
            page = t.scan(**kwargs)
            yield from page["Items"]
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def scan_invoice_lines(self) -> Iterator[dict[str, Any]]:
        for item in self._scan("invoices"):
            yield self._from_dynamo(item)

    def scan_customers(self) -> dict[str, set[str]]:
        return {i["customer_id"]: set(i.get("invoices", set())) for i in self._scan("customers")}

    def describe(self) -> str:
        return f"dynamodb://{self._name('invoices')},{self._name('customers')}"


def build_kv_store(settings: Settings) -> KeyValueStore:
    """The key-value store of the environment: SQLite under ``state_dir``, or DynamoDB in aws mode."""
    if settings.env == "aws":
        return DynamoDBKeyValueStore(
            table_prefix=settings.kv_table_prefix,
            endpoint_url=settings.aws_endpoint_url,
            region_name=settings.aws_region,
        )
    return LocalKeyValueStore(path=str(settings.state_dir / "kv.sqlite"), table_prefix=settings.kv_table_prefix)
