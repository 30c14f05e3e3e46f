"""Issue 13, "Secrets": every pipeline in aws mode, failing runs included, then a scan for the secrets: 0 hits.

Recognisable secrets are set the way a deployment sets them:

* the catalog API key ``ECOMMERCE_CATALOG_API_KEY``, which a real local ``CatalogSimulator`` requires, and a
  wrong key the simulator refuses;
* the PostgreSQL password in ``PGPASSWORD`` (the tests' server runs with trust auth, so any password works)
  and a second one written into ``ECOMMERCE_WAREHOUSE_DSN``, which the product must refuse, saying why;
* the AWS secret access key ``AWS_SECRET_ACCESS_KEY`` (moto's server accepts any);
* an ingestion API bearer token (``ECOMMERCE_INGEST_TOKENS`` on the server, ``ECOMMERCE_INGEST_TOKEN`` for
  ``replay``).

The product's own commands run, each a subprocess with an environment built from scratch
(``tests/pipeline_inputs.py``), on moto's server (real HTTP) and a real PostgreSQL server:

1. ``ingest-api`` + ``replay`` put the Online Retail sample on the Kinesis stream (DynamoDB for the lines);
2. ``run --fetch`` runs all five pipelines: retail (a bad file quarantined), catalog (the seller fetched
   with the key, the distributor CSV, matching), orders (dbt on PostgreSQL, with ``PGPASSWORD``),
   transactions (a broken JSON file quarantined), stream; every run succeeds;
3. ``run --fetch --pipeline catalog --pipeline retail`` with the wrong key and the password in the DSN: the
   fetch fails (the key refused, the message naming the setting) and the retail run fails at the warehouse
   (the DSN refused, the message saying why and what to use instead);
4. the product's run-status alert sensors are evaluated for every recorded run, as the daemon would, with
   the notifier the settings build (SNS -> a subscribed SQS queue, failures also to the alerts DLQ);
   ``ecommerce-assets run`` itself sends no alerts (its in-process runs carry no code-location origin, so the
   daemon's run-status sensors skip them);
5. ``dagster-webserver`` on the same ``DAGSTER_HOME`` (started during step 3) is asked through GraphQL for
   every run's config and tags, job snapshot (resource config defaults), event log, the repository's
   resource details and the instance's info.

Scanned, for each secret (its bytes and its base64 forms): everything every command printed (the
webserver's and the ingestion API's logs included); every file under ``DAGSTER_HOME`` (compute logs counted
apart) and the data dir, and every cell of every SQLite database there, each zlib/gzip blob inflated
(Dagster compresses its snapshots, so grep alone misses them); the GraphQL answers; every alert and
dead letter; every object of the lake bucket (Parquet read as rows, gzip opened), the quarantine reason
files counted apart; every row of every warehouse table; dbt's log and the run folders written meanwhile.
Positive controls prove the places are really read: the DSN (without a password) must be found in the runs'
metadata, the key's env-var name inside an inflated snapshot and in the UI's resource details, the refusal in
the event log.

To see the scan fail, point ``ECOMMERCE_SECRETS_E2E_PLANT`` at a folder holding a ``sitecustomize.py``
that leaks a secret (the folder is put on the commands' ``PYTHONPATH``), e.g. one that logs the catalog key.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import gzip
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from ecommerce_assets.dev.catalog_sim import CatalogSimulator
from tests.conftest import MOTO_REGION, free_port
from tests.pipeline_inputs import (
    DISTRIBUTOR_SAMPLE,
    ORDERS_BATCH_1,
    RETAIL_SAMPLE,
    CliResult,
    cli_env,
    run_cli,
    transaction_records,
)

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PREFIX = "lake"
SELLER = "A2L77EE7U53NWQ"  # one catalog seller of the shipped sellers.yaml
COMMAND_TIMEOUT = 200  # seconds, per command

SECRETS = {
    "catalog API key": "sk-cat-7f3e9a51c2",
    "refused catalog API key": "sk-cat-wrong-3b6d0c8e4f",
    "PGPASSWORD": "pg-pw-4d1b8e6a93x",
    "password in the DSN": "dsn-pw-c27a5f0e18",
    "AWS secret access key": "aws-sk-9e4c2b7d15f08a36",
    "ingest token": "ing-tok-5a0f3c9e71",
}


# --- the scanner ---------------------------------------------------------------------------------------
def _forms(secret: str) -> list[bytes]:
    """The secret's bytes and its base64 forms at the three alignments (the characters that depend only on it)."""
    raw = secret.encode()
    out = [raw]
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw)
        start = 4 if shift else 0
        end = (shift + len(raw)) // 3 * 4
        out += [encoded[start:end], base64.urlsafe_b64encode(b"\0" * shift + raw)[start:end]]
    return list(dict.fromkeys(f for f in out if len(f) >= 8))


