"""A live Dagster for tests: the product's ``ecommerce-assets ui`` (webserver + daemon) in its own session.

``LiveDagster`` starts the command on a free port with a given environment, waits until the webserver
answers and the code location has loaded, reads runs and sensor states through read-only GraphQL queries
(never a mutation: nothing is clicked), and stops the whole process tree with SIGTERM to the command's
process group, checking that every process it started is gone within a bound.

``env_for`` builds a clean environment: nothing of the caller's ``ECOMMERCE_*``, ``DAGSTER_*``, ``AWS_*``
settings leaks in, and the venv's bin is not on PATH (the command must find its own tools).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
LOCATION = "ecommerce_assets.definitions"
REPOSITORY = "__repository__"
SENSOR_TAG = "dagster/sensor_name"
T = TypeVar("T")

WORKSPACE_QUERY = """{ workspaceOrError { __typename ... on PythonError { message }
  ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
RUNS_QUERY = """query ($filter: RunsFilter) { runsOrError(filter: $filter) { __typename
  ... on PythonError { message }
  ... on Runs { results { runId status tags { key value } assetSelection { path } } } } }"""
RUN_ERRORS_QUERY = """query ($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run {
  eventConnection(limit: 5000) { events { __typename
    ... on ExecutionStepFailureEvent { stepKey error { message } }
    ... on RunFailureEvent { message } } } } } }"""
MATERIALIZED_QUERY = """query ($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run {
  assetMaterializations { assetKey { path } } } } }"""
SENSOR_QUERY = """query ($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) { __typename
  ... on PythonError { message }
  ... on Sensor { sensorState { status ticks(limit: 3) { status error { message } } } } } }"""


def env_for(settings: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment without any product, Dagster or AWS setting, plus ``settings``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ECOMMERCE_", "DAGSTER_", "AWS_", "VIRTUAL_ENV", "PG"))}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    env.update(settings)
    return env


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state) of every process, read from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) "
            table[int(entry.name)] = (int(fields[1]), fields[0])
    return table


def descendants(pid: int) -> set[int]:
    """Every live process started, directly or not, by ``pid``."""
    table = _proc_table()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, (ppid, _) in table.items() if ppid in frontier and p not in found}
        found |= frontier
    return {p for p in found if table[p][1] != "Z"}


