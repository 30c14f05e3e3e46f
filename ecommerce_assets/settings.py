"""The one place the environment is read.

Every path, bucket, port and the local/aws switch is derived here from environment variables, so
assets, resources, sensors and the CLI never re-decide them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Environment = Literal["local", "aws"]
ENVIRONMENTS: tuple[str, ...] = ("local", "aws")


@dataclass(frozen=True)
class Settings:
    """Settings resolved from the environment (see README, "Settings")."""

    env: Environment = "local"
    data_dir: Path = field(default_factory=lambda: Path("data"))
    # seller catalog API (issue: catalog sourcing)
    catalog_api_url: str | None = None
    catalog_api_host: str = "real-time-amazon-data.p.rapidapi.com"
    sellers: tuple[str, ...] = ()
    # products REST API (issue: orders ELT); None -> the demo starts the local simulator
    products_api_url: str | None = None
    # dbt target: duckdb locally, else the warehouse kind (postgres|redshift|athena)
    dbt_target: str = "duckdb"
    # alerts in aws mode: an SNS topic and an SQS dead-letter queue for failed runs
    alerts_topic_arn: str | None = None
    alerts_dlq_url: str | None = None
    catalog_api_key_set: bool = False  # whether ECOMMERCE_CATALOG_API_KEY is set (the value is never read here)
    catalog_sim_port: int = 8765  # the local catalog simulator's default port (ECOMMERCE_CATALOG_SIM_PORT)
    catalog_max_pages: int = 20  # stop paging a seller after this many pages (ECOMMERCE_CATALOG_MAX_PAGES)
    sellers_file: Path | None = None  # sellers config (ECOMMERCE_SELLERS_FILE; default: the packaged sample)
    marketplace_fee_rate: float = 0.15  # marketplace fee as a share of the sale price (ECOMMERCE_MARKETPLACE_FEE_RATE)
    # aws mode
    s3_bucket: str | None = None
    s3_prefix: str = ""
    aws_endpoint_url: str | None = None
    warehouse_kind: str = "duckdb"
    warehouse_dsn: str | None = None
    aws_region: str = "us-east-1"
    redshift_iam_role: str | None = None
    glue_database: str = "ecommerce"
    athena_workgroup: str = "primary"
    athena_output: str | None = None  # s3:// location of Athena results (default: <lake>/athena-results/)
    dlq_url: str | None = None  # SQS dead-letter queue (URL or name) for the Lambda handlers
    dagster_url: str | None = None  # Dagster webserver the S3-arrival Lambda launches runs on
    dagster_job: str | None = None  # the job that Lambda launches
    dagster_location: str | None = None  # its code location (needed when the webserver has several)
    transform_lambda: str | None = None  # Lambda function Dagster runs transforms in (Pipes)
    # streaming ingestion (issue: streaming): stream name/shards, micro-batch size, key-value tables
    stream_name: str = "ecommerce-orders"
    stream_shards: int = 4
    stream_batch_records: int = 500
    kv_table_prefix: str = ""
    ingest_api_url: str = "http://127.0.0.1:8000"
    # DuckDB engine bounds for the heavy transforms
    duckdb_memory_limit: str = "2GB"
    duckdb_threads: int = 2
    # arrival sensors and the transactions generator (issue: event-driven transactions)
    sensor_interval_seconds: int = 30
    generator_interval_minutes: int = 5
    generator_running: bool = False

    @property
    def lake_dir(self) -> Path:
        """The local lake folder: ``<ECOMMERCE_DATA_DIR>/lake``."""
        return self.data_dir / "lake"

    @property
    def warehouse_path(self) -> Path:
        """The local DuckDB warehouse: ``<ECOMMERCE_DATA_DIR>/warehouse.duckdb``."""
        return self.data_dir / "warehouse.duckdb"

    @property
    def state_dir(self) -> Path:
        """Local files the product keeps for itself (locks, local stream, key-value store, alerts)."""
        return self.data_dir / "state"


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def get_settings() -> Settings:
    """Read the settings from the environment; raise a clear error on a bad ``ECOMMERCE_ENV``."""
    env = (_env("ECOMMERCE_ENV", "local") or "local").lower()
    if env not in ENVIRONMENTS:
        raise ValueError(f"ECOMMERCE_ENV must be one of {', '.join(ENVIRONMENTS)}; got {env!r}")
    sellers_raw = _env("ECOMMERCE_SELLERS")
    sellers = tuple(s.strip() for s in sellers_raw.split(",") if s.strip()) if sellers_raw else ()
    warehouse_kind = (_env("ECOMMERCE_WAREHOUSE") or ("duckdb" if env == "local" else "postgres")).lower()
    return Settings(
        env=env,  # type: ignore[arg-type]
        data_dir=Path(_env("ECOMMERCE_DATA_DIR", "data") or "data").expanduser().resolve(),
        catalog_api_url=_env("ECOMMERCE_CATALOG_API_URL"),
        catalog_api_host=_env("ECOMMERCE_CATALOG_API_HOST", Settings.catalog_api_host) or "",
        sellers=sellers,
        products_api_url=_env("ECOMMERCE_PRODUCTS_API_URL"),
        dbt_target=(_env("ECOMMERCE_DBT_TARGET") or ("duckdb" if env == "local" else warehouse_kind)).lower(),
        alerts_topic_arn=_env("ECOMMERCE_ALERTS_TOPIC_ARN"),
        alerts_dlq_url=_env("ECOMMERCE_ALERTS_DLQ_URL"),
        catalog_api_key_set=_env("ECOMMERCE_CATALOG_API_KEY") is not None,
        catalog_sim_port=int(_env("ECOMMERCE_CATALOG_SIM_PORT", "8765") or "8765"),
        catalog_max_pages=int(_env("ECOMMERCE_CATALOG_MAX_PAGES", "20") or "20"),
        sellers_file=Path(sf).expanduser().resolve() if (sf := _env("ECOMMERCE_SELLERS_FILE")) else None,
        marketplace_fee_rate=float(_env("ECOMMERCE_MARKETPLACE_FEE_RATE", "0.15") or "0.15"),
        s3_bucket=_env("ECOMMERCE_S3_BUCKET"),
        s3_prefix=(_env("ECOMMERCE_S3_PREFIX", "") or "").strip("/"),
        aws_endpoint_url=_env("AWS_ENDPOINT_URL"),
        warehouse_kind=warehouse_kind,
        warehouse_dsn=_env("ECOMMERCE_WAREHOUSE_DSN"),
        aws_region=_env("AWS_REGION") or _env("AWS_DEFAULT_REGION") or "us-east-1",
        redshift_iam_role=_env("ECOMMERCE_REDSHIFT_IAM_ROLE"),
        glue_database=_env("ECOMMERCE_GLUE_DATABASE", "ecommerce") or "ecommerce",
        athena_workgroup=_env("ECOMMERCE_ATHENA_WORKGROUP", "primary") or "primary",
        athena_output=_env("ECOMMERCE_ATHENA_OUTPUT"),
        dlq_url=_env("ECOMMERCE_DLQ_URL"),
        dagster_url=_env("ECOMMERCE_DAGSTER_URL"),
        dagster_job=_env("ECOMMERCE_DAGSTER_JOB"),
        dagster_location=_env("ECOMMERCE_DAGSTER_LOCATION"),
        transform_lambda=_env("ECOMMERCE_TRANSFORM_LAMBDA"),
        stream_name=_env("ECOMMERCE_STREAM_NAME", Settings.stream_name) or Settings.stream_name,
        stream_shards=int(_env("ECOMMERCE_STREAM_SHARDS", str(Settings.stream_shards)) or Settings.stream_shards),
        stream_batch_records=int(_env("ECOMMERCE_STREAM_BATCH_RECORDS", "500") or "500"),
        kv_table_prefix=_env("ECOMMERCE_KV_TABLE_PREFIX", "") or "",
        ingest_api_url=(_env("ECOMMERCE_INGEST_API_URL", Settings.ingest_api_url) or "").rstrip("/"),
        duckdb_memory_limit=_env("ECOMMERCE_DUCKDB_MEMORY_LIMIT", "2GB") or "2GB",
        duckdb_threads=int(_env("ECOMMERCE_DUCKDB_THREADS", "2") or "2"),
        sensor_interval_seconds=int(_env("ECOMMERCE_SENSOR_INTERVAL_SECONDS", "30") or "30"),
        generator_interval_minutes=int(_env("ECOMMERCE_GENERATOR_INTERVAL_MINUTES", "5") or "5"),
        generator_running=(_env("ECOMMERCE_GENERATOR_RUNNING", "0") or "0").lower() in ("1", "true", "yes", "on"),
    )
