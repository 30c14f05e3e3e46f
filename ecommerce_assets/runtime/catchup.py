"""Headless catch-up: what the schedules and sensors would do, once, then everything downstream
(``ecommerce-assets run``).

0. A pipeline with nothing landed (and, for the stream, no stream configured) is skipped with one line
   naming the landing folder or setting that turns it on; local landing folders are created on first use.
1. With ``fetch``: the schedules that call an API (the seller catalog, the products API) are evaluated
   as the daemon would, and their runs executed, once their resource is configured (else one line names
   the setting). The sellers of ``ECOMMERCE_SELLERS`` (or the sellers file) become partitions first.
2. Every sensor tagged ``ecommerce/catch_up`` of a selected pipeline is evaluated with the cursor this
   command keeps in ``<state_dir>/catch_up_cursors.json``, tick after tick until it asks for nothing
   more. Each run request is executed in process unless a successful run with the same sensor and run key
   exists (the daemon's included), so a batch is never processed twice. A sensor that raises (a missing
   stream, table or bucket; access denied) is reported as that sensor's failure and the rest go on.
3. Every unpartitioned asset downstream of what was materialized is materialized once, in dependency order,
   and so is every unpartitioned asset older than one of its inputs (what a killed or failed run left behind).
   An input never materialized keeps its dependents waiting, unless it is tagged
   ``ecommerce/optional_source`` (an optional source that downstream code does without). An input whose
   blocking checks failed holds its dependents back (one ``held`` line); an input whose checks never ran on
   its latest materialization (a run killed in between) is materialized again with its checks first.

Runs are recorded in the Dagster instance (``DAGSTER_HOME``), so they show in the UI like the daemon's.
The console gets one line per run; Dagster's event logs stay in the instance (``verbose`` prints them).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import io
import json
import logging
import os
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from ecommerce_assets.lib.run_health import HOST_TAG, MAX_RETRIES_TAG, PID_TAG, dead_runs
from ecommerce_assets.pipelines import BY_GROUP, BY_NAME, PIPELINES, Pipeline, landing_prefix, turn_on_hint
from ecommerce_assets.settings import Settings, get_settings
from ecommerce_assets.storage import zones
from ecommerce_assets.storage.lake import Lake

CATCH_UP_TAG = "ecommerce/catch_up"  # sensors the catch-up evaluates
PARTITIONS_TAG = "ecommerce/partitions"  # sensors that only add partitions (evaluated before a fetch)
OPTIONAL_SOURCE_TAG = "ecommerce/optional_source"  # assets whose absence never blocks their dependents
SENSOR_NAME_TAG = "dagster/sensor_name"  # what the daemon tags a sensor's runs with
RUN_KEY_TAG = "dagster/run_key"
SCHEDULE_NAME_TAG = "dagster/schedule_name"
FETCH_RESOURCES = ("catalog_api", "products_api")  # a schedule whose assets use one of these calls an API
FETCHING_PIPELINES = ("catalog", "orders")  # the pipelines with such schedules
LANDING_SIGNATURES = "catch_up_landing.json"  # in the state dir: each pipeline's landing at its last complete catch-up
MAX_TICKS = 1000
IN_FLIGHT = (dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED)
IN_FLIGHT_WAIT_SECONDS = 300.0  # how long a catch-up waits for another process's run of the same batch
QUIET_LOGGERS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass
class RunLine:
    """One executed run, as the console shows it."""

    label: str
    pipeline: str
    ok: bool
    seconds: float
    rows: dict[str, int | None] = field(default_factory=dict)  # asset -> dagster/row_count (None: not reported)
    error: str | None = None

    def render(self) -> str:
        shown = [f"{k} {n:,} rows" if n is not None else k for k, n in self.rows.items()]
        more = f", +{len(shown) - 6} more" if len(shown) > 6 else ""
        assets = ", ".join(shown[:6]) + more if shown else "nothing materialized"
        line = f"{'ok' if self.ok else 'FAILED':<6} {self.seconds:6.1f}s  {self.pipeline:<12} {self.label}: {assets}"
        return line + (f"\n       {self.error}" if self.error else "")


@dataclass
class CatchUpReport:
    runs: list[tuple[str, bool]] = field(default_factory=list)  # (label, success)
    lines: list[RunLine] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # pipelines skipped, assets waiting
    failures: list[str] = field(default_factory=list)  # sensors or schedules that raised, with the reason
    skipped_run_keys: int = 0
    materialized: set[dg.AssetKey] = field(default_factory=set)
    failed_pipelines: set[str] = field(default_factory=set)  # a sensor, schedule or landing check failed

    @property
    def ok(self) -> bool:
        return all(success for _, success in self.runs) and not self.failures

    def add(self, line: RunLine, done: set[dg.AssetKey]) -> None:
        self.runs.append((line.label, line.ok))
        self.lines.append(line)
        self.materialized |= done


OLD_INSTANCE_YAML = "telemetry:\n  enabled: false\n"
INSTANCE_YAML = """\
# written by ecommerce-assets for a local data dir (edit freely: it is never overwritten once changed)
telemetry:
  enabled: false
