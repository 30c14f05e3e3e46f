"""Shared fixtures: a temporary data dir (lake + DuckDB), local resources, and a real PostgreSQL server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# ../shared/data beside the checkout (as CI has it); ECOMMERCE_SHARED_DATA points elsewhere
SHARED_DATA = Path(os.environ.get("ECOMMERCE_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
FULL_RETAIL = SHARED_DATA / "online_retail" / "online_retail.csv.gz"
RETAIL_SAMPLE_5000 = SHARED_DATA / "online_retail" / "online_retail_sample_5000.csv"
SEED_SAMPLES = SHARED_DATA / "seed_samples"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ``ECOMMERCE_DATA_DIR`` in local mode for one test."""
    d = tmp_path / "data"
    d.mkdir()
    monkeypatch.setenv("ECOMMERCE_ENV", "local")
    monkeypatch.setenv("ECOMMERCE_DATA_DIR", str(d))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    return d


@pytest.fixture
def local_resources(data_dir: Path) -> dict:
    from ecommerce_assets.resources import build_resources

    return build_resources()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_postgres(root: Path) -> tuple[str, subprocess.Popen | None]:
    """initdb + pg_ctl a throwaway server (as the ``postgres`` user when we are root)."""
    bindir = None
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        bindir = candidate
        break
    if bindir is None and shutil.which("initdb"):
        bindir = Path(shutil.which("initdb")).parent  # type: ignore[arg-type]
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed: run `bash .ci/run` or `apt-get install postgresql`")
    port = free_port()
    pgdata = root / "pgdata"
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(pgdata), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(pgdata), "-o",
                    f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "-l", str(root / "pg.log"), "-w", "start"],
                   check=True, capture_output=True)
    return f"postgresql://postgres@127.0.0.1:{port}/postgres", None


MOTO_REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server in its own process (real HTTP on a free port of 127.0.0.1); fake credentials.

    A separate process, not ``ThreadedMotoServer``: DuckDB's httpfs may hold the GIL while it lists a
    prefix, and a server thread in the same interpreter could then never answer.
    """
    import urllib.request

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto server did not start on {url}") from None
            time.sleep(0.2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.delenv("AWS_SESSION_TOKEN", raising=False)
        mp.delenv("AWS_PROFILE", raising=False)
        mp.setenv("AWS_DEFAULT_REGION", MOTO_REGION)
        mp.setenv("AWS_REGION", MOTO_REGION)
        yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def postgres_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL server: ``ECOMMERCE_TEST_POSTGRES_DSN`` (set by .ci/run) or one started here."""
    dsn = os.environ.get("ECOMMERCE_TEST_POSTGRES_DSN")
    if dsn:
        yield dsn
        return
    root = Path("/tmp") / f"ecommerce-pg-{os.getpid()}-{int(time.time())}"
    root.mkdir(parents=True)
    dsn, _ = _start_postgres(root)
    try:
        yield dsn
    finally:
        as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
        if bindir:
            subprocess.run([*as_user, str(bindir[0] / "pg_ctl"), "-D", str(root / "pgdata"), "-m", "fast", "stop"],
                           capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_db(postgres_dsn: str) -> Iterator[str]:
    """A fresh database on the test server for one test; yields its DSN."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    base = postgres_dsn.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(postgres_dsn, autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def aws_storage(moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """aws mode against moto: a fresh bucket and Glue database, the storage built from the settings."""
    import uuid

    import boto3

    from ecommerce_assets.settings import Settings
    from ecommerce_assets.storage.build import build_storage

    bucket, database = f"lake-{uuid.uuid4().hex[:12]}", f"db_{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name=MOTO_REGION).create_bucket(Bucket=bucket)
    for name, value in {
        "ECOMMERCE_ENV": "aws",
        "AWS_ENDPOINT_URL": moto_endpoint,
        "ECOMMERCE_S3_BUCKET": bucket,
        "ECOMMERCE_S3_PREFIX": "lake",
        "ECOMMERCE_GLUE_DATABASE": database,
        "ECOMMERCE_DATA_DIR": str(tmp_path / "data"),
        "DAGSTER_HOME": str(tmp_path),
    }.items():
        monkeypatch.setenv(name, value)
    storage = build_storage(Settings())
    assert "iceberg" in storage and "lake" in storage, storage["problems"]
    return storage
