"""AWS Lambda: an object landed in S3 -> launch a Dagster run on the configured webserver (GraphQL).

For deployments that want a run the moment a file lands instead of waiting for the arrival sensor's
next tick. Trigger: S3 ``ObjectCreated:*`` notifications on ``<prefix>/landing/``. Event shape:

    {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                  "s3": {"bucket": {"name": "my-bucket"},
                         "object": {"key": "lake/landing/online_retail/retail.csv", "eTag": "abc123"}}}]}

Settings: ``ECOMMERCE_DAGSTER_URL`` (``http(s)://host[:port]``), ``ECOMMERCE_DAGSTER_JOB`` (the job to
launch), ``ECOMMERCE_DAGSTER_LOCATION`` (its code location, when the webserver has several). One run
per new object, tagged ``ecommerce/s3_object=<bucket>/<key>@<etag>``; a redelivered event finds the run
by that tag and launches nothing (S3 delivers events at least once).

It speaks GraphQL with ``gql`` (``RequestsHTTPTransport``), the library ``DagsterGraphQLClient`` is built
on, but not ``dagster-graphql`` itself: that one requires ``dagster`` (grpcio, SQLAlchemy, ... about 80 MB
unpacked), which a Lambda must not carry. Without ``ECOMMERCE_DAGSTER_LOCATION`` the job's code location
and repository are looked up on the webserver (the job's name must then be unique). A request is not
retried here: a repeated ``launchRun`` would start a second run, and Lambda retries the whole event (the
tag lookup makes that safe). Errors (webserver down, unknown job) send the event to the dead-letter
queue and re-raise.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from gql import Client, GraphQLRequest
from gql.transport.requests import RequestsHTTPTransport

from ecommerce_assets.settings import get_settings
from lambdas.dlq import with_dead_letter_queue

TAG = "ecommerce/s3_object"
TIMEOUT_SECONDS = 30
JOBS = """
query Jobs {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection { nodes { name location { name } pipelines { name } } }
    ... on PythonError { message }
  }
}"""
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


def graphql(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one GraphQL request on ``<url>/graphql``; gql raises on transport, HTTP and GraphQL errors."""
    transport = RequestsHTTPTransport(url=url.rstrip("/") + "/graphql", timeout=TIMEOUT_SECONDS, retries=0)
    with Client(transport=transport) as session:
        return session.execute(GraphQLRequest(query, variable_values=variables))


def existing_runs(url: str, tag_value: str) -> list[str]:
    data = graphql(url, RUNS_WITH_TAG, {"filter": {"tags": [{"key": TAG, "value": tag_value}]}})
    runs = data["runsOrError"]
    if runs["__typename"] != "Runs":
        raise RuntimeError(f"Dagster could not list runs: {runs}")
    return [r["runId"] for r in runs["results"]]


def job_selector(url: str, job: str, location: str | None) -> dict[str, str]:
    """``{repositoryLocationName, repositoryName, jobName}`` of ``job``: the one repository that has it.

    With ``location`` set, only that code location's repositories count."""
    repos = graphql(url, JOBS)["repositoriesOrError"]
    if repos["__typename"] != "RepositoryConnection":
        raise RuntimeError(f"Dagster could not list its jobs: {repos}")
    found = [
        {"repositoryLocationName": node["location"]["name"], "repositoryName": node["name"], "jobName": job}
        for node in repos["nodes"]
        if job in {p["name"] for p in node["pipelines"]} and location in (None, "", node["location"]["name"])
    ]
    where = f" in code location {location}" if location else ""
    if not found:
        raise RuntimeError(f"Dagster at {url} has no job named {job}{where}")
    if len(found) > 1:
        raise RuntimeError(
            f"several repositories at {url} have a job named {job}{where}: {found}; set ECOMMERCE_DAGSTER_LOCATION"
        )
    return found[0]


def launch(url: str, job: str, location: str | None, tags: dict[str, str]) -> str:
    """Launch ``job`` with ``tags`` (the ``launchRun`` mutation); return the new run's id."""
    params = {
        "selector": job_selector(url, job, location),
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        "runConfigData": {},
    }
    result = graphql(url, LAUNCH_RUN, {"params": params})["launchRun"]
    if result["__typename"] != "LaunchRunSuccess":
        raise RuntimeError(f"Dagster refused to launch {job}: {result}")
    return result["run"]["runId"]


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
        result["launched"].append(
            launch(settings.dagster_url, settings.dagster_job, settings.dagster_location, tags)
        )
    return result
