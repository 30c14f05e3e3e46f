"""Resources, chosen once by ``ECOMMERCE_ENV`` and always offered under the same keys.

| key | local | aws |
| --- | --- | --- |
| ``lake`` | ``LocalLake`` (a folder) | ``S3Lake`` (bucket + prefix) |
| ``warehouse`` | ``DuckDBWarehouse`` (a file) | PostgreSQL / Redshift / Athena |
"""

from __future__ import annotations

from typing import Any

from ecommerce_assets.resources.lake import Lake, LakeObject, LocalLake
from ecommerce_assets.resources.warehouse import DuckDBWarehouse, Warehouse
from ecommerce_assets.settings import Settings, get_settings

__all__ = ["Lake", "LakeObject", "LocalLake", "DuckDBWarehouse", "Warehouse", "build_resources"]


def build_local_resources(settings: Settings) -> dict[str, Any]:
    """The embedded default: a lake folder and a DuckDB file under ``ECOMMERCE_DATA_DIR``."""
    return {
        "lake": LocalLake(
            base_dir=str(settings.lake_dir),
            duckdb_memory_limit=settings.duckdb_memory_limit,
            duckdb_threads=settings.duckdb_threads,
        ),
        "warehouse": DuckDBWarehouse(database=str(settings.warehouse_path)),
    }


def build_aws_resources(settings: Settings) -> dict[str, Any]:
    """AWS mode: S3 lake, PostgreSQL/Redshift/Athena warehouse, Kinesis, DynamoDB, SNS/SQS."""
    from ecommerce_assets.resources.aws import build_aws  # imported only in aws mode

    return build_aws(settings)


def build_resources(settings: Settings | None = None) -> dict[str, Any]:
    """Every resource for the environment in ``settings`` (default: read from the environment)."""
    settings = settings or get_settings()
    if settings.env == "aws":
        return build_aws_resources(settings)
    return build_local_resources(settings)
