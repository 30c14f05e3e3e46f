"""`ecommerce-assets table history|rollback` (issue 15) as the console script, on real parts.

Local mode: two transactions days materialized by Dagster into the Iceberg table of a fresh data dir (SQLite
catalog, DuckDB warehouse), then the console script in a subprocess. aws mode: S3 and Glue on moto's server,
the same console script with the aws settings.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pytest

from ecommerce_assets.services.transactions_generator import PRODUCTS
from ecommerce_assets.transforms import transactions as tx
from tests.conftest import MOTO_REGION
from tests.pipeline_inputs import CliResult, cli_env, run_cli

DAY_A, DAY_B = "2026-11-20", "2026-11-21"
COLUMNS = ["snapshot_id", "committed_at_utc", "operation", "added", "deleted", "total", "partition", "run_id"]
TIMEOUT = 180


def _land(lake: Any, day: str, n: int) -> set[str]:
    """``n`` good transactions of ``day`` in one JSON array; their ids."""
    records = []
    for i in range(n):
        p = PRODUCTS[i % len(PRODUCTS)]
        records.append(
            {
                "transaction_id": f"{day}-T{i}",
                "timestamp": f"{day}T{i % 24:02d}:15:00",
                "customer_id": f"C{i % 3}",
                "product_id": p.product_id,
                "product_name": p.product_name,
                "category": p.category,
                "quantity": 1,
                "price": p.price,
                "total_amount": p.price,
            }
        )
    lake.write_bytes(f"landing/transactions/date={day}/batch.json", json.dumps(records).encode())
    return {r["transaction_id"] for r in records}


def _history(result: CliResult) -> tuple[str, list[dict[str, str]]]:
    """The title line and one dict per snapshot line (``current`` is ``*`` or empty) of ``table history``."""
    assert result.returncode == 0, result.show()
    lines = result.stdout.splitlines()
    assert lines[1].split() == COLUMNS, result.show()
    rows = []
    for line in lines[2:]:
        mark, cells = line[:2].strip(), line[2:].split()
        assert len(cells) == len(COLUMNS), result.show()
        rows.append({"current": mark, **dict(zip(COLUMNS, cells, strict=True))})
    return lines[0], rows


def _ids(warehouse: Any) -> set[str]:
    return {
        r["transaction_id"]
        for r in warehouse.query("SELECT transaction_id FROM lake.transactions").to_pylist()
    }


def _one_line_error(result: CliResult, *words: str) -> None:
    assert result.returncode == 2, result.show()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.show()
    assert "Traceback" not in result.stderr and result.stdout == "", result.show()
    for word in words:
        assert word in lines[0], result.show()


def test_history_lists_the_commits_and_rollback_moves_the_readers_back_and_forward(
    local_resources: dict, data_dir: Path
) -> None:
    from ecommerce_assets.defs.transactions.assets import analytics_assets, transactions, transactions_raw

    lake, store, warehouse = local_resources["lake"], local_resources["iceberg"], local_resources["warehouse"]
    env = cli_env(data_dir.parent, {"ECOMMERCE_ENV": "local"})
    ids_a, ids_b = _land(lake, DAY_A, 4), _land(lake, DAY_B, 3)
    trend = [a for a in analytics_assets if a.key.path[-1] == "transactions_daily_trend"]
    run_ids = []
    with dg.instance_for_test() as instance:
        for day in (DAY_A, DAY_B):
            result = dg.materialize(
                [transactions_raw, transactions],
                partition_key=day,
                resources=local_resources,
                instance=instance,
            )
            assert result.success
            run_ids.append(result.run_id)

        title, rows = _history(run_cli(["table", "history", "transactions"], env, data_dir.parent, TIMEOUT))
        snapshots = [s.snapshot_id for s in store.history(tx.TABLE)]
        assert [int(r["snapshot_id"]) for r in rows] == snapshots and len(snapshots) == 2
        first, second = rows
        assert (first["partition"], first["run_id"], first["added"], first["deleted"], first["total"]) == (
            DAY_A,
            run_ids[0],
            "4",
            "0",
            "4",
        )
        assert (second["partition"], second["run_id"], second["added"], second["total"]) == (
            DAY_B,
            run_ids[1],
            "3",
            "7",
        )
        assert [r["current"] for r in rows] == ["", "*"] and f"current {snapshots[1]}" in title
        assert all(r["committed_at_utc"].endswith("Z") and r["operation"] for r in rows)
        assert _ids(warehouse) == ids_a | ids_b

        # back to the first day's snapshot: the table, the view and the analytics read day A only
        back = run_cli(
            ["table", "rollback", "transactions", str(snapshots[0])], env, data_dir.parent, TIMEOUT
        )
        assert back.returncode == 0, back.show()
        assert f"{snapshots[1]} -> {snapshots[0]} (rolled back); rows 7 -> 4" in back.stdout, back.show()
        assert store.current_snapshot_id(tx.TABLE) == snapshots[0]
        assert (
            f"lake.transactions reads snapshot {snapshots[0]} ({store.metadata_location(tx.TABLE)})"
            in back.stdout
        )
        assert _ids(warehouse) == ids_a
        assert dg.materialize(trend, resources=local_resources, instance=instance).success
        daily = warehouse.query(
            "SELECT CAST(day AS VARCHAR) AS d, transactions FROM "
            "analytics.transactions_daily_trend ORDER BY 1"
        ).to_pylist()
        assert daily == [{"d": DAY_A, "transactions": 4}]
        _, rows = _history(run_cli(["table", "history", "transactions"], env, data_dir.parent, TIMEOUT))
        assert [r["current"] for r in rows] == [
            "*",
            "",
        ]  # nothing is lost: the later snapshot is still listed

        # and forward again
        fwd = run_cli(["table", "rollback", "transactions", str(snapshots[1])], env, data_dir.parent, TIMEOUT)
        assert fwd.returncode == 0, fwd.show()
        assert f"{snapshots[0]} -> {snapshots[1]} (rolled forward); rows 4 -> 7" in fwd.stdout, fwd.show()
        assert _ids(warehouse) == ids_a | ids_b
        assert dg.materialize(trend, resources=local_resources, instance=instance).success
        daily = warehouse.query(
            "SELECT CAST(day AS VARCHAR) AS d, transactions FROM "
            "analytics.transactions_daily_trend ORDER BY 1"
        ).to_pylist()
        assert daily == [{"d": DAY_A, "transactions": 4}, {"d": DAY_B, "transactions": 3}]

    # the current snapshot again: nothing committed, the view still re-pointed
    same = run_cli(
        ["table", "rollback", "processed.transactions", str(snapshots[1])], env, data_dir.parent, TIMEOUT
    )
    assert same.returncode == 0 and "already the current one (7 rows)" in same.stdout, same.show()
    assert [s.snapshot_id for s in store.history(tx.TABLE)] == snapshots

    # unknown table or snapshot: one line, exit 2, nothing changed
    _one_line_error(
        run_cli(["table", "history", "nope"], env, data_dir.parent, TIMEOUT),
        "no Iceberg table 'nope'",
        "tables: transactions",
    )
    _one_line_error(
        run_cli(["table", "rollback", "nope", str(snapshots[0])], env, data_dir.parent, TIMEOUT),
        "no Iceberg table 'nope'",
    )
    _one_line_error(
        run_cli(["table", "rollback", "transactions", "12345"], env, data_dir.parent, TIMEOUT),
        "has no snapshot 12345",
        "table history transactions",
    )
    assert store.current_snapshot_id(tx.TABLE) == snapshots[1] and _ids(warehouse) == ids_a | ids_b


def test_an_empty_data_dir_has_no_table_yet(data_dir: Path) -> None:
    env = cli_env(data_dir.parent, {"ECOMMERCE_ENV": "local"})
    _one_line_error(
        run_cli(["table", "history", "transactions"], env, data_dir.parent, TIMEOUT),
        "no Iceberg table 'transactions'",
        "tables: none yet",
    )


def test_the_delete_half_of_a_partition_overwrite_is_marked_and_never_rolled_back_to(
    local_resources: dict, data_dir: Path
) -> None:
    lake, store = local_resources["lake"], local_resources["iceberg"]
    env = cli_env(data_dir.parent, {"ECOMMERCE_ENV": "local"})
    _land(lake, DAY_A, 2)
    objects = list(lake.list_objects(f"landing/transactions/date={DAY_A}/"))
    for _ in range(2):  # a re-run: its commit is a delete snapshot and an append snapshot
        tx.transform_partition(lake, DAY_A, objects, tables=store)
    snapshots = [s.snapshot_id for s in store.history(tx.TABLE)]

    _, rows = _history(run_cli(["table", "history", "transactions"], env, data_dir.parent, TIMEOUT))
    assert [(int(r["snapshot_id"]), r["current"], r["operation"], r["total"]) for r in rows] == [
        (snapshots[0], "", "append", "2"),
        (snapshots[1], "~", "delete", "0"),
        (snapshots[2], "*", "append", "2"),
    ]
    _one_line_error(
        run_cli(["table", "rollback", "transactions", str(snapshots[1])], env, data_dir.parent, TIMEOUT),
        "middle of a commit",
        f"ends at snapshot {snapshots[2]}",
    )
    assert store.current_snapshot_id(tx.TABLE) == snapshots[2]
    # the first commit's only snapshot is a whole state
    back = run_cli(["table", "rollback", "transactions", str(snapshots[0])], env, data_dir.parent, TIMEOUT)
    assert back.returncode == 0 and "rows 2 -> 2" in back.stdout, back.show()
    assert store.current_snapshot_id(tx.TABLE) == snapshots[0]


def test_on_aws_history_and_rollback_go_through_glue(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ecommerce_assets.settings import Settings
    from ecommerce_assets.storage.build import build_storage

    bucket, database = f"lake-{uuid.uuid4().hex[:12]}", f"db_{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name=MOTO_REGION).create_bucket(Bucket=bucket)
    settings = {
        "ECOMMERCE_ENV": "aws",
        "AWS_ENDPOINT_URL": moto_endpoint,
        "ECOMMERCE_S3_BUCKET": bucket,
        "ECOMMERCE_S3_PREFIX": "lake",
        "ECOMMERCE_GLUE_DATABASE": database,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": MOTO_REGION,
        "AWS_REGION": MOTO_REGION,
    }
    for name, value in {**settings, "ECOMMERCE_DATA_DIR": str(tmp_path / "data")}.items():
        monkeypatch.setenv(name, value)
    storage = build_storage(Settings())
    lake, store = storage["lake"], storage["iceberg"]
    assert store.catalog_kind == "glue"
    for day, n in ((DAY_A, 2), (DAY_B, 3)):
        _land(lake, day, n)
        objects = list(lake.list_objects(f"landing/transactions/date={day}/"))
        tx.transform_partition(lake, day, objects, tables=store, properties={"dagster.run-id": f"run-{day}"})
    snapshots = [s.snapshot_id for s in store.history(tx.TABLE)]
    env = cli_env(tmp_path, settings)

    _, rows = _history(run_cli(["table", "history", "transactions"], env, tmp_path, TIMEOUT))
    assert [(int(r["snapshot_id"]), r["partition"], r["run_id"], r["total"], r["current"]) for r in rows] == [
        (snapshots[0], DAY_A, f"run-{DAY_A}", "2", ""),
        (snapshots[1], DAY_B, f"run-{DAY_B}", "5", "*"),
    ]

    back = run_cli(["table", "rollback", "transactions", str(snapshots[0])], env, tmp_path, TIMEOUT)
    assert back.returncode == 0 and "rows 5 -> 2" in back.stdout, back.show()
    glue = boto3.client("glue", endpoint_url=moto_endpoint, region_name=MOTO_REGION)
    parameters = glue.get_table(DatabaseName=database, Name=tx.TABLE)["Table"]["Parameters"]
    assert parameters["table_type"] == "ICEBERG"
    assert parameters["metadata_location"] == store.metadata_location(tx.TABLE) in back.stdout
    assert store.read(tx.TABLE).num_rows == 2 and store.current_snapshot_id(tx.TABLE) == snapshots[0]
    # what the analytics bind: the table's current snapshot, read from S3 by the lake's engine
    con = lake.engine()
    try:
        tx.bind_iceberg(con, store)
        assert con.execute("SELECT count(*) FROM tx").fetchone() == (2,)
    finally:
        con.close()

    _one_line_error(
        run_cli(["table", "rollback", "transactions", "7"], env, tmp_path, TIMEOUT), "has no snapshot 7"
    )
    _one_line_error(
        run_cli(["table", "history", "orders"], env, tmp_path, TIMEOUT),
        f"Glue database {database}",
        "tables: transactions",
    )
