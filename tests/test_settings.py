"""The settings declaration: validated at start, documented in full, and the only place the environment is read."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ecommerce_assets.settings import (
    EXTERNAL_SETTINGS,
    SettingsError,
    declared_settings,
    get_settings,
    settings_markdown,
)

ROOT = Path(__file__).resolve().parents[1]
NAME = re.compile(r"\bECOMMERCE_[A-Z][A-Z0-9_]*[A-Z0-9]\b")
TEST_ONLY = {"ECOMMERCE_TEST_POSTGRES_DSN", "ECOMMERCE_SHARED_DATA", "ECOMMERCE_TEST_ARTIFACTS", "ECOMMERCE_BENCH_CACHE"}


def declared_names() -> set[str]:
    return {name for s in declared_settings() for name in s["env"]}


def names_in(paths: list[Path]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in paths:
        for name in NAME.findall(path.read_text(encoding="utf-8", errors="replace")):
            found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def test_docs_settings_tables_are_generated_from_the_declaration() -> None:
    doc = (ROOT / "docs" / "aws.md").read_text(encoding="utf-8")
    block = doc.split("<!-- settings:begin -->\n", 1)[1].split("<!-- settings:end -->", 1)[0]
    assert block == settings_markdown(), "docs/aws.md is stale: paste `python -m ecommerce_assets.settings` between the markers"
    for s in declared_settings():  # and so every declared setting is documented, with its meaning
        assert s["description"] and all(f"`{n}`" in block for n in s["env"]), s


def test_every_setting_the_code_reads_is_declared() -> None:
    code = [p for d in ("ecommerce_assets", "lambdas", "dbt", "deploy") for p in (ROOT / d).rglob("*")
            if p.is_file() and p.suffix in {".py", ".yml", ".yaml", ".json", ".sql"} and "target" not in p.parts]
    undeclared = {n: sorted(where) for n, where in names_in(code).items()
                  if n not in declared_names() and n not in EXTERNAL_SETTINGS}
    assert not undeclared, f"settings read but not declared in ecommerce_assets/settings.py: {undeclared}"


def test_the_docs_name_no_setting_that_does_not_exist() -> None:
    docs = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "deploy").glob("*.md")]
    stale = {n: sorted(where) for n, where in names_in(docs).items()
             if n not in declared_names() and n not in EXTERNAL_SETTINGS and n not in TEST_ONLY}
    assert not stale, f"the docs name settings the code does not read: {stale}"


def test_bad_settings_fail_at_start_one_line_each_and_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECOMMERCE_DUCKDB_MEMORY_LIMIT", "garbage")
    monkeypatch.setenv("ECOMMERCE_DUCKDB_THREADS", "abc")
    monkeypatch.setenv("ECOMMERCE_S3_BUCKET", "b")
    with pytest.raises(SettingsError) as err:
        get_settings()
    names = [p.split(":", 1)[0] for p in err.value.problems]
    assert names == ["ECOMMERCE_DUCKDB_MEMORY_LIMIT", "ECOMMERCE_DUCKDB_THREADS", "ECOMMERCE_S3_BUCKET"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECOMMERCE_")}
    env.update(ECOMMERCE_DUCKDB_THREADS="abc", ECOMMERCE_ENV="staging", ECOMMERCE_CATALOG_API_KEY="sk-visible-0042")
    done = subprocess.run([str(Path(sys.executable).parent / "ecommerce-assets"), "run"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: ECOMMERCE_ENV: Input should be 'local' or 'aws' (got 'staging')",
        "error: ECOMMERCE_DUCKDB_THREADS: Input should be a valid integer, unable to parse string as an integer (got 'abc')",
    ]
    assert "Traceback" not in done.stderr and "sk-visible-0042" not in done.stdout + done.stderr


def test_sellers_tokens_and_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECOMMERCE_SELLERS", " A1 ,B2,, ")
    monkeypatch.setenv("ECOMMERCE_INGEST_TOKENS", "t1,t2")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    s = get_settings()
    assert s.sellers == ("A1", "B2") and s.ingest_tokens == ("t1", "t2") and s.aws_region == "eu-west-3"
    assert "t1" not in repr(s)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")  # AWS_REGION wins, as in the AWS SDKs
    assert get_settings().aws_region == "eu-west-3"
    monkeypatch.delenv("AWS_REGION")
    assert get_settings().aws_region == "ap-south-1"


def test_aws_clients_honour_aws_region_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """With only AWS_REGION set (no AWS_DEFAULT_REGION, no config file), the Kinesis and DynamoDB clients build."""
    from ecommerce_assets.storage.kv_store import build_kv_store
    from ecommerce_assets.storage.stream import build_stream

    for var in ("AWS_DEFAULT_REGION", "AWS_CONFIG_FILE", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    monkeypatch.setenv("ECOMMERCE_ENV", "aws")
    settings = get_settings()
    stream, kv = build_stream(settings), build_kv_store(settings)
    assert stream.region_name == kv.region_name == "eu-central-1"


def test_sensors_setting_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ECOMMERCE_SENSORS", raising=False)
    monkeypatch.setenv("ECOMMERCE_ENV", "local")
    assert get_settings().sensors_on
    monkeypatch.setenv("ECOMMERCE_ENV", "aws")
    assert not get_settings().sensors_on and not get_settings().stream_configured
    monkeypatch.setenv("ECOMMERCE_SENSORS", "ON")
    monkeypatch.setenv("ECOMMERCE_STREAM_NAME", "orders")
    assert get_settings().sensors_on and get_settings().stream_configured
