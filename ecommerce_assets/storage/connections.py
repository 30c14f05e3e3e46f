"""Connections and clients the storage classes share: one per thread and process (a SQLite file in WAL mode, a
boto3 client), and waiting until a new Kinesis stream or DynamoDB table is ACTIVE."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
_per_thread = threading.local()

ACTIVE_WAIT: dict[str, int] = {"Delay": 1, "MaxAttempts": 120}
"""How boto3's waiters poll a new Kinesis stream or DynamoDB table until it is ACTIVE: every second, ~120 s."""


def per_thread(kind: str, key: tuple[Hashable, ...], make: Callable[[], T]) -> T:
    """The object of ``kind`` for ``key`` in this thread of this process, made by ``make`` on first use.

    sqlite3 connections and boto3 clients are not shared between threads, and never across a fork.
    """
    cache: dict[tuple[Hashable, ...], Any] = getattr(_per_thread, kind, None) or {}
    setattr(_per_thread, kind, cache)
    full = (os.getpid(), *key)
    if full not in cache:
        cache[full] = make()
    return cache[full]


def sqlite_connection(path: str, schema: str) -> sqlite3.Connection:
    """A per-thread, per-process connection to a SQLite file in WAL mode (created with ``schema``)."""

    def connect() -> sqlite3.Connection:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(path, timeout=60.0, isolation_level=None)
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA synchronous = NORMAL")
        con.execute("PRAGMA busy_timeout = 60000")
        con.executescript(schema)
        return con

    return per_thread("sqlite", (path, schema), connect)


def wait_until_active(client: Any, waiter_name: str, what: str, **params: Any) -> None:
    """Wait with boto3's waiter ``waiter_name`` (``stream_exists``, ``table_exists``) until ``what`` is ACTIVE.

    Polls as ``ACTIVE_WAIT`` says. Still not ACTIVE then: ``TimeoutError`` naming ``what``. An AWS error while
    waiting (access denied, ...) is raised as the ``ClientError`` the call returned, not wrapped by the waiter.
    """
    from botocore.exceptions import ClientError, WaiterError

    waiter = client.get_waiter(waiter_name)
    try:
        waiter.wait(**params, WaiterConfig=ACTIVE_WAIT)
    except WaiterError as err:
        if str(err.kwargs.get("reason", "")).startswith("Max attempts exceeded"):
            seconds = ACTIVE_WAIT["Delay"] * ACTIVE_WAIT["MaxAttempts"]
            raise TimeoutError(f"{what} is not ACTIVE after {seconds} s") from err
        if "Error" in (err.last_response or {}):
            raise ClientError(err.last_response, waiter.config.operation) from err
        raise
