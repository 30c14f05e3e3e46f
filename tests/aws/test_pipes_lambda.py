"""The Pipes path: asset ``aws/lambda_transform`` -> ``PipesLambdaClient`` -> ``lambdas/pipes_transform.py``.

The Lambda service itself cannot run offline (moto executes functions only in Docker), so the one stand-in
here is the Lambda *service*: ``InProcessLambda.invoke`` runs the real handler with the payload the real
client sends and returns what the service returns (status, payload, the base64 log tail the Pipes
messages travel in). Everything else is real: the asset, PipesLambdaClient, the handler, the S3 lake on
moto's server, the transform.
"""

import base64
import contextlib
import datetime as dt
import importlib
import io
import json
import sys
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest
from dagster_aws.pipes import PipesLambdaClient

from ecommerce_assets.services.transactions_generator import generate_files, land
from ecommerce_assets.settings import get_settings
from ecommerce_assets.storage.lakes import build_lake


class InProcessLambda:
    """The Lambda service's ``invoke`` for one handler, in this process."""

    def __init__(self, handler: Any, **kwargs: Any) -> None:
        self.handler, self.kwargs, self.invocations = handler, kwargs, []

    def invoke(self, FunctionName: str, InvocationType: str, Payload: str, LogType: str = "None") -> dict:  # noqa: N803
        event = json.loads(Payload)
        self.invocations.append((FunctionName, event))
        logs = io.StringIO()
        response: dict[str, Any] = {"StatusCode": 200}
        with contextlib.redirect_stdout(logs), contextlib.redirect_stderr(logs):
            try:
                result = self.handler(event, None, **self.kwargs)
            except Exception as exc:  # what the service reports for an unhandled error
                result = {"errorMessage": str(exc), "errorType": type(exc).__name__}
                response["FunctionError"] = "Unhandled"
        response["Payload"] = io.BytesIO(json.dumps(result, default=str).encode())
        if LogType == "Tail":
            response["LogResult"] = base64.b64encode(logs.getvalue()[-4096:].encode()).decode()
        return response


@pytest.fixture
def aws_assets(aws_env: dict, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``ecommerce_assets.defs.aws.assets`` as aws mode with a transform function defines it; reloaded
    afresh afterwards, so later tests' definitions do not carry aws-only assets."""
    import ecommerce_assets.defs.aws.assets as module

    monkeypatch.setenv("ECOMMERCE_TRANSFORM_LAMBDA", "ecommerce-transform")
    yield importlib.reload(module)
    sys.modules.pop(module.__name__, None)  # the next import (local mode) defines nothing again


def test_lambda_transform_reports_its_materialization_through_pipes(aws_env: dict, aws_assets: Any) -> None:
    from lambdas import pipes_transform

    lake = build_lake(get_settings())
    date = dt.date(2026, 11, 20)
    files, records, _ = land(lake, generate_files(300, per_file=100, days=1, end_date=date, seed=3))
    assert files == 3

    service = InProcessLambda(pipes_transform.handler, lake=lake)
    result = dg.materialize(
        [aws_assets.lambda_transform],
        partition_key=date.isoformat(),
        resources={"pipes_lambda_client": PipesLambdaClient(client=service)},
    )
    assert result.success
    assert service.invocations[0][0] == "ecommerce-transform"
    assert service.invocations[0][1]["date"] == date.isoformat()
    assert "DAGSTER_PIPES_CONTEXT" in service.invocations[0][1]  # the Pipes bootstrap rides in the event
    mat = result.asset_materializations_for_node("aws__lambda_transform")[0]
    assert mat.metadata["records_out"].value + mat.metadata["records_quarantined"].value == records
    uri = mat.metadata["dagster/uri"].value
    assert uri == f"s3://{aws_env['ECOMMERCE_S3_BUCKET']}/lake/processed/transactions"
    # the Lambda committed the date's partition of the Glue Iceberg table: what every reader of it sees
    from ecommerce_assets.storage.iceberg import build_iceberg

    tables = build_iceberg(get_settings())
    assert mat.metadata["iceberg/snapshot_id"].value == str(tables.current_snapshot_id("transactions"))
    rows = tables.read("transactions", where={"date": date})
    assert rows.num_rows == mat.metadata["records_out"].value
