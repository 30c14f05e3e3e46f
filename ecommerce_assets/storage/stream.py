"""The stream of order lines: a local append-only log, or Kinesis, behind one ``Stream`` interface.

Both implementations behave like Kinesis where the consumers can tell:

* records are routed to a shard by the MD5 hash of their partition key (the invoice number), the
  hash-key space split evenly between ``shards`` shards named ``shardId-000000000000`` ...;
* each record gets a sequence number, a decimal string that increases within its shard, so a consumer
  keeps one number per shard as its position and reads ``AFTER_SEQUENCE_NUMBER``;
* ``put_records`` writes every record or raises (a request's lines are never half written).

``LocalStream`` is one SQLite file in WAL mode (``<state_dir>/stream.sqlite``): the API process, the
Dagster daemon and run workers open it at once; writers are serialized by SQLite, so a sequence number is
never committed after a larger one (a reader's position is never overtaken). Local sequence numbers are
zero-padded to 20 digits (string order = number order). ``KinesisStream`` uses boto3 (``endpoint_url``
for moto or LocalStack; otherwise ``AWS_ENDPOINT_URL`` and the usual AWS configuration apply).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ecommerce_assets.settings import Settings
from ecommerce_assets.storage.base import StorageModel
from ecommerce_assets.storage.connections import per_thread, sqlite_connection, wait_until_active


@dataclass(frozen=True)
class StreamRecord:
    """One record read from the stream (local log or Kinesis)."""

    shard_id: str
    sequence_number: str
    partition_key: str
    data: bytes
    arrived_at: float  # epoch seconds (Kinesis ApproximateArrivalTimestamp)


def sequence_int(sequence_number: str) -> int:
    """Sequence numbers are decimal strings (Kinesis: up to 128 bits); compare them as integers."""
    return int(sequence_number)


PUT_BATCH = 500  # Kinesis PutRecords limit
_HASH_SPACE = 1 << 128


class StreamWriteError(RuntimeError):
    """Some records could not be written after retries (Kinesis throttling)."""


def shard_index(partition_key: str, shards: int) -> int:
    """Kinesis routing: MD5 of the partition key as a 128-bit number, hash-key space split evenly."""
    digest = int.from_bytes(hashlib.md5(partition_key.encode("utf-8")).digest(), "big")  # noqa: S324 - routing, not security
    return digest * shards // _HASH_SPACE


def shard_name(index: int) -> str:
    return f"shardId-{index:012d}"


class Stream(StorageModel):
    """Interface every stream implements; the API, the sensor, the assets and the lambdas use only this."""

    def ensure(self) -> None:
        """Create the stream when it does not exist (local: the log file; aws: the Kinesis stream)."""
        raise NotImplementedError

    def shard_ids(self) -> list[str]:
        raise NotImplementedError

    def put_records(self, records: Sequence[tuple[str, bytes]]) -> list[tuple[str, str]]:
        """Append ``(partition_key, data)`` records; return ``(shard_id, sequence_number)`` for each, in order."""
        raise NotImplementedError

    def read_after(self, shard_id: str, after: str | None, limit: int) -> list[StreamRecord]:
        """Up to ``limit`` records of the shard after sequence number ``after`` (from the oldest when None)."""
        raise NotImplementedError

    def read_range(self, shard_id: str, first: str, last: str) -> list[StreamRecord]:
        """The records of the shard with ``first <= sequence number <= last`` (a micro-batch)."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


# --- local: SQLite in WAL mode -----------------------------------------------------------------

_checked_logs: set[tuple[int, str, int]] = set()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    shard INTEGER NOT NULL,
    partition_key TEXT NOT NULL,
    data BLOB NOT NULL,
    arrived_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS records_shard_seq ON records (shard, seq);
