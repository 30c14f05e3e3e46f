"""AWS Lambda: an object landed in S3 -> launch a Dagster run on the configured webserver (GraphQL).

For deployments that want a run the moment a file lands instead of waiting for the arrival sensor's
next tick. Trigger: S3 ``ObjectCreated:*`` notifications on ``<prefix>/landing/``. Event shape:

    {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                  "s3": {"bucket": {"name": "my-bucket"},
                         "object": {"key": "lake/landing/online_retail/retail.csv", "eTag": "abc123"}}}]}

Settings: ``ECOMMERCE_DAGSTER_URL`` (``http(s)://host[:port]``), ``ECOMMERCE_DAGSTER_JOB`` (the job to
launch), ``ECOMMERCE_DAGSTER_LOCATION`` (its code location, when the webserver has several). One run
per new object, tagged ``ecommerce/s3_object=<bucket>/<key>@<etag>``; a redelivered event finds the run
by that tag and launches nothing (S3 delivers events at least once). Uses
``dagster_graphql.DagsterGraphQLClient`` when installed, else the same ``launchRun`` mutation over HTTP.
Errors (webserver down, unknown job) send the event to the dead-letter queue and re-raise.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any
from urllib.parse import unquote_plus, urlparse

from ecommerce_assets.settings import get_settings
from lambdas.dlq import with_dead_letter_queue

TAG = "ecommerce/s3_object"
RUNS_WITH_TAG = """
query RunsWithTag($filter: RunsFilter) {
  runsOrError(filter: $filter) { __typename ... on Runs { results { runId status } } }
}"""
LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PipelineNotFoundError { message }
  }
}"""


def graphql(url: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """POST one GraphQL request to ``<url>/graphql``; raise on transport or GraphQL errors."""
    request = urllib.request.Request(
        url.rstrip("/") + "/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - a configured http(s) URL
        body = json.loads(response.read())
    if body.get("errors"):
        raise RuntimeError(f"Dagster GraphQL error: {body['errors']}")
    return body["data"]


def existing_runs(url: str, tag_value: str) -> list[str]:
    data = graphql(url, RUNS_WITH_TAG, {"filter": {"tags": [{"key": TAG, "value": tag_value}]}})
    runs = data["runsOrError"]
    if runs["__typename"] != "Runs":
        raise RuntimeError(f"Dagster could not list runs: {runs}")
    return [r["runId"] for r in runs["results"]]


def launch_over_http(url: str, job: str, location: str | None, tags: dict[str, str]) -> str:
    """The ``launchRun`` mutation without dagster-graphql (a thin Lambda layer)."""
    if not location:
        raise ValueError("without dagster-graphql, ECOMMERCE_DAGSTER_LOCATION must name the code location")
    params = {
        "selector": {"repositoryLocationName": location, "repositoryName": "__repository__", "jobName": job},
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        "runConfigData": {},
    }
    result = graphql(url, LAUNCH_RUN, {"params": params})["launchRun"]
    if result["__typename"] != "LaunchRunSuccess":
        raise RuntimeError(f"Dagster refused to launch {job}: {result}")
    return result["run"]["runId"]


def launch(url: str, job: str, location: str | None, tags: dict[str, str]) -> str:
    try:
        from dagster_graphql import DagsterGraphQLClient
    except ImportError:  # a thin Lambda without dagster-graphql in its layer
        return launch_over_http(url, job, location, tags)
    parsed = urlparse(url)
    client = DagsterGraphQLClient(parsed.hostname or "localhost", port_number=parsed.port,
                                  use_https=parsed.scheme == "https")
    return client.submit_job_execution(job, repository_location_name=location, tags=tags)


@with_dead_letter_queue
def handler(event: dict[str, Any], context: Any = None) -> dict[str, list[str]]:
    settings = get_settings()
    if not settings.dagster_url or not settings.dagster_job:
        raise ValueError("set ECOMMERCE_DAGSTER_URL and ECOMMERCE_DAGSTER_JOB for the S3-arrival Lambda")
    result: dict[str, list[str]] = {"launched": [], "already_launched": [], "skipped": []}
    root = f"{settings.s3_prefix}/" if settings.s3_prefix else ""
    for record in event.get("Records", []):
        bucket = record["s3"]["bucket"]["name"]
        key = unquote_plus(record["s3"]["object"]["key"])
        if not key.startswith(f"{root}landing/") or key.endswith("/"):
            result["skipped"].append(key)
            continue
        tag_value = f"{bucket}/{key}@{record['s3']['object'].get('eTag', '')}"
        if existing_runs(settings.dagster_url, tag_value):
            result["already_launched"].append(tag_value)
            continue
        tags = {TAG: tag_value, "ecommerce/source": key[len(f"{root}landing/") :].split("/", 1)[0]}
        result["launched"].append(launch(settings.dagster_url, settings.dagster_job, settings.dagster_location, tags))
    return result
