"""deploy/: the ECS dagster.yaml passes Dagster's own config validation; IAM policies are well-formed and narrow."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from dagster._config import validate_config
from dagster._core.instance.config import dagster_instance_config
from dagster_aws.ecs import EcsRunLauncher

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_dagster_yaml_is_a_valid_ecs_instance(tmp_path, monkeypatch):
    shutil.copy(DEPLOY / "dagster.yaml", tmp_path / "dagster.yaml")
    for name in ["DAGSTER_PG_HOST", "DAGSTER_PG_DB", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD",
                 "ECOMMERCE_S3_BUCKET", "ECOMMERCE_RUN_TASK_ROLE_ARN",
                 "ECOMMERCE_TASK_EXECUTION_ROLE_ARN", "ECOMMERCE_RUN_LOG_GROUP"]:
        monkeypatch.setenv(name, "x")
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["run_launcher"]["class"] == "EcsRunLauncher"
    assert "postgres" in config["storage"]
    launcher = config["run_launcher"]["config"]
    result = validate_config(EcsRunLauncher.config_type(), launcher)
    assert result.success, result.errors
    assert set(launcher["task_definition"]) >= {"task_role_arn", "execution_role_arn"}
    assert "ECOMMERCE_SENSORS=on" in launcher["env_vars"]


def test_deployed_containers_run_the_arrival_sensors(monkeypatch):
    """The ECS containers' environment (deploy/ecs) turns aws mode's arrival sensors and automation on."""
    from ecommerce_assets.settings import get_settings

    entries = json.loads((DEPLOY / "ecs" / "container-environment.json").read_text())
    environment = {e["name"]: e["value"] for e in entries}
    assert environment["ECOMMERCE_ENV"] == "aws"
    monkeypatch.delenv("ECOMMERCE_SENSORS", raising=False)
    monkeypatch.setenv("ECOMMERCE_ENV", "aws")
    assert not get_settings().sensors_on  # aws mode's default: stopped
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert get_settings().sensors_on


def test_iam_policies_are_valid_and_least_privilege():
    files = sorted((DEPLOY / "iam").glob("*.json"))
    assert {f.stem for f in files} >= {"dagster-run-task", "dagster-daemon-webserver", "redshift-copy-role",
                                       "lambda-copy-raw-object", "lambda-s3-arrival-start-run"}
    for path in files:
        policy = json.loads(path.read_text())
        assert policy["Version"] == "2012-10-17"
        sids = [s["Sid"] for s in policy["Statement"]]
        assert len(sids) == len(set(sids)), path.name
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow"
            assert all(a != "*" and not a.endswith(":*") for a in statement["Action"]), (path.name, statement)
            if any(a.startswith("s3:") and a != "s3:ListBucket" and a != "s3:GetBucketLocation"
                   for a in statement["Action"]):
                assert all(r.endswith("/*") and r.count("/") >= 1 for r in statement["Resource"]), statement
    copy_role = json.loads((DEPLOY / "iam" / "redshift-copy-role.json").read_text())
    assert {a for s in copy_role["Statement"] for a in s["Action"]} == {"s3:GetObject", "s3:ListBucket",
                                                                        "s3:GetBucketLocation"}
