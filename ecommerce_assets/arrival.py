"""One arrival-sensor design for every source that lands files in the lake (local folder or S3).

How it stays O(new objects) and never misses or repeats an object:

* Keys carry their arrival date: ``<prefix>[<sub>=<v>/...]date=YYYY-MM-DD/<file>``. A tick lists the
  date prefixes (one delimiter listing), then lists objects only in the date prefixes from the newest
  date in the cursor minus ``lookback_days`` (late files for recent dates are still found); older dates
  are not listed again. Sources without date prefixes (a folder users drop files into) are one bucket.
* Per listed bucket the cursor keeps a watermark (the newest ``last_modified`` seen) and the identities
  (key + etag/mtime) of the objects within ``margin_seconds`` below it. An object is new when it is newer
  than ``watermark - margin`` and its identity is not in that set: S3's one-second timestamps, uploads
  finishing out of order and clock skew inside the margin cannot hide an object, and the set stays small.
* New objects are batched into one run per bucket (a date partition); the run key hashes the identities
  of its objects, so a tick evaluated twice with the same cursor asks for nothing new.

The cursor is JSON kept by Dagster (so it survives restarts); ``scan`` is a pure function so the CLI and
the tests use exactly what the sensor uses.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import dagster as dg

from ecommerce_assets.resources.lake import Lake, LakeObject

DATE_PREFIX = re.compile(r"(?:^|/)date=(\d{4}-\d{2}-\d{2})/$")
MAX_DEPTH = 3


@dataclass
class BucketState:
    watermark: float = 0.0
    recent: dict[str, str] = field(default_factory=dict)  # key -> version, within the margin


@dataclass
class ArrivalCursor:
    """What the sensor remembers between ticks."""

    latest_date: str | None = None
    buckets: dict[str, BucketState] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "latest_date": self.latest_date,
                "buckets": {b: {"wm": s.watermark, "recent": s.recent} for b, s in sorted(self.buckets.items())},
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | None) -> ArrivalCursor:
        if not text:
            return cls()
        raw = json.loads(text)
        return cls(
            latest_date=raw.get("latest_date"),
            buckets={b: BucketState(float(s["wm"]), dict(s["recent"])) for b, s in raw.get("buckets", {}).items()},
        )


@dataclass(frozen=True)
class Arrivals:
    """New objects of one bucket (a date prefix, or the whole source for undated sources)."""

    bucket: str  # prefix relative to the source prefix, e.g. "date=2026-11-22/" or "seller=A/date=.../" or ""
    objects: tuple[LakeObject, ...]

    @property
    def date(self) -> str | None:
        m = DATE_PREFIX.search(self.bucket)
        return m.group(1) if m else None

    @property
    def parts(self) -> dict[str, str]:
        """The ``name=value`` segments of the bucket, e.g. ``{"seller": "A", "date": "2026-11-22"}``."""
        return dict(seg.split("=", 1) for seg in self.bucket.strip("/").split("/") if "=" in seg)

    @property
    def run_key(self) -> str:
        ident = "\n".join(f"{o.key}@{o.version}" for o in sorted(self.objects, key=lambda o: o.key))
        return hashlib.sha1(ident.encode()).hexdigest()


def _date_buckets(lake: Lake, prefix: str, depth: int = 0) -> list[tuple[str, str]]:
    """(bucket, date) for every ``date=`` prefix below ``prefix`` (through ``name=value`` levels)."""
    found: list[tuple[str, str]] = []
    for sub in lake.list_prefixes(prefix):
        m = DATE_PREFIX.search(sub)
        if m:
            found.append((sub[len(prefix) :], m.group(1)))
        elif depth < MAX_DEPTH and "=" in sub.rstrip("/").rsplit("/", 1)[-1]:
            found.extend((f"{sub[len(prefix):]}{b}", d) for b, d in _date_buckets(lake, sub, depth + 1))
    return found


def scan(
    lake: Lake,
    prefix: str,
    cursor: ArrivalCursor,
    *,
    lookback_days: int = 2,
    margin_seconds: float = 300.0,
    suffixes: Sequence[str] | None = None,
) -> tuple[list[Arrivals], ArrivalCursor]:
    """List what arrived below ``prefix`` since ``cursor``; return the batches and the next cursor."""
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    dated = _date_buckets(lake, prefix)
    if dated:
        newest = max(d for _, d in dated)
        latest = max(newest, cursor.latest_date or newest)
        since = (dt.date.fromisoformat(cursor.latest_date) - dt.timedelta(days=lookback_days)).isoformat() if cursor.latest_date else None
        to_list = [(b, d) for b, d in dated if since is None or d >= since]
    else:
        latest, since, to_list = cursor.latest_date, None, [("", "")]
    listed_dates = {d for _, d in to_list}

    arrivals: list[Arrivals] = []
    buckets: dict[str, BucketState] = {}
    for bucket, date in sorted(to_list):
        state = cursor.buckets.get(bucket, BucketState())
        floor = state.watermark - margin_seconds
        new: list[LakeObject] = []
        watermark = state.watermark
        listed: list[LakeObject] = []
        for obj in lake.list_objects(prefix + bucket):
            if suffixes and not obj.key.lower().endswith(tuple(suffixes)):
                continue
            listed.append(obj)
            watermark = max(watermark, obj.last_modified)
            if obj.last_modified >= floor and state.recent.get(obj.key) != obj.version:
                new.append(obj)
        recent = {o.key: o.version for o in listed if o.last_modified >= watermark - margin_seconds}
        buckets[bucket] = BucketState(watermark=watermark, recent=recent)
        if new:
            arrivals.append(Arrivals(bucket=bucket, objects=tuple(new)))
    # keep the state of buckets not listed this tick only while they are inside the look-back
    for bucket, state in cursor.buckets.items():
        if bucket not in buckets:
            m = DATE_PREFIX.search(bucket)
            if m and (since is None or m.group(1) >= since) and m.group(1) not in listed_dates:
                buckets[bucket] = state
    return arrivals, ArrivalCursor(latest_date=latest, buckets=buckets)


RequestBuilder = Callable[[Arrivals], dg.RunRequest | None]


def arrival_sensor(
    *,
    name: str,
    source_prefix: str,
    target: dg.AssetSelection | Sequence[dg.AssetsDefinition | dg.AssetKey | str],
    description: str,
    build_request: RequestBuilder | None = None,
    dynamic_partitions: Callable[[Iterable[Arrivals]], Sequence[dg.AddDynamicPartitionsRequest]] | None = None,
    lookback_days: int = 2,
    suffixes: Sequence[str] | None = None,
    minimum_interval_seconds: int = 30,
    default_status: dg.DefaultSensorStatus | None = None,
) -> dg.SensorDefinition:
    """A sensor that turns new objects below ``source_prefix`` (a lake key) into runs of ``target``.

    ``build_request`` maps a batch to a ``RunRequest`` (partition key, config); the default is one run
    of the target with the bucket's date as partition key (or no partition for undated sources). The
    run key is always the batch's identity hash, and the run is tagged with the batch's size and bucket.
    """
    from ecommerce_assets.settings import get_settings

    if default_status is None:
        default_status = (
            dg.DefaultSensorStatus.RUNNING if get_settings().env == "local" else dg.DefaultSensorStatus.STOPPED
        )

    @dg.sensor(
        name=name,
        target=target,
        description=description,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        tags={"ecommerce/arrival": "true"},
    )
    def _sensor(context: dg.SensorEvaluationContext, lake: Lake) -> dg.SensorResult:
        cursor = ArrivalCursor.from_json(context.cursor)
        batches, next_cursor = scan(lake, source_prefix, cursor, lookback_days=lookback_days, suffixes=suffixes)
        requests: list[dg.RunRequest] = []
        for batch in batches:
            request = build_request(batch) if build_request else dg.RunRequest(partition_key=batch.date)
            if request is None:
                continue
            requests.append(
                request.with_replaced_attrs(
                    run_key=f"{name}:{batch.bucket}:{batch.run_key}",
                    tags={
                        **request.tags,
                        "ecommerce/arrival_bucket": batch.bucket or "(root)",
                        "ecommerce/arrival_objects": str(len(batch.objects)),
                    },
                )
            )
        dyn = list(dynamic_partitions(batches)) if dynamic_partitions and batches else []
        skip = None if requests else f"no new objects below {source_prefix}"
        return dg.SensorResult(
            run_requests=requests, cursor=next_cursor.to_json(), skip_reason=skip, dynamic_partitions_requests=dyn
        )

    return _sensor
