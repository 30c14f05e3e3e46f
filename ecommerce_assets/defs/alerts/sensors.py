"""Run-status sensors that send alerts through the ``notifier`` resource (local log file / SNS + SQS DLQ).

* ``alert_on_run_failure``: every failed run of this code location -> an error alert with the job, the
  run id, the failed steps and the error message (in aws mode also to the dead-letter queue);
* ``summarize_successful_run``: every successful run -> an info alert with what it materialized and the
  asset checks that did not pass (warnings included).
"""


from typing import Any

import dagster as dg

from ecommerce_assets.lib.run_health import dead_runs
from ecommerce_assets.resources.notifier import Notifier


def run_summary(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dict[str, Any]:
    """What a run did, from its event log: assets materialized, checks failed, failed steps, duration."""
    events = instance.all_logs(
        run.run_id,
        of_type={
            dg.DagsterEventType.ASSET_MATERIALIZATION,
            dg.DagsterEventType.ASSET_CHECK_EVALUATION,
            dg.DagsterEventType.STEP_FAILURE,
        },
    )
    assets: list[str] = []
    failed_checks: list[dict[str, str]] = []
    failed_steps: list[str] = []
    for entry in events:
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION and event.asset_key:
            assets.append(event.asset_key.to_user_string())
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            if evaluation is not None and not evaluation.passed:
                failed_checks.append({
                    "asset": evaluation.asset_key.to_user_string(),
                    "check": evaluation.check_name,
                    "severity": evaluation.severity.value,
                })
        elif event.event_type == dg.DagsterEventType.STEP_FAILURE and event.step_key:
            failed_steps.append(event.step_key)
    stats = instance.get_run_stats(run.run_id)
    duration = (stats.end_time - stats.start_time) if stats.end_time and stats.start_time else None
    return {
        "run_id": run.run_id,
        "job": run.job_name,
        "tags": {k: v for k, v in run.tags.items() if not k.startswith(".dagster")},
        "assets_materialized": sorted(set(assets)),
        "failed_checks": failed_checks,
        "failed_steps": sorted(set(failed_steps)),
        "duration_seconds": round(duration, 3) if duration is not None else None,
    }


@dg.run_failure_sensor(
    name="alert_on_run_failure",
    description="Send an error alert (local: alerts.log + console; aws: SNS + SQS dead-letter queue) for every failed run.",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def alert_on_run_failure(context: dg.RunFailureSensorContext, notifier: Notifier) -> None:
    run = context.dagster_run
    details = run_summary(context.instance, run)
    details["error"] = context.failure_event.message or ""
    notifier.failure(
        subject=f"run failed: {run.job_name}",
        message=f"run {run.run_id} of {run.job_name} failed: {(context.failure_event.message or '')[:500]}",
        details=details,
    )


@dg.run_status_sensor(
    name="summarize_successful_run",
    run_status=dg.DagsterRunStatus.SUCCESS,
    description="Send an info alert summarizing every successful run (assets materialized, checks that warned).",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def summarize_successful_run(context: dg.RunStatusSensorContext, notifier: Notifier) -> None:
    run = context.dagster_run
    details = run_summary(context.instance, run)
    warned = len(details["failed_checks"])
    notifier.summary(
        subject=f"run succeeded: {run.job_name}",
        message=(f"run {run.run_id} of {run.job_name}: {len(details['assets_materialized'])} asset(s) materialized"
                 + (f", {warned} check(s) did not pass" if warned else "")),
        details=details,
    )


@dg.sensor(
    name="mark_dead_runs_failed",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks failed the runs whose worker process died (a killed daemon or run), so they are retried "
                "and alerted instead of showing as running forever.",
)
def mark_dead_runs_failed(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    dead = dead_runs(context.instance)
    for run, message in dead:
        context.instance.report_run_failed(run, message)
    return dg.SkipReason(f"{len(dead)} dead run(s) marked failed" if dead else "no dead run")
