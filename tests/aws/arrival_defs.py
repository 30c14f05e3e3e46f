"""A one-job code location the S3-arrival Lambda test launches runs on (served by a real dagster-webserver)."""

import dagster as dg


@dg.op
def noop() -> None:
    pass


@dg.job
def arrival_job() -> None:
    noop()


defs = dg.Definitions(jobs=[arrival_job])