# a run whose worker died (a killed daemon) is marked failed (sensor mark_dead_runs_failed, or run monitoring
# for a run that never started) and retried once with the same run key; a run that failed in an asset or a
# check is not retried (fix the input, then the next sensor tick or `ecommerce-assets run` goes on)
run_monitoring:
  enabled: true
  start_timeout_seconds: 90
  poll_interval_seconds: 30
run_retries:
  enabled: true
  max_retries: 1
  retry_on_asset_or_op_failure: false
"""


def ensure_dagster_home() -> Path:
    """``DAGSTER_HOME``, defaulting to ``<ECOMMERCE_DATA_DIR>/dagster_home`` so the CLI and the UI share runs."""
    home = get_settings().dagster_home_dir
    os.environ["DAGSTER_HOME"] = str(home)
    home.mkdir(parents=True, exist_ok=True)
    yaml = home / "dagster.yaml"
    if not yaml.exists() or yaml.read_text() == OLD_INSTANCE_YAML:
        yaml.write_text(INSTANCE_YAML)
    return home


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if missing), released when the block ends or the process dies.

    Two catch-ups on one data dir (cron and a user, or the daemon's host) take it around the first use of a
    fresh Dagster instance (its SQLite schema is created once) and around each sensor's ticks (a batch is
    run by one of them; the other then finds its run key done)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load_cursors(path: Path) -> dict[str, str]:
    """One of the catch-up's state maps: the sensor cursors (sensor name -> cursor) or the landing signatures
    (pipeline -> signature); empty when the file does not exist yet."""
    return json.loads(path.read_text()) if path.exists() else {}


def save_cursor(path: Path, sensor: str, cursor: str) -> None:
    """Set one sensor's cursor, re-reading the file under its lock: two catch-ups working on other sensors never
    write back each other's older cursors."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(path.with_suffix(".lock")):
        cursors = load_cursors(path)
        cursors[sensor] = cursor
        _write_atomically(path, json.dumps(cursors, indent=1, sort_keys=True))


def _write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename: a process killed meanwhile leaves the old file whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def load_definitions(pipelines: Sequence[str] | None = None) -> dg.Definitions:
    """The definitions of ``pipelines`` (every pipeline when None) with the environment's resources."""
    from ecommerce_assets.definitions import build_definitions

    return build_definitions(pipelines)


def _landing_prefixes(pipeline: Pipeline) -> list[str]:
    prefixes = [landing_prefix(s) for s in pipeline.landing]
    if pipeline.name == "catalog":
        prefixes.append(zones.CATALOG_RAW)  # pages a fetch (ours or another fetcher's) landed
    return prefixes


def has_input(pipeline: Pipeline, lake: Lake, settings: Settings) -> bool:
    """Whether ``pipeline`` has anything to work on: a file under one of its landing prefixes (the catalog: or a
    landed API page), the stream: configured. One listing call per prefix, stopped at the first object."""
    from ecommerce_assets.pipelines import stream_off_reason

    if pipeline.name == "stream":
        return stream_off_reason(settings) is None
    return any(next(iter(lake.list_objects(prefix)), None) is not None for prefix in _landing_prefixes(pipeline))


def landing_signature(pipeline: Pipeline, lake: Lake) -> str:
    """A digest of every object under the pipeline's landing prefixes (key and version: a new, replaced or removed
    file changes it): the cheap check of whether a source has anything new since the last catch-up."""
    digest = hashlib.sha1(usedforsecurity=False)
    for prefix in _landing_prefixes(pipeline):
        for obj in lake.list_objects(prefix):
            digest.update(f"{obj.key}\t{obj.version}\n".encode())
    return digest.hexdigest()


