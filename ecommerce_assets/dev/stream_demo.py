"""Driving the stream without the daemon: one micro-batch in process, and the demo's producer step.

The headless catch-up (``ecommerce-assets run``) evaluates ``stream_sensor`` like every other catch-up
sensor (``ecommerce_assets.runtime.catchup``); nothing here keeps a cursor of its own.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import dagster as dg

from ecommerce_assets.defs.stream.assets import STREAM_BATCH_ASSETS
from ecommerce_assets.defs.stream.checks import STREAM_BATCH_CHECKS
from ecommerce_assets.defs.stream.sensors import StreamBatch
from ecommerce_assets.settings import Settings


def run_batch(batch: StreamBatch, resources: dict[str, Any], instance: dg.DagsterInstance | None = None,
              raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    """Materialize one micro-batch in process (exactly the run the sensor would ask for)."""
    request = batch.run_request()
    return dg.materialize(
        [*STREAM_BATCH_ASSETS, *STREAM_BATCH_CHECKS],
        run_config=request.run_config,
        resources=resources,
        instance=instance,
        tags=request.tags,
        raise_on_error=raise_on_error,
    )


def run_stream_demo(settings: Settings, resources: dict[str, Any] | None = None, sample: Path | None = None) -> list[str]:
    """The demo's producer step: start the API on a free port in a background thread and replay the shipped
    Online Retail sample through real HTTP onto the stream (the catch-up then processes it).
    Returns human-readable lines for the demo's output."""
    from ecommerce_assets.dev.replay import replay_file
    from ecommerce_assets.resources import build_resources
    from ecommerce_assets.samples import retail_sample_path
    from ecommerce_assets.services.ingest_api import ApiServer, create_app

    resources = resources or build_resources(settings)
    sample = sample or retail_sample_path()
    with ApiServer(create_app(resources["stream"], resources["kv_store"], settings)) as server:
        summary = replay_file(sample, server.url, concurrency=4, progress=sys.stderr.isatty())
    return [f"stream: replayed {sample.name} through {server.url}/orders: {summary.accepted} accepted, "
            f"{summary.rejected} rejected, {summary.failed} failed"]
