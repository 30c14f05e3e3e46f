"""deploy/cloudformation/ecommerce-assets.yaml: cfn-lint clean, the same policies as deploy/iam/*.json, and
deployed to moto's CloudFormation (server mode) it creates what aws mode needs, with the names and key schemas
the product's own clients use: the stack's outputs, turned into the environment, drive a round trip through
each of them.

moto 5.2.1's CloudFormation does not implement ``AWS::Glue::Database`` (it skips the resource with a warning
and creates no database). That one resource is created in the test from the template's own ``DatabaseInput``
through the Glue API (the same shape CloudFormation passes on); everything else comes from the stack.
moto's CloudFormation also ignores the bucket's ``PublicAccessBlockConfiguration``, so that is checked in
the template itself.
"""

from __future__ import annotations

import ast
import json
import re
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pytest

from tests.conftest import MOTO_REGION as REGION

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
TEMPLATE = DEPLOY / "cloudformation" / "ecommerce-assets.yaml"

# deploy/README.md's one-liner turns describe-stacks' "<description>\t<value>" lines into NAME=value lines
# with this awk program; the test runs it on the same lines (only the `aws` CLI call itself is not run).
AWK_PROGRAM = """$1 ~ /^[A-Z][A-Z0-9_]* - / {split($1, name, " "); print name[1] "=" $2}"""

# the placeholders of deploy/iam/*.json and what the template binds each to
PLACEHOLDERS = {
    "AWS_PARTITION": "AWS::Partition", "AWS_REGION": "AWS::Region", "AWS_ACCOUNT_ID": "AWS::AccountId",
    "ECOMMERCE_S3_BUCKET": "LakeBucket", "ECOMMERCE_S3_PREFIX": "LakePrefix",
    "ECOMMERCE_GLUE_DATABASE": "GlueDatabaseName", "ECOMMERCE_STREAM_NAME": "StreamName",
    "ECOMMERCE_KV_TABLE_PREFIX": "KvTablePrefix", "ECOMMERCE_ALERTS_TOPIC_ARN": "AlertsTopic",
    "ECOMMERCE_ALERTS_DLQ_NAME": "AlertsDlqName", "ECOMMERCE_DLQ_NAME": "LambdaDlqName",
    "ECOMMERCE_ATHENA_WORKGROUP": "AthenaWorkgroup", "ECOMMERCE_TRANSFORM_LAMBDA": "TransformLambdaName",
}
# every deploy/iam policy except the daemon/webserver one (it names ECS task roles the stack does not create)
POLICY_FILES = {
    "RunTaskPolicy": "dagster-run-task", "RedshiftCopyPolicy": "redshift-copy-role",
    "LambdaCopyRawObjectPolicy": "lambda-copy-raw-object",
    "LambdaS3ArrivalStartRunPolicy": "lambda-s3-arrival-start-run",
    "LambdaStreamAndCatalogPolicy": "lambda-stream-and-catalog",
}
# policies inline in a role the stack creates: (role, policy name) -> deploy/iam file
ROLE_POLICY_FILES = {("SparkJobRole", "spark-job"): "spark-job"}
ENV_OUTPUTS = {
    "ECOMMERCE_ENV", "AWS_REGION", "ECOMMERCE_S3_BUCKET", "ECOMMERCE_S3_PREFIX", "ECOMMERCE_STREAM_NAME",
    "ECOMMERCE_STREAM_SHARDS", "ECOMMERCE_KV_TABLE_PREFIX", "ECOMMERCE_ALERTS_TOPIC_ARN",
    "ECOMMERCE_ALERTS_DLQ_URL", "ECOMMERCE_DLQ_URL", "ECOMMERCE_GLUE_DATABASE", "ECOMMERCE_SPARK_ROLE_ARN",
}


def _template() -> dict[str, Any]:
    from cfnlint.decode.decode import decode_str

    template, errors = decode_str(TEMPLATE.read_text())
    assert not errors, errors
    return template