@dataclass
class LoadPlan:
    """Which pipelines a catch-up loads the definitions of, and why not the others."""

    load: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)  # landing as the last complete catch-up left it
    signatures: dict[str, str] = field(default_factory=dict)  # pipeline -> its landing signature, taken now

    def save(self, path: Path, report: CatchUpReport) -> None:
        """Record the signatures of the loaded pipelines that ended with no failed run or sensor: the next catch-up
        skips them until their landing changes. A pipeline with a failure keeps its old signature (retried)."""
        failed = {line.pipeline for line in report.lines if not line.ok} | report.failed_pipelines
        done = {name: sig for name, sig in self.signatures.items() if name in self.load and name not in failed}
        if done:
            saved = load_cursors(path)
            saved.update(done)
            _write_atomically(path, json.dumps(saved, indent=1, sort_keys=True))


def plan_catch_up(pipelines: Sequence[str] | None = None, fetch: bool = False) -> LoadPlan:
    """The selected pipelines worth loading: those with input whose landing changed since the last complete
    catch-up (``landing_signature``), with ``fetch`` those that call an API, and every pipeline named explicitly
    (``--pipeline``: its stale assets are checked even when nothing landed). A lake that cannot be listed loads the
    pipeline, so its run reports why."""
    from ecommerce_assets.storage.lakes import build_lake

    settings = get_settings()
    plan = LoadPlan()
    try:
        lake = build_lake(settings)
    except Exception:  # a lake setting problem: every selected pipeline, whose runs then say what is wrong
        plan.load = [p.name for p in PIPELINES if not pipelines or p.name in pipelines]
        return plan
    saved = load_cursors(settings.state_dir / LANDING_SIGNATURES)
    for pipeline in PIPELINES:
        if pipelines and pipeline.name not in pipelines:
            continue
        try:
            if not has_input(pipeline, lake, settings) and not (fetch and pipeline.name in FETCHING_PIPELINES):
                continue
            if pipeline.name != "stream":
                plan.signatures[pipeline.name] = landing_signature(pipeline, lake)
        except Exception:  # said by the catch-up's own landing check
            plan.load.append(pipeline.name)
            continue
        named = bool(pipelines) or (fetch and pipeline.name in FETCHING_PIPELINES) or pipeline.name == "stream"
        if named or saved.get(pipeline.name) != plan.signatures.get(pipeline.name):
            plan.load.append(pipeline.name)
        else:
            plan.unchanged.append(pipeline.name)
    return plan


def _target_selection(target_def: dg.SensorDefinition | dg.ScheduleDefinition) -> dg.AssetSelection:
    """The asset selection a sensor or schedule targets (its ``target=``)."""
    if isinstance(target_def, dg.SensorDefinition) and target_def.asset_selection is not None:
        return target_def.asset_selection
    targets = target_def.targets if isinstance(target_def, dg.SensorDefinition) else [target_def.target]
    job = targets[0].resolvable_to_job
    selection = getattr(job, "selection", None)
    if selection is None:
        selection = dg.AssetSelection.assets(*job.asset_layer.executable_asset_keys)  # type: ignore[union-attr]
    return selection


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _run_error(result: dg.ExecuteInProcessResult) -> str | None:
    """The first failed step's error, in a few words: its message, and dbt's own errors when dbt failed."""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            err = event.step_failure_data.error
            while err.cause is not None and err.cls_name in ("DagsterExecutionStepExecutionError",):
                err = err.cause
            lines = [line.strip() for line in err.message.strip().splitlines() if line.strip()]
            if "Errors parsed from dbt logs:" in lines:  # dagster-dbt: the command, then dbt's errors
                lines = [lines[0].split(" with command")[0] + ":"] + lines[lines.index("Errors parsed from dbt logs:") + 1:]
            message = " ".join(lines[:4]) if lines else err.cls_name
            return f"{event.step_key}: {message}"[:500]
    return None


@contextlib.contextmanager
def _progress(label: str, enabled: bool) -> Iterator[None]:
    """On a terminal, a live line with the running step's elapsed time (long steps: large files, dbt)."""
    if not enabled or not sys.stderr.isatty():
        yield
        return
    from tqdm import tqdm

    done = threading.Event()
    with tqdm(total=None, desc=f"       {label}", bar_format="{desc}: {elapsed}", file=sys.stderr, leave=False) as bar:
        ticker = threading.Thread(target=lambda: [bar.refresh() for _ in iter(lambda: done.wait(1.0), True)], daemon=True)
        ticker.start()
        try:
            yield
        finally:
            done.set()
            ticker.join(timeout=2)