@dataclass
class Scanner:
    """Counts the places it reads per kind, records every secret hit and every positive-control marker found."""

    secrets: Mapping[str, str]
    markers: Mapping[str, str] = field(default_factory=dict)  # name -> a non-secret value expected somewhere
    places: Counter[str] = field(default_factory=Counter)
    hits: list[str] = field(default_factory=list)
    found: dict[str, set[str]] = field(default_factory=dict)  # marker name -> kinds it was found in

    def __post_init__(self) -> None:
        self._forms = {name: _forms(value) for name, value in self.secrets.items()}

    def scan(self, kind: str, where: str, data: bytes | str, *, count: bool = True) -> None:
        """Look for every secret in ``data``, and in ``data`` zlib-decompressed or gzip-opened (kind + " [inflated]")."""
        blob = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else bytes(data)
        if count:
            self.places[kind] += 1
        for name, forms in self._forms.items():
            if any(f in blob for f in forms):
                self.hits.append(f"{kind}: {where}: the {name}")
        for name, marker in self.markers.items():
            if marker.encode() in blob:
                self.found.setdefault(name, set()).add(kind)
        inflated = _inflate(blob)
        if inflated is not None:
            self.scan(f"{kind} [inflated]", f"{where} (inflated)", inflated)

    def scan_tree(self, kind: str, root: Path) -> None:
        """Every file below ``root``: its bytes, and every cell of it when it is a SQLite database."""
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            data = path.read_bytes()
            sub = kind
            if "compute_logs" in path.parts or path.suffix in (".out", ".err", ".complete"):
                sub = f"{kind}: compute log files"
            self.scan(sub, str(path.relative_to(root)), data)
            if data.startswith(b"SQLite format 3\0"):
                self.scan_sqlite(f"{kind}: SQLite cells", path)

    def scan_sqlite(self, kind: str, path: Path) -> None:
        con = sqlite3.connect(path)
        try:
            tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                quoted = '"' + table.replace('"', '""') + '"'
                rows = con.execute(f"SELECT * FROM {quoted}")  # noqa: S608 - a quoted table name
                for n, row in enumerate(rows):
                    for i, cell in enumerate(row):
                        if isinstance(cell, bytes | str):
                            self.scan(kind, f"{path.name}:{table} row {n} column {i}", cell)
        finally:
            con.close()


def _inflate(blob: bytes) -> bytes | None:
    """``blob`` decompressed when it is a zlib stream or a gzip file, else None."""
    if blob[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(blob)
        except (OSError, EOFError, zlib.error):
            return None
    if len(blob) > 2 and blob[0] == 0x78 and (blob[0] << 8 | blob[1]) % 31 == 0:
        try:
            return zlib.decompress(blob)
        except zlib.error:
            return None
    return None


# --- the environment -----------------------------------------------------------------------------------
@dataclass
class Aws:
    """The deployment's infrastructure on moto's server: bucket, stream, tables, topic, queues."""

    endpoint: str
    bucket: str = field(default_factory=lambda: f"secrets-{uuid.uuid4().hex[:12]}")
    stream: str = field(default_factory=lambda: f"orders-{uuid.uuid4().hex[:8]}")
    kv_prefix: str = field(default_factory=lambda: f"s{uuid.uuid4().hex[:8]}-")
    topic_arn: str = ""
    dlq_url: str = ""
    tap_url: str = ""

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name=MOTO_REGION)

    def create(self) -> Aws:
        self.client("s3").create_bucket(Bucket=self.bucket)
        self.client("kinesis").create_stream(StreamName=self.stream, ShardCount=1)
        dynamodb = self.client("dynamodb")
        for table, keys in ((f"{self.kv_prefix}invoices", [("invoice_no", "HASH"), ("line_key", "RANGE")]),
                            (f"{self.kv_prefix}customers", [("customer_id", "HASH")])):
            dynamodb.create_table(
                TableName=table, KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in keys],
                AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k, _ in keys],
                BillingMode="PAY_PER_REQUEST")
        sns, sqs = self.client("sns"), self.client("sqs")
        self.topic_arn = sns.create_topic(Name=f"alerts-{self.bucket}")["TopicArn"]
        self.dlq_url = sqs.create_queue(QueueName=f"alerts-dlq-{self.bucket}")["QueueUrl"]
        self.tap_url = sqs.create_queue(QueueName=f"alerts-tap-{self.bucket}")["QueueUrl"]
        tap_arn = sqs.get_queue_attributes(QueueUrl=self.tap_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=tap_arn,
                      Attributes={"RawMessageDelivery": "true"})
        return self

    def upload(self, source: str, name: str, body: bytes) -> None:
        self.client("s3").put_object(Bucket=self.bucket, Key=f"{PREFIX}/landing/{source}/{name}", Body=body)

    def drain(self, url: str) -> list[str]:
        """Every message body of an SQS queue."""
        sqs, out = self.client("sqs"), []
        while True:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
            if not got:
                return out
            out += [m["Body"] for m in got]
            sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                            for i, m in enumerate(got)])


