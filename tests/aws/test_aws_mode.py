"""aws mode as a whole: the same resource keys as local mode, and the aws-only assets against moto."""

from __future__ import annotations

import importlib
import sys

import dagster as dg
import pytest

from ecommerce_assets.resources import build_resources
from ecommerce_assets.resources.unconfigured import MissingSettingError, unconfigured
from ecommerce_assets.settings import get_settings
from ecommerce_assets.storage.s3_lake import S3Lake
from ecommerce_assets.storage.warehouses.postgres import PostgresWarehouse
from ecommerce_assets.storage.warehouses.redshift import RedshiftWarehouse


def fresh_aws_assets():
    sys.modules.pop("ecommerce_assets.defs.aws.assets", None)
    return importlib.import_module("ecommerce_assets.defs.aws.assets")


def test_aws_resources_have_the_local_keys_and_no_local_implementation(aws_env, postgres_db, monkeypatch, tmp_path):
    monkeypatch.setenv("ECOMMERCE_WAREHOUSE", "postgres")
    monkeypatch.setenv("ECOMMERCE_WAREHOUSE_DSN", postgres_db)
    aws = build_resources(get_settings())
    monkeypatch.setenv("ECOMMERCE_ENV", "local")
    local = build_resources(get_settings())
    assert set(local) <= set(aws)
    assert isinstance(aws["lake"], S3Lake) and isinstance(aws["warehouse"], PostgresWarehouse)
    assert not [k for k, r in aws.items() if type(r).__name__.startswith(("Local", "DuckDB"))]

    monkeypatch.setenv("ECOMMERCE_ENV", "aws")
    # a missing setting fails only where the warehouse is used, naming the setting (the code location loads)
    monkeypatch.setenv("ECOMMERCE_WAREHOUSE", "redshift")
    assert "ECOMMERCE_REDSHIFT_IAM_ROLE" in unconfigured(build_resources(get_settings()))["warehouse"]
    monkeypatch.setenv("ECOMMERCE_REDSHIFT_IAM_ROLE", "arn:aws:iam::1:role/r")
    assert isinstance(build_resources(get_settings())["warehouse"], RedshiftWarehouse)
    monkeypatch.setenv("ECOMMERCE_WAREHOUSE", "duckdb")
    assert "ECOMMERCE_WAREHOUSE must be one of" in unconfigured(build_resources(get_settings()))["warehouse"]
    monkeypatch.delenv("ECOMMERCE_S3_BUCKET")
    missing = unconfigured(build_resources(get_settings()))
    assert "ECOMMERCE_S3_BUCKET" in missing["lake"] and "ECOMMERCE_S3_BUCKET" in missing["warehouse"]
    with pytest.raises(MissingSettingError, match="ECOMMERCE_S3_BUCKET"):
        build_resources(get_settings())["lake"].list_objects("landing/")


def test_glue_processed_tables_asset_registers_every_processed_table(aws_env, postgres_db, monkeypatch):
    monkeypatch.setenv("ECOMMERCE_WAREHOUSE", "postgres")
    monkeypatch.setenv("ECOMMERCE_WAREHOUSE_DSN", postgres_db)
    aws_assets = fresh_aws_assets()  # defined only in aws mode
    resources = build_resources(get_settings())
    lake = resources["lake"]
    con = lake.engine()
    con.execute(f"COPY (SELECT 1 AS a, '2011-01-01' AS invoice_date) TO '{lake.uri('processed/r/cleaned')}' "  # noqa: S608
                "(FORMAT parquet, PARTITION_BY (invoice_date))")
    con.execute(f"COPY (SELECT 'x' AS k) TO '{lake.uri('processed/r/gold/customers.parquet')}'")  # noqa: S608
    con.execute(f"COPY (SELECT 1 AS k) TO '{lake.uri('processed/r/_manifests/x.parquet')}'")  # noqa: S608
    result = dg.materialize([aws_assets.glue_processed_tables], resources=resources)
    assert result.success
    meta = result.asset_materializations_for_node("aws__glue_processed_tables")[0].metadata
    tables = {r["table"]: r for r in meta["registrations"].value}
    db = get_settings().glue_database
    assert set(tables) == {f"{db}.r_cleaned", f"{db}.r_gold"}
    assert tables[f"{db}.r_cleaned"]["partitions"] == 1
    glue = resources["table_catalog"]
    assert [k["Name"] for k in glue.get_table(db, "r_cleaned")["PartitionKeys"]] == ["invoice_date"]

    monkeypatch.setenv("ECOMMERCE_ENV", "local")
    assert not hasattr(fresh_aws_assets(), "glue_processed_tables")