CREATE TABLE IF NOT EXISTS stream_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class LocalStream(Stream):
    """The local stream: an append-only log in one SQLite file that several processes share."""

    path: str
    shards: int = 4

    def _con(self) -> sqlite3.Connection:
        con = sqlite_connection(self.path, _SCHEMA)
        if (os.getpid(), self.path, self.shards) not in _checked_logs:
            row = con.execute("SELECT value FROM stream_meta WHERE key = 'shards'").fetchone()
            if row is None:
                con.execute("INSERT OR IGNORE INTO stream_meta VALUES ('shards', ?)", [str(self.shards)])
                row = con.execute("SELECT value FROM stream_meta WHERE key = 'shards'").fetchone()
            if int(row[0]) != self.shards:
                raise ValueError(
                    f"{self.path} was created with {row[0]} shards, not {self.shards} "
                    "(set ECOMMERCE_STREAM_SHARDS to match, or use a new data dir)"
                )
            _checked_logs.add((os.getpid(), self.path, self.shards))
        return con

    def ensure(self) -> None:
        self._con()

    def shard_ids(self) -> list[str]:
        return [shard_name(i) for i in range(self.shards)]

    def put_records(self, records: Sequence[tuple[str, bytes]]) -> list[tuple[str, str]]:
        if not records:
            return []
        con = self._con()
        now = time.time()
        out: list[tuple[str, str]] = []
        con.execute("BEGIN IMMEDIATE")
        try:
            for partition_key, data in records:
                if not partition_key:
                    raise ValueError("a record needs a non-empty partition key")
                shard = shard_index(partition_key, self.shards)
                cur = con.execute(
                    "INSERT INTO records (shard, partition_key, data, arrived_at) VALUES (?, ?, ?, ?)",
                    [shard, partition_key, sqlite3.Binary(data), now],
                )
                out.append((shard_name(shard), f"{cur.lastrowid:020d}"))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return out

    def _shard(self, shard_id: str) -> int:
        index = int(shard_id.rsplit("-", 1)[-1])
        if not 0 <= index < self.shards:
            raise ValueError(f"no shard {shard_id!r} in {self.path}")
        return index

    def _records(self, shard_id: str, rows: list[tuple[Any, ...]]) -> list[StreamRecord]:
        return [StreamRecord(shard_id, f"{seq:020d}", pk, bytes(data), arrived) for seq, pk, data, arrived in rows]

    def read_after(self, shard_id: str, after: str | None, limit: int) -> list[StreamRecord]:
        rows = (
            self._con()
            .execute(
                "SELECT seq, partition_key, data, arrived_at FROM records WHERE shard = ? AND seq > ? ORDER BY seq LIMIT ?",
                [self._shard(shard_id), sequence_int(after) if after else 0, limit],
            )
            .fetchall()
        )
        return self._records(shard_id, rows)

    def read_range(self, shard_id: str, first: str, last: str) -> list[StreamRecord]:
        rows = (
            self._con()
            .execute(
                "SELECT seq, partition_key, data, arrived_at FROM records WHERE shard = ? AND seq BETWEEN ? AND ? "
                "ORDER BY seq",
                [self._shard(shard_id), sequence_int(first), sequence_int(last)],
            )
            .fetchall()
        )
        return self._records(shard_id, rows)

    def describe(self) -> str:
        return f"sqlite://{os.path.abspath(self.path)} ({self.shards} shards)"


# --- aws: Kinesis ------------------------------------------------------------------------------


