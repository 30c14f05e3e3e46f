"""One arrival-sensor design for every source that lands files in the lake (local folder or S3).

Keys carry their arrival date: ``<prefix>[<name>=<v>/...]date=YYYY-MM-DD/<file>``. Each date prefix is a
*bucket*; a source without date prefixes (a folder users drop files into) is one bucket (``""``).

How a tick stays O(new objects) and never misses or repeats an object:

* **Which buckets are listed.** One delimiter listing finds the date prefixes (cheap: one entry per
  day). Objects are then listed only in (1) the *active* buckets: dates within ``lookback_days`` of the
  newest date the cursor has seen or of today (late files for recent dates); (2) buckets the cursor has
  never seen (a late file for an old date that had no folder yet); (3) a rolling *sweep* of
  ``sweep_buckets`` older buckets per tick, round robin, so that a file dropped late into an old date
  folder is found within one sweep cycle (days / sweep_buckets ticks) without listing everything
  every tick. Older dates are never listed all at once.
* **What is new in a bucket.** The cursor keeps per bucket a *horizon* and the identities (key ->
  etag/mtime version) of the objects not older than it. The horizon is ``min(listing time - margin,
  newest last_modified seen)``: an object that becomes visible after a listing has a ``last_modified``
  no older than that listing's time minus ``margin_seconds`` (uploads finishing out of order, S3's
  one-second timestamps, clock skew inside the margin). An object is new when it is not older than the
  horizon and its identity is not in the set; a re-uploaded key (new etag/mtime) is new again. The set
  holds only what landed in the last ``margin_seconds`` before a listing, so a burst of 100,000 files
  leaves the cursor on the next tick after the margin.
* **Batches and run keys.** New objects are batched into one run per bucket (a date partition); the run
  key is ``<sensor>:<bucket>:<sha1 of the batch's key@version list>``, so a tick evaluated twice with the
  same cursor (a daemon restart before the cursor was saved) asks for nothing Dagster has not already
  launched, and no object is requested twice.
* **Restarts and time limits.** The cursor is JSON kept by Dagster with the run requests (so it
  survives restarts). A tick stops listing when it has used ``time_budget_seconds``; buckets it did not
  reach keep their state and are listed on the next tick, so a prefix with 100,000 objects cannot time
  the sensor out.
* **Deferred batches.** When ``build_request`` returns ``None`` for a batch (e.g. its date is not a
  partition yet), the batch's bucket keeps its previous state: the objects are offered again on the next
  tick rather than dropped.

``scan`` is a pure function of the lake listing and the cursor, so the CLI (``ecommerce-assets run``),
the tests and the sensor use exactly the same logic.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import dagster as dg

from ecommerce_assets.storage.lake import Lake, LakeObject

DATE_PREFIX = re.compile(r"(?:^|/)date=(\d{4}-\d{2}-\d{2})/$")
MAX_DEPTH = 3
ARRIVAL_TAG = "ecommerce/arrival"  # tag on every arrival sensor (``ecommerce-assets run`` evaluates them)
DEFAULT_TIME_BUDGET_SECONDS = 40.0  # Dagster's default sensor evaluation timeout is 60 s


@dataclass
class BucketState:
    watermark: float = 0.0
    recent: dict[str, str] = field(default_factory=dict)  # key below the bucket -> version, not settled yet
    tick: int = 0  # the scan that listed this bucket last (least recently listed go first)
    horizon: float | None = None  # objects older than this are settled (None: watermark - margin)

    def floor(self, margin_seconds: float) -> float:
        return self.horizon if self.horizon is not None else self.watermark - margin_seconds


@dataclass
class ArrivalCursor:
    """What the sensor remembers between ticks (JSON in the Dagster instance)."""

    latest_date: str | None = None
    buckets: dict[str, BucketState] = field(default_factory=dict)
    sweep_after: str | None = None  # the last old bucket the rolling sweep listed
    tick: int = 0  # scans so far

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": 2,
                "latest_date": self.latest_date,
                "sweep_after": self.sweep_after,
                "tick": self.tick,
                "buckets": {
                    b: {"wm": s.watermark, "h": s.horizon, "recent": dict(sorted(s.recent.items())), "t": s.tick}
                    for b, s in sorted(self.buckets.items())
                },
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
            buckets={
                b: BucketState(
                    float(s["wm"]), dict(s["recent"]), int(s.get("t", 0)),
                    None if s.get("h") is None else float(s["h"]),
                )
                for b, s in raw.get("buckets", {}).items()
            },
            sweep_after=raw.get("sweep_after"),
            tick=int(raw.get("tick", 0)),
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
    def identities(self) -> list[str]:
        """``key@version`` of every object, sorted: what the run key is made of."""
        return sorted(f"{o.key}@{o.version}" for o in self.objects)

    @property
    def run_key(self) -> str:
        return hashlib.sha1("\n".join(self.identities).encode()).hexdigest()


@dataclass(frozen=True)
class ScanStats:
    """What one scan listed (for the sensor's log and the tests)."""

    buckets_total: int
    buckets_listed: int
    objects_listed: int
    complete: bool  # False when the time budget stopped the scan early


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


def _minus_days(date: str, days: int) -> str:
    return (dt.date.fromisoformat(date) - dt.timedelta(days=days)).isoformat()


def plan_buckets(
    dated: Sequence[tuple[str, str]],
    cursor: ArrivalCursor,
    *,
    lookback_days: int,
    sweep_buckets: int,
    today: str,
) -> tuple[list[str], list[str]]:
    """(buckets to list first, old buckets the rolling sweep lists this tick).

    First come the buckets the cursor has never seen, then the active ones, least recently listed
    first, so that a tick cut short by the time budget never starves a bucket.
    """
    lows = [_minus_days(a, lookback_days) for a in (today, cursor.latest_date) if a]
    first: list[str] = []
    old: list[str] = []
    for bucket, date in sorted(dated):
        active = any(date >= lo for lo in lows)
        if bucket not in cursor.buckets or active:
            first.append(bucket)
        else:
            old.append(bucket)
    first.sort(key=lambda b: (b in cursor.buckets, cursor.buckets[b].tick if b in cursor.buckets else 0, b))
    sweep: list[str] = []
    if old and sweep_buckets > 0:
        start = next((i for i, b in enumerate(old) if cursor.sweep_after is None or b > cursor.sweep_after), 0)
        sweep = [old[(start + i) % len(old)] for i in range(min(sweep_buckets, len(old)))]
    return first, sweep


def scan(
    lake: Lake,
    prefix: str,
    cursor: ArrivalCursor,
    *,
    lookback_days: int = 2,
    margin_seconds: float = 300.0,
    suffixes: Sequence[str] | None = None,
    sweep_buckets: int = 2,
    time_budget_seconds: float | None = None,
    today: str | None = None,
    stats: list[ScanStats] | None = None,
    now: float | None = None,
) -> tuple[list[Arrivals], ArrivalCursor]:
    """List what arrived below ``prefix`` since ``cursor``; return the batches and the next cursor.

    ``stats``, when given, receives one ``ScanStats`` describing the work done.
    """
    started = time.monotonic()
    now = time.time() if now is None else now
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    today = today or dt.datetime.now(dt.UTC).date().isoformat()
    wanted = tuple(s.lower() for s in suffixes) if suffixes else None
    dated = _date_buckets(lake, prefix)
    if dated:
        first, sweep = plan_buckets(dated, cursor, lookback_days=lookback_days, sweep_buckets=sweep_buckets, today=today)
        existing = {b for b, _ in dated}
        latest = max([cursor.latest_date or "", *(d for _, d in dated)]) or None
    else:
        first, sweep, existing, latest = [""], [], {""}, cursor.latest_date

    arrivals: list[Arrivals] = []
    # buckets that vanished from the listing are forgotten; the others keep their state unless listed
    buckets: dict[str, BucketState] = {b: s for b, s in cursor.buckets.items() if b in existing}
    sweep_after = cursor.sweep_after
    listed_buckets = listed_objects = 0
    complete = True
    for bucket in [*first, *sweep]:
        if time_budget_seconds is not None and listed_buckets and time.monotonic() - started > time_budget_seconds:
            complete = False
            break
        state = cursor.buckets.get(bucket, BucketState())
        floor = state.floor(margin_seconds)
        cut = len(prefix + bucket)  # the cursor keeps keys relative to their bucket (a smaller cursor)
        watermark = state.watermark
        listed: list[LakeObject] = []
        new: list[LakeObject] = []
        for obj in lake.list_objects(prefix + bucket):
            if wanted and not obj.key.lower().endswith(wanted):
                continue
            listed.append(obj)
            watermark = max(watermark, obj.last_modified)
            if obj.last_modified >= floor and state.recent.get(obj.key[cut:]) != obj.version:
                new.append(obj)
        # settled: older than the margin before this listing (and not above the newest object seen)
        horizon = max(floor, min(now - margin_seconds, watermark))
        recent = {o.key[cut:]: o.version for o in listed if o.last_modified >= horizon}
        buckets[bucket] = BucketState(watermark=watermark, recent=recent, tick=cursor.tick + 1, horizon=horizon)
        listed_buckets += 1
        listed_objects += len(listed)
        if bucket in sweep:
            sweep_after = bucket
        if new:
            arrivals.append(Arrivals(bucket=bucket, objects=tuple(new)))
    if stats is not None:
        stats.append(ScanStats(len(existing), listed_buckets, listed_objects, complete))
    return arrivals, ArrivalCursor(latest_date=latest, buckets=buckets, sweep_after=sweep_after, tick=cursor.tick + 1)


RequestBuilder = Callable[[Arrivals], dg.RunRequest | None]


def sensor_default_status() -> dg.DefaultSensorStatus:
    """RUNNING when ``ECOMMERCE_SENSORS`` is on (the default locally; the deploy config sets it in aws
    mode), else STOPPED: every arrival sensor, the stream sensor and the automation sensor follow it."""
    from ecommerce_assets.settings import get_settings

    return dg.DefaultSensorStatus.RUNNING if get_settings().sensors_on else dg.DefaultSensorStatus.STOPPED


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
    minimum_interval_seconds: int | None = None,
    default_status: dg.DefaultSensorStatus | None = None,
    sweep_buckets: int = 2,
    margin_seconds: float = 300.0,
    time_budget_seconds: float = DEFAULT_TIME_BUDGET_SECONDS,
) -> dg.SensorDefinition:
    """A sensor that turns new objects below ``source_prefix`` (a lake key) into runs of ``target``.

    ``build_request`` maps a batch to a ``RunRequest`` (partition key, config); the default is one run
    of the target with the bucket's date as partition key (or no partition for undated sources).
    Returning ``None`` defers the batch to the next tick. The run key is always the batch's identity
    hash, and the run is tagged with the batch's bucket and size. The sensor runs by default in local
    mode; ``minimum_interval_seconds`` defaults to ``ECOMMERCE_SENSOR_INTERVAL_SECONDS`` (30).
    """
    from ecommerce_assets.settings import get_settings

    settings = get_settings()
    if default_status is None:
        default_status = sensor_default_status()
    interval = minimum_interval_seconds if minimum_interval_seconds is not None else settings.sensor_interval_seconds

    @dg.sensor(
        name=name,
        target=target,
        description=description,
        minimum_interval_seconds=interval,
        default_status=default_status,
        tags={ARRIVAL_TAG: "true", "ecommerce/catch_up": "true"},
    )
    def _sensor(context: dg.SensorEvaluationContext, lake: dg.ResourceParam[Lake]) -> dg.SensorResult:
        cursor = ArrivalCursor.from_json(context.cursor)
        stats: list[ScanStats] = []
        batches, next_cursor = scan(
            lake, source_prefix, cursor, lookback_days=lookback_days, suffixes=suffixes,
            sweep_buckets=sweep_buckets, margin_seconds=margin_seconds,
            time_budget_seconds=time_budget_seconds, stats=stats,
        )
        requests: list[dg.RunRequest] = []
        deferred: list[str] = []
        for batch in batches:
            request = build_request(batch) if build_request else dg.RunRequest(partition_key=batch.date)
            if request is None:
                # offer these objects again next tick: the bucket keeps its previous state
                deferred.append(batch.bucket or "(root)")
                if batch.bucket in cursor.buckets:
                    next_cursor.buckets[batch.bucket] = cursor.buckets[batch.bucket]
                else:
                    next_cursor.buckets.pop(batch.bucket, None)
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
        s = stats[0]
        context.log.info(
            f"{source_prefix}: listed {s.objects_listed} object(s) in {s.buckets_listed} of {s.buckets_total} "
            f"bucket(s); {sum(len(b.objects) for b in batches)} new in {len(batches)} batch(es)"
            + ("" if s.complete else "; time budget reached, the rest is listed next tick")
            + (f"; deferred: {', '.join(deferred)}" if deferred else "")
        )
        kept = [b for b in batches if (b.bucket or "(root)") not in deferred]
        dyn = list(dynamic_partitions(kept)) if dynamic_partitions and kept else []
        skip = None if requests else f"no new objects below {source_prefix}"
        return dg.SensorResult(
            run_requests=requests, cursor=next_cursor.to_json(), skip_reason=skip, dynamic_partitions_requests=dyn
        )

    return _sensor
