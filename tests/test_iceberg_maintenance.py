"""The weekly upkeep of the Iceberg tables (``lakehouse/iceberg_maintenance``): small files compacted, snapshots
older than the retention expired, orphan files past the grace period deleted; the rows never change (issue 15)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import dagster as dg
import pyarrow as pa

from ecommerce_assets.defs.lakehouse.assets import MAINTENANCE_KEY, iceberg_maintenance
from ecommerce_assets.resources import build_resources

DAY = 86400.0


def _batch(day: dt.date, batch: str, values: list[int]) -> pa.Table:
    return pa.table({
        "date": pa.array([day] * len(values), pa.date32()),
        "batch": pa.array([batch] * len(values)),
        "v": pa.array(values, pa.int64()),
    })


def _rows(iceberg, name: str) -> list[tuple]:
    t = iceberg.read(name)
    return sorted(zip(*(t.column(c).to_pylist() for c in ("date", "batch", "v")), strict=True))


def _run(resources: dict, **config: float) -> dict:
    result = dg.materialize(
        [iceberg_maintenance], resources=resources,
        run_config={"ops": {iceberg_maintenance.op.name: {"config": config}}},
    )
    assert result.success
    [mat] = [e for e in result.get_asset_materialization_events() if e.asset_key == MAINTENANCE_KEY]
    return mat.materialization.metadata["tables"].value


def test_small_files_are_compacted_old_snapshots_expired_and_old_orphans_swept(data_dir: Path) -> None:
    resources = build_resources()
    iceberg, lake = resources["iceberg"], resources["lake"]
    day, other = dt.date(2024, 3, 1), dt.date(2024, 3, 2)
    iceberg.ensure_table("events", _batch(day, "b", [1]).schema, ["date"])
    for i in range(4):  # four micro-batches in one date partition: four small files
        iceberg.write("events", _batch(day, f"b{i}", [i * 10, i * 10 + 1]), [{"date": day, "batch": f"b{i}"}])
    iceberg.write("events", _batch(other, "c0", [99]), [{"date": other, "batch": "c0"}])
    rows = _rows(iceberg, "events")
    assert len(iceberg.data_files("events")) == 5
    snapshots_before = len(iceberg.history("events"))

    folder = data_dir / "lake" / "processed" / "events" / "data"
    old_orphan, new_orphan = folder / "killed-writer-old.parquet", folder / "killed-writer-new.parquet"
    old_orphan.write_bytes(b"PAR1 half a file")
    time.sleep(0.05)
    new_orphan.write_bytes(b"PAR1 half a file")
    # the lake dates a file by its ctime: "now" is the new orphan's arrival, the grace half the gap between the two
    old_at, new_at = (max(p.stat().st_mtime, p.stat().st_ctime) for p in (old_orphan, new_orphan))
    assert new_at > old_at

    done = _run(resources, now_epoch=new_at, orphan_grace_hours=(new_at - old_at) / 2 / 3600)["events"]
    assert done["partitions_compacted"] == 1  # the date with four files; the one-file date is left alone
    assert (done["data_files_before"], done["data_files_after"]) == (5, 2)
    assert done["snapshots_expired"] == 0
    assert done["orphan_files_deleted"] == 1  # the old orphan only: the new one may be a writer about to commit
    assert not old_orphan.exists() and new_orphan.exists()
    assert _rows(iceberg, "events") == rows
    assert len(iceberg.history("events")) > snapshots_before  # the compaction's commit; older ones kept

    # eight days later: every snapshot but the current expires, and every file only they referenced is swept
    later = _run(resources, now_epoch=time.time() + 8 * DAY)["events"]
    history = iceberg.history("events")
    assert later["snapshots_expired"] > 0 and all(s.current for s in history) and len(history) == 1
    assert later["orphan_files_deleted"] >= 5  # the five pre-compaction data files, their manifests, the new orphan
    assert not new_orphan.exists()
    assert _rows(iceberg, "events") == rows
    left = {str(p) for p in (data_dir / "lake" / "processed" / "events").rglob("*") if p.is_file()}
    assert {f.removeprefix("file://") for f in iceberg.referenced_files("events")} >= left - {
        str(p) for p in (data_dir / "lake" / "processed" / "events" / "metadata").glob("*.metadata.json")
    }
    con = lake.engine()
    try:
        from ecommerce_assets.storage.iceberg import create_scan_view

        create_scan_view(con, "events", iceberg.metadata_location("events"))
        assert con.execute("SELECT count(*), sum(v) FROM events").fetchone() == (len(rows), sum(r[2] for r in rows))
    finally:
        con.close()


def test_a_data_dir_with_no_table_is_a_no_op(data_dir: Path) -> None:
    assert _run(build_resources()) == {}
