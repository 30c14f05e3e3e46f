"""Headless catch-up: what the sensors would do, once, then everything downstream (``ecommerce-assets run``).

1. Every sensor tagged ``ecommerce/catch_up`` (the arrival sensors of every landing source and the stream
   sensor) is evaluated with the cursor this command keeps for it in ``<state_dir>/catch_up_cursors.json``,
   tick after tick until it asks for nothing more. Each run request is executed in process unless a
   successful run with the same sensor and run key already exists (the daemon's runs included), so a batch
   is never processed twice.
2. Every unpartitioned asset downstream of what step 1 materialized is materialized once, in dependency order.

Runs are recorded in the Dagster instance (``DAGSTER_HOME``), so they show in the UI like the daemon's.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter
from dagster._core.storage.tags import RUN_KEY_TAG, SENSOR_NAME_TAG

from ecommerce_assets.settings import get_settings

CATCH_UP_TAG = "ecommerce/catch_up"
MAX_TICKS = 1000


@dataclass
class CatchUpReport:
    runs: list[tuple[str, bool]] = field(default_factory=list)  # (description, success)
    skipped_run_keys: int = 0
    materialized: set[dg.AssetKey] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return all(success for _, success in self.runs)


def ensure_dagster_home() -> Path:
    """``DAGSTER_HOME``, defaulting to ``<ECOMMERCE_DATA_DIR>/dagster_home`` so the CLI and the UI share runs."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        home = str(get_settings().data_dir / "dagster_home")
        os.environ["DAGSTER_HOME"] = home
    Path(home).mkdir(parents=True, exist_ok=True)
    yaml = Path(home) / "dagster.yaml"
    if not yaml.exists():
        yaml.write_text("telemetry:\n  enabled: false\n")
    return Path(home)


def load_definitions() -> dg.Definitions:
    from ecommerce_assets.definitions import defs

    return defs()


def _sensor_selection(sensor: dg.SensorDefinition) -> dg.AssetSelection:
    """The asset selection a sensor targets (its ``target=``)."""
    if sensor.asset_selection is not None:
        return sensor.asset_selection
    job = sensor.targets[0].resolvable_to_job
    selection = getattr(job, "selection", None)
    if selection is None:
        raise ValueError(f"sensor {sensor.name} targets no asset selection")
    return selection


def _ready(
    graph: object,
    instance: dg.DagsterInstance,
    todo: list[dg.AssetKey],
    materialized: set[dg.AssetKey],
    echo: Callable[[str], None],
) -> list[dg.AssetKey]:
    """Drop the assets that have an input never materialized (nor about to be): building them would fail.

    An asset API-sourced (fetched by a schedule, not landed) that never ran keeps its dependents waiting;
    they are named, and built by the first catch-up after it has run.
    """
    selected = set(todo)
    ready: list[dg.AssetKey] = []
    waiting: dict[dg.AssetKey, dg.AssetKey] = {}
    order = {k: i for i, k in enumerate(graph.toposorted_asset_keys)}  # type: ignore[attr-defined]
    for key in sorted(todo, key=order.__getitem__):
        for parent in graph.get(key).parent_keys:  # type: ignore[attr-defined]
            if parent in waiting or (
                parent not in selected and parent not in materialized
                and graph.has(parent) and graph.get(parent).is_materializable  # type: ignore[attr-defined]
                and instance.get_latest_materialization_event(parent) is None
            ):
                waiting[key] = waiting.get(parent, parent)
                break
        else:
            ready.append(key)
    for key, missing in waiting.items():
        echo(f"   waiting: {key.to_user_string()} needs {missing.to_user_string()}, never materialized")
    return ready


def _tick(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    sensor: dg.SensorDefinition,
    cursor: str | None,
    resources: dict,
) -> tuple[list[dg.RunRequest], str | None]:
    """Evaluate ``sensor`` once from ``cursor``; apply its dynamic-partition requests; return its run requests."""
    with dg.build_sensor_context(
        instance=instance, definitions=defs, sensor_name=sensor.name, resources=resources, cursor=cursor
    ) as ctx:  # a context manager: nested resources (S3Lake holds an S3Resource) are set up and torn down
        result = sensor(ctx)
        if isinstance(result, dg.SensorResult):
            for req in result.dynamic_partitions_requests or []:
                if isinstance(req, dg.AddDynamicPartitionsRequest):
                    instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
            return list(result.run_requests or []), result.cursor if result.cursor is not None else ctx.cursor
        requests = [r for r in (result if isinstance(result, list) else [result]) if isinstance(r, dg.RunRequest)]
        return requests, ctx.cursor


def _execute_request(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    sensor: dg.SensorDefinition,
    req: dg.RunRequest,
    report: CatchUpReport,
    echo: Callable[[str], None],
) -> bool:
    """Execute one run request of ``sensor`` in process, tagged as the daemon would tag it."""
    graph = defs.resolve_asset_graph()
    tags = {**req.tags, SENSOR_NAME_TAG: sensor.name, **({RUN_KEY_TAG: req.run_key} if req.run_key else {})}
    run_config = req.run_config if isinstance(req.run_config, dict) else None
    if req.asset_selection is not None or sensor.job_name is None or sensor.job_name.startswith("__anonymous"):
        keys = list((req.asset_selection or _sensor_selection(sensor)).resolve(graph))
        job = defs.resolve_implicit_job_def_def_for_assets(keys)
    else:
        job, keys = defs.resolve_job_def(sensor.job_name), None
    label = f"{sensor.name}: {req.run_key or 'run'}" + (f" [{req.partition_key}]" if req.partition_key else "")
    echo(f"-> {label}")
    started = time.monotonic()
    ok, done = _run(job, instance, keys, partition_key=req.partition_key, tags=tags, run_config=run_config)
    report.runs.append((label, ok))
    report.materialized |= done
    _echo_result(echo, ok, done, time.monotonic() - started)
    return ok