def with_password(dsn: str, password: str) -> str:
    """``postgresql://user@host/db`` -> ``postgresql://user:password@host/db``."""
    scheme, rest = dsn.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{password}@{host}"


class Background:
    """A product command in its own session, its output in a file; stopped with SIGTERM to its group."""

    def __init__(self, args: list[str], env: Mapping[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(args, env=dict(env), cwd=REPO, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_http(self, url: str, ok: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"{self.log.name} exited:\n{self.output()[-4000:]}"
            try:
                if ok(httpx.get(url, timeout=5)):
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"{url} did not answer in {timeout:.0f} s:\n{self.output()[-4000:]}"
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        self._out.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


# --- GraphQL ------------------------------------------------------------------------------------------
RUNS = """{ runsOrError { __typename ... on Runs { results { runId status jobName runConfigYaml
  pipelineSnapshotId tags { key value } } } } }"""
RESOURCES = """{ workspaceOrError { __typename ... on Workspace { locationEntries { name
  locationOrLoadError { __typename ... on PythonError { message }
    ... on RepositoryLocation { repositories { name allTopLevelResourceDetails { name description resourceType
      configuredValues { key value type }
      configFields { name description defaultValueAsJson }
      nestedResources { name type } } } } } } } } }"""
SNAPSHOT = """query ($id: String!) { pipelineSnapshotOrError(snapshotId: $id) { __typename
  ... on PipelineSnapshot { name modes { name resources { name description
    configField { defaultValueAsJson configType { key
      ... on CompositeConfigType { fields { name defaultValueAsJson } } } } } } } } }"""
EVENTS = """query ($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run {
  eventConnection(limit: 20000) { events { __typename
    ... on MessageEvent { message }
    ... on ExecutionStepFailureEvent { error { message stack causes { message stack } } }
    ... on RunFailureEvent { pipelineFailureError: error { message stack } }
    ... on MaterializationEvent { metadataEntries { label description
      ... on TextMetadataEntry { text } ... on JsonMetadataEntry { jsonString }
      ... on MarkdownMetadataEntry { mdStr } ... on UrlMetadataEntry { url } ... on PathMetadataEntry { path } } }
    ... on ObservationEvent { metadataEntries { label description
      ... on TextMetadataEntry { text } ... on JsonMetadataEntry { jsonString } } }
  } } } } }"""
INSTANCE = "{ instance { info daemonHealth { id } } }"


def graphql(base: str, query: str, **variables: Any) -> dict[str, Any]:
    """One read-only query; its ``data`` (raises on GraphQL errors)."""
    resp = httpx.post(f"{base}/graphql", json={"query": query, "variables": variables}, timeout=120)
    resp.raise_for_status()
    body = resp.json()
    assert not body.get("errors"), body["errors"]
    return body["data"]


# --- the test -----------------------------------------------------------------------------------------
@pytest.fixture
def catalog() -> Iterator[CatalogSimulator]:
    """The catalog API simulator (a real HTTP server) that requires the key."""
    sim = CatalogSimulator(port=0, required_key=SECRETS["catalog API key"]).start()
    yield sim
    sim.stop()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_no_secret_in_output_instance_ui_alerts_or_lake(
    moto_endpoint: str, postgres_db: str, catalog: CatalogSimulator, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started, wall_start = time.monotonic(), time.time()
    timings: dict[str, float] = {}

    def lap(what: str) -> None:
        timings[what] = round(time.monotonic() - started - sum(timings.values()), 1)

    aws = Aws(moto_endpoint).create()
    settings = {
        "ECOMMERCE_ENV": "aws",
        "ECOMMERCE_S3_BUCKET": aws.bucket,
        "ECOMMERCE_S3_PREFIX": PREFIX,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": SECRETS["AWS secret access key"],
        "AWS_REGION": MOTO_REGION,
        "ECOMMERCE_WAREHOUSE": "postgres",
        "ECOMMERCE_WAREHOUSE_DSN": postgres_db,
        "ECOMMERCE_GLUE_DATABASE": aws.bucket.replace("-", "_"),  # its own: moto's Glue is shared by every test
        "PGPASSWORD": SECRETS["PGPASSWORD"],
        "ECOMMERCE_CATALOG_API_URL": catalog.url,
        "ECOMMERCE_CATALOG_API_KEY": SECRETS["catalog API key"],
        "ECOMMERCE_SELLERS": SELLER,
        "ECOMMERCE_STREAM_NAME": aws.stream,
        "ECOMMERCE_STREAM_SHARDS": "1",
        "ECOMMERCE_KV_TABLE_PREFIX": aws.kv_prefix,
        "ECOMMERCE_ALERTS_TOPIC_ARN": aws.topic_arn,
        "ECOMMERCE_ALERTS_DLQ_URL": aws.dlq_url,
        "ECOMMERCE_INGEST_TOKENS": SECRETS["ingest token"],
        "ECOMMERCE_INGEST_TOKEN": SECRETS["ingest token"],
        "PYTHONUNBUFFERED": "1",  # what a command printed before a timeout is kept
    }
    plant = os.environ.get("ECOMMERCE_SECRETS_E2E_PLANT")
    if plant:  # the demonstration that the scan can fail (see the module docstring)
        settings["PYTHONPATH"] = plant
    env = cli_env(tmp_path, settings)
    data_dir, home = Path(env["ECOMMERCE_DATA_DIR"]), Path(env["DAGSTER_HOME"])

    # --- inputs: every pipeline's files, plus a bad retail file and a broken JSON (quarantined with reasons) --
    aws.upload("online_retail", RETAIL_SAMPLE.name, RETAIL_SAMPLE.read_bytes())
    aws.upload("online_retail", "not_a_csv.csv", b"\x00\x01 this is not the Online Retail CSV\n")
    aws.upload("distributor", DISTRIBUTOR_SAMPLE.name, DISTRIBUTOR_SAMPLE.read_bytes())
    aws.upload("orders", "orders.csv", (ORDERS_BATCH_1 / "orders.csv").read_bytes())  # dbt runs on PostgreSQL
    for date, records in transaction_records(12, [dt.date(2024, 3, 1)]).items():
        for record in records:
            aws.upload("transactions", f"date={date}/{record['transaction_id']}.json", json.dumps(record).encode())
        aws.upload("transactions", f"date={date}/broken.json", b'{"transaction_id": "TXN-broken", ')
    lap("set-up")

    outputs: dict[str, str] = {}  # command -> everything it printed

    def command(label: str, args: list[str], cmd_env: Mapping[str, str]) -> CliResult:
        try:
            result = run_cli(args, cmd_env, tmp_path, timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            printed = (exc.stdout or b"").decode(errors="replace") + (exc.stderr or b"").decode(errors="replace")
            raise AssertionError(f"`ecommerce-assets {' '.join(args)}` ran over {COMMAND_TIMEOUT} s; it printed:\n"
                                 f"{printed[-6000:]}\ntimings so far (s): {timings}") from None
        outputs[label] = result.stdout + result.stderr
        return result

    # --- 1. the stream: ingest-api (aws: Kinesis + DynamoDB) and replay, with a bearer token -------------
    port = free_port()
    ingest = Background([str(BIN / "ecommerce-assets"), "ingest-api", "--port", str(port)], env,
                        tmp_path / "ingest-api.log")
    try:
        ingest.wait_http(f"http://127.0.0.1:{port}/health", lambda r: r.status_code == 200, 90)
        replay = command("replay", ["replay", str(RETAIL_SAMPLE), "--url", f"http://127.0.0.1:{port}",
                                    "--batch", "50"], env)
    finally:
        ingest.stop()
        outputs["ingest-api"] = ingest.output()
    assert replay.returncode == 0, replay.show()
    lap("ingest-api + replay")

    # --- 2. every pipeline: ok ------------------------------------------------------------------------
    everything = command("run --fetch", ["run", "--fetch"], env)
    assert everything.returncode == 0, everything.show()
    assert {ln.pipeline for ln in everything.runs} == {"retail", "catalog", "orders", "transactions", "stream"}, \
        everything.show()
    assert all(ln.status == "ok" for ln in everything.runs), everything.show()
    assert any(r.status == 200 and r.seller_id == SELLER for r in catalog.requests), "the key was never accepted"
    lap("run --fetch (every pipeline)")

    # the webserver loads meanwhile (same DAGSTER_HOME, the deployment's environment)
    ui_port = free_port()
    ui = Background([str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(ui_port), "-w",
                     str(REPO / "workspace.yaml")], env, tmp_path / "webserver.log")
    try:
        # --- 3. failing runs: a refused catalog key and a password in the DSN (refused, saying why) -------
        head = b"".join(RETAIL_SAMPLE.read_bytes().splitlines(keepends=True)[:30])
        aws.upload("online_retail", "second_batch.csv", head)
        failing = command("run --fetch (wrong key, password in the DSN)",
                          ["run", "--fetch", "--pipeline", "catalog", "--pipeline", "retail"],
                          {**env, "ECOMMERCE_CATALOG_API_KEY": SECRETS["refused catalog API key"],
                           "ECOMMERCE_WAREHOUSE_DSN": with_password(postgres_db, SECRETS["password in the DSN"])})
        assert failing.returncode == 1, failing.show()
        assert {ln.pipeline for ln in failing.runs if ln.status == "FAILED"} == {"catalog", "retail"}, failing.show()
        assert "refused the key" in failing.stdout and "set ECOMMERCE_CATALOG_API_KEY" in failing.stdout, failing.show()
        assert "carries a password" in failing.stdout and "PGPASSWORD" in failing.stdout, failing.show()
        assert any(r.status in (401, 403) for r in catalog.requests), "the wrong key was never sent"
        lap("failing runs")

        # --- 4. alerts: the product's run-status sensors for every recorded run -> SNS, DLQ -----------
        alerts_sent = send_alerts(home, aws, monkeypatch)
        alerts = aws.drain(aws.tap_url)
        dead_letters = aws.drain(aws.dlq_url)
        # the run-status sensors alert on every recorded run; `ecommerce-assets run` itself alerted on its failed ones
        from_run = [a for a in alerts if "ecommerce-assets run" in str(a)]
        assert len(from_run) == alerts_sent["failed"] >= 2, (alerts_sent, len(from_run))
        assert len(alerts) == alerts_sent["runs"] + len(from_run), (alerts_sent, len(alerts))
        assert len(dead_letters) == 2 * alerts_sent["failed"], (alerts_sent, len(dead_letters))
        lap("alerts")

        # --- 5. what the UI's GraphQL serves --------------------------------------------------------
        base = f"http://127.0.0.1:{ui_port}"
        ui.wait_http(f"{base}/server_info", lambda r: r.status_code == 200, 150)
        answers = ui_answers(base)
        lap("webserver + GraphQL")
    finally:
        ui.stop()
        outputs["dagster-webserver"] = ui.output()

    # --- the scan -------------------------------------------------------------------------------------
    dsn_target = postgres_db.split("@", 1)[1]  # host:port/db, never a password
    scanner = Scanner(SECRETS, markers={
        "the DSN (host:port/db)": dsn_target,
        "the key's env-var name": "ECOMMERCE_CATALOG_API_KEY",
        "the refusal": "carries a password",
    })
    for label, text in outputs.items():
        scanner.scan("command output", label, text)
    scanner.scan_tree("DAGSTER_HOME", home)
    scanner.scan_tree("data dir", data_dir)
    for kind, items in answers.items():
        for where, text in items:
            scanner.scan(f"GraphQL: {kind}", where, text)
    for i, body in enumerate(alerts):
        scanner.scan("alerts (SNS -> SQS)", f"alert {i}", body)
    for i, body in enumerate(dead_letters):
        scanner.scan("alerts dead-letter queue", f"message {i}", body)
    scan_lake(scanner, aws)
    scan_warehouse(scanner, postgres_db)
    scan_dbt(scanner, started_at=wall_start)
    lap("scan")

    report = "\n".join(f"  {n:>7}  {kind}" for kind, n in sorted(scanner.places.items()))
    print(f"\nsecret scan: {len(scanner.hits)} hit(s); places scanned per kind:\n{report}\ntimings (s): {timings}")
    for name, kinds in sorted(scanner.found.items()):
        print(f"  positive control {name!r} found in: {', '.join(sorted(kinds))}")
    assert not scanner.hits, "secrets leaked:\n" + "\n".join(scanner.hits[:50])

    # positive controls: each kind was really read, where the value is known to be
    found = scanner.found
    # the DSN's host:port/db is in the table addresses of the runs' metadata, and nothing of it in any
    # resource config (the warehouse is a storage object, not configured through Dagster)
    assert {"DAGSTER_HOME: SQLite cells", "GraphQL: run event logs"} <= found.get("the DSN (host:port/db)", set()), found
    # the snapshots are zlib blobs: the catalog API resource's env-var reference is found once they are inflated
    assert "DAGSTER_HOME: SQLite cells [inflated]" in found.get("the key's env-var name", set()), found
    assert scanner.places["DAGSTER_HOME: compute log files"] > 0
    assert "GraphQL: resource details" in found.get("the key's env-var name", set()), found
    assert {"command output", "DAGSTER_HOME: SQLite cells", "GraphQL: run event logs"} <= found.get(
        "the refusal", set()), found
    assert scanner.places["quarantine reason files"] >= 2, scanner.places
    assert scanner.places["lake objects (Parquet read)"] > 0 and scanner.places["warehouse tables"] > 0


def send_alerts(home: Path, aws: Aws, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Evaluate the product's alert sensors for every finished run of the instance, as the daemon does, with
    the aws notifier the settings build (SNS topic + alerts DLQ). Returns the number of runs and failures."""
    import dagster as dg

    from ecommerce_assets.defs.alerts.sensors import alert_on_run_failure, summarize_successful_run
    from ecommerce_assets.resources.notifier import build_notifier
    from ecommerce_assets.settings import get_settings

    for name, value in {"ECOMMERCE_ENV": "aws", "ECOMMERCE_ALERTS_TOPIC_ARN": aws.topic_arn,
                        "ECOMMERCE_ALERTS_DLQ_URL": aws.dlq_url, "AWS_ENDPOINT_URL": aws.endpoint,
                        "AWS_REGION": MOTO_REGION}.items():
        monkeypatch.setenv(name, value)
    notifier = build_notifier(get_settings())
    counts = Counter[str]()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for run in instance.get_runs():
            failed = run.status == dg.DagsterRunStatus.FAILURE
            event_type = dg.DagsterEventType.RUN_FAILURE if failed else dg.DagsterEventType.RUN_SUCCESS
            records = instance.get_records_for_run(run.run_id, of_type=event_type).records
            assert len(records) == 1, (run.run_id, run.status)
            sensor = alert_on_run_failure if failed else summarize_successful_run
            context = dg.build_run_status_sensor_context(
                sensor_name=sensor.name, dagster_instance=instance, dagster_run=run,
                dagster_event=records[0].event_log_entry.dagster_event,  # type: ignore[arg-type]
                resources={"notifier": notifier},
            )
            sensor(context.for_run_failure() if failed else context)
            counts["runs"] += 1
            counts["failed"] += failed
    return dict(counts)


def ui_answers(base: str) -> dict[str, list[tuple[str, str]]]:
    """The GraphQL answers to scan, by kind: run configs (+ tags), job snapshots, run event logs, resource
    details, the instance's info."""
    runs = graphql(base, RUNS)["runsOrError"]
    assert runs["__typename"] == "Runs", runs
    out: dict[str, list[tuple[str, str]]] = {"run configs": [], "job snapshots": [], "run event logs": []}
    snapshots: set[str] = set()
    for run in runs["results"]:
        out["run configs"].append((run["runId"], json.dumps(run)))
        events = graphql(base, EVENTS, runId=run["runId"])
        out["run event logs"].append((run["runId"], json.dumps(events)))
        snapshots.add(run["pipelineSnapshotId"])
    for snapshot_id in sorted(snapshots):
        out["job snapshots"].append((snapshot_id, json.dumps(graphql(base, SNAPSHOT, id=snapshot_id))))
    workspace = graphql(base, RESOURCES)["workspaceOrError"]
    assert workspace["__typename"] == "Workspace", workspace
    details = []
    for entry in workspace["locationEntries"]:
        location = entry["locationOrLoadError"] or {}
        assert location.get("__typename") == "RepositoryLocation", entry
        for repo in location["repositories"]:
            details += [(f"{entry['name']}/{repo['name']}/{r['name']}", json.dumps(r))
                        for r in repo["allTopLevelResourceDetails"]]
    assert {"lake", "warehouse", "catalog_api", "notifier"} <= {w.rsplit("/", 1)[1] for w, _ in details}, details
    out["resource details"] = details
    out["instance info"] = [("instance", json.dumps(graphql(base, INSTANCE)))]
    return out


def scan_lake(scanner: Scanner, aws: Aws) -> None:
    """Every object of the bucket: its bytes, Parquet read as rows, gzip opened; reason files counted apart."""
    import pyarrow.parquet as pq

    s3 = aws.client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=aws.bucket):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            body = s3.get_object(Bucket=aws.bucket, Key=key)["Body"].read()
            scanner.scan("lake objects", key, body)
            scanner.scan("lake objects", f"{key} (key)", key, count=False)
            if key.endswith(".parquet"):
                table = pq.read_table(io.BytesIO(body))
                scanner.scan("lake objects (Parquet read)", key, json.dumps(table.to_pylist(), default=str))
            if key.endswith(".reason.json"):
                scanner.scan("quarantine reason files", key, body)


def scan_warehouse(scanner: Scanner, dsn: str) -> None:
    """Every row of every table and view of the warehouse database, as JSON text."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn) as con:
        names = con.execute("SELECT table_schema, table_name FROM information_schema.tables "
                            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')").fetchall()
        for schema, table in names:
            query = sql.SQL("SELECT coalesce(json_agg(t)::text, '') FROM {}.{} AS t").format(
                sql.Identifier(schema), sql.Identifier(table))
            scanner.scan("warehouse tables", f"{schema}.{table}", con.execute(query).fetchone()[0])  # type: ignore[index]


def scan_dbt(scanner: Scanner, started_at: float) -> None:
    """dbt's log and the run folders it wrote since the test began (``dbt/target/<run>/``)."""
    dbt = REPO / "dbt"
    for path in [dbt / "logs" / "dbt.log", *sorted((dbt / "target").rglob("*"))]:
        try:  # other dbt runs may write or clean their own folders meanwhile
            if path.is_file() and path.stat().st_mtime >= started_at:
                scanner.scan("dbt log and run folders", str(path.relative_to(dbt)), path.read_bytes())
        except FileNotFoundError:
            continue


def test_the_scanner_finds_a_secret_in_every_form_it_reads(tmp_path: Path) -> None:
    """The scan is not blind: plain, base64, zlib inside a SQLite blob, gzip; and a clean tree has no hit."""
    key = SECRETS["catalog API key"]
    db = tmp_path / "home" / "runs.db"
    db.parent.mkdir()
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE snapshots (id INTEGER, snapshot_body BLOB)")
    con.execute("INSERT INTO snapshots VALUES (1, ?)", [zlib.compress(json.dumps({"api_key": key}).encode())])
    con.commit()
    con.close()
    (tmp_path / "home" / "step.err").write_text(f"header: {base64.b64encode(('x' + key).encode()).decode()}\n")
    (tmp_path / "home" / "alerts.json.gz").write_bytes(gzip.compress(key.encode()))
    scanner = Scanner(SECRETS)
    scanner.scan_tree("home", tmp_path / "home")
    assert len(scanner.hits) == 3, scanner.hits
    assert any(h.startswith("home: SQLite cells [inflated]: runs.db:snapshots") for h in scanner.hits), scanner.hits
    assert b"sk-cat" not in db.read_bytes()  # grep alone would have missed it

    clean = Scanner(SECRETS)
    for i in range(200):  # random bytes of the size of a snapshot never match by chance
        clean.scan("noise", str(i), os.urandom(4096))
    with (tmp_path / "rows.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["sk-cat-0000000000", "pg-pw"], ["aws-sk", "ing-tok"]])
    clean.scan("near misses", "rows.csv", (tmp_path / "rows.csv").read_bytes())
    assert not clean.hits
