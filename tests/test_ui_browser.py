"""The Dagster UI in a real browser: ``ecommerce-assets ui`` on a fresh data dir, driven by headless Chromium.

The product's own command starts ``dagster dev`` (webserver + daemon). Debian's ``chromium`` (``/usr/bin/chromium``,
installed by ``.ci/run``), driven by Playwright for Python, then does what a user does:

1. opens the global asset lineage: the code location has loaded without error, and the groups of the five
   pipelines are drawn;
2. selects ``online_retail/raw`` and ``online_retail/cleaned`` on the Online Retail lineage and clicks
   Materialize; the run must succeed with every check of ``online_retail/cleaned`` passed, and the cleaned
   materialization must say which engine made it: once on the default engine, once with ``ECOMMERCE_ENGINE=spark``
   (the cleaning as a local PySpark job through Dagster Pipes, started by the run the click launched);
3. keeps screenshots in ``test-artifacts/`` (gitignored) and prints their paths and the run id.

Then SIGTERM to ``ecommerce-assets ui`` must stop everything it started within 15 s.

The arrival sensors run in local mode. So that the only run is the one clicked, the sample lands after the
Online Retail sensor's first tick, and ``ECOMMERCE_SENSOR_INTERVAL_SECONDS`` puts the next tick an hour away.
The code location's default executor runs a run in one process (a process per step, each loading the
definitions, took 164 s on a loaded 2-core machine).
Nothing is downloaded: the browser is the system's, and the UI's assets are served by the webserver.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.daemon import descendants, running

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
RETAIL_SAMPLE = ROOT / "ecommerce_assets" / "samples" / "online_retail_sample.csv"
LOCATION = "ecommerce_assets.definitions"
REPOSITORY = "__repository__"
# the asset groups of the five pipelines (group_name= in ecommerce_assets/defs/<domain>/assets.py)
PIPELINE_GROUPS = ("online_retail", "catalog", "orders", "transactions", "stream")
RETAIL_SENSOR = "online_retail_arrival_sensor"
RAW = ["online_retail", "raw"]
CLEANED = ["online_retail", "cleaned"]
CLEANED_CHECKS = {"no_null_invoiceno", "positive_quantity", "positive_unitprice", "counts_reconcile",
                  "unknown_customer_share"}
STOP_SECONDS = 15.0

WORKSPACE_QUERY = """{ workspaceOrError { __typename ... on PythonError { message }
  ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message }
      ... on RepositoryLocation { repositories { name assetGroups { groupName } } } } } } } }"""
SENSOR_QUERY = """query ($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
  __typename ... on Sensor { sensorState { status ticks(limit: 1) { status } } } } }"""
RUNS_QUERY = """{ runsOrError { ... on Runs { results { runId status tags { key value } } } } }"""
RUN_QUERY = """query ($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run {
  status assetSelection { path } assetMaterializations { assetKey { path } } } } }"""
ENGINE_QUERY = """query ($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) { ... on AssetNode {
  assetMaterializations(limit: 1) { runId metadataEntries { label ... on TextMetadataEntry { text } } } } } }"""
CHECKS_QUERY = """query ($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) { ... on AssetNode {
  assetChecksOrError { __typename ... on AssetChecks { checks { name blocking
    executionForLatestMaterialization { runId status evaluation { success } } } } } } } }"""


def _proc_table() -> dict[int, tuple[int, str, int]]:
    """pid -> (parent pid, state, process group) for every process, read from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) "
            table[int(entry.name)] = (int(fields[1]), fields[0], int(fields[2]))
    return table


class UiCommand:
    """``.venv/bin/ecommerce-assets ui`` in its own session, with its output in a log file."""

    def __init__(self, env: dict[str, str], log: Path, port: int):
        self.env, self.log, self.port = env, log, port
        self.base = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.seen: set[int] = set()  # every process it has started, for the clean-up after a failure
        self.extra_args: list[str] = []

    def start(self, cwd: Path, preexec_fn: Callable[[], Any] | None = None) -> None:
        self.log_handle = self.log.open("ab")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "ecommerce-assets"), "ui", "--port", str(self.port), *self.extra_args],
            cwd=cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=self.log_handle, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=preexec_fn,
        )

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def check_alive(self, what: str) -> None:
        assert self.proc is not None
        self.seen |= descendants(self.proc.pid)
        if self.proc.poll() is not None:
            raise AssertionError(f"ecommerce-assets ui exited ({self.proc.returncode}) while {what}:\n{self.tail()}")

    def kill_everything(self) -> None:
        """Last resort after a failed test: nothing it started may outlive the test."""
        if self.proc is None:
            return
        for pid in running(self.seen | descendants(self.proc.pid) | {self.proc.pid}):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        self.log_handle.close()