def _lint(text: str) -> list[str]:
    """cfn-lint's errors, warnings and informational findings (bar the AI-context metadata nag, I4010)."""
    from cfnlint.api import ManualArgs, lint

    config = ManualArgs(include_checks=["I"], ignore_checks=["I4010"], regions=["us-east-1", "eu-west-1"])
    return [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in lint(text, config=config)]


def test_template_passes_cfn_lint_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("cfn-lint tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert _lint(TEMPLATE.read_text()) == []
    # the linter does check what matters here: a wrong key type is an error
    broken = TEMPLATE.read_text().replace("KeyType: RANGE", "KeyType: SORT", 1)
    assert any(f.startswith("E3") and "RANGE" in f for f in _lint(broken))


def test_template_resources_match_the_product() -> None:
    """Key schemas from kv_store.py, the bucket locked down and encrypted, every output feeds a real setting."""
    resources = _template()["Resources"]
    assert resources["InvoicesTable"]["Properties"]["KeySchema"] == [
        {"AttributeName": "invoice_no", "KeyType": "HASH"}, {"AttributeName": "line_key", "KeyType": "RANGE"}]
    assert resources["CustomersTable"]["Properties"]["KeySchema"] == [
        {"AttributeName": "customer_id", "KeyType": "HASH"}]
    bucket = resources["LakeBucket"]
    assert bucket["DeletionPolicy"] == "Retain"
    assert set(bucket["Properties"]["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(bucket["Properties"]["PublicAccessBlockConfiguration"]) == 4
    sse = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"

    from ecommerce_assets.settings import declared_settings

    declared = {name for row in declared_settings() for name in row["env"]}
    names = set()
    for key, output in _template()["Outputs"].items():
        match = re.match(r"^([A-Z][A-Z0-9_]*) - ", output["Description"])
        if match is None:
            assert key.endswith("PolicyArn"), key
            continue
        names.add(match.group(1))
        assert match.group(1) in declared, f"{key}: {match.group(1)} is not a declared setting"
    assert names == ENV_OUTPUTS


def _back_to_placeholders(value: Any) -> Any:
    """A template policy value with the stack's references turned back into deploy/iam's ``${...}``."""
    to_placeholder = {v: k for k, v in PLACEHOLDERS.items()}
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return "${" + to_placeholder[value["Ref"]] + "}"
    if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
        text = re.sub(r"\$\{([A-Za-z:]+)\}", lambda m: "${" + to_placeholder[m.group(1)] + "}", value["Fn::Sub"])
        return text.replace("arn:${AWS_PARTITION}:", "arn:aws:")
    if isinstance(value, dict):
        return {str(k): _back_to_placeholders(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_back_to_placeholders(v) for v in value]
    return str(value) if isinstance(value, str) else value


def test_template_policies_are_the_deploy_iam_files() -> None:
    resources = _template()["Resources"]
    policies = {k: r for k, r in resources.items() if r["Type"] == "AWS::IAM::ManagedPolicy"}
    assert set(policies) == set(POLICY_FILES)
    for logical_id, name in POLICY_FILES.items():
        document = _back_to_placeholders(policies[logical_id]["Properties"]["PolicyDocument"])
        assert document == json.loads((DEPLOY / "iam" / f"{name}.json").read_text()), logical_id
    for (role, policy_name), name in ROLE_POLICY_FILES.items():
        [policy] = [p for p in resources[role]["Properties"]["Policies"] if p["PolicyName"] == policy_name]
        document = _back_to_placeholders(policy["PolicyDocument"])
        assert document == json.loads((DEPLOY / "iam" / f"{name}.json").read_text()), role


def _env_from_outputs(outputs: list[dict[str, str]]) -> dict[str, str]:
    """What deploy/README.md's one-liner writes: the awk program run on describe-stacks' text output."""
    readme = (DEPLOY / "README.md").read_text()
    assert AWK_PROGRAM in readme, "deploy/README.md's one-liner and this test must use the same awk program"
    text = "".join(f"{o['Description']}\t{o['OutputValue']}\n" for o in outputs)
    done = subprocess.run(["awk", "-F", "\t", AWK_PROGRAM], input=text, capture_output=True, text=True, check=True)
    return dict(line.split("=", 1) for line in done.stdout.splitlines())


def _receive_one(sqs: Any, url: str) -> dict[str, Any]:
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    assert len(messages) == 1, messages
    return json.loads(messages[0]["Body"])


def test_stack_deploys_on_moto_and_the_product_runs_on_its_outputs(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unique = uuid.uuid4().hex[:10]
    stack = f"ecommerce-{unique}"
    parameters = {  # unique names: the moto server is shared by the whole session
        "LakePrefix": "lake", "StreamName": f"orders-{unique}", "StreamShards": "2",
        "KvTablePrefix": f"t{unique}-", "AlertsTopicName": f"alerts-{unique}",
        "AlertsDlqName": f"alerts-dlq-{unique}", "LambdaDlqName": f"lambda-dlq-{unique}",
        "GlueDatabaseName": f"db_{unique}",
    }  # BucketName left empty: CloudFormation names the bucket, and only the outputs tell it
    aws = {"endpoint_url": moto_endpoint, "region_name": REGION}
    cfn = boto3.client("cloudformation", **aws)
    cfn.create_stack(StackName=stack, TemplateBody=TEMPLATE.read_text(), Capabilities=["CAPABILITY_IAM"],
                     Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()])
    cfn.get_waiter("stack_create_complete").wait(StackName=stack, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    assert described["StackStatus"] == "CREATE_COMPLETE"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}
    env = _env_from_outputs(described["Outputs"])
    assert set(env) == ENV_OUTPUTS
    assert env["ECOMMERCE_ENV"] == "aws" and env["AWS_REGION"] == REGION and env["ECOMMERCE_S3_PREFIX"] == "lake"
    bucket = env["ECOMMERCE_S3_BUCKET"]

    # -- each resource, through the service's own API --------------------------------------------------
    s3 = boto3.client("s3", **aws)
    s3.head_bucket(Bucket=bucket)
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"

    summary = boto3.client("kinesis", **aws).describe_stream_summary(
        StreamName=env["ECOMMERCE_STREAM_NAME"])["StreamDescriptionSummary"]
    assert (summary["StreamStatus"], summary["OpenShardCount"]) == ("ACTIVE", 2)
    assert env["ECOMMERCE_STREAM_NAME"] == parameters["StreamName"] and env["ECOMMERCE_STREAM_SHARDS"] == "2"

    dynamodb = boto3.client("dynamodb", **aws)
    invoices = dynamodb.describe_table(TableName=f"t{unique}-invoices")["Table"]
    customers = dynamodb.describe_table(TableName=f"t{unique}-customers")["Table"]
    assert invoices["KeySchema"] == [{"AttributeName": "invoice_no", "KeyType": "HASH"},
                                     {"AttributeName": "line_key", "KeyType": "RANGE"}]
    assert sorted(invoices["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == [
        {"AttributeName": "invoice_no", "AttributeType": "S"}, {"AttributeName": "line_key", "AttributeType": "S"}]
    assert customers["KeySchema"] == [{"AttributeName": "customer_id", "KeyType": "HASH"}]
    assert customers["AttributeDefinitions"] == [{"AttributeName": "customer_id", "AttributeType": "S"}]
    assert invoices["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"

    topic_arn = env["ECOMMERCE_ALERTS_TOPIC_ARN"]
    assert boto3.client("sns", **aws).get_topic_attributes(TopicArn=topic_arn)["Attributes"]["TopicArn"] == topic_arn
    sqs = boto3.client("sqs", **aws)
    for url, name in ((env["ECOMMERCE_ALERTS_DLQ_URL"], parameters["AlertsDlqName"]),
                      (env["ECOMMERCE_DLQ_URL"], parameters["LambdaDlqName"])):
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attributes["QueueArn"].endswith(f":{name}")
        assert (attributes["MessageRetentionPeriod"], attributes["SqsManagedSseEnabled"]) == ("1209600", "true")

    # AWS::Glue::Database: not implemented by moto's CloudFormation; create it from the template's input
    glue = boto3.client("glue", **aws)
    database_input = _template()["Resources"]["GlueDatabase"]["Properties"]["DatabaseInput"]
    assert database_input["Name"] == {"Ref": "GlueDatabaseName"}
    glue.create_database(DatabaseInput={"Name": env["ECOMMERCE_GLUE_DATABASE"],
                                        "Description": str(database_input["Description"])})
    assert glue.get_database(Name=env["ECOMMERCE_GLUE_DATABASE"])["Database"]["Name"] == f"db_{unique}"

    # the managed policies: the deploy/iam files with this stack's names filled in
    iam = boto3.client("iam", **aws)
    account = boto3.client("sts", **aws).get_caller_identity()["Account"]
    values = {"AWS_REGION": REGION, "AWS_ACCOUNT_ID": account, "ECOMMERCE_S3_BUCKET": bucket,
              "ECOMMERCE_S3_PREFIX": "lake", "ECOMMERCE_GLUE_DATABASE": f"db_{unique}",
              "ECOMMERCE_STREAM_NAME": f"orders-{unique}", "ECOMMERCE_KV_TABLE_PREFIX": f"t{unique}-",
              "ECOMMERCE_ALERTS_TOPIC_ARN": topic_arn, "ECOMMERCE_ALERTS_DLQ_NAME": f"alerts-dlq-{unique}",
              "ECOMMERCE_DLQ_NAME": f"lambda-dlq-{unique}", "ECOMMERCE_ATHENA_WORKGROUP": "primary",
              "ECOMMERCE_TRANSFORM_LAMBDA": "ecommerce-transform"}
    for logical_id, name in POLICY_FILES.items():
        arn = outputs[f"{logical_id}Arn"]
        version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
        document = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
        expected = re.sub(r"\$\{([A-Z0-9_]+)\}", lambda m: values[m.group(1)],
                          (DEPLOY / "iam" / f"{name}.json").read_text())
        assert document == json.loads(expected), logical_id

    # the Spark jobs' role: Glue and EMR Serverless may assume it, and it holds the spark-job policy
    role = iam.get_role(RoleName=env["ECOMMERCE_SPARK_ROLE_ARN"].rsplit("/", 1)[1])["Role"]
    assert role["Arn"] == env["ECOMMERCE_SPARK_ROLE_ARN"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert sorted(trust["Statement"][0]["Principal"]["Service"]) == ["emr-serverless.amazonaws.com", "glue.amazonaws.com"]
    document = iam.get_role_policy(RoleName=role["RoleName"], PolicyName="spark-job")["PolicyDocument"]
    expected = re.sub(r"\$\{([A-Z0-9_]+)\}", lambda m: values[m.group(1)], (DEPLOY / "iam" / "spark-job.json").read_text())
    if isinstance(document, str):  # moto's CloudFormation keeps an inline policy as the dict's Python text
        document = ast.literal_eval(document)
    assert document == json.loads(expected)

    # -- the product's aws-mode clients, configured from nothing but the outputs -------------------------
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("ECOMMERCE_DATA_DIR", str(tmp_path / "data"))
    from ecommerce_assets.resources.notifier import build_notifier
    from ecommerce_assets.settings import get_settings
    from ecommerce_assets.storage.build import build_glue_catalog
    from ecommerce_assets.storage.kv_store import DynamoDBKeyValueStore, build_kv_store
    from ecommerce_assets.storage.lakes import build_lake
    from ecommerce_assets.storage.stream import KinesisStream, build_stream
    from ecommerce_assets.transforms.order_lines import encode_record, validate_line
    from ecommerce_assets.transforms.stream_batches import kv_items, type_batch

    settings = get_settings()
    assert (settings.env, settings.s3_bucket, settings.glue_database) == ("aws", bucket, f"db_{unique}")

    lake = build_lake(settings)
    uri = lake.write_bytes("landing/online_retail/probe.csv", b"InvoiceNo\n536365\n")
    assert uri == f"s3://{bucket}/lake/landing/online_retail/probe.csv"
    assert s3.get_object(Bucket=bucket, Key="lake/landing/online_retail/probe.csv")["Body"].read() == b"InvoiceNo\n536365\n"

    stream = build_stream(settings)
    assert isinstance(stream, KinesisStream)
    assert stream.shard_ids() == ["shardId-000000000000", "shardId-000000000001"]
    line, errors = validate_line({
        "InvoiceNo": "536365", "StockCode": "85123A", "Description": "WHITE HANGING HEART T-LIGHT HOLDER",
        "Quantity": 6, "InvoiceDate": "12/1/2010 8:26", "UnitPrice": "2.55", "CustomerID": "17850.0",
        "Country": "United Kingdom"})
    assert line is not None, errors
    [(shard_id, sequence)] = stream.put_records([(line.invoice_no, encode_record(line))])
    records = stream.read_after(shard_id, None, 10)
    assert [r.sequence_number for r in records] == [sequence]

    kv_store = build_kv_store(settings)
    assert isinstance(kv_store, DynamoDBKeyValueStore)
    items = kv_items(type_batch(records, "deploy-probe").table)
    assert kv_store.put_lines(items).lines == 1
    [stored] = kv_store.get_invoice_lines("536365")
    assert (stored["stock_code"], stored["quantity"], stored["unit_price"], stored["customer_id"]) == (
        "85123A", 6, "2.550", "17850")
    assert stored["line_key"] == f"85123A#{shard_id}#{sequence}"
    assert kv_store.get_customer_invoices("17850") == {"536365"}

    build_notifier(settings).failure("deploy probe", "a failed run", {"run_id": unique})
    assert _receive_one(sqs, env["ECOMMERCE_ALERTS_DLQ_URL"])["details"] == {"run_id": unique}

    from lambdas.dlq import with_dead_letter_queue

    @with_dead_letter_queue
    def failing_handler(event: dict[str, Any], context: Any = None) -> None:
        raise ValueError("bad event")

    with pytest.raises(ValueError, match="bad event"):
        failing_handler({"probe": unique})
    assert _receive_one(sqs, env["ECOMMERCE_DLQ_URL"])["event"] == {"probe": unique}

    registration = build_glue_catalog(settings).register_parquet_table(
        settings.glue_database, "deploy_probe", f"s3://{bucket}/lake/processed/deploy_probe/",
        pa.schema([("invoiceno", pa.string())]))
    assert (registration.action, glue.get_table(DatabaseName=f"db_{unique}", Name="deploy_probe")["Table"]["Name"]) == (
        "created", "deploy_probe")

    # -- deleting the stack keeps the data (bucket and tables are Retain) and removes the rest -----------
    cfn.delete_stack(StackName=stack)
    cfn.get_waiter("stack_delete_complete").wait(StackName=stack, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    s3.head_bucket(Bucket=bucket)
    for table in (f"t{unique}-invoices", f"t{unique}-customers"):
        assert dynamodb.describe_table(TableName=table)["Table"]["TableStatus"] == "ACTIVE"
    kinesis = boto3.client("kinesis", **aws)
    with pytest.raises(kinesis.exceptions.ResourceNotFoundException):
        kinesis.describe_stream_summary(StreamName=f"orders-{unique}")
