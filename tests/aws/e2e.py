"""Helpers of the end-to-end test: run the platform once in the current environment, read the results.

``run_platform`` does what ``ecommerce-assets demo`` does (``ecommerce_assets.dev.demo.run_demo``), on a
smaller input: it lands the shipped samples (``seed_steps``; of the generated transactions only the
newest date, which holds the bad files), replays the Online Retail sample through the ingestion API
onto the stream, fetches the catalog pages of the configured sellers, then runs
``ecommerce_assets.runtime.catchup.catch_up`` (every arrival and stream sensor, each run request in
process, the API sources first, then everything downstream): the same code ``ecommerce-assets run``
uses, so the test exercises no orchestration of its own.

``normalised_rows`` turns a warehouse table into comparable rows (see ``normalise`` for the rules).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sys
from decimal import Decimal
from typing import Any

import dagster as dg

from ecommerce_assets.runtime.catchup import CatchUpReport, catch_up
from ecommerce_assets.settings import Settings
from ecommerce_assets.storage.lake import Lake

DIGITS = 6  # numbers are compared rounded to 6 decimal places


def load_defs(resources: dict[str, Any]) -> dg.Definitions:
    """The code location as ``ecommerce_assets.definitions`` builds it, with ``resources`` bound.

    The aws-only module reads ``ECOMMERCE_ENV`` when imported: drop it from ``sys.modules`` so that the
    environment of this call decides whether its assets exist.
    """
    import ecommerce_assets.definitions as definitions

    for name in [m for m in sys.modules if m.startswith("ecommerce_assets.defs.aws")]:
        del sys.modules[name]
    return dg.Definitions.merge(definitions.load_domains(), dg.Definitions(resources=resources))


def seed_samples(settings: Settings, lake: Lake) -> list[str]:
    """Every domain's demo samples (``seed_steps``), keeping only the newest date of the transactions."""
    from ecommerce_assets.dev.demo import seed_steps
    from ecommerce_assets.services.transactions_generator import LANDING

    landed: list[str] = []
    for domain, seed in seed_steps():
        keys = seed(settings, lake)
        assert keys, f"{domain} landed nothing"
        if domain == "transactions":
            dates = sorted({k[len(LANDING):].split("/", 1)[0] for k in keys})
            for older in dates[:-1]:
                lake.delete_prefix(f"{LANDING}{older}")
            keys = [k for k in keys if k.startswith(f"{LANDING}{dates[-1]}/")]
        landed += keys
    return landed


def run_platform(resources: dict[str, Any], instance: dg.DagsterInstance) -> CatchUpReport:
    """Seed, replay the stream, catch up with ``--fetch`` (catalog sellers, products API): ``run_demo``'s first day."""
    from ecommerce_assets.dev.stream_demo import run_stream_demo
    from ecommerce_assets.settings import get_settings

    settings = get_settings()
    seed_samples(settings, resources["lake"])
    run_stream_demo(settings, resources)
    return catch_up(load_defs(resources), instance, echo=lambda _m: None, fetch=True)


def run_outcomes(report: CatchUpReport) -> list[tuple[str, bool]]:
    """(sensor and partition, success) of every run, sorted. Run keys are dropped: they name content
    hashes (S3 ETags vs local digests) and stream sequence numbers, which differ between environments."""
    out = []
    for label, ok in report.runs:
        name, _, rest = label.partition(": ")
        partition = rest[rest.rfind(" ["):] if rest.endswith("]") else ""
        out.append((name + partition, ok))
    return sorted(out)


def normalise(value: Any) -> Any:
    """One value in a form both warehouses give identically.

    * numbers (int, float, Decimal: DuckDB DECIMAL/DOUBLE vs PostgreSQL numeric/double precision) -> float
      rounded to ``DIGITS`` decimal places (NaN -> the string "NaN"); booleans stay booleans;
    * timestamps -> naive ISO text in UTC (an aware value is converted to UTC first), dates -> ISO text;
    * JSON (PostgreSQL jsonb comes back parsed, DuckDB JSON as text) -> canonical JSON text;
    * bytes -> hex; text stays text; NULL stays None.
    """
    if value is None or isinstance(value, bool | str):
        if isinstance(value, str) and value[:1] in "[{":
            try:
                return json.dumps(json.loads(value), sort_keys=True)
            except ValueError:
                return value
        return value
    if isinstance(value, int | float | Decimal):
        number = float(value)
        return "NaN" if math.isnan(number) else round(number, DIGITS) + 0.0
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _sort_key(row: tuple) -> tuple:
    return tuple((v is None, str(type(v).__name__) if v is not None else "", v if v is not None else 0) for v in row)


# Columns whose values belong to one run, not to the data: when a line arrived on the stream and the
# sequence number the stream (SQLite log or Kinesis) gave it; when a file was registered (raw keys carry
# the arrival stamp); when dbt's snapshot saw a version (valid_from/valid_to and the ids hashed from
# them). Every other column of every table must be equal.
RUN_SPECIFIC_COLUMNS = {
    "arrived_at", "sequence_number",
    "_ingested_at", "ingested_at", "_source_file", "source_file",
    "dbt_scd_id", "dbt_updated_at", "dbt_valid_from", "dbt_valid_to", "valid_from", "valid_to", "customer_version_id",
    "recorded_at",  # dim_customers: when the customer version arrived (the ingestion clock)
}


def normalised_rows(warehouse: Any, table: str) -> tuple[list[str], list[tuple]]:
    """(sorted lower-case column names, sorted normalised rows) of one warehouse table, without the
    run-specific columns."""
    from ecommerce_assets.storage.warehouses.base import quote_ident

    data = warehouse.query(f"SELECT * FROM {quote_ident(table)}")  # noqa: S608 - quoted identifier
    columns = sorted((c for c in data.column_names if c.lower() not in RUN_SPECIFIC_COLUMNS), key=str.lower)
    rows = [tuple(normalise(r[c]) for c in columns) for r in data.to_pylist()]
    return [c.lower() for c in columns], sorted(rows, key=_sort_key)
