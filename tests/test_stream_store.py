"""The stream resource: the local SQLite log shared by processes, and Kinesis on moto's server."""

from __future__ import annotations

import multiprocessing
import uuid
from pathlib import Path

import boto3
import pytest

from ecommerce_assets.storage.stream import KinesisStream, LocalStream, sequence_int, shard_index, shard_name

WRITERS = 4
PER_WRITER = 150


def _writer(path: str, writer: int) -> None:
    stream = LocalStream(path=path, shards=4)
    for start in range(0, PER_WRITER, 10):
        stream.put_records([(f"inv-{writer}-{i % 17}", f"{writer}:{i}".encode()) for i in range(start, start + 10)])


def _drain(stream: LocalStream, cursor: dict[str, str], seen: list) -> None:
    for shard in stream.shard_ids():
        while records := stream.read_after(shard, cursor.get(shard), 50):
            seen.extend(records)
            cursor[shard] = records[-1].sequence_number


def test_local_log_is_shared_by_writer_processes_and_a_tailing_reader(tmp_path: Path) -> None:
    path = str(tmp_path / "stream.sqlite")
    reader = LocalStream(path=path, shards=4)
    reader.ensure()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    cursor: dict[str, str] = {}
    seen: list = []
    while any(p.is_alive() for p in procs):
        _drain(reader, cursor, seen)  # tail the log while the writers write
    for p in procs:
        p.join()
        assert p.exitcode == 0
    _drain(reader, cursor, seen)

    payloads = [r.data.decode() for r in seen]
    expected = {f"{w}:{i}" for w in range(WRITERS) for i in range(PER_WRITER)}
    # the tailing reader saw every record exactly once: no record was committed behind its cursor
    assert len(payloads) == len(expected) and set(payloads) == expected
    for shard in reader.shard_ids():
        seqs = [sequence_int(r.sequence_number) for r in seen if r.shard_id == shard]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for r in seen:
        assert r.shard_id == shard_name(shard_index(r.partition_key, 4))
    # each writer's records keep their order within a partition key
    for w in range(WRITERS):
        mine = [int(p.split(":")[1]) for p in payloads if p.startswith(f"{w}:")]
        by_key: dict[int, list[int]] = {}
        for i in mine:
            by_key.setdefault(i % 17, []).append(i)
        assert all(v == sorted(v) for v in by_key.values())


def test_local_read_range_and_put_all_or_nothing(tmp_path: Path) -> None:
    stream = LocalStream(path=str(tmp_path / "s.sqlite"), shards=2)
    placed = stream.put_records([("536365", b"a"), ("536365", b"b"), ("536365", b"c")])
    shard = placed[0][0]
    assert {p[0] for p in placed} == {shard}
    seqs = [p[1] for p in placed]
    assert [r.data for r in stream.read_range(shard, seqs[1], seqs[2])] == [b"b", b"c"]
    assert [r.data for r in stream.read_after(shard, seqs[0], 10)] == [b"b", b"c"]
    with pytest.raises(ValueError, match="partition key"):
        stream.put_records([("536366", b"d"), ("", b"e")])
    assert sum(len(stream.read_after(s, None, 100)) for s in stream.shard_ids()) == 3  # nothing half written


def test_local_log_refuses_another_shard_count(tmp_path: Path) -> None:
    LocalStream(path=str(tmp_path / "s.sqlite"), shards=2).ensure()
    with pytest.raises(ValueError, match="created with 2 shards"):
        LocalStream(path=str(tmp_path / "s.sqlite"), shards=3).put_records([("k", b"x")])


def test_shard_routing_spreads_invoices() -> None:
    shards = [shard_index(str(536365 + i), 4) for i in range(2000)]
    counts = [shards.count(s) for s in range(4)]
    assert min(counts) > 350  # a constant key would put everything in one shard