class KinesisStream(Stream):
    """Kinesis Data Streams through boto3 (``endpoint_url`` for moto/LocalStack, else AWS_ENDPOINT_URL)."""

    stream_name: str
    endpoint_url: str | None = None
    region_name: str | None = None
    shards: int = 4  # used when ``ensure`` creates the stream
    max_put_attempts: int = 5

    def _client(self) -> Any:
        import boto3

        return per_thread("kinesis", (self.endpoint_url, self.region_name),
                          lambda: boto3.client("kinesis", endpoint_url=self.endpoint_url, region_name=self.region_name))

    def ensure(self) -> None:
        """Create the stream with ``shards`` shards unless it exists, then wait (up to ~120 s) until it is ACTIVE.

        Waits with boto3's ``stream_exists`` waiter (``DescribeStream``); a stream still not ACTIVE raises
        ``TimeoutError``. Another process creating the same stream at the same time is not an error.
        """
        client = self._client()
        try:
            client.describe_stream_summary(StreamName=self.stream_name)
        except client.exceptions.ResourceNotFoundException:
            try:
                client.create_stream(StreamName=self.stream_name, ShardCount=self.shards)
            except client.exceptions.ResourceInUseException:
                pass  # created meanwhile by another process: wait for it like for ours
        wait_until_active(client, "stream_exists", f"Kinesis stream {self.stream_name}", StreamName=self.stream_name)

    def shard_ids(self) -> list[str]:
        client = self._client()
        shards: list[str] = []
        kwargs: dict[str, Any] = {"StreamName": self.stream_name}
        while True:
            page = client.list_shards(**kwargs)
            shards.extend(s["ShardId"] for s in page["Shards"])
            if not page.get("NextToken"):
                return sorted(shards)
            kwargs = {"NextToken": page["NextToken"]}

    def put_records(self, records: Sequence[tuple[str, bytes]]) -> list[tuple[str, str]]:
        client = self._client()
        out: list[tuple[str, str] | None] = [None] * len(records)
        for start in range(0, len(records), PUT_BATCH):
            pending = list(range(start, min(start + PUT_BATCH, len(records))))
            for attempt in range(self.max_put_attempts):
                reply = client.put_records(
                    StreamName=self.stream_name,
                    Records=[{"PartitionKey": records[i][0], "Data": records[i][1]} for i in pending],
                )
                failed = []
                for i, result in zip(pending, reply["Records"], strict=True):
                    if "SequenceNumber" in result and not result.get("ErrorCode"):
                        out[i] = (result["ShardId"], result["SequenceNumber"])
                    else:
                        failed.append(i)
                if not failed:
                    break
                pending = failed
                time.sleep(min(2.0, 0.1 * 2**attempt))
            else:
                raise StreamWriteError(
                    f"{len(pending)} of {len(records)} records were not accepted by Kinesis stream "
                    f"{self.stream_name} after {self.max_put_attempts} attempts (throttled)"
                )
        return [o for o in out if o is not None]

    def _iterator(self, shard_id: str, kind: str, sequence_number: str | None = None) -> str:
        kwargs: dict[str, Any] = {"StreamName": self.stream_name, "ShardId": shard_id, "ShardIteratorType": kind}
        if sequence_number is not None:
            kwargs["StartingSequenceNumber"] = sequence_number
        return self._client().get_shard_iterator(**kwargs)["ShardIterator"]

    def _read(self, iterator: str, limit: int, shard_id: str, stop_after: str | None = None) -> list[StreamRecord]:
        client = self._client()
        out: list[StreamRecord] = []
        stop = sequence_int(stop_after) if stop_after else None
        for _ in range(1000):  # bounded: empty pages behind the tip are possible, an endless loop is not
            reply = client.get_records(ShardIterator=iterator, Limit=max(1, min(10_000, limit - len(out))))
            for r in reply["Records"]:
                if stop is not None and sequence_int(r["SequenceNumber"]) > stop:
                    return out
                arrived = r["ApproximateArrivalTimestamp"]
                out.append(
                    StreamRecord(
                        shard_id,
                        r["SequenceNumber"],
                        r["PartitionKey"],
                        bytes(r["Data"]),
                        arrived.timestamp() if hasattr(arrived, "timestamp") else float(arrived),
                    )
                )
                if len(out) >= limit:
                    return out
            iterator = reply.get("NextShardIterator")
            if not iterator or (not reply["Records"] and reply.get("MillisBehindLatest", 0) == 0):
                return out
        return out

    def read_after(self, shard_id: str, after: str | None, limit: int) -> list[StreamRecord]:
        if after:
            iterator = self._iterator(shard_id, "AFTER_SEQUENCE_NUMBER", after)
        else:
            iterator = self._iterator(shard_id, "TRIM_HORIZON")
        return self._read(iterator, limit, shard_id)

    def read_range(self, shard_id: str, first: str, last: str) -> list[StreamRecord]:
        iterator = self._iterator(shard_id, "AT_SEQUENCE_NUMBER", first)
        return self._read(iterator, 1_000_000, shard_id, stop_after=last)

    def describe(self) -> str:
        return f"kinesis://{self.stream_name}"


def build_stream(settings: Settings) -> Stream:
    """The stream of the environment: the local log under ``state_dir``, or Kinesis in aws mode."""
    if settings.env == "aws":
        return KinesisStream(
            stream_name=settings.stream_name,
            endpoint_url=settings.aws_endpoint_url,
            region_name=settings.aws_region,
            shards=settings.stream_shards,
        )
    return LocalStream(path=str(settings.state_dir / "stream.sqlite"), shards=settings.stream_shards)