def running(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (a zombie waiting to be reaped has stopped)."""
    table = _proc_table()
    return {p for p in pids if p in table and table[p][1] != "Z"}


class LiveDagster:
    """``ecommerce-assets ui --port P`` in its own session, its output in ``log``."""

    def __init__(self, env: Mapping[str, str], log: Path, cwd: Path = ROOT) -> None:
        self.env, self.log, self.cwd = dict(env), log, cwd
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.seen: set[int] = set()  # every process it started, for the checks at stop and the clean-up
        self._log_handle: Any = None
        self._http = httpx.Client(timeout=30)

    # --- life cycle --------------------------------------------------------------------------
    def start(self, timeout: float = 150) -> float:
        """Start the command; wait until the code location is loaded; return the seconds it took."""
        started = time.monotonic()
        self._log_handle = self.log.open("ab")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "ecommerce-assets"), "ui", "--port", str(self.port)],
            cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=self._log_handle,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.wait_until(self._location_loaded, timeout, "the webserver to answer with the code location loaded")
        return time.monotonic() - started

    def _location_loaded(self) -> bool:
        try:
            ws = self.graphql(WORKSPACE_QUERY)["workspaceOrError"]
        except (httpx.HTTPError, AssertionError):
            return False
        if ws["__typename"] != "Workspace":
            return False
        for entry in ws["locationEntries"]:
            if entry["name"] != LOCATION or entry["loadStatus"] != "LOADED":
                continue
            loaded = entry["locationOrLoadError"] or {}
            if loaded.get("__typename") == "PythonError":
                raise AssertionError(f"the code location failed to load: {loaded['message']}\n{self.tail()}")
            return loaded.get("__typename") == "RepositoryLocation"
        return False

    def stop(self, bound: float = 15.0) -> float:
        """SIGTERM to the command's process group; every process it started must be gone within ``bound`` s.

        Returns the seconds it took. Raises AssertionError (after killing the leftovers) when it did not stop.
        """
        assert self.proc is not None, "not started"
        self.seen |= descendants(self.proc.pid)
        started = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGTERM)
        while time.monotonic() - started < bound:
            self.proc.poll()
            if self.proc.returncode is not None and not running(self.seen):
                break
            time.sleep(0.2)
        took = time.monotonic() - started
        left = running(self.seen | ({self.proc.pid} if self.proc.poll() is None else set()))
        if left:
            self.kill_everything()
            raise AssertionError(f"still running {took:.1f} s after SIGTERM: {sorted(left)}\n{self.tail()}")
        self._close()
        return took

    def kill_everything(self) -> None:
        """Last resort after a failed test: nothing this command started may outlive the test."""
        if self.proc is None:
            return
        for pid in running(self.seen | descendants(self.proc.pid) | {self.proc.pid}):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self._close()

    def _close(self) -> None:
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        self._http.close()

    # --- waiting -----------------------------------------------------------------------------
    def tail(self, lines: int = 80) -> str:
        """The last lines of the command's output."""
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def check_alive(self, what: str) -> None:
        """Fail (with the log) when the command has exited; remember the processes it started."""
        assert self.proc is not None, "not started"
        self.seen |= descendants(self.proc.pid)
        if self.proc.poll() is not None:
            raise AssertionError(f"ecommerce-assets ui exited ({self.proc.returncode}) while {what}:\n{self.tail()}")

    def wait_until(self, cond: Callable[[], T], timeout: float, what: str, every: float = 2.0) -> T:
        """Poll ``cond`` until it returns something truthy; fail with the server's log after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive(f"waiting for {what}")
            result = cond()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}:\n{self.tail()}")
            time.sleep(every)

    # --- read-only GraphQL -------------------------------------------------------------------
    def graphql(self, query: str, **variables: Any) -> dict[str, Any]:
        """One GraphQL query (never a mutation) against the webserver; its ``data``."""
        assert not query.lstrip().startswith("mutation"), "tests read, they never click"
        resp = self._http.post(f"{self.base}/graphql", json={"query": query, "variables": variables})
        resp.raise_for_status()
        body = resp.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def runs(self, **tags: str) -> list[dict[str, Any]]:
        """Every run (newest first) carrying all of ``tags``, as ``{runId, status, tags: {k: v}, assets}``
        (``assets``: the run's asset selection when it has one; see ``materialized`` for what it did)."""
        flt = {"tags": [{"key": k, "value": v} for k, v in tags.items()]} if tags else None
        got = self.graphql(RUNS_QUERY, filter=flt)["runsOrError"]
        assert got["__typename"] == "Runs", got
        return [
            {"runId": r["runId"], "status": r["status"], "tags": {t["key"]: t["value"] for t in r["tags"]},
             "assets": sorted("/".join(a["path"]) for a in (r["assetSelection"] or []))}
            for r in got["results"]
        ]

    def sensor_runs(self, sensor: str) -> list[dict[str, Any]]:
        """The runs ``sensor`` asked for."""
        return self.runs(**{SENSOR_TAG: sensor})

    def materialized(self, run_id: str) -> set[str]:
        """The assets (``a/b`` paths) a run materialized."""
        run = self.graphql(MATERIALIZED_QUERY, runId=run_id)["runOrError"]
        assert run["__typename"] == "Run", run
        return {"/".join(m["assetKey"]["path"]) for m in run["assetMaterializations"]}

    def run_errors(self, run_id: str) -> list[str]:
        """The failure messages of a run (failed steps and the run failure)."""
        run = self.graphql(RUN_ERRORS_QUERY, runId=run_id)["runOrError"]
        out = []
        for event in run.get("eventConnection", {}).get("events", []):
            if event["__typename"] == "ExecutionStepFailureEvent":
                out.append(f"{event['stepKey']}: {(event.get('error') or {}).get('message', '').strip()}")
            elif event["__typename"] == "RunFailureEvent":
                out.append(event.get("message", ""))
        return out

    def sensor_state(self, sensor: str) -> dict[str, Any]:
        """``{status, ticks: [{status, error}]}`` of ``sensor`` as the UI shows it."""
        got = self.graphql(SENSOR_QUERY, selector={
            "repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": sensor,
        })["sensorOrError"]
        assert got["__typename"] == "Sensor", got
        return got["sensorState"]

    def fail_on_failed_runs(self, runs: list[dict[str, Any]]) -> None:
        """Raise with each failed run's errors and the server log when any of ``runs`` failed."""
        failed = [r for r in runs if r["status"] in ("FAILURE", "CANCELED")]
        if failed:
            detail = "\n".join(
                f"run {r['runId']} ({r['tags'].get(SENSOR_TAG, 'no sensor')}, {r['assets']}): {r['status']}\n  "
                + "\n  ".join(self.run_errors(r["runId"])[-5:])
                for r in failed
            )
            raise AssertionError(f"runs failed:\n{detail}\n--- server log ---\n{self.tail(40)}")


def dagster_cli(env: Mapping[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``dagster <args> -m ecommerce_assets.definitions`` from the venv, in ``env``; the completed process."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), *args, "-m", LOCATION],
        cwd=ROOT, env=dict(env), capture_output=True, text=True, timeout=timeout, check=False,
    )