def wait_until(cond: Callable[[], Any], timeout: float, what: str, ui: UiCommand, every: float = 1.0) -> Any:
    """Poll ``cond`` until it returns something truthy; fail with the server's log after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        ui.check_alive(f"waiting for {what}")
        result = cond()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}:\n{ui.tail()}")
        time.sleep(every)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status == 200
    except OSError:
        return False


@pytest.fixture
def ui(tmp_path: Path) -> Iterator[UiCommand]:
    """The UI command on a fresh data dir and DAGSTER_HOME, from a shell without the venv on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ECOMMERCE_", "DAGSTER_", "AWS_", "VIRTUAL_ENV"))}
    env.update({
        "ECOMMERCE_ENV": "local",
        "ECOMMERCE_DATA_DIR": str(tmp_path / "data"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "ECOMMERCE_SENSOR_INTERVAL_SECONDS": "3600",  # one tick at start, the next an hour later
        "ECOMMERCE_DUCKDB_THREADS": "1",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
    })
    command = UiCommand(env, tmp_path / "ui.log", free_port())
    try:
        yield command
    finally:
        command.kill_everything()


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_the_ui_materializes_online_retail_in_a_browser(ui: UiCommand, tmp_path: Path, engine: str) -> None:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: `apt-get install chromium` (.ci/run installs it)"
    ui.env.update({"ECOMMERCE_ENGINE": engine, "ECOMMERCE_SPARK_MASTER": "local[2]",
                   "ECOMMERCE_SPARK_DRIVER_MEMORY": "1g"})
    started = time.monotonic()
    ui.start(cwd=tmp_path)

    def progress(what: str) -> None:
        print(f"\n[{time.monotonic() - started:5.1f} s] {what}", end="", flush=True)

    wait_until(lambda: _answers(f"{ui.base}/server_info"), 180, "the webserver to answer", ui)
    progress("the webserver answers")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "ui_failure.png").unlink(missing_ok=True)

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="chromium-", dir=tmp_path), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1600, "height": 1000},
        )
        browser = Browser(context.new_page(), ui)
        try:
            browser.check_the_location_and_its_groups()
            lineage_png = browser.screenshot("ui_global_lineage.png")
            progress("the code location is loaded and the lineage shows the five groups")
            browser.land_the_sample_after_the_first_tick(tmp_path / "data" / "lake")
            progress("the sample has landed after the retail sensor's first tick")
            run_id = browser.materialize_raw_and_cleaned()
            progress(f"run {run_id} launched from the UI")
            browser.check_the_run(run_id, engine)
            progress(f"the run succeeded with its checks passed, on {engine}")
            browser.page.goto(f"{ui.base}/runs/{run_id}")
            steps = 3  # raw, cleaned, and the cleaned zone's checks (one step evaluates them all)
            browser.expect(browser.page.get_by_text(f"Succeeded ({steps})")).to_be_visible()
            run_png = browser.screenshot(f"ui_run_{engine}_{run_id[:8]}.png")
            browser.page.goto(f"{ui.base}/locations/{LOCATION}/asset-groups/online_retail")
            n = len(CLEANED_CHECKS)
            browser.expect(browser.page.get_by_text(f"{n} / {n} Passed")).to_be_visible()
            retail_png = browser.screenshot(f"ui_online_retail_{engine}_{run_id[:8]}.png")
        except Exception:
            failure = browser.screenshot("ui_failure.png")
            print(f"\nscreenshot of the failure: {failure}")
            raise
        finally:
            context.close()

    screenshots = [str(p) for p in (lineage_png, run_png, retail_png)]
    (ARTIFACTS / f"ui_browser_{engine}.json").write_text(
        json.dumps({"run_id": run_id, "engine": engine, "screenshots": screenshots}, indent=2))
    progress(f"UI run {run_id} succeeded with its {len(CLEANED_CHECKS)} checks passed; screenshots: "
          f"{', '.join(screenshots)}")

    # SIGTERM to the command stops everything it started
    assert ui.proc is not None
    started_processes = descendants(ui.proc.pid)
    assert started_processes, "ecommerce-assets ui started no process"
    ui.proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    try:
        code = ui.proc.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"ecommerce-assets ui still running {STOP_SECONDS:.0f} s after SIGTERM:\n{ui.tail()}"
        ) from None
    while running(started_processes) and time.monotonic() - sent < STOP_SECONDS:
        time.sleep(0.2)
    left = running(started_processes)
    assert not left, f"still running {STOP_SECONDS:.0f} s after SIGTERM: {sorted(left)}"
    group_left = {p for p, (_, state, pgrp) in _proc_table().items() if pgrp == ui.proc.pid and state != "Z"}
    assert not group_left, f"the process group of ecommerce-assets ui is still there: {sorted(group_left)}"
    assert code == 0, f"ecommerce-assets ui exited {code} on SIGTERM"
    progress(f"stopped in {time.monotonic() - sent:.1f} s after SIGTERM:\n")
    log = ui.log.read_text(errors="replace")
    print(log[log.rfind("ui: SIGTERM received"):])


