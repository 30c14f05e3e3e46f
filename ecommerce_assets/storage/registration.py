"""Landing -> raw: the one way a landed file is registered, for every source.

``raw/`` holds exactly what arrived and never changes in place: a landed file is copied to the same
relative key under the raw prefix; landing it again with the same bytes is a no-op; landing it again with
other bytes replaces the raw copy and keeps the old copy under ``<raw prefix>_superseded/<name>.<version>``.

A landed entry that must not or cannot be read never stops the batch: a symbolic link or a special
file (FIFO, socket, device) is never opened, and a file the process cannot read (permissions, an I/O
error) is skipped; each gets a ``<name>.reason.json`` under ``quarantine/<source>/landing/`` and the
other files are registered. Nothing of a link's target is read, copied or logged.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ecommerce_assets.storage import zones
from ecommerce_assets.storage.lake import Lake, LakeObject, UnsafeObjectError

WRITE_SIDE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}  # the lake cannot take the copy: not the file's fault

SUPERSEDED = "_superseded/"
STAMP = "%Y%m%dT%H%M%S%fZ"  # the arrival stamp that starts a raw name when every version is kept
REJECTED = zones.LANDING  # below quarantine/<source>/: landed entries refused at registration


@dataclass
class Registration:
    """What one registration pass did, and the raw files now current."""

    registered: list[str] = field(default_factory=list)
    unchanged: int = 0
    superseded: int = 0
    raw_files: list[LakeObject] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)  # {"file", "rule", "problem", "reason_key"}


def current_raw_files(lake: Lake, raw_prefix: str) -> list[LakeObject]:
    """The raw files now in force below ``raw_prefix`` (superseded copies left out)."""
    return [o for o in lake.list_objects(raw_prefix) if f"/{SUPERSEDED}" not in o.key]


def rejected_prefix(landing_prefix: str) -> str:
    """Where registration puts the reasons of refused landed entries: ``landing/<source>/<rest>`` ->
    ``quarantine/<source>/landing/<rest>``."""
    rest = landing_prefix.removeprefix(zones.LANDING)
    source, _, sub = rest.partition("/")
    return f"{zones.quarantine(source)}{REJECTED}{sub}"


def _quarantine_entry(
    lake: Lake, key: str, landing_prefix: str, quarantine_prefix: str, rule: str, problem: str
) -> dict[str, str]:
    """Write the reason of a refused landed entry (the entry itself is not copied: it was not read)."""
    where = f"{quarantine_prefix}{key[len(landing_prefix):]}.reason.json"
    reason = {"file": key, "rule": rule, "problem": problem, "copied": False}
    lake.write_bytes(where, json.dumps(reason, indent=2).encode())
    return {"file": key, "rule": rule, "problem": problem, "reason_key": where}


def register_landed(
    lake: Lake,
    landing_prefix: str,
    raw_prefix: str,
    accept: Callable[[LakeObject], bool] = lambda _o: True,
    log: Callable[[str], None] | None = None,
    quarantine_prefix: str | None = None,
    versions: Literal["replace", "keep"] = "replace",
    now: dt.datetime | None = None,
) -> Registration:
    """Copy every accepted object below ``landing_prefix`` to ``raw_prefix`` (see the module's rules).

    ``versions`` says what a file landed again with other bytes does:

    * ``replace``: the raw copy keeps the landing key and is replaced; the old copy goes to ``_superseded/``.
    * ``keep``: every version is its own raw file, ``<arrival stamp>-<identity>-<name>`` (``STAMP``, UTC,
      increasing in landing-key order; the identity hashes the landing key and version), so the raw zone
      holds the arrival order that "latest wins" and ``ingested_at`` read. A version is registered once.

    Refused entries (links, special files, unreadable files) get a reason under ``quarantine_prefix``
    (default ``rejected_prefix(landing_prefix)``) and the others go on.
    """
    result = Registration()
    qprefix = quarantine_prefix or rejected_prefix(landing_prefix)
    old_reasons = {o.key for o in lake.list_objects(qprefix) if o.key.endswith(".reason.json")}
    for bad in lake.list_rejected(landing_prefix):
        result.rejected.append(_quarantine_entry(lake, bad.key, landing_prefix, qprefix, bad.rule, bad.problem))
        if log:
            log(f"quarantined {bad.key}: {bad.problem}")
    keep = versions == "keep"
    seen = {o.name.split("-", 2)[1] for o in lake.list_objects(raw_prefix) if o.name.count("-") >= 2} if keep else set()
    now = now or dt.datetime.now(dt.UTC)
    for obj in lake.list_objects(landing_prefix):
        if not accept(obj):
            continue
        tail = obj.key[len(landing_prefix):]
        raw_key = raw_prefix + tail
        try:
            if keep:
                ident = _identity(obj.key, obj.version)
                if ident in seen:
                    result.unchanged += 1
                    continue
                stamp = (now + dt.timedelta(microseconds=len(result.registered))).strftime(STAMP)
                raw_key = f"{raw_prefix}{tail[: len(tail) - len(obj.name)]}{stamp}-{ident}-{obj.name}"
                seen.add(ident)
            elif lake.exists(raw_key):
                old = lake.stat(raw_key)
                if old.size == obj.size and lake.read_bytes(raw_key) == lake.read_bytes(obj.key):
                    result.unchanged += 1
                    continue
                lake.copy(raw_key, f"{raw_prefix}{SUPERSEDED}{tail}.{old.version}")
                result.superseded += 1
            lake.copy(obj.key, raw_key)
        except UnsafeObjectError as exc:  # swapped for a link or a FIFO after the listing: still never read
            rule = "symlink" if "symbolic link" in str(exc) else "not_a_regular_file"
            result.rejected.append(_quarantine_entry(lake, obj.key, landing_prefix, qprefix, rule, str(exc)))
            if log:
                log(f"quarantined {obj.key}: {exc}")
            continue
        except OSError as exc:  # unreadable (permissions, I/O error): this file waits, the batch goes on
            if exc.errno in WRITE_SIDE_ERRORS:
                # our side cannot write (disk full, quota, read-only): the run fails, the file stays landed
                raise OSError(exc.errno, f"{exc.strerror}: cannot copy {obj.key} to {lake.uri(raw_key)}") from exc
            problem = f"cannot be read: {exc.strerror or type(exc).__name__}; fix the file and land it again"
            result.rejected.append(_quarantine_entry(lake, obj.key, landing_prefix, qprefix, "unreadable_file", problem))
            if log:
                log(f"quarantined {obj.key}: {problem}")
            continue
        result.registered.append(raw_key)
        stale = f"{qprefix}{tail}.reason.json"
        if stale in old_reasons:  # refused before, readable now: its old reason goes
            lake.delete_prefix(stale)
        if log:
            log(f"registered {obj.key} -> {raw_key} ({obj.size:,} bytes)")
    result.raw_files = current_raw_files(lake, raw_prefix)
    return result


def _identity(key: str, version: str) -> str:
    return hashlib.sha256(f"{key}@{version}".encode()).hexdigest()[:12]


def reason_key(landing_prefix: str, landed_key: str) -> str:
    """Where the reason of a landed entry refused at registration goes (below ``rejected_prefix``)."""
    return f"{rejected_prefix(landing_prefix)}{landed_key[len(landing_prefix):]}.reason.json"


def ingested_at(raw_key: str) -> str:
    """The arrival stamp of a raw key registered with ``versions="keep"``, as an ISO timestamp (UTC, naive)."""
    stamp = raw_key.rsplit("/", 1)[-1].split("-", 1)[0]
    try:
        return dt.datetime.strptime(stamp, STAMP).isoformat(sep=" ")
    except ValueError as exc:
        raise ValueError(f"{raw_key}: not a registered raw key (expected <{STAMP}>-<id>-<name>)") from exc