def _echo_result(echo: Callable[[str], None], ok: bool, done: set[dg.AssetKey], seconds: float) -> None:
    names = ", ".join(sorted(k.to_user_string() for k in done)) or "nothing"
    echo(f"   {'ok' if ok else 'FAILED'} in {seconds:.1f}s: {names}")


def _already_done(instance: dg.DagsterInstance, sensor: str, run_key: str) -> bool:
    runs = instance.get_runs(
        filters=RunsFilter(tags={SENSOR_NAME_TAG: sensor, RUN_KEY_TAG: run_key}, statuses=[DagsterRunStatus.SUCCESS]),
        limit=1,
    )
    return bool(runs)


def execute(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    keys: Iterable[dg.AssetKey],
    *,
    partition_key: str | None = None,
    tags: dict[str, str] | None = None,
    run_config: dict | None = None,
) -> tuple[bool, set[dg.AssetKey]]:
    """Materialize ``keys`` (and their checks) in process, recorded in ``instance``."""
    keys = list(keys)
    job = defs.resolve_implicit_job_def_def_for_assets(keys)
    if job is None:
        raise ValueError(f"no single job can materialize {keys}")
    return _run(job, instance, keys, partition_key=partition_key, tags=tags, run_config=run_config)


def _run(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    keys: list[dg.AssetKey] | None,
    *,
    partition_key: str | None,
    tags: dict[str, str] | None,
    run_config: dict | None,
) -> tuple[bool, set[dg.AssetKey]]:
    result = job.execute_in_process(
        instance=instance,
        asset_selection=keys,
        partition_key=partition_key,
        tags=tags,
        run_config=run_config,
        raise_on_error=False,
    )
    done = {
        e.asset_key for e in result.get_asset_materialization_events() if e.asset_key is not None  # type: ignore[union-attr]
    }
    return result.success, done


def scheduled_sources(defs: dg.Definitions) -> list[dg.AssetKey]:
    """The unpartitioned assets a schedule fetches (API sources: nothing lands for them)."""
    graph = defs.resolve_asset_graph()
    keys: list[dg.AssetKey] = []
    for schedule in defs.schedules or []:
        if not isinstance(schedule, dg.ScheduleDefinition) or not schedule.has_anonymous_job:
            continue
        selection = getattr(schedule.target.resolvable_to_job, "selection", None)
        if selection is not None:
            keys += [k for k in selection.resolve(graph) if not graph.get(k).is_partitioned and k not in keys]
    return keys


def catch_up(
    defs: dg.Definitions | None = None,
    instance: dg.DagsterInstance | None = None,
    echo: Callable[[str], None] = print,
    fetch: list[dg.AssetKey] | None = None,
) -> CatchUpReport:
    """Run every catch-up sensor, execute what they ask for, then everything downstream.

    ``fetch``: assets to materialize first (API sources a schedule would fetch), their dependents included.
    """
    defs = defs or load_definitions()
    if instance is None:
        ensure_dagster_home()
        instance = dg.DagsterInstance.get()
    graph = defs.resolve_asset_graph()
    report = CatchUpReport()
    resources = dict(defs.resources or {})

    if fetch:
        echo(f"-> fetch: {', '.join(k.to_user_string() for k in fetch)}")
        started = time.monotonic()
        ok, done = execute(defs, instance, fetch, tags={"ecommerce/trigger": "catch-up fetch"})
        report.runs.append(("fetch", ok))
        report.materialized |= done
        _echo_result(echo, ok, done, time.monotonic() - started)
    cursors_path = get_settings().state_dir / "catch_up_cursors.json"
    cursors: dict[str, str] = json.loads(cursors_path.read_text()) if cursors_path.exists() else {}
    for sensor in defs.sensors or []:
        if not isinstance(sensor, dg.SensorDefinition) or sensor.tags.get(CATCH_UP_TAG) != "true":
            continue
        for _ in range(MAX_TICKS):
            requests, cursor = _tick(defs, instance, sensor, cursors.get(sensor.name), resources)
            failed = False
            for req in requests:
                if req.run_key and _already_done(instance, sensor.name, req.run_key):
                    report.skipped_run_keys += 1
                    continue
                ok = _execute_request(defs, instance, sensor, req, report, echo)
                failed = failed or not ok
            if failed:
                break  # keep the cursor before the failed batch, so the next catch-up retries it
            if cursor is not None:
                cursors[sensor.name] = cursor
                cursors_path.parent.mkdir(parents=True, exist_ok=True)
                cursors_path.write_text(json.dumps(cursors, indent=1, sort_keys=True))
            if not requests:
                break

    if report.materialized:
        downstream = dg.AssetSelection.assets(*report.materialized).downstream().resolve(graph)
        todo = [
            k for k in downstream
            if k not in report.materialized and not graph.get(k).is_partitioned and graph.get(k).is_materializable
        ]
        todo = _ready(graph, instance, todo, report.materialized, echo)
        if todo:
            label = f"downstream: {len(todo)} asset(s)"
            echo(f"-> {label}")
            started = time.monotonic()
            ok, done = execute(defs, instance, todo, tags={"ecommerce/trigger": "catch-up"})
            report.runs.append((label, ok))
            report.materialized |= done
            _echo_result(echo, ok, done, time.monotonic() - started)
    return report