class Browser:
    """One Chromium page on the UI, with the webserver's GraphQL endpoint through the page's origin."""

    def __init__(self, page: Any, ui: UiCommand):
        from playwright.sync_api import expect

        self.page, self.ui, self.expect = page, ui, expect
        page.set_default_timeout(30_000)
        expect.set_options(timeout=30_000)
        # a fresh instance greets its first visitor with a newsletter dialog: dismiss it whenever it shows
        page.add_locator_handler(
            page.get_by_text("Join the Dagster community"),
            lambda _: page.get_by_role("button", name="Skip").click(),
        )

    def graphql(self, query: str, **variables: Any) -> dict[str, Any]:
        resp = self.page.request.post(f"{self.ui.base}/graphql", data={"query": query, "variables": variables})
        assert resp.ok, f"GraphQL answered {resp.status}: {resp.text()[:500]}"
        body = resp.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def screenshot(self, name: str) -> Path:
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path))
        return path

    def check_the_location_and_its_groups(self) -> None:
        """The code location loaded without error; the lineage draws the five pipelines' groups."""

        def location_entry() -> dict[str, Any] | None:
            ws = self.graphql(WORKSPACE_QUERY)["workspaceOrError"]
            assert ws["__typename"] == "Workspace", ws
            entry = {e["name"]: e for e in ws["locationEntries"]}.get(LOCATION)
            return entry if entry and entry["loadStatus"] == "LOADED" else None

        entry = wait_until(location_entry, 90, f"the code location {LOCATION} to load", self.ui)
        loaded = entry["locationOrLoadError"]
        assert loaded["__typename"] == "RepositoryLocation", f"the code location failed: {loaded.get('message')}"
        groups = {g["groupName"] for repo in loaded["repositories"] for g in repo["assetGroups"]}
        assert set(PIPELINE_GROUPS) <= groups, f"groups served: {sorted(groups)}"

        page, expect = self.page, self.expect
        page.goto(f"{self.ui.base}/locations")  # Deployment > Code locations
        expect(page.get_by_text("1 code location")).to_be_visible()
        expect(page.get_by_text("Loaded", exact=True)).to_be_visible()
        for failure in ("Failed", "View error"):
            expect(page.get_by_text(failure, exact=True)).to_have_count(0)

        page.goto(f"{self.ui.base}/asset-groups")
        expect(page.get_by_text("Global asset lineage")).to_be_visible()
        graph = page.locator("svg foreignObject")  # the lineage graph's nodes (the sidebar lists groups too)
        for group in PIPELINE_GROUPS:
            expect(graph.get_by_text(group, exact=True)).to_be_visible()

    def land_the_sample_after_the_first_tick(self, lake: Path) -> None:
        """Land the Online Retail sample once its sensor has ticked on nothing (its next tick is an hour away)."""

        def ticked() -> bool:
            sensor = self.graphql(SENSOR_QUERY, selector={
                "repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": RETAIL_SENSOR,
            })["sensorOrError"]
            assert sensor["__typename"] == "Sensor", sensor
            return bool(sensor["sensorState"]["ticks"])

        wait_until(ticked, 90, f"the first tick of {RETAIL_SENSOR}", self.ui)
        landing = lake / "landing" / "online_retail"
        landing.mkdir(parents=True, exist_ok=True)
        shutil.copy(RETAIL_SAMPLE, landing / RETAIL_SAMPLE.name)

    def materialize_raw_and_cleaned(self) -> str:
        """Select raw and cleaned on the group's lineage and click Materialize; the new run's id."""
        page, expect = self.page, self.expect
        page.goto(f"{self.ui.base}/locations/{LOCATION}/asset-groups/online_retail")
        page.get_by_text("raw", exact=True).first.click()
        page.get_by_text("cleaned", exact=True).first.click(modifiers=["Shift"])
        materialize = page.get_by_role("button", name="Materialize selected (2)")
        expect(materialize).to_be_visible()
        runs_before = {r["runId"] for r in self.graphql(RUNS_QUERY)["runsOrError"]["results"]}
        materialize.click()  # the code location runs in process by default: no launchpad config needed

        def new_run() -> dict[str, Any] | None:
            fresh = [r for r in self.graphql(RUNS_QUERY)["runsOrError"]["results"] if r["runId"] not in runs_before]
            return fresh[0] if fresh else None

        run = wait_until(new_run, 30, "the run launched from the UI", self.ui)
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert tags.get("dagster/from_ui") == "true" and "dagster/sensor_name" not in tags, tags
        return run["runId"]

    def check_the_run(self, run_id: str, engine: str) -> None:
        """The run succeeds, materializes raw and cleaned (on ``engine``, its metadata says), and every check of
        cleaned passes in it."""

        def finished() -> dict[str, Any] | None:
            status = self.graphql(RUN_QUERY, runId=run_id)["runOrError"]
            return status if status["status"] in {"SUCCESS", "FAILURE", "CANCELED"} else None

        result = wait_until(finished, 240, f"run {run_id} to finish", self.ui, every=2.0)  # (Spark: its JVM too)
        assert result["status"] == "SUCCESS", f"run {run_id} ended {result['status']}:\n{self.ui.tail()}"
        assert sorted(a["path"] for a in result["assetSelection"]) == sorted([RAW, CLEANED])
        assert sorted(m["assetKey"]["path"] for m in result["assetMaterializations"]) == sorted([RAW, CLEANED])
        checks = self.graphql(CHECKS_QUERY, path=CLEANED)["assetNodeOrError"]["assetChecksOrError"]["checks"]
        assert {c["name"] for c in checks} == CLEANED_CHECKS
        for check in checks:
            execution = check["executionForLatestMaterialization"]
            assert execution and execution["runId"] == run_id, f"{check['name']} did not run in {run_id}: {check}"
            assert execution["status"] == "SUCCEEDED" and execution["evaluation"]["success"], check
        [materialization] = self.graphql(ENGINE_QUERY, path=CLEANED)["assetNodeOrError"]["assetMaterializations"]
        metadata = {e["label"]: e.get("text") for e in materialization["metadataEntries"]}
        assert materialization["runId"] == run_id and metadata["engine"] == engine, metadata


