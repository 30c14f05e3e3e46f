"""Headless catch-up: what the sensors would do, once, then everything downstream (``ecommerce-assets run``).

1. Every arrival sensor (tag ``ecommerce/arrival``) is evaluated once over the whole landing zone. Each run
   request it makes is executed in process unless a successful run with the same run key already exists
   (so this command, the daemon and earlier invocations never process the same batch twice).
2. Every unpartitioned asset downstream of what step 1 materialized is materialized once, in dependency order.

Runs are recorded in the Dagster instance (``DAGSTER_HOME``), so they show in the UI like the daemon's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter
from dagster._core.storage.tags import RUN_KEY_TAG, SENSOR_NAME_TAG

from ecommerce_assets.settings import get_settings

ARRIVAL_TAG = "ecommerce/arrival"


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


def catch_up(
    defs: dg.Definitions | None = None,
    instance: dg.DagsterInstance | None = None,
    echo: Callable[[str], None] = print,
) -> CatchUpReport:
    """Run every arrival sensor once, execute what they ask for, then everything downstream."""
    defs = defs or load_definitions()
    if instance is None:
        ensure_dagster_home()
        instance = dg.DagsterInstance.get()
    graph = defs.resolve_asset_graph()
    report = CatchUpReport()
    resources = defs.resources or {}

    for sensor in defs.sensors or []:
        if not isinstance(sensor, dg.SensorDefinition) or sensor.tags.get(ARRIVAL_TAG) != "true":
            continue
        ctx = dg.build_sensor_context(instance=instance, definitions=defs, sensor_name=sensor.name, resources=resources)
        result = sensor(ctx)
        requests = result.run_requests if isinstance(result, dg.SensorResult) else list(result or [])
        if isinstance(result, dg.SensorResult) and result.dynamic_partitions_requests:
            for req in result.dynamic_partitions_requests:
                if isinstance(req, dg.AddDynamicPartitionsRequest):
                    instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        for req in requests or []:
            if req.run_key and _already_done(instance, sensor.name, req.run_key):
                report.skipped_run_keys += 1
                continue
            keys = list((req.asset_selection or _sensor_selection(sensor)).resolve(graph))
            label = f"{sensor.name}: {len(keys)} asset(s)" + (f" [{req.partition_key}]" if req.partition_key else "")
            echo(f"-> {label}")
            tags = {**req.tags, SENSOR_NAME_TAG: sensor.name, **({RUN_KEY_TAG: req.run_key} if req.run_key else {})}
            ok, done = execute(
                defs, instance, keys, partition_key=req.partition_key, tags=tags,
                run_config=req.run_config if isinstance(req.run_config, dict) else None,
            )
            report.runs.append((label, ok))
            report.materialized |= done
            echo(f"   {'ok' if ok else 'FAILED'}: {', '.join(sorted(k.to_user_string() for k in done)) or 'nothing'}")

    if report.materialized:
        downstream = dg.AssetSelection.assets(*report.materialized).downstream().resolve(graph)
        todo = [
            k for k in downstream
            if k not in report.materialized and not graph.get(k).is_partitioned and graph.get(k).is_materializable
        ]
        if todo:
            label = f"downstream: {len(todo)} asset(s)"
            echo(f"-> {label}")
            ok, done = execute(defs, instance, todo, tags={"ecommerce/trigger": "catch-up"})
            report.runs.append((label, ok))
            report.materialized |= done
            echo(f"   {'ok' if ok else 'FAILED'}: {', '.join(sorted(k.to_user_string() for k in done)) or 'nothing'}")
    return report
