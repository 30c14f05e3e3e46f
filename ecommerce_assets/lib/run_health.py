"""Runs whose process died: a run left "started" by a killed worker would show as running forever, and its
batch (sensor + run key) would never be run again by the daemon, which skips a run key that has a run.

``dead_runs`` finds them on this machine: the runs of ``ecommerce-assets run`` carry the pid and host of the
process executing them (``ecommerce/pid``, ``ecommerce/host``); the runs the local daemon launches (Dagster's
``DefaultRunLauncher``: one subprocess a run) record their worker's pid in their "Started process for run"
event. A run is dead when that process no longer exists. The ``mark_dead_runs_failed`` sensor marks them
failed every 30 s in the daemon (``defs/alerts/sensors.py``); ``ecommerce-assets run`` does the same when it starts. A failed daemon run is
then retried by Dagster's run retries (``run_retries`` in the instance's ``dagster.yaml``) with the same run
key, and alerted by ``alert_on_run_failure``. Runs launched elsewhere (ECS) are left to Dagster's run
monitoring.
"""

from __future__ import annotations

import socket

import dagster as dg

from ecommerce_assets.storage.lake import pid_alive

PID_TAG = "ecommerce/pid"  # the process executing a run in process (``ecommerce-assets run``), with its host
HOST_TAG = "ecommerce/host"
MAX_RETRIES_TAG = "dagster/max_retries"  # 0 on the CLI's runs: they have no code-location origin to re-execute


def worker_pid(instance: dg.DagsterInstance, run: dg.DagsterRun, host: str) -> int | None:
    """The pid of the process executing ``run`` on this host, or None when it is not known here."""
    if PID_TAG in run.tags:
        pid = run.tags[PID_TAG]
        return int(pid) if pid.isdigit() and run.tags.get(HOST_TAG) == host else None
    if not isinstance(instance.run_launcher, dg.DefaultRunLauncher):
        return None
    for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = entry.dagster_event.event_specific_data if entry.dagster_event else None
        pid = getattr(data, "metadata", {}).get("pid") if data is not None else None
        value = getattr(pid, "value", pid)
        if value is not None and str(value).isdigit():
            return int(value)
    return None


def dead_runs(instance: dg.DagsterInstance) -> list[tuple[dg.DagsterRun, str]]:
    """The started runs of this machine whose process has died, each with the message to fail it with."""
    host = socket.gethostname()
    found = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        pid = worker_pid(instance, run, host)
        if pid is not None and not pid_alive(pid):
            found.append((run, f"the process executing this run (pid {pid} on {host}) died before it ended "
                               "(killed, or the machine stopped); its work is redone by a retry or the next catch-up"))
    return found