class CatchUp:
    """One headless catch-up over ``defs`` in ``instance`` (see the module docstring)."""

    def __init__(
        self,
        defs: dg.Definitions,
        instance: dg.DagsterInstance,
        echo: Callable[[str], None] = print,
        verbose: bool = False,
        pipelines: Sequence[str] | None = None,
        unchanged: Sequence[str] = (),
    ) -> None:
        self.defs = defs
        self.unchanged = set(unchanged)
        self.instance = instance
        self.echo = echo
        self.verbose = verbose
        unknown = sorted(set(pipelines or ()) - set(BY_NAME))
        if unknown:
            raise ValueError(f"unknown pipeline(s) {unknown}; choose from {', '.join(BY_NAME)}")
        self.selected = [p for p in PIPELINES if not pipelines or p.name in pipelines]
        self.graph = defs.resolve_asset_graph()
        self.resources = dict(defs.resources or {})
        self.settings = get_settings()
        self.report = CatchUpReport()

    # --- helpers
    def pipeline_of(self, keys: Iterable[dg.AssetKey]) -> Pipeline | None:
        for key in keys:
            if self.graph.has(key):
                pipeline = BY_GROUP.get(self.graph.get(key).group_name or "")
                if pipeline:
                    return pipeline
        return None

    def note(self, line: str) -> None:
        self.report.notes.append(line)
        self.echo(line)

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """Unless verbose: no Dagster log lines, warnings or dbt output on the console (they stay in the
        instance's event log, shown in the UI)."""
        if self.verbose:
            yield
            return
        logging.disable(logging.INFO)  # sensor contexts log through their own console handler
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                yield
        finally:
            logging.disable(logging.NOTSET)

    def _run_config(self, run_config: dict | None) -> dict | None:
        if self.verbose:
            return run_config
        return {**(run_config or {}), **QUIET_LOGGERS}

    def run(
        self,
        label: str,
        pipeline: str,
        keys: list[dg.AssetKey] | None,
        job: dg.JobDefinition | None = None,
        *,
        partition_key: str | None = None,
        tags: dict[str, str] | None = None,
        run_config: dict | None = None,
    ) -> bool:
        """Execute one run in process, recorded in the instance; print its line."""
        job = job or self.defs.resolve_implicit_job_def_def_for_assets(keys or [])
        if job is None:
            raise ValueError(f"no single job can materialize {keys}")
        started = time.monotonic()
        tags = {**(tags or {}), PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname(), MAX_RETRIES_TAG: "0"}
        try:
            with self.quiet(), _progress(f"{pipeline} {label}", enabled=not self.verbose):
                result = job.execute_in_process(
                    instance=self.instance,
                    asset_selection=keys,
                    partition_key=partition_key,
                    tags=tags,
                    run_config=self._run_config(run_config),
                    raise_on_error=False,
                )
        except Exception as exc:  # a run that could not start (invalid config, a definitions error): its line
            line = RunLine(label, pipeline, False, time.monotonic() - started, {}, _first_line(exc))
            self.report.add(line, set())
            self.echo(line.render())
            self.alert(f"run could not start: {pipeline} {label}", f"{label}: {_first_line(exc)}"[:700])
            return False
        rows: dict[str, int | None] = {}
        done: set[dg.AssetKey] = set()
        for event in result.get_asset_materialization_events():
            mat = event.materialization  # type: ignore[union-attr]
            if mat is None:
                continue
            done.add(mat.asset_key)
            count = mat.metadata.get("dagster/row_count")
            value = getattr(count, "value", count)
            rows[mat.asset_key.to_user_string()] = int(value) if isinstance(value, int | float) else None
        line = RunLine(label, pipeline, result.success, time.monotonic() - started, rows,
                       None if result.success else _run_error(result))
        self.report.add(line, done)
        self.echo(line.render())
        if not result.success:
            self.alert(f"run failed: {result.dagster_run.job_name}",
                       f"run {result.run_id} ({pipeline} {label}) failed: {line.error or ''}"[:700],
                       result.dagster_run)
        return result.success

    def alert(self, subject: str, message: str, run: dg.DagsterRun | None = None) -> None:
        """An error alert through the ``notifier`` (the daemon's run-failure sensor never sees runs executed in
        this process). A notifier that fails is said on the console; the catch-up goes on."""
        notifier = self.resources.get("notifier")
        if notifier is None:
            return
        details: dict[str, object] = {"trigger": "ecommerce-assets run"}
        alerts_logger = logging.getLogger("ecommerce_assets.alerts")
        quiet, alerts_logger.disabled = alerts_logger.disabled, not self.verbose  # the run's line already says it
        try:
            if run is not None:
                from ecommerce_assets.defs.alerts.sensors import run_summary

                details.update(run_summary(self.instance, run))
            notifier.failure(subject=subject, message=message, details=details)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - an alert that cannot go out must not stop the catch-up
            self.echo(f"{'':<6} {'':>7}  {'':<12} alert not sent ({subject}): {_first_line(exc)}")
        finally:
            alerts_logger.disabled = quiet

    def reap_killed_runs(self) -> None:
        """Mark as failed the runs whose process died mid-run (SIGKILL, a crash, a reboot): they would show as
        running forever (``defs.alerts.run_health``). Their work is redone by this catch-up (a batch whose run did
        not succeed is not done; an asset older than its inputs is stale). Each gets a failure alert."""
        for run, message in dead_runs(self.instance):
            self.instance.report_run_failed(run, message)
            self.note(f"{'failed':<6} {'':>7}  {'':<12} run {run.run_id[:8]} was left running by a killed process: "
                      "marked failed, its work is redone")
            self.alert(f"run killed: {run.job_name}", f"run {run.run_id}: {message}", run)

    # --- 0. which pipelines have anything to do
    def prepare_landing(self) -> None:
        """Create the local landing folders on first use, so a user knows where to drop files."""
        from ecommerce_assets.storage.lake import LocalLake

        lake = self.resources.get("lake")
        if isinstance(lake, LocalLake):
            for pipeline in PIPELINES:
                for source in pipeline.landing:
                    Path(lake.uri(landing_prefix(source))).mkdir(parents=True, exist_ok=True)

    def _has_input(self, pipeline: Pipeline) -> bool:
        return has_input(pipeline, self.resources["lake"], self.settings)

    def active_pipelines(self, fetched: set[str]) -> list[Pipeline]:
        """The selected pipelines with input; one line for each of the others, saying what turns it on."""
        from ecommerce_assets.pipelines import stream_off_reason

        lake = self.resources["lake"]
        landing_uri = lake.uri(zones.LANDING)
        active = []
        for pipeline in self.selected:
            if pipeline.name in self.unchanged:
                self.note(f"skip   {'':>7}  {pipeline.name:<12} nothing new landed since the last catch-up")
                continue
            try:
                has_input = pipeline.name in fetched or self._has_input(pipeline)
            except Exception as exc:  # an unreachable lake (no such bucket, access denied): said, and the rest goes on
                self.sensor_failed("landing check", pipeline.name, exc)
                continue
            if has_input:
                active.append(pipeline)
            elif pipeline.name == "stream":
                self.note(f"skip   {'':>7}  {'stream':<12} {stream_off_reason(self.settings)}")
            else:
                self.note(f"skip   {'':>7}  {pipeline.name:<12} nothing landed: {turn_on_hint(pipeline, landing_uri)}")
        return active

    # --- 1. what the API schedules would fetch
    def _sensor_tick(self, sensor: dg.SensorDefinition, cursor: str | None) -> tuple[list[dg.RunRequest], str | None]:
        """Evaluate ``sensor`` once from ``cursor``; apply its dynamic-partition requests; return its run requests."""
        resources = {k: self.resources[k] for k in sensor.required_resource_keys if k in self.resources}
        with dg.build_sensor_context(
            instance=self.instance, definitions=self.defs, sensor_name=sensor.name, resources=resources,
            cursor=cursor,
        ) as ctx, self.quiet():  # nested resources (S3Lake holds an S3Resource) are set up and torn down
            result = sensor(ctx)
            if isinstance(result, dg.SensorResult):
                for req in result.dynamic_partitions_requests or []:
                    if isinstance(req, dg.AddDynamicPartitionsRequest):
                        self.instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
                return list(result.run_requests or []), result.cursor if result.cursor is not None else ctx.cursor
            if result is None or isinstance(result, dg.SkipReason):
                return [], ctx.cursor
            requests = [r for r in (result if isinstance(result, list) else [result]) if isinstance(r, dg.RunRequest)]
            return requests, ctx.cursor

    def fetch(self) -> set[str]:
        """Run what the API schedules would run; return the pipelines that fetched something."""
        from ecommerce_assets.resources.unconfigured import UnconfiguredResource

        selected = {p.name for p in self.selected}
        fetched: set[str] = set()
        for sensor in self.defs.sensors or []:
            if isinstance(sensor, dg.SensorDefinition) and sensor.tags.get(PARTITIONS_TAG) == "true":
                try:
                    self._sensor_tick(sensor, None)
                except Exception as exc:  # reported, and the rest goes on
                    self.sensor_failed(f"sensor {sensor.name}", "catalog", exc)
        for schedule in self.defs.schedules or []:
            if not isinstance(schedule, dg.ScheduleDefinition):
                continue
            keys = list(_target_selection(schedule).resolve(self.graph))
            needs = {r for k in keys for r in self.graph.get(k).assets_def.required_resource_keys} & set(FETCH_RESOURCES)
            pipeline = self.pipeline_of(keys)
            if not needs or pipeline is None or pipeline.name not in selected:
                continue
            missing = [r for r in sorted(needs) if isinstance(self.resources.get(r), UnconfiguredResource)]
            if missing:
                problems = "; ".join(self.resources[r].problem for r in missing)  # type: ignore[union-attr]
                self.note(f"skip   {'':>7}  {pipeline.name:<12} fetch ({schedule.name}) off: {problems}")
                continue
            try:
                with dg.build_schedule_context(instance=self.instance, scheduled_execution_time=dt.datetime.now(dt.UTC),
                                               repository_def=self.defs.get_repository_def()) as ctx:
                    requests = schedule.evaluate_tick(ctx).run_requests or []
            except Exception as exc:
                self.sensor_failed(f"schedule {schedule.name}", pipeline.name, exc)
                continue
            if not requests:
                self.note(f"skip   {'':>7}  {pipeline.name:<12} fetch ({schedule.name}): nothing to fetch")
            for req in requests:
                label = f"fetch {schedule.name}" + (f" [{req.partition_key}]" if req.partition_key else "")
                tags = {**req.tags, SCHEDULE_NAME_TAG: schedule.name, "ecommerce/trigger": "catch-up fetch"}
                if self.run(label, pipeline.name, list(req.asset_selection or keys), partition_key=req.partition_key,
                            tags=tags, run_config=req.run_config if isinstance(req.run_config, dict) else None):
                    fetched.add(pipeline.name)
        return fetched

    # --- 2. the sensors
    def sensor_failed(self, name: str, pipeline: str, exc: BaseException) -> None:
        from ecommerce_assets.resources.unconfigured import MissingSettingError

        reason = str(exc) if isinstance(exc, MissingSettingError) else _first_line(exc)
        self.report.failures.append(f"{name}: {reason}")
        self.report.failed_pipelines.add(pipeline)
        self.echo(f"{'FAILED':<6} {'':>7}  {pipeline:<12} {name}: {reason}")
        self.alert(f"{name} failed", f"{pipeline}: {name}: {reason}"[:700])

    def _already_done(self, sensor: str, run_key: str) -> bool | None:
        """Whether a batch (sensor + run key) is done: True when a run of it succeeded; None when another process
        (the daemon) still has it in flight after ``IN_FLIGHT_WAIT_SECONDS``; False when it must be executed."""
        deadline = time.monotonic() + IN_FLIGHT_WAIT_SECONDS
        while True:
            runs = self.instance.get_runs(filters=dg.RunsFilter(tags={SENSOR_NAME_TAG: sensor, RUN_KEY_TAG: run_key}))
            if any(r.status == dg.DagsterRunStatus.SUCCESS for r in runs):
                return True
            if not any(r.status in IN_FLIGHT for r in runs):
                return False
            if time.monotonic() > deadline:
                return None
            time.sleep(1.0)

    def _execute_request(self, sensor: dg.SensorDefinition, pipeline: str, req: dg.RunRequest) -> bool:
        tags = {**req.tags, SENSOR_NAME_TAG: sensor.name, **({RUN_KEY_TAG: req.run_key} if req.run_key else {})}
        run_config = req.run_config if isinstance(req.run_config, dict) else None
        label = sensor.name + (f" [{req.partition_key}]" if req.partition_key else "")
        if req.asset_selection is not None or sensor.job_name is None or sensor.job_name.startswith("__anonymous"):
            keys = list((req.asset_selection or _target_selection(sensor)).resolve(self.graph))
            return self.run(label, pipeline, keys, partition_key=req.partition_key, tags=tags, run_config=run_config)
        job = self.defs.resolve_job_def(sensor.job_name)
        return self.run(label, pipeline, None, job, partition_key=req.partition_key, tags=tags, run_config=run_config)

    def sensors(self, active: list[Pipeline]) -> None:
        names = {p.name for p in active}
        cursors_path = self.settings.state_dir / "catch_up_cursors.json"
        for sensor in self.defs.sensors or []:
            if not isinstance(sensor, dg.SensorDefinition) or sensor.tags.get(CATCH_UP_TAG) != "true":
                continue
            pipeline = self.pipeline_of(_target_selection(sensor).resolve(self.graph))
            if pipeline is None or pipeline.name not in names:
                continue
            with exclusive(self.settings.state_dir / f"catch_up.{sensor.name}.lock"):
                self._sensor_ticks(sensor, pipeline, load_cursors(cursors_path), cursors_path)

    def _sensor_ticks(self, sensor: dg.SensorDefinition, pipeline: Pipeline, cursors: dict[str, str],
                      cursors_path: Path) -> None:
        """Tick ``sensor`` until it asks for nothing more, executing its runs not done yet; save its cursor."""
        for _ in range(MAX_TICKS):
            try:
                requests, cursor = self._sensor_tick(sensor, cursors.get(sensor.name))
            except Exception as exc:  # reported as this sensor's failure; the other sensors go on
                self.sensor_failed(f"sensor {sensor.name}", pipeline.name, exc)
                break
            failed = False
            for req in requests:
                done = self._already_done(sensor.name, req.run_key) if req.run_key else False
                if done is None:  # another process is still on it: left to it, looked at again next time
                    self.note(f"busy   {'':>7}  {pipeline.name:<12} {sensor.name}: batch {req.run_key} is still being "
                              "processed by another run; left to it")
                    failed = True
                    continue
                if done:
                    self.report.skipped_run_keys += 1
                    continue
                failed = not self._execute_request(sensor, pipeline.name, req) or failed
            if failed:
                break  # keep the cursor before the failed batch, so the next catch-up retries it
            if cursor is not None:
                cursors[sensor.name] = cursor
                save_cursor(cursors_path, sensor.name, cursor)
            if not requests:
                break

    # --- 3. everything downstream
    def _ready(self, todo: list[dg.AssetKey]) -> list[dg.AssetKey]:
        """Drop the assets that have an input never materialized (nor about to be): building them would fail.

        An input tagged ``ecommerce/optional_source`` never blocks: its dependents do without it.
        """
        selected = set(todo)
        ready: list[dg.AssetKey] = []
        waiting: dict[dg.AssetKey, dg.AssetKey] = {}
        order = {k: i for i, k in enumerate(self.graph.toposorted_asset_keys)}
        for key in sorted(todo, key=order.__getitem__):
            for parent in self.graph.get(key).parent_keys:
                if parent in waiting or (
                    parent not in selected and parent not in self.report.materialized
                    and self.graph.has(parent) and self.graph.get(parent).is_materializable
                    and self.graph.get(parent).tags.get(OPTIONAL_SOURCE_TAG) != "true"
                    and self.instance.get_latest_materialization_event(parent) is None
                ):
                    waiting[key] = waiting.get(parent, parent)
                    break
            else:
                ready.append(key)
        for key, missing in waiting.items():
            pipeline = self.pipeline_of([key])
            self.note(f"wait   {'':>7}  {pipeline.name if pipeline else '':<12} {key.to_user_string()} "
                      f"needs {missing.to_user_string()}, never materialized")
        return ready

    def _catch_up_candidate(self, key: dg.AssetKey) -> bool:
        """Unpartitioned, materializable, of a selected pipeline, and runnable without per-run config (an asset
        that needs its batch's config, like the stream's, is redone by re-running its batch)."""
        node = self.graph.get(key)
        if node.is_partitioned or not node.is_materializable or node.group_name not in {p.group for p in self.selected}:
            return False
        field_ = node.assets_def.node_def.config_field if node.assets_def.node_def is not None else None
        return field_ is None or not field_.is_required

    def _gate(self, parent: dg.AssetKey, latest: dg.EventLogEntry) -> str:
        """Whether the blocking checks of ``parent`` passed on its latest materialization: ``"passed"``,
        ``"failed"`` or ``"unchecked"`` (a run killed between the materialization and its checks)."""
        for check_key in self.graph.get(parent).check_keys:
            if not self.graph.get_check_spec(check_key).blocking:
                continue
            record = self.instance.get_latest_asset_check_evaluation_record(check_key)
            if record is None or record.run_id != latest.run_id:
                return "unchecked"
            status = getattr(record.status, "value", str(record.status))
            if status == "FAILED":
                return "failed"
            if status != "SUCCEEDED":
                return "unchecked"
        return "passed"

    def stale(self) -> tuple[set[dg.AssetKey], dict[dg.AssetKey, dg.AssetKey]]:
        """The unpartitioned assets of the selected pipelines whose inputs were materialized after them (or
        that were never materialized while their inputs were): what a killed or failed run left behind.

        An input whose blocking checks failed holds its dependents back (one line says so); an input whose
        checks never ran on its latest materialization is materialized again, checks and all. Returns the stale
        assets and the held ones (asset -> the input that failed its check)."""
        candidates = [k for k in self.graph.toposorted_asset_keys if self._catch_up_candidate(k)]
        parents = {p for k in candidates for p in self.graph.get(k).parent_keys
                   if self.graph.has(p) and self.graph.get(p).is_materializable}
        latest = self.instance.get_latest_materialization_events(set(candidates) | parents)
        runs = {e.run_id for e in latest.values() if e is not None and e.run_id}
        in_flight = {r.run_id for r in self.instance.get_runs(filters=dg.RunsFilter(run_ids=list(runs)))
                     if r.status in IN_FLIGHT} if runs else set()
        # what a run in flight (the daemon's, another catch-up's) materialized is still that run's business
        busy = {k for k, e in latest.items() if e is not None and e.run_id in in_flight}
        stale: set[dg.AssetKey] = set()
        held: dict[dg.AssetKey, dg.AssetKey] = {}
        for key in candidates:
            own = latest.get(key)
            newer = [p for p in self.graph.get(key).parent_keys
                     if p in parents and p not in busy and key not in busy and latest.get(p) is not None
                     and (own is None or latest[p].timestamp > own.timestamp)]  # type: ignore[union-attr]
            for parent in newer:
                gate = self._gate(parent, latest[parent])  # type: ignore[arg-type]
                if gate == "failed":
                    held[key] = parent
                    break
                if gate == "unchecked" and self._catch_up_candidate(parent):
                    stale.add(parent)
            else:
                if newer:
                    stale.add(key)
        return stale - set(held), held

    def downstream(self) -> None:
        stale, held = self.stale()
        if not self.report.materialized and not stale and not held:
            return
        downstream = dg.AssetSelection.assets(*self.report.materialized, *stale).downstream().resolve(self.graph)
        todo = [
            k for k in downstream
            if (k not in self.report.materialized or k in stale) and self._catch_up_candidate(k)
        ]
        # a held asset runs only with the input that failed its check (whose checks then run first, in the same run)
        for key, parent in held.items():
            if key in todo and parent not in todo:
                todo.remove(key)
            if key not in todo:
                pipeline = self.pipeline_of([key])
                self.note(f"held   {'':>7}  {pipeline.name if pipeline else '':<12} {key.to_user_string()} waits: "
                          f"{parent.to_user_string()} failed a blocking check")
        if not todo:
            return
        todo = self._ready(todo)
        by_pipeline: dict[str, list[dg.AssetKey]] = {}
        for key in todo:
            pipeline = self.pipeline_of([key])
            by_pipeline.setdefault(pipeline.name if pipeline else "", []).append(key)
        for name, keys in by_pipeline.items():
            self.run(f"downstream ({len(keys)} asset(s))", name, keys, tags={"ecommerce/trigger": "catch-up"})

    def __call__(self, fetch: bool = False) -> CatchUpReport:
        self.reap_killed_runs()
        self.prepare_landing()
        fetched = self.fetch() if fetch else set()
        active = self.active_pipelines(fetched)
        self.sensors(active)
        self.downstream()
        return self.report


