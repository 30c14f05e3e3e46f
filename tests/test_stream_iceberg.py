"""The stream's typed order lines are the Iceberg table ``stream_order_lines``: one commit per micro-batch, a
batch re-run replaces exactly its own rows, and the key-value tables and ``gold.firehose_transactions`` read the
batch from the table (issue 15)."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from ecommerce_assets.defs.stream.assets import FIREHOSE_TABLE
from ecommerce_assets.defs.stream.sensors import StreamBatch, stream_sensor
from ecommerce_assets.dev.stream_demo import run_batch
from ecommerce_assets.resources import build_resources
from ecommerce_assets.transforms import stream_batches as ts

LINE = {"InvoiceNo": "536365", "StockCode": "85123A", "Description": "WHITE HANGING HEART", "Quantity": 6,
        "InvoiceDate": "2010-12-01T08:26:00", "UnitPrice": "2.550", "CustomerID": "17850",
        "Country": "United Kingdom"}


def _batches(resources: dict, instance: dg.DagsterInstance, cursor: str | None = None) -> tuple[list[StreamBatch], str]:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"stream": resources["stream"]})
    result = stream_sensor(context)
    batches = [
        StreamBatch(r.tags["ecommerce/stream_shard"], r.tags["ecommerce/stream_first"], r.tags["ecommerce/stream_last"],
                    r.tags["ecommerce/stream_date"], int(r.tags["ecommerce/stream_records"]))
        for r in result.run_requests
    ]
    return batches, result.cursor or ""


def _lines(n: int, invoice: str) -> list[tuple[str, bytes]]:
    return [(invoice, json.dumps({**LINE, "InvoiceNo": invoice, "Quantity": i + 1}).encode()) for i in range(n)]


def test_each_batch_is_one_commit_and_a_rerun_replaces_only_its_own_rows(data_dir: Path) -> None:
    resources = build_resources()
    instance = dg.DagsterInstance.get()
    iceberg, stream = resources["iceberg"], resources["stream"]
    stream.put_records(_lines(5, "536365"))
    first, cursor = _batches(resources, instance)
    stream.put_records(_lines(3, "536366"))
    second, _ = _batches(resources, instance, cursor)
    batches = first + second
    assert len(batches) >= 2
    for batch in batches:
        assert run_batch(batch, resources, instance).success
    table = iceberg.read(ts.TABLE)
    assert table.num_rows == 8
    assert set(table.column("batch").to_pylist()) == {ts.batch_name(b.first, b.last) for b in batches}
    assert resources["warehouse"].row_count(FIREHOSE_TABLE) == 8
    before = sorted(map(str, table.sort_by("sequence_number").to_pylist()))
    snapshots = len(iceberg.history(ts.TABLE))

    result = run_batch(first[0], resources, instance)  # the same batch again (a retry, a re-execution)
    assert result.success
    after = iceberg.read(ts.TABLE)
    assert sorted(map(str, after.sort_by("sequence_number").to_pylist())) == before
    new = iceberg.history(ts.TABLE)[snapshots:]
    assert len({s.summary.get("ecommerce.commit-id") for s in new}) == 1, new  # one commit (delete + append)
    [mat] = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(["stream", "order_lines"])]
    md = mat.materialization.metadata
    assert md["iceberg/records_added"].value == first[0].records == md["iceberg/records_deleted"].value
    assert md["iceberg/total_records"].value == 8
    assert int(md["iceberg/snapshot_id"].value) == iceberg.current_snapshot_id(ts.TABLE)
    assert [c.name for c in md["dagster/column_schema"].schema.columns][-2:] == list(ts.BATCH_COLUMNS)
    assert resources["warehouse"].row_count(FIREHOSE_TABLE) == 8
    assert not [o.key for o in resources["lake"].list_objects("intermediate/stream/")]  # staged files removed


def test_the_kv_tables_and_the_warehouse_read_the_table_not_a_file(data_dir: Path) -> None:
    resources = build_resources()
    instance = dg.DagsterInstance.get()
    resources["stream"].put_records(_lines(4, "536370"))
    [batch], _ = _batches(resources, instance)
    assert run_batch(batch, resources, instance).success
    iceberg = resources["iceberg"]
    typed = iceberg.read(ts.TABLE, where=ts.batch_slice(batch.date, batch.first, batch.last))
    assert typed.num_rows == 4
    rows = resources["warehouse"].query(f"SELECT quantity FROM {FIREHOSE_TABLE} ORDER BY 1")  # noqa: S608
    assert rows.column("quantity").to_pylist() == sorted(typed.column("quantity").to_pylist()) == [1, 2, 3, 4]
    invoice = [i for i in resources["kv_store"].scan_invoice_lines() if i["invoice_no"] == "536370"]
    assert len(invoice) == 4
    folder = Path(iceberg.location(ts.TABLE).removeprefix("file://"))
    assert (folder / "metadata").is_dir() and list((folder / "data").rglob("*.parquet"))
