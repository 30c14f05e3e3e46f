"""Processing the stream without the daemon: the headless catch-up and the demo's streaming step.

``catch_up`` does what the stream sensor and its runs do, in this process: plan the micro-batches after a
cursor kept in ``<state_dir>/stream_consumer_cursor.json`` and materialize each one. It and the daemon's
sensor keep separate cursors; a batch processed by both is written twice with the same result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from ecommerce_assets.defs.stream.assets import STREAM_BATCH_ASSETS, STREAM_BATCH_CHECKS
from ecommerce_assets.defs.stream.sensors import StreamBatch, plan_batches
from ecommerce_assets.settings import Settings


@dataclass
class CatchUp:
    batches: list[StreamBatch]
    records: int
    failed: list[str]


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


def _cursor_path(settings: Settings) -> Path:
    return settings.state_dir / "stream_consumer_cursor.json"


def catch_up(settings: Settings, resources: dict[str, Any], instance: dg.DagsterInstance | None = None,
             max_rounds: int = 1000) -> CatchUp:
    """Process every record on the stream after the headless cursor; advance the cursor batch by batch."""
    path = _cursor_path(settings)
    cursor: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    done: list[StreamBatch] = []
    failed: list[str] = []
    for _ in range(max_rounds):
        batches, _next = plan_batches(resources["stream"], cursor, settings.stream_batch_records)
        if not batches:
            break
        for batch in batches:
            if any(f.startswith(batch.shard_id + ":") for f in failed):
                continue  # a shard stops at its first failed batch; the cursor stays before it
            result = run_batch(batch, resources, instance, raise_on_error=False)
            if not result.success:
                failed.append(batch.run_key)
                continue
            done.append(batch)
            cursor[batch.shard_id] = batch.last
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(cursor, sort_keys=True))
        if failed:
            break
    return CatchUp(batches=done, records=sum(b.records for b in done), failed=failed)


def run_stream_demo(settings: Settings, resources: dict[str, Any] | None = None,
                    sample: Path | None = None, instance: dg.DagsterInstance | None = None) -> list[str]:
    """The demo's streaming step: start the API on a free port in a background thread, replay the shipped
    Online Retail sample through real HTTP, stop the API, then process the stream (``catch_up``).
    Returns human-readable lines for the demo's output."""
    from ecommerce_assets.cli.replay import replay_file
    from ecommerce_assets.ingest_api import ApiServer, create_app
    from ecommerce_assets.resources import build_local_resources, build_resources
    from ecommerce_assets.samples import retail_sample_path

    resources = resources or (build_local_resources(settings) if settings.env == "local" else build_resources(settings))
    sample = sample or retail_sample_path()
    with ApiServer(create_app(resources["stream"], resources["kv_store"], settings)) as server:
        summary = replay_file(sample, server.url, concurrency=4, progress=False)
    result = catch_up(settings, resources, instance)
    lines = [f"stream: replayed {sample.name} through {server.url}/orders: {summary.accepted} accepted, "
             f"{summary.rejected} rejected, {summary.failed} failed",
             f"stream: processed {result.records} records in {len(result.batches)} micro-batches"]
    if result.failed:
        lines.append(f"stream: FAILED batches: {', '.join(result.failed)}")
    return lines
