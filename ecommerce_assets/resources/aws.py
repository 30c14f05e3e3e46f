"""AWS mode's resources, under the same keys as local mode.

``lake`` is the S3 lake and ``warehouse`` is PostgreSQL, Redshift or Athena (``ECOMMERCE_WAREHOUSE``).
Every other key comes from the same builder functions local mode uses (``build_stream``,
``build_kv_store``, ...): each of them dispatches on ``settings.env`` and returns its aws implementation
(Kinesis, DynamoDB, SNS/SQS, the real catalog API). AWS-only extras: ``glue_catalog`` and
``pipes_lambda_client`` (used by ``ecommerce_assets/defs/aws/``).

The warehouse DSN should carry no password: libpq reads ``PGPASSWORD`` / ``~/.pgpass`` (or use IAM auth),
so nothing secret appears in the resource config the Dagster UI shows.
"""

from __future__ import annotations

from typing import Any

import boto3
from dagster_aws.pipes import PipesLambdaClient
from dagster_aws.s3 import S3Resource

from ecommerce_assets.resources.aws_warehouse import (
    AthenaWarehouse,
    DsnPasswordError,
    PostgresWarehouse,
    RedshiftWarehouse,
)
from ecommerce_assets.resources.glue_catalog import GlueCatalog
from ecommerce_assets.resources.s3_lake import S3Lake
from ecommerce_assets.resources.warehouse import Warehouse
from ecommerce_assets.settings import Settings

WAREHOUSE_KINDS = ("postgres", "redshift", "athena")


def build_s3_lake(settings: Settings) -> S3Lake:
    if not settings.s3_bucket:
        raise ValueError("aws mode needs ECOMMERCE_S3_BUCKET (the lake's bucket)")
    return S3Lake(
        bucket=settings.s3_bucket,
        prefix=settings.s3_prefix,
        s3=S3Resource(region_name=settings.aws_region, endpoint_url=settings.aws_endpoint_url),
        duckdb_memory_limit=settings.duckdb_memory_limit,
        duckdb_threads=settings.duckdb_threads,
    )


def build_glue_catalog(settings: Settings) -> GlueCatalog:
    return GlueCatalog(
        region_name=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url,
        default_database=settings.glue_database,
    )


def build_aws_warehouse(settings: Settings, lake: S3Lake) -> Warehouse:
    """The warehouse named by ``ECOMMERCE_WAREHOUSE`` (postgres | redshift | athena)."""
    kind = settings.warehouse_kind
    if kind not in WAREHOUSE_KINDS:
        raise ValueError(f"in aws mode ECOMMERCE_WAREHOUSE must be one of {', '.join(WAREHOUSE_KINDS)}; got {kind!r}")
    if kind == "athena":
        return AthenaWarehouse(
            lake=lake,
            glue=build_glue_catalog(settings),
            workgroup=settings.athena_workgroup,
            output_location=settings.athena_output,
            region_name=settings.aws_region,
            endpoint_url=settings.aws_endpoint_url,
            default_schema=settings.glue_database,
        )
    if not settings.warehouse_dsn:
        raise ValueError(f"ECOMMERCE_WAREHOUSE={kind} needs ECOMMERCE_WAREHOUSE_DSN (a libpq connection string)")
    if kind == "redshift":
        if not settings.redshift_iam_role:
            raise ValueError("ECOMMERCE_WAREHOUSE=redshift needs ECOMMERCE_REDSHIFT_IAM_ROLE (the role COPY assumes)")
        return RedshiftWarehouse(dsn=settings.warehouse_dsn, lake=lake, iam_role=settings.redshift_iam_role)
    return PostgresWarehouse(dsn=settings.warehouse_dsn, lake=lake)


def build_aws(settings: Settings) -> dict[str, Any]:
    """Every resource for aws mode, under the keys of ``build_local_resources``.

    A resource whose settings are missing (no bucket, no DSN, ...) becomes an ``UnconfiguredResource``:
    the code location still loads, and only the steps that use it fail, naming the setting.
    """
    from ecommerce_assets.resources import build_local_resources
    from ecommerce_assets.resources.unconfigured import UnconfiguredResource

    if settings.env != "aws":
        raise ValueError("build_aws needs settings with env='aws'")
    # the other builders dispatch on settings.env; only the lake and warehouse are built here
    resources = build_local_resources(settings)
    try:
        lake: S3Lake | None = build_s3_lake(settings)
        resources["lake"] = lake
    except ValueError as exc:
        lake = None
        resources["lake"] = UnconfiguredResource(resource_key="lake", problem=str(exc))
    if lake is None:
        resources["warehouse"] = UnconfiguredResource(resource_key="warehouse", problem="it needs the lake: set ECOMMERCE_S3_BUCKET")
    else:
        try:
            resources["warehouse"] = build_aws_warehouse(settings, lake)
        except (ValueError, DsnPasswordError) as exc:
            resources["warehouse"] = UnconfiguredResource(resource_key="warehouse", problem=str(exc))
    left_local = sorted(k for k, r in resources.items() if type(r).__name__.startswith(("Local", "DuckDB")))
    if left_local:
        raise RuntimeError(f"aws mode has no aws implementation for resource(s) {left_local}")
    resources["glue_catalog"] = build_glue_catalog(settings)
    resources["pipes_lambda_client"] = PipesLambdaClient(
        client=boto3.client("lambda", region_name=settings.aws_region, endpoint_url=settings.aws_endpoint_url)
    )
    return resources
