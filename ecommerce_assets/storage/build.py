"""Build the storage of the environment from the settings, with no Dagster import.

``ECOMMERCE_ENV`` chooses once: a lake folder, a DuckDB file, a SQLite stream and key-value store and
DuckDB views locally; S3, PostgreSQL / Redshift / Athena, Kinesis, DynamoDB and Glue on AWS. The processed
zone's Iceberg tables (``iceberg``) have a SQLite catalog locally and the Glue catalog on AWS. The Dagster
resources (``ecommerce_assets.resources``) and the Lambda handlers both start here.
"""

from __future__ import annotations

from typing import Any

from ecommerce_assets.settings import Settings
from ecommerce_assets.storage.base import StorageSettingError
from ecommerce_assets.storage.iceberg import build_iceberg
from ecommerce_assets.storage.kv_store import build_kv_store
from ecommerce_assets.storage.lake import Lake
from ecommerce_assets.storage.lakes import build_lake
from ecommerce_assets.storage.stream import build_stream
from ecommerce_assets.storage.warehouses.base import Warehouse
from ecommerce_assets.storage.warehouses.duckdb import DuckDBWarehouse

WAREHOUSE_KINDS = ("postgres", "redshift", "athena")


def build_glue_catalog(settings: Settings) -> Any:
    """The Glue Data Catalog (aws mode's table catalog)."""
    from ecommerce_assets.storage.glue_table_catalog import GlueCatalog

    return GlueCatalog(region_name=settings.aws_region, endpoint_url=settings.aws_endpoint_url,
                       default_database=settings.glue_database)


def build_table_catalog(settings: Settings) -> Any:
    """What makes the processed zone queryable by table name: DuckDB views locally, Glue on AWS."""
    if settings.env == "aws":
        return build_glue_catalog(settings)
    from ecommerce_assets.storage.table_catalog import DuckDBViewCatalog

    return DuckDBViewCatalog(database=str(settings.warehouse_path), extension_directory=extension_directory(settings))


def extension_directory(settings: Settings) -> str:
    """DuckDB's private extension folder (``<ECOMMERCE_DATA_DIR>/duckdb_extensions``): iceberg and avro, offline."""
    from ecommerce_assets.storage.iceberg import EXTENSION_DIR

    return str(settings.data_dir / EXTENSION_DIR)


def build_warehouse(settings: Settings, lake: Lake) -> Warehouse:
    """The warehouse: the DuckDB file locally; on AWS the one ``ECOMMERCE_WAREHOUSE`` names."""
    if settings.env != "aws":
        return DuckDBWarehouse(database=str(settings.warehouse_path), extension_directory=extension_directory(settings))
    from ecommerce_assets.storage.warehouses.athena import AthenaWarehouse
    from ecommerce_assets.storage.warehouses.postgres import PostgresWarehouse
    from ecommerce_assets.storage.warehouses.redshift import RedshiftWarehouse

    kind = settings.warehouse_kind
    if kind not in WAREHOUSE_KINDS:
        raise StorageSettingError(
            f"in aws mode ECOMMERCE_WAREHOUSE must be one of {', '.join(WAREHOUSE_KINDS)}; got {kind!r}")
    if kind == "athena":
        return AthenaWarehouse(lake=lake, glue=build_glue_catalog(settings), workgroup=settings.athena_workgroup,
                               output_location=settings.athena_output, region_name=settings.aws_region,
                               endpoint_url=settings.aws_endpoint_url, default_schema=settings.glue_database)
    if not settings.warehouse_dsn:
        raise StorageSettingError(
            f"ECOMMERCE_WAREHOUSE={kind} needs ECOMMERCE_WAREHOUSE_DSN (a libpq connection string)")
    if kind == "redshift":
        if not settings.redshift_iam_role:
            raise StorageSettingError(
                "ECOMMERCE_WAREHOUSE=redshift needs ECOMMERCE_REDSHIFT_IAM_ROLE (the role COPY assumes)")
        return RedshiftWarehouse(dsn=settings.warehouse_dsn, lake=lake, iam_role=settings.redshift_iam_role)
    return PostgresWarehouse(dsn=settings.warehouse_dsn, lake=lake)


def build_storage(settings: Settings) -> dict[str, Any]:
    """Every storage object of the environment, under the resource keys the assets use.

    A part whose settings are missing or wrong is left out and its problem given under ``problems``
    (key -> message), so that one pipeline's missing setting never stops another's storage.
    """
    refusals: tuple[type[Exception], ...] = (StorageSettingError,)
    if settings.env == "aws":
        from ecommerce_assets.storage.warehouses.postgres import DsnPasswordError

        refusals = (StorageSettingError, DsnPasswordError)
    parts: dict[str, Any] = {"stream": build_stream(settings), "kv_store": build_kv_store(settings),
                             "table_catalog": build_table_catalog(settings)}
    problems: dict[str, str] = {}
    try:
        parts["iceberg"] = build_iceberg(settings)
    except StorageSettingError as exc:
        problems["iceberg"] = str(exc)
    try:
        parts["lake"] = build_lake(settings)
    except StorageSettingError as exc:
        problems["lake"] = str(exc)
        problems["warehouse"] = "it needs the lake: set ECOMMERCE_S3_BUCKET"
    if "lake" in parts:
        try:
            parts["warehouse"] = build_warehouse(settings, parts["lake"])
        except refusals as exc:
            problems["warehouse"] = str(exc)
    parts["problems"] = problems
    return parts
