"""Helpers of the end-to-end test: run the whole graph headless in the current environment, read the results.

``run_graph`` does what the daemon would do, once: it evaluates every catch-up sensor (the arrival
sensors and the stream sensor) with ``dg.build_sensor_context`` *opened as a context manager* (aws mode's
resources nest other resources: ``S3Lake`` holds an ``S3Resource``, the warehouses hold the lake, and
Dagster treats such resources as context managers), executes each run request in process through
``ecommerce_assets.orchestration.execute`` (the same function ``ecommerce-assets run`` uses), repeats
until the sensor asks for nothing more, then materializes everything unpartitioned downstream.

``normalised_rows`` turns a warehouse table into comparable rows (see its docstring for the rules).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.storage.tags import RUN_KEY_TAG, SENSOR_NAME_TAG

from ecommerce_assets.orchestration import execute

CATCH_UP_TAGS = ("ecommerce/catch_up", "ecommerce/arrival")
MAX_TICKS = 50
DIGITS = 6  # numbers are compared rounded to 6 decimal places


@dataclass
class GraphRun:
    runs: list[tuple[str, bool]] = field(default_factory=list)
    materialized: set[dg.AssetKey] = field(default_factory=set)

    @property
    def failed(self) -> list[str]:
        return [label for label, ok in self.runs if not ok]

    def outcome(self) -> list[tuple[str, bool]]:
        """(run label, success) sorted: the same for two environments that behave the same."""
        return sorted(self.runs)


def load_defs(resources: dict[str, Any]) -> dg.Definitions:
    """The code location as ``ecommerce_assets.definitions`` builds it, with ``resources`` bound.

    The aws-only module reads ``ECOMMERCE_ENV`` when imported: drop it from ``sys.modules`` so that the
    environment of this call decides whether its assets exist.
    """
    import ecommerce_assets.definitions as definitions

    for name in [m for m in sys.modules if m.startswith("ecommerce_assets.defs.aws")]:
        del sys.modules[name]
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(definitions.__file__).parent),
        dg.Definitions(resources=resources),
    )


def _is_catch_up(sensor: Any) -> bool:
    return isinstance(sensor, dg.SensorDefinition) and any(sensor.tags.get(t) == "true" for t in CATCH_UP_TAGS)


def _execute_request(defs: dg.Definitions, instance: dg.DagsterInstance, sensor: dg.SensorDefinition,
                     req: dg.RunRequest) -> tuple[bool, set[dg.AssetKey]]:
    tags = {**req.tags, SENSOR_NAME_TAG: sensor.name, **({RUN_KEY_TAG: req.run_key} if req.run_key else {})}
    run_config = req.run_config if isinstance(req.run_config, dict) else None
    graph = defs.resolve_asset_graph()
    selection = req.asset_selection and dg.AssetSelection.assets(*req.asset_selection)
    if selection is None and sensor.asset_selection is not None:
        selection = sensor.asset_selection
    if selection is not None:
        return execute(defs, instance, selection.resolve(graph), partition_key=req.partition_key, tags=tags,
                       run_config=run_config)
    job = defs.resolve_job_def(sensor.job_name)
    result = job.execute_in_process(instance=instance, partition_key=req.partition_key, tags=tags,
                                    run_config=run_config, raise_on_error=False)
    return result.success, {e.asset_key for e in result.get_asset_materialization_events() if e.asset_key}


def run_graph(defs: dg.Definitions, instance: dg.DagsterInstance, echo: Callable[[str], None] = print) -> GraphRun:
    """Every catch-up sensor until it asks for nothing more, each request run in process, then downstream."""
    out = GraphRun()
    for sensor in [s for s in defs.sensors or [] if _is_catch_up(s)]:
        cursor: str | None = None
        for _ in range(MAX_TICKS):
            with dg.build_sensor_context(instance=instance, definitions=defs, sensor_name=sensor.name,
                                         resources=dict(defs.resources or {}), cursor=cursor) as ctx:
                result = sensor(ctx)
                cursor = ctx.cursor
            requests: list[dg.RunRequest]
            if isinstance(result, dg.SensorResult):
                for dyn in result.dynamic_partitions_requests or []:
                    if isinstance(dyn, dg.AddDynamicPartitionsRequest):
                        instance.add_dynamic_partitions(dyn.partitions_def_name, list(dyn.partition_keys))
                requests = list(result.run_requests or [])
                cursor = result.cursor if result.cursor is not None else cursor
            else:
                requests = [r for r in (result if isinstance(result, list) else [result]) if isinstance(r, dg.RunRequest)]
            for req in requests:
                ok, done = _execute_request(defs, instance, sensor, req)
                label = sensor.name + (f" [{req.partition_key}]" if req.partition_key else "")
                echo(f"{'ok' if ok else 'FAILED'} {label}")
                out.runs.append((label, ok))
                out.materialized |= done
            if not requests:
                break
    graph = defs.resolve_asset_graph()
    if out.materialized:
        downstream = dg.AssetSelection.assets(*out.materialized).downstream().resolve(graph)
        todo = [k for k in downstream if k not in out.materialized and not graph.get(k).is_partitioned
                and graph.get(k).is_materializable]
        if todo:
            ok, done = execute(defs, instance, todo, tags={"ecommerce/trigger": "catch-up"})
            echo(f"{'ok' if ok else 'FAILED'} downstream: {len(todo)} asset(s)")
            out.runs.append((f"downstream: {sorted(k.to_user_string() for k in todo)}", ok))
            out.materialized |= done
    return out


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


def normalised_rows(warehouse: Any, table: str) -> tuple[list[str], list[tuple]]:
    """(sorted lower-case column names, sorted normalised rows) of one warehouse table."""
    from ecommerce_assets.resources.warehouse import quote_ident

    data = warehouse.query(f"SELECT * FROM {quote_ident(table)}")  # noqa: S608 - quoted identifier
    columns = sorted(data.column_names, key=str.lower)
    rows = [tuple(normalise(r[c]) for c in columns) for r in data.to_pylist()]
    return [c.lower() for c in columns], sorted(rows, key=_sort_key)
