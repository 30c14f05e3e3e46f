"""The warehouse password never enters Dagster's resource config (run snapshots, the UI's GraphQL).

A DSN that carries a password is refused, saying why and what to do instead; the password goes to libpq
through ``PGPASSWORD`` (and to dbt's profile variables from there), against a real PostgreSQL server.
"""

from __future__ import annotations

import dagster as dg
import pytest

from ecommerce_assets.resources.dbt import dbt_connection_env
from ecommerce_assets.settings import Settings
from ecommerce_assets.storage.lake import LocalLake
from ecommerce_assets.storage.warehouses.postgres import DsnPasswordError, PostgresWarehouse
from ecommerce_assets.storage.warehouses.redshift import RedshiftWarehouse

SECRET = "Pw-7f3c9e-not-for-snapshots"


@pytest.fixture
def lake(tmp_path) -> LocalLake:
    return LocalLake(base_dir=str(tmp_path / "lake"))


@pytest.mark.parametrize("dsn", [
    f"postgresql://etl:{SECRET}@db.example:5432/dev",
    f"host=db.example user=etl password={SECRET} dbname=dev",
    f"postgresql://etl@db.example/dev?password={SECRET}",
])
@pytest.mark.parametrize("cls", [PostgresWarehouse, RedshiftWarehouse])
def test_a_dsn_with_a_password_is_refused_with_why_and_what_instead(dsn: str, cls: type, lake: LocalLake) -> None:
    extra = {"iam_role": "arn:aws:iam::123456789012:role/r"} if cls is RedshiftWarehouse else {}
    with pytest.raises(DsnPasswordError) as info:
        cls(dsn=dsn, lake=lake, **extra)
    message = str(info.value)
    for why in ("run's snapshot", "GraphQL", "PGPASSWORD", "~/.pgpass", "IAM"):
        assert why in message
    assert SECRET not in message and SECRET not in repr(info.value)


def test_a_dsn_with_a_password_in_the_setting_fails_only_the_steps_that_use_it(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ecommerce_assets.resources import build_resources
    from ecommerce_assets.settings import get_settings

    for name, value in {"ECOMMERCE_ENV": "aws", "ECOMMERCE_S3_BUCKET": "lake", "ECOMMERCE_WAREHOUSE": "postgres",
                        "ECOMMERCE_DATA_DIR": str(tmp_path / "data"),
                        "ECOMMERCE_WAREHOUSE_DSN": f"postgresql://etl:{SECRET}@127.0.0.1:1/dev"}.items():
        monkeypatch.setenv(name, value)
    resources = build_resources(get_settings())

    @dg.asset
    def uses_warehouse(warehouse: dg.ResourceParam[PostgresWarehouse]) -> None:
        warehouse.query("SELECT 1")

    @dg.asset
    def uses_the_lake_only(lake: dg.ResourceParam[LocalLake]) -> str:
        return lake.uri("x")

    result = dg.materialize([uses_warehouse, uses_the_lake_only], resources=resources, raise_on_error=False)
    assert not result.success
    assert result.output_for_node("uses_the_lake_only") == "s3://lake/x"
    text = "".join(str(e) for e in result.all_events)
    assert "carries a password" in text and "ECOMMERCE_WAREHOUSE_DSN" in text
    assert SECRET not in text and SECRET not in repr(resources)


def test_password_from_pgpassword_reaches_libpq_and_dbt_never_the_config(
    postgres_db: str, lake: LocalLake, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setenv("PGPASSWORD", SECRET)
    wh = PostgresWarehouse(dsn=postgres_db, lake=lake)
    assert "dsn" not in repr(wh) and SECRET not in repr(wh)
    with wh.connect() as con:  # the server's trust auth accepts it; libpq sent the password it read
        assert con.execute("SELECT 1").fetchone() == (1,)
        assert con.info.password == SECRET

    # the resource config Dagster stores for a run: its snapshot holds the DSN, never the password
    instance = dg.DagsterInstance.ephemeral()
    seen: list[int] = []

    @dg.asset
    def reads_warehouse(warehouse: dg.ResourceParam[PostgresWarehouse]) -> None:
        seen.append(warehouse.query("SELECT 41 + 1 AS n").column("n")[0].as_py())

    result = dg.materialize([reads_warehouse], resources={"warehouse": wh}, instance=instance)
    assert result.success and seen == [42]
    run = instance.get_run_by_id(result.run_id)
    snapshot = dg.serialize_value(instance.get_job_snapshot(run.job_snapshot_id))
    assert '"required_resource_keys": ["warehouse"]' in snapshot  # the scan looks at the right place...
    assert SECRET not in snapshot  # ...and no part of the DSN is stored (the storage object has no config)
    assert postgres_db.split("@", 1)[1] not in snapshot
    assert SECRET not in dg.serialize_value(run.run_config)

    # dbt's profile variables: the connection from the DSN, the password from PGPASSWORD
    monkeypatch.setenv("ECOMMERCE_ENV", "aws")
    monkeypatch.setenv("ECOMMERCE_WAREHOUSE", "postgres")
    monkeypatch.setenv("ECOMMERCE_WAREHOUSE_DSN", postgres_db)
    env = dbt_connection_env(Settings())
    assert env["ECOMMERCE_PG_PASSWORD"] == SECRET
    assert env["ECOMMERCE_PG_USER"] == "postgres" and env["ECOMMERCE_PG_HOST"] == "127.0.0.1"
    monkeypatch.delenv("PGPASSWORD")
    assert "ECOMMERCE_PG_PASSWORD" not in dbt_connection_env(Settings())
    monkeypatch.setenv("ECOMMERCE_WAREHOUSE_DSN", postgres_db.replace("postgres@", f"postgres:{SECRET}@"))
    with pytest.raises(DsnPasswordError, match="PGPASSWORD"):
        dbt_connection_env(Settings())