def catch_up(
    defs: dg.Definitions | None = None,
    instance: dg.DagsterInstance | None = None,
    echo: Callable[[str], None] = print,
    fetch: bool = False,
    pipelines: Sequence[str] | None = None,
    verbose: bool = False,
    plan: LoadPlan | None = None,
) -> CatchUpReport:
    """Fetch (optionally), run every catch-up sensor of the selected pipelines, then everything downstream.

    Without ``defs``, only the pipelines ``plan_catch_up`` picks are loaded (``plan``: that plan, made by the caller),
    and the landing signatures of those that completed are recorded for the next catch-up."""
    if defs is None:
        plan = plan or plan_catch_up(pipelines, fetch)
        defs = load_definitions(plan.load)
    if instance is None:
        home = ensure_dagster_home()
        with exclusive(home / ".catch_up_instance.lock"):  # a fresh instance's schema is created once
            instance = dg.DagsterInstance.get()
    report = CatchUp(defs, instance, echo=echo, verbose=verbose, pipelines=pipelines,
                     unchanged=plan.unchanged if plan else ())(fetch=fetch)
    if plan is not None:
        plan.save(get_settings().state_dir / LANDING_SIGNATURES, report)
    return report


def execute(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    keys: Iterable[dg.AssetKey],
    *,
    partition_key: str | None = None,
    tags: dict[str, str] | None = None,
    run_config: dict | None = None,
    verbose: bool = True,
) -> tuple[bool, set[dg.AssetKey]]:
    """Materialize ``keys`` (and their checks) in process, recorded in ``instance``."""
    runner = CatchUp(defs, instance, echo=lambda _m: None, verbose=verbose)
    keys = list(keys)
    pipeline = runner.pipeline_of(keys)
    ok = runner.run("materialize", pipeline.name if pipeline else "", keys, partition_key=partition_key, tags=tags,
                    run_config=run_config)
    return ok, runner.report.materialized
