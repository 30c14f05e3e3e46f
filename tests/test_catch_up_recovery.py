"""What ``ecommerce-assets run`` does with what an earlier run left behind: assets older than their inputs are
built again, a failed blocking check holds its dependents back, an input whose checks never ran is checked
again first, a run left "started" by a killed process is marked failed, and every failure sends an alert."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from ecommerce_assets.runtime.catchup import HOST_TAG, PID_TAG, catch_up, execute, load_definitions
from ecommerce_assets.samples import retail_sample_path

RAW = dg.AssetKey(["online_retail", "raw"])
CLEANED = dg.AssetKey(["online_retail", "cleaned"])
GOLD = {dg.AssetKey(["gold", t]) for t in ("customers", "products", "sales_transactions")}


@pytest.fixture
def landed(data_dir: Path) -> Path:
    landing = data_dir / "lake" / "landing" / "online_retail"
    landing.mkdir(parents=True)
    shutil.copyfile(retail_sample_path(), landing / "sample.csv")
    return data_dir


def _alerts(data_dir: Path) -> list[dict]:
    path = data_dir / "state" / "alerts.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _labels(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith(("ok", "FAILED", "held", "failed"))]


def test_assets_older_than_their_inputs_are_built_again(landed: Path) -> None:
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        assert catch_up(defs, instance, echo=lambda _m: None, pipelines=["retail"]).ok
        ok, done = execute(defs, instance, [CLEANED], verbose=False)  # cleaned again, by a run that stopped there
        assert ok and done == {CLEANED}
        echoed: list[str] = []
        report = catch_up(defs, instance, echo=echoed.append, pipelines=["retail"])
        assert report.ok, echoed
        assert report.materialized == GOLD, _labels(echoed)  # gold only: raw and cleaned are current
        again: list[str] = []
        assert catch_up(defs, instance, echo=again.append, pipelines=["retail"]).materialized == set()


def test_an_input_whose_checks_never_ran_is_checked_again_before_its_dependents(landed: Path) -> None:
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        assert catch_up(defs, instance, echo=lambda _m: None, pipelines=["retail"]).ok
        # a materialization whose run died before its checks (recorded without them)
        instance.report_runless_asset_event(dg.AssetMaterialization(CLEANED))
        echoed: list[str] = []
        report = catch_up(defs, instance, echo=echoed.append, pipelines=["retail"])
        assert report.ok, echoed
        assert report.materialized == {CLEANED} | GOLD, _labels(echoed)
        checked = instance.get_latest_asset_check_evaluation_record(
            dg.AssetCheckKey(CLEANED, "counts_reconcile"))
        latest = instance.get_latest_materialization_event(CLEANED)
        assert checked is not None and latest is not None and checked.run_id == latest.run_id


def test_a_failed_blocking_check_holds_its_dependents_and_alerts(
    landed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ecommerce_assets.lib import quality

    def failing(*_args: object, **_kwargs: object) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=False, description="a price of 0 reached the cleaned zone")

    monkeypatch.setattr(quality, "all_positive", failing)
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        echoed: list[str] = []
        report = catch_up(defs, instance, echo=echoed.append, pipelines=["retail"])
        assert not report.ok and not (report.materialized & GOLD), _labels(echoed)
        failed = [a for a in _alerts(landed) if a["subject"].startswith("run failed")]
        assert len(failed) == 1 and failed[0]["severity"] == "error"
        assert failed[0]["details"]["trigger"] == "ecommerce-assets run"
        assert "online_retail/cleaned" in failed[0]["details"]["assets_materialized"]

        again: list[str] = []
        report = catch_up(defs, instance, echo=again.append, pipelines=["retail"])
        held = [line for line in again if line.startswith("held")]
        # the failed batch is retried (its run did not succeed), fails its check again, and gold stays held
        assert not (report.materialized & GOLD) and len(held) == 3, again
        assert all("online_retail/cleaned failed a blocking check" in line for line in held)


def test_a_run_left_started_by_a_killed_process_is_marked_failed(landed: Path) -> None:
    dead = subprocess.Popen(["true"])  # noqa: S607 - a process that has ended: its pid is free
    dead.wait()
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        run = instance.add_run(dg.DagsterRun(
            job_name="__ASSET_JOB", status=dg.DagsterRunStatus.STARTED,
            tags={PID_TAG: str(dead.pid), HOST_TAG: socket.gethostname()}))
        alive = instance.add_run(dg.DagsterRun(
            job_name="__ASSET_JOB", status=dg.DagsterRunStatus.STARTED,
            tags={PID_TAG: str(subprocess.os.getpid()), HOST_TAG: socket.gethostname()}))
        echoed: list[str] = []
        assert catch_up(defs, instance, echo=echoed.append, pipelines=["retail"]).ok
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE  # type: ignore[union-attr]
        assert instance.get_run_by_id(alive.run_id).status == dg.DagsterRunStatus.STARTED  # type: ignore[union-attr]
        assert sum("left running by a killed process" in line for line in echoed) == 1
        killed = [a for a in _alerts(landed) if a["subject"].startswith("run killed")]
        assert len(killed) == 1 and run.run_id in killed[0]["message"]


def test_catch_ups_on_other_sensors_keep_each_others_cursors(tmp_path: Path) -> None:
    from ecommerce_assets.runtime.catchup import load_cursors, save_cursor

    path = tmp_path / "catch_up_cursors.json"
    save_cursor(path, "stream_sensor", "10")
    first, second = load_cursors(path), load_cursors(path)  # two catch-ups read the file at the same time
    save_cursor(path, "transactions_arrival_sensor", "a")
    save_cursor(path, "stream_sensor", "20")
    assert first == second == {"stream_sensor": "10"}
    assert load_cursors(path) == {"stream_sensor": "20", "transactions_arrival_sensor": "a"}


def test_a_batch_another_process_has_in_flight_is_waited_for_not_run_twice(
    landed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ecommerce_assets.runtime.catchup as catchup
    from ecommerce_assets.runtime.catchup import RUN_KEY_TAG, SENSOR_NAME_TAG, CatchUp

    monkeypatch.setattr(catchup, "IN_FLIGHT_WAIT_SECONDS", 2.0)
    defs = load_definitions()
    with dg.instance_for_test() as instance:
        tags = {SENSOR_NAME_TAG: "online_retail_arrival_sensor", RUN_KEY_TAG: "batch-1"}
        queued = instance.add_run(dg.DagsterRun(job_name="__ASSET_JOB", status=dg.DagsterRunStatus.STARTING, tags=tags))
        catch = CatchUp(defs, instance, echo=lambda _m: None)
        assert catch._already_done("online_retail_arrival_sensor", "batch-1") is None  # still starting after the wait
        instance.report_run_failed(queued, "the daemon's run failed")
        assert catch._already_done("online_retail_arrival_sensor", "batch-1") is False  # failed: run it here
        instance.add_run(dg.DagsterRun(job_name="__ASSET_JOB", status=dg.DagsterRunStatus.SUCCESS, tags=tags))
        assert catch._already_done("online_retail_arrival_sensor", "batch-1") is True
