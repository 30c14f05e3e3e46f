"""The one place the environment is read: every setting, declared once.

Each field is one environment variable (its name is the field's alias), with its default, the pipeline
that needs it and a description. The docs' settings tables, ``ecommerce-assets doctor`` and the
settings test are all derived from this declaration, so a setting cannot be read without being documented.
A bad value fails at start with one line per problem (``SettingsError``), never as a traceback mid-run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Environment = Literal["local", "aws"]
ENVIRONMENTS: tuple[str, ...] = ("local", "aws")

# The pipelines a setting can belong to ("platform": every pipeline; "aws": aws mode's lake and
# warehouse; "deploy": the deployed daemon, Lambda handlers and ECS run launcher).
PIPELINES: tuple[str, ...] = ("retail", "catalog", "orders", "transactions", "stream")
GROUPS: tuple[str, ...] = ("platform", "aws", "alerts", *PIPELINES, "deploy")
DEFAULT_STREAM_NAME = "ecommerce-orders"
_DUCKDB_SIZE = re.compile(r"^\s*\d+(\.\d+)?\s*(B|KB|KiB|MB|MiB|GB|GiB|TB|TiB)\s*$", re.IGNORECASE)
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def setting(default: Any, env: str | tuple[str, ...], group: str, description: str, **kw: Any) -> Any:
    """Declare one setting: its environment variable(s), the group (pipeline) that needs it, what it means."""
    names = (env,) if isinstance(env, str) else env
    return Field(
        default,
        validation_alias=AliasChoices(*names),
        description=description,
        json_schema_extra={"env": list(names), "group": group},
        **kw,
    )


def _csv(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return tuple(value)


class SettingsError(ValueError):
    """One or more settings are invalid; ``problems`` has one line per setting."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid settings:\n" + "\n".join(f"  {p}" for p in problems))


