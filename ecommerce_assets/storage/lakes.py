"""The lake of the environment, chosen from the settings: a folder locally, a bucket and prefix on AWS.

Kept apart from ``storage.build`` so that a Lambda handler that needs only the lake imports only the lake
(the Lambda build follows every import of a module it packs).
"""

from __future__ import annotations

from ecommerce_assets.settings import Settings
from ecommerce_assets.storage.base import StorageSettingError
from ecommerce_assets.storage.lake import Lake, LocalLake


def build_lake(settings: Settings) -> Lake:
    """The lake: ``<ECOMMERCE_DATA_DIR>/lake`` locally, ``s3://<ECOMMERCE_S3_BUCKET>/<prefix>`` on AWS."""
    if settings.env != "aws":
        return LocalLake(base_dir=str(settings.lake_dir), duckdb_memory_limit=settings.duckdb_memory_limit,
                         duckdb_threads=settings.duckdb_threads)
    from ecommerce_assets.storage.s3_lake import S3Lake

    if not settings.s3_bucket:
        raise StorageSettingError("aws mode needs ECOMMERCE_S3_BUCKET (the lake's bucket)")
    return S3Lake(bucket=settings.s3_bucket, prefix=settings.s3_prefix, region_name=settings.aws_region,
                  endpoint_url=settings.aws_endpoint_url, duckdb_memory_limit=settings.duckdb_memory_limit,
                  duckdb_threads=settings.duckdb_threads)
