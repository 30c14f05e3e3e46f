"""Landing -> raw: the one way a landed file is registered, for every source.

``raw/`` holds exactly what arrived and never changes in place: a landed file is copied to the same
relative key under the raw prefix; landing it again with the same bytes is a no-op; landing it again with
other bytes replaces the raw copy and keeps the old copy under ``<raw prefix>_superseded/<name>.<version>``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg

from ecommerce_assets.resources.lake import Lake, LakeObject

SUPERSEDED = "_superseded/"


@dataclass
class Registration:
    """What one registration pass did, and the raw files now current."""

    registered: list[str] = field(default_factory=list)
    unchanged: int = 0
    superseded: int = 0
    raw_files: list[LakeObject] = field(default_factory=list)

    def metadata(self, lake: Lake, raw_prefix: str) -> dict[str, object]:
        return {
            "newly_registered": len(self.registered),
            "newly_registered_keys": dg.MetadataValue.json(self.registered[:100]),
            "unchanged": self.unchanged,
            "superseded": self.superseded,
            "raw_files": len(self.raw_files),
            "raw_bytes": sum(o.size for o in self.raw_files),
            "dagster/uri": dg.MetadataValue.path(lake.uri(raw_prefix)),
        }


def current_raw_files(lake: Lake, raw_prefix: str) -> list[LakeObject]:
    """The raw files now in force below ``raw_prefix`` (superseded copies left out)."""
    return [o for o in lake.list_objects(raw_prefix) if f"/{SUPERSEDED}" not in o.key]


def register_landed(
    lake: Lake,
    landing_prefix: str,
    raw_prefix: str,
    accept: Callable[[LakeObject], bool] = lambda _o: True,
    log: Callable[[str], None] | None = None,
) -> Registration:
    """Copy every accepted object below ``landing_prefix`` to ``raw_prefix`` (see the module's rules)."""
    result = Registration()
    for obj in lake.list_objects(landing_prefix):
        if not accept(obj):
            continue
        tail = obj.key[len(landing_prefix):]
        raw_key = raw_prefix + tail
        if lake.exists(raw_key):
            old = lake.stat(raw_key)
            if old.size == obj.size and lake.read_bytes(raw_key) == lake.read_bytes(obj.key):
                result.unchanged += 1
                continue
            lake.copy(raw_key, f"{raw_prefix}{SUPERSEDED}{tail}.{old.version}")
            result.superseded += 1
        lake.copy(obj.key, raw_key)
        result.registered.append(raw_key)
        if log:
            log(f"registered {obj.key} -> {raw_key} ({obj.size:,} bytes)")
    result.raw_files = current_raw_files(lake, raw_prefix)
    return result