class Settings(BaseSettings):
    """Settings resolved from the environment (README "Settings"; docs/aws.md lists them per pipeline)."""

    model_config = SettingsConfigDict(frozen=True, env_ignore_empty=True, extra="ignore")

    # --- platform
    env: Environment = setting("local", "ECOMMERCE_ENV", "platform", "`local` (a lake folder + DuckDB) or `aws`")
    data_dir: Path = setting(
        Path("data"), "ECOMMERCE_DATA_DIR", "platform",
        "local lake (`lake/`), DuckDB warehouse, local state; the CLI's default `DAGSTER_HOME`",
    )
    dagster_home: Path | None = setting(
        None, "DAGSTER_HOME", "platform", "Dagster's runs and sensor cursors (default `<ECOMMERCE_DATA_DIR>/dagster_home`)"
    )
    duckdb_memory_limit: str = setting("2GB", "ECOMMERCE_DUCKDB_MEMORY_LIMIT", "platform", "memory bound of the transform engine")
    duckdb_threads: int = setting(2, "ECOMMERCE_DUCKDB_THREADS", "platform", "threads of the transform engine", ge=1, le=256)
    sensors: Literal["on", "off"] | None = setting(
        None, "ECOMMERCE_SENSORS", "platform",
        "`on`: arrival sensors and automation run by default in the daemon; `off`: they start stopped "
        "(default: `on` locally, `off` in aws mode; the deploy config sets `on`)",
    )
    sensor_interval_seconds: int = setting(
        30, "ECOMMERCE_SENSOR_INTERVAL_SECONDS", "platform", "how often the arrival sensors list the lake", ge=1
    )
    engine: Literal["duckdb", "spark"] = setting(
        "duckdb", "ECOMMERCE_ENGINE", "platform",
        "engine of the heavy transforms (Online Retail cleaning, transactions JSON -> processed): `duckdb` in the run "
        "worker, or `spark`, PySpark jobs "
        "launched through Dagster Pipes (needs `pip install 'ecommerce-assets[spark]'` and a JDK)",
    )
    spark_master: str = setting(
        "local[*]", "ECOMMERCE_SPARK_MASTER", "platform", "the Spark master of the local Spark jobs (`ECOMMERCE_ENGINE=spark`)"
    )
    spark_driver_memory: str = setting(
        "2g", "ECOMMERCE_SPARK_DRIVER_MEMORY", "platform",
        "heap of the local Spark jobs' JVM (`spark.driver.memory`; local mode runs everything in the driver)",
    )
    spark_platform: Literal["local", "glue", "emr-serverless"] = setting(
        "local", "ECOMMERCE_SPARK_PLATFORM", "platform",
        "where the Spark jobs run: `local` (PySpark here, a local lake), `glue` (an AWS Glue 5 job) or "
        "`emr-serverless` (aws mode: the job reads and writes the S3 lake)",
    )
    spark_role_arn: str | None = setting(
        None, "ECOMMERCE_SPARK_ROLE_ARN", "aws", "the IAM role the Glue job or EMR Serverless job runs as (`glue`, `emr-serverless`)"
    )
    emr_application_id: str | None = setting(
        None, "ECOMMERCE_EMR_APPLICATION_ID", "aws", "the EMR Serverless application of the Spark jobs (`emr-serverless`)"
    )
    # --- aws mode: lake and warehouse
    s3_bucket: str | None = setting(None, "ECOMMERCE_S3_BUCKET", "aws", "the lake's S3 bucket")
    s3_prefix: str = setting("", "ECOMMERCE_S3_PREFIX", "aws", "key prefix of the lake in the bucket")
    aws_endpoint_url: str | None = setting(
        None, "AWS_ENDPOINT_URL", "aws", "an S3/AWS-compatible endpoint for every client (moto in the tests)"
    )
    aws_region: str = setting(
        "us-east-1", ("AWS_REGION", "AWS_DEFAULT_REGION"), "aws", "region of every AWS client (`AWS_DEFAULT_REGION` too)"
    )
    warehouse: Literal["duckdb", "postgres", "redshift", "athena"] | None = setting(
        None, "ECOMMERCE_WAREHOUSE", "aws", "the warehouse: `postgres`, `redshift` or `athena` in aws mode (default `postgres`)"
    )
    warehouse_dsn: str | None = setting(
        None, "ECOMMERCE_WAREHOUSE_DSN", "aws",
        "libpq connection string of PostgreSQL/Redshift, without a password (use `PGPASSWORD` or `~/.pgpass`); "
        "dbt's connection variables (`ECOMMERCE_PG_*`, `ECOMMERCE_REDSHIFT_*`) are derived from it",
    )
    redshift_iam_role: str | None = setting(
        None, "ECOMMERCE_REDSHIFT_IAM_ROLE", "aws", "the role Redshift's COPY assumes (redshift only)"
    )
    glue_database: str = setting("ecommerce", "ECOMMERCE_GLUE_DATABASE", "aws", "Glue database of the lake's tables")
    athena_workgroup: str = setting("primary", "ECOMMERCE_ATHENA_WORKGROUP", "aws", "Athena workgroup (athena only)")
    athena_output: str | None = setting(
        None, "ECOMMERCE_ATHENA_OUTPUT", "aws", "s3:// location of Athena results (default `<lake>/athena-results/`)"
    )
    dbt_target_override: str | None = setting(
        None, "ECOMMERCE_DBT_TARGET", "orders", "dbt target (default: `duckdb` locally, else the warehouse kind)"
    )
    dbt_env: Literal["dev", "ci", "prod"] = setting(
        "prod", "ECOMMERCE_DBT_ENV", "orders",
        "which dbt environment's schemas the marts build in (`dev`, `ci`, `prod`), so they never collide",
    )
    # --- alerts
    alerts_topic_arn: str | None = setting(
        None, "ECOMMERCE_ALERTS_TOPIC_ARN", "alerts",
        "SNS topic for run alerts in aws mode (optional: without it alerts go to the log, with one warning)",
    )
    alerts_dlq_url: str | None = setting(
        None, "ECOMMERCE_ALERTS_DLQ_URL", "alerts", "SQS dead-letter queue of failed runs' alerts (optional)"
    )
    # --- seller catalog sourcing
    catalog_api_url: str | None = setting(
        None, "ECOMMERCE_CATALOG_API_URL", "catalog", "the seller catalog API's base URL (turns the catalog fetch on)"
    )
    catalog_api_key: SecretStr | None = setting(
        None, "ECOMMERCE_CATALOG_API_KEY", "catalog", "the catalog API key (secret: kept as an env reference, never printed)"
    )
    catalog_api_host: str = setting(
        "real-time-amazon-data.p.rapidapi.com", "ECOMMERCE_CATALOG_API_HOST", "catalog", "the `x-rapidapi-host` header"
    )
    sellers: Annotated[tuple[str, ...], NoDecode] = setting(
        (), "ECOMMERCE_SELLERS", "catalog", "comma-separated seller ids to fetch (overrides the sellers file)"
    )
    sellers_file: Path | None = setting(
        None, "ECOMMERCE_SELLERS_FILE", "catalog", "YAML/JSON sellers config (default: the packaged demo sellers)"
    )
    catalog_max_pages: int = setting(20, "ECOMMERCE_CATALOG_MAX_PAGES", "catalog", "stop paging a seller after this many pages", ge=1)
    catalog_sim_port: int = setting(8765, "ECOMMERCE_CATALOG_SIM_PORT", "catalog", "port of `ecommerce-assets catalog-sim`")
    marketplace_fee_rate: float = setting(
        0.15, "ECOMMERCE_MARKETPLACE_FEE_RATE", "catalog", "marketplace fee as a share of the sale price", ge=0, lt=1
    )
    # --- orders
    products_api_url: str | None = setting(
        None, "ECOMMERCE_PRODUCTS_API_URL", "orders", "the REST products API (optional: files alone build the marts)"
    )
    # --- transactions
    generator_interval_minutes: int = setting(
        5, "ECOMMERCE_GENERATOR_INTERVAL_MINUTES", "transactions", "the transaction generator's schedule", ge=1
    )
    generator_running: bool = setting(
        False, "ECOMMERCE_GENERATOR_RUNNING", "transactions", "start the generator's schedule running"
    )
    # --- streaming ingestion
    stream_name_override: str | None = setting(
        None, "ECOMMERCE_STREAM_NAME", "stream",
        f"Kinesis stream (turns the stream pipeline on in aws mode; locally the log `{DEFAULT_STREAM_NAME}`)",
    )
    stream_shards: int = setting(4, "ECOMMERCE_STREAM_SHARDS", "stream", "shards of the local log / Kinesis stream", ge=1)
    stream_batch_records: int = setting(500, "ECOMMERCE_STREAM_BATCH_RECORDS", "stream", "records per micro-batch", ge=1)
    kv_table_prefix: str = setting("", "ECOMMERCE_KV_TABLE_PREFIX", "stream", "prefix of the `customers`/`invoices` tables")
    ingest_api_url: str = setting(
        "http://127.0.0.1:8000", "ECOMMERCE_INGEST_API_URL", "stream", "where `replay` posts order lines"
    )
    ingest_tokens: Annotated[tuple[str, ...], NoDecode] = setting(
        (), "ECOMMERCE_INGEST_TOKENS", "stream", "bearer tokens the ingestion API accepts (comma-separated; secret)", repr=False
    )
    ingest_token: str | None = setting(
        None, "ECOMMERCE_INGEST_TOKEN", "stream", "the bearer token `replay` sends (secret)", repr=False
    )
    # --- deploy: Lambda handlers, the daemon's run launcher
    dlq_url: str | None = setting(None, "ECOMMERCE_DLQ_URL", "deploy", "SQS dead-letter queue of the Lambda handlers")
    dagster_url: str | None = setting(
        None, "ECOMMERCE_DAGSTER_URL", "deploy", "the Dagster webserver the S3-arrival Lambda launches runs on"
    )
    dagster_job: str | None = setting(None, "ECOMMERCE_DAGSTER_JOB", "deploy", "the job that Lambda launches")
    dagster_location: str | None = setting(
        None, "ECOMMERCE_DAGSTER_LOCATION", "deploy", "its code location (when the webserver has several)"
    )
    transform_lambda: str | None = setting(
        None, "ECOMMERCE_TRANSFORM_LAMBDA", "deploy", "the Lambda function Dagster runs transforms in (Pipes)"
    )

    @field_validator("sellers", "ingest_tokens", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> tuple[str, ...]:
        return _csv(value)

    @field_validator("env", "warehouse", "sensors", "dbt_target_override", "dbt_env", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("s3_prefix", mode="before")
    @classmethod
    def _strip_slashes(cls, value: Any) -> Any:
        return value.strip().strip("/") if isinstance(value, str) else value

    @field_validator("ingest_api_url", mode="before")
    @classmethod
    def _no_trailing_slash(cls, value: Any) -> Any:
        return value.strip().rstrip("/") if isinstance(value, str) else value

    @field_validator("data_dir", "dagster_home", "sellers_file", mode="after")
    @classmethod
    def _resolve(cls, value: Path | None) -> Path | None:
        return value.expanduser().resolve() if value is not None else None

    @field_validator("duckdb_memory_limit")
    @classmethod
    def _duckdb_size(cls, value: str) -> str:
        if not _DUCKDB_SIZE.match(value):
            raise ValueError("a size such as 2GB, 512MB or 1.5GiB")
        return value.strip()

    @field_validator("s3_bucket")
    @classmethod
    def _bucket_name(cls, value: str | None) -> str | None:
        if value is not None and not _BUCKET.match(value):
            raise ValueError("an S3 bucket name: 3-63 lowercase letters, digits, '.' or '-'")
        return value

    @field_validator("sellers")
    @classmethod
    def _seller_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [s for s in value if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", s)]
        if bad:
            raise ValueError(f"seller ids are 1-64 letters, digits, '_' or '-'; got {', '.join(map(repr, bad))}")
        return value

    # --- derived values (decided here, never re-decided elsewhere)
    @property
    def warehouse_kind(self) -> str:
        """``duckdb`` locally; ``ECOMMERCE_WAREHOUSE`` (default ``postgres``) in aws mode."""
        if self.warehouse:
            return self.warehouse
        return "duckdb" if self.env == "local" else "postgres"

    @property
    def dbt_target(self) -> str:
        """The dbt target: ``ECOMMERCE_DBT_TARGET``, else ``duckdb`` locally, else the warehouse kind."""
        return self.dbt_target_override or ("duckdb" if self.env == "local" else self.warehouse_kind)

    @property
    def catalog_api_key_set(self) -> bool:
        """Whether ``ECOMMERCE_CATALOG_API_KEY`` is set (the resource reads the value itself, as an EnvVar)."""
        return self.catalog_api_key is not None

    @property
    def sensors_on(self) -> bool:
        """Whether arrival sensors and automation run by default: ``ECOMMERCE_SENSORS``, else on locally."""
        return (self.sensors or ("on" if self.env == "local" else "off")) == "on"

    @property
    def stream_configured(self) -> bool:
        """The stream pipeline is on locally (a log file) and in aws mode once ``ECOMMERCE_STREAM_NAME`` is set."""
        return self.env == "local" or self.stream_name_override is not None

    @property
    def stream_name(self) -> str:
        """The stream: ``ECOMMERCE_STREAM_NAME``, else the default name."""
        return self.stream_name_override or DEFAULT_STREAM_NAME

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

    @property
    def dagster_home_dir(self) -> Path:
        """``DAGSTER_HOME``, defaulting to ``<ECOMMERCE_DATA_DIR>/dagster_home`` so the CLI and the UI share runs."""
        return self.dagster_home or self.data_dir / "dagster_home"


def declared_settings() -> list[dict[str, Any]]:
    """Every declared setting: ``{"field", "env": [names], "group", "default", "description", "secret"}``."""
    rows = []
    for name, info in Settings.model_fields.items():
        extra = info.json_schema_extra or {}
        assert isinstance(extra, dict)
        default = info.default
        rows.append({
            "field": name,
            "env": list(extra["env"]),  # type: ignore[arg-type]
            "group": extra["group"],
            "default": None if default in (None, (), "") else (default.as_posix() if isinstance(default, Path) else default),
            "description": info.description or "",
            "secret": info.annotation is SecretStr or "secret" in (info.description or ""),
        })
    return rows


def _problem_line(error: dict[str, Any]) -> str:
    field_name = str(error["loc"][0]) if error.get("loc") else "?"
    info = Settings.model_fields.get(field_name)
    names = (info.json_schema_extra or {}).get("env", [field_name]) if info else [field_name]  # type: ignore[union-attr]
    name = names[0] if isinstance(names, list) else field_name
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    given = error.get("input")
    secret = info is not None and (info.annotation is SecretStr or "secret" in (info.description or ""))
    shown = "" if secret or isinstance(given, dict) or given is None else f" (got {str(given)[:60]!r})"
    return f"{name}: {message}{shown}"


def get_settings() -> Settings:
    """Read and validate the settings; raise ``SettingsError`` (one line per bad setting) on bad values."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError([_problem_line(e) for e in exc.errors()]) from None  # type: ignore[arg-type]


GROUP_TITLES = {
    "platform": "Every pipeline",
    "aws": "aws mode: the lake and the warehouse (every pipeline in aws mode)",
    "alerts": "Alerts (optional)",
    "retail": "Online Retail warehouse",
    "catalog": "Seller catalog sourcing",
    "orders": "Orders ELT + dbt",
    "transactions": "Event-driven transactions",
    "stream": "Streaming ingestion",
    "deploy": "Deployment: Lambda handlers and the Dagster daemon",
}
# Read by other programs, not by the product: dbt's profiles.yml (derived from the DSN) and the deploy config.
EXTERNAL_SETTINGS = {
    "ECOMMERCE_PG_HOST": "dbt profile (postgres target); derived from ECOMMERCE_WAREHOUSE_DSN",
    "ECOMMERCE_PG_PORT": "dbt profile (postgres target); derived from ECOMMERCE_WAREHOUSE_DSN",
    "ECOMMERCE_PG_USER": "dbt profile (postgres target); derived from ECOMMERCE_WAREHOUSE_DSN",
    "ECOMMERCE_PG_PASSWORD": "dbt profile (postgres target); taken from PGPASSWORD",
    "ECOMMERCE_PG_DB": "dbt profile (postgres target); derived from ECOMMERCE_WAREHOUSE_DSN",
    "ECOMMERCE_REDSHIFT_HOST": "dbt profile (redshift target); derived from ECOMMERCE_WAREHOUSE_DSN",
    "ECOMMERCE_REDSHIFT_PORT": "dbt profile (redshift target); derived from ECOMMERCE_WAREHOUSE_DSN",
    "ECOMMERCE_REDSHIFT_USER": "dbt profile (redshift target); derived from ECOMMERCE_WAREHOUSE_DSN",
    "ECOMMERCE_REDSHIFT_PASSWORD": "dbt profile (redshift target); taken from PGPASSWORD",
    "ECOMMERCE_REDSHIFT_DB": "dbt profile (redshift target); derived from ECOMMERCE_WAREHOUSE_DSN",
    "ECOMMERCE_ATHENA_CATALOG": "dbt profile (athena target): the data catalog (default `awsdatacatalog`)",
    "ECOMMERCE_ATHENA_SCHEMA": "dbt profile (athena target): the schema dbt builds in (default `ecommerce`)",
    "ECOMMERCE_ATHENA_WORK_GROUP": "dbt profile (athena target): the workgroup (default `primary`)",
    "ECOMMERCE_ATHENA_S3_STAGING_DIR": "dbt profile (athena target): where Athena writes query results",
    "ECOMMERCE_ATHENA_S3_DATA_DIR": "dbt profile (athena target): where dbt-athena writes table data",
    "ECOMMERCE_DLQ_NAME": "deploy/iam placeholders: the Lambda dead-letter queue's name",
    "ECOMMERCE_ALERTS_DLQ_NAME": "deploy/iam placeholders: the alerts dead-letter queue's name",
    "ECOMMERCE_RUN_TASK_ROLE_ARN": "deploy/dagster.yaml: the IAM role of the ECS tasks that run Dagster runs",
    "ECOMMERCE_TASK_EXECUTION_ROLE_ARN": "deploy/dagster.yaml: the ECS task execution role",
    "ECOMMERCE_RUN_LOG_GROUP": "deploy/dagster.yaml: the CloudWatch log group of the run tasks",
}


def settings_markdown() -> str:
    """The settings tables of docs/aws.md, one per group, generated from the declaration."""
    out: list[str] = []
    for group in GROUPS:
        rows = [s for s in declared_settings() if s["group"] == group]
        if not rows:
            continue
        out += [f"### {GROUP_TITLES[group]}", "", "| variable | default | meaning |", "| --- | --- | --- |"]
        for s in rows:
            names = " / ".join(f"`{n}`" for n in s["env"])
            default = "" if s["default"] is None else f"`{s['default']}`"
            out.append(f"| {names} | {default} | {s['description']} |")
        out.append("")
    out += ["### Read by dbt's profiles and the deploy config (set for you, or by `deploy/`)", "",
            "| variable | meaning |", "| --- | --- |"]
    out += [f"| `{name}` | {meaning} |" for name, meaning in EXTERNAL_SETTINGS.items()]
    return "\n".join(out) + "\n"


if __name__ == "__main__":  # python -m ecommerce_assets.settings: print the docs' settings tables
    print(settings_markdown(), end="")
