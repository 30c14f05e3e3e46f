"""The Dagster resources, chosen once by ``ECOMMERCE_ENV`` and always offered under the same keys.

| key | local | aws |
| --- | --- | --- |
| ``lake`` | ``LocalLake`` (a folder) | ``S3Lake`` (bucket + prefix) |
| ``warehouse`` | ``DuckDBWarehouse`` (a file) | PostgreSQL / Redshift / Athena |
| ``stream`` | ``LocalStream`` (SQLite) | ``KinesisStream`` |
| ``kv_store`` | ``LocalKeyValueStore`` (SQLite) | ``DynamoDBKeyValueStore`` |
| ``table_catalog`` | ``DuckDBViewCatalog`` (views) | ``GlueCatalog`` |
| ``catalog_api`` | the seller catalog API client (``ConfigurableResource``, key as ``EnvVar``) | same |
| ``products_api`` | the products REST API client | same |
| ``dbt`` | ``DbtCliResource`` over ``dbt/`` | same, against the aws warehouse |
| ``notifier`` | alerts to a local file | SNS (+ SQS dead letters) |
| ``pipes_lambda_client`` | (aws only) | ``PipesLambdaClient`` |
| ``engine`` | ``TransformEngine``: ``ECOMMERCE_ENGINE`` (``duckdb``, or ``spark``: PySpark through Pipes) | same; Spark on Glue or EMR Serverless |

The first five are plain storage objects (``ecommerce_assets.storage``, no Dagster import, shared with the
Lambda handlers); assets take them as ``dg.ResourceParam[...]``. A resource whose settings are missing
becomes an ``UnconfiguredResource``: the code location loads, and only a step that uses it fails, naming
the setting.
"""

from __future__ import annotations

from typing import Any

from ecommerce_assets.settings import Settings, get_settings
from ecommerce_assets.storage.build import build_storage

__all__ = ["build_resources"]


def build_resources(settings: Settings | None = None, *, dbt: bool = True) -> dict[str, Any]:
    """Every resource for the environment in ``settings`` (default: read from the environment); without the
    ``dbt`` CLI resource when ``dbt`` is false (definitions without the orders pipeline: dagster-dbt and dbt-core
    are not imported)."""
    from ecommerce_assets.resources.catalog_api import catalog_api_resource
    from ecommerce_assets.resources.dbt import build_dbt_resource
    from ecommerce_assets.resources.notifier import build_notifier
    from ecommerce_assets.resources.products_api import ProductsApi
    from ecommerce_assets.resources.spark import TransformEngine
    from ecommerce_assets.resources.unconfigured import UnconfiguredResource

    settings = settings or get_settings()
    storage = build_storage(settings)
    problems: dict[str, str] = storage.pop("problems")
    resources: dict[str, Any] = dict(storage)
    for key, problem in problems.items():
        resources[key] = UnconfiguredResource(resource_key=key, problem=problem)
    resources["catalog_api"] = catalog_api_resource(settings)
    resources["products_api"] = (
        ProductsApi(base_url=settings.products_api_url) if settings.products_api_url
        else UnconfiguredResource(resource_key="products_api",
                                  problem="set ECOMMERCE_PRODUCTS_API_URL to fetch the products API")
    )
    if dbt:
        resources["dbt"] = build_dbt_resource(settings)
    resources["notifier"] = build_notifier(settings)
    resources["engine"] = TransformEngine(
        kind=settings.engine, spark_master=settings.spark_master, spark_driver_memory=settings.spark_driver_memory,
        platform=settings.spark_platform,
        s3_bucket=settings.s3_bucket, s3_prefix=settings.s3_prefix, region_name=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url, role_arn=settings.spark_role_arn,
        emr_application_id=settings.emr_application_id,
    )
    if settings.env == "aws":
        import boto3
        from dagster_aws.pipes import PipesLambdaClient

        resources["pipes_lambda_client"] = PipesLambdaClient(
            client=boto3.client("lambda", region_name=settings.aws_region, endpoint_url=settings.aws_endpoint_url)
        )
    return resources