def _ignored_signals(pid: int) -> int:
    """The mask of signals ``pid`` ignores (SigIgn in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no SigIgn line for {pid}")


def test_ui_stops_on_sigint_when_started_with_it_ignored(ui: UiCommand, tmp_path: Path) -> None:
    """Started as a non-interactive shell's ``cmd &`` starts it (SIGINT ignored), ``ui`` still stops on SIGINT.

    ``dagster dev`` handles SIGTERM as it handles SIGINT, so an inherited "ignore SIGINT" would make it ignore
    both. ``ui`` gives its child default dispositions and forwards the signal; with ``--stop-timeout 60`` the
    whole tree must be gone well before the forced kill, so it stopped by itself.
    """
    ui.extra_args = ["--stop-timeout", "60"]
    ui.start(cwd=tmp_path, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert ui.proc is not None

    def dagster_dev_serving() -> int | None:
        """dagster dev's pid once it has started its code server (it is then in its main command)."""
        table = _proc_table()
        children = [p for p, (ppid, _, _) in table.items() if ppid == ui.proc.pid]
        for child in children:
            if any(ppid == child for ppid, _, _ in table.values()):
                return child
        return None

    dev = wait_until(dagster_dev_serving, 120, "dagster dev to start its code server", ui, every=0.5)
    sigint = 1 << (signal.SIGINT - 1)
    assert _ignored_signals(ui.proc.pid) & sigint == 0, "ui itself must catch SIGINT"
    assert _ignored_signals(dev) & sigint == 0, "dagster dev inherited an ignored SIGINT"

    started_processes = descendants(ui.proc.pid)
    ui.proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    code = ui.proc.wait(timeout=STOP_SECONDS)
    while running(started_processes) and time.monotonic() - sent < STOP_SECONDS:
        time.sleep(0.2)
    assert not running(started_processes), f"still running after SIGINT:\n{ui.tail()}"
    assert code == 0, f"ecommerce-assets ui exited {code} on SIGINT"
    assert "SIGINT received" in ui.log.read_text(errors="replace")