def test_kinesis_on_moto_server(moto_endpoint: str) -> None:
    name = f"orders-{uuid.uuid4().hex[:8]}"
    stream = KinesisStream(stream_name=name, endpoint_url=moto_endpoint, region_name="us-east-1", shards=3)
    stream.ensure()
    stream.ensure()  # idempotent
    assert stream.shard_ids() == [shard_name(i) for i in range(3)]
    records = [(str(536365 + i % 40), f"line-{i}".encode()) for i in range(620)]  # > 500: two PutRecords calls
    placed = stream.put_records(records)
    assert len(placed) == 620
    # Kinesis routes exactly like the local log
    assert all(shard == shard_name(shard_index(pk, 3)) for (pk, _), (shard, _) in zip(records, placed, strict=True))

    got: list = []
    for shard in stream.shard_ids():
        after = None
        while batch := stream.read_after(shard, after, 100):  # AFTER_SEQUENCE_NUMBER paging
            got.extend(batch)
            after = batch[-1].sequence_number
        seqs = [sequence_int(r.sequence_number) for r in got if r.shard_id == shard]
        assert seqs == sorted(seqs)
    assert sorted(r.data for r in got) == sorted(d for _, d in records)

    shard = placed[0][0]
    in_shard = [seq for s, seq in placed if s == shard]
    window = stream.read_range(shard, in_shard[5], in_shard[20])
    assert [r.sequence_number for r in window] == in_shard[5:21]
    assert (
        boto3.client("kinesis", endpoint_url=moto_endpoint).describe_stream_summary(StreamName=name)[
            "StreamDescriptionSummary"
        ]["OpenShardCount"]
        == 3
    )


def test_kinesis_ensure_waits_for_a_stream_another_process_created(moto_endpoint: str) -> None:
    """``ensure`` finds the stream missing, and another process creates it first (ResourceInUseException on our
    CreateStream): not an error; ``ensure`` waits for that stream (boto3's ``stream_exists`` waiter)."""
    name = f"orders-{uuid.uuid4().hex[:8]}"
    stream = KinesisStream(stream_name=name, endpoint_url=moto_endpoint, region_name="us-east-1", shards=2)
    other = boto3.client("kinesis", endpoint_url=moto_endpoint, region_name="us-east-1")
    raced: list[str] = []

    def create_first(params: dict, **_: object) -> None:  # runs just before our CreateStream is sent
        other.create_stream(StreamName=params["StreamName"], ShardCount=3)
        raced.append(params["StreamName"])

    client = stream._client()
    client.meta.events.register("before-parameter-build.kinesis.CreateStream", create_first)
    try:
        stream.ensure()
    finally:
        client.meta.events.unregister("before-parameter-build.kinesis.CreateStream", create_first)
    assert raced == [name]
    assert stream.shard_ids() == [shard_name(i) for i in range(3)]  # the other process's stream, ACTIVE


def test_waiting_for_active_names_what_timed_out_and_keeps_aws_errors(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resource that never turns ACTIVE within ``ACTIVE_WAIT``: ``TimeoutError`` naming it. An AWS error
    while waiting: the ``ClientError`` itself, as the call gave it (not the waiter's wrapper)."""
    from botocore.exceptions import ClientError

    import ecommerce_assets.storage.connections as connections

    monkeypatch.setattr(connections, "ACTIVE_WAIT", {"Delay": 1, "MaxAttempts": 2})
    dynamodb = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1")
    with pytest.raises(TimeoutError, match="DynamoDB table nope is not ACTIVE after 2 s"):
        connections.wait_until_active(dynamodb, "table_exists", "DynamoDB table nope", TableName="nope")

    kinesis = boto3.client("kinesis", endpoint_url=moto_endpoint, region_name="us-east-1")
    with pytest.raises(ClientError) as info:
        connections.wait_until_active(kinesis, "stream_exists", "Kinesis stream nope", StreamName="nope")
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert info.value.operation_name == "DescribeStream"
