"""The ingestion API over a real uvicorn server on a free port; the API Gateway Lambda gives the same answers."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ecommerce_assets.services.ingest_api import ApiServer, create_app
from ecommerce_assets.settings import get_settings
from ecommerce_assets.storage.kv_store import build_kv_store
from ecommerce_assets.storage.stream import Stream, build_stream

LINE = {"InvoiceNo": "536365", "StockCode": "85123A", "Description": "WHITE HANGING HEART T-LIGHT HOLDER",
        "Quantity": "6", "InvoiceDate": "12/1/2010 8:26", "UnitPrice": "2.55", "CustomerID": "17850.0",
        "Country": "United Kingdom"}
CANCEL = {**LINE, "InvoiceNo": "C536379", "StockCode": "D", "Quantity": -1, "UnitPrice": 27.5, "CustomerID": ""}


def _stream_size(stream: Stream) -> int:
    return sum(len(stream.read_after(s, None, 10_000)) for s in stream.shard_ids())


@pytest.fixture
def api(data_dir: Path) -> Iterator[tuple[str, Stream]]:
    settings = get_settings()
    stream, kv = build_stream(settings), build_kv_store(settings)
    with ApiServer(create_app(stream, kv, settings)) as server:
        yield server.url, stream


def test_one_line_and_an_array_are_accepted(api: tuple[str, Stream]) -> None:
    url, stream = api
    r = requests.post(f"{url}/orders", json=LINE, timeout=10)
    assert r.status_code == 202
    [rec] = r.json()["records"]
    assert rec["invoice_no"] == "536365"
    [on_stream] = stream.read_range(rec["shard_id"], rec["sequence_number"], rec["sequence_number"])
    assert on_stream.partition_key == "536365"  # the invoice is the partition key
    assert json.loads(on_stream.data)["CustomerID"] == "17850" and json.loads(on_stream.data)["Quantity"] == 6

    r = requests.post(f"{url}/orders", json=[LINE, CANCEL], timeout=10)
    assert r.status_code == 202 and r.json()["accepted"] == 2
    assert _stream_size(stream) == 3


@pytest.mark.parametrize(
    ("change", "field", "rule"),
    [
        ({"Quantity": "six"}, "Quantity", "not_integer"),
        ({"Quantity": 0}, "Quantity", "zero_quantity"),
        ({"UnitPrice": "2.5555"}, "UnitPrice", "too_many_decimals"),
        ({"UnitPrice": "abc"}, "UnitPrice", "not_number"),
        ({"InvoiceDate": "2010-13-45 10:00:00"}, "InvoiceDate", "bad_date"),
        ({"StockCode": "  "}, "StockCode", "missing"),
        ({"InvoiceNo": "53-6365"}, "InvoiceNo", "bad_format"),
        ({"InvoiceNo": "C536365"}, "Quantity", "cancellation_positive_quantity"),
        ({"Quantity": True}, "Quantity", "not_integer"),
        ({"Qty": 6}, "Qty", "unknown_field"),
        # content: control characters, bidirectional overrides, dates out of range, negative prices
        ({"Description": "NUL\x00byte"}, "Description", "control_character"),
        ({"Description": "\x1b[31mred"}, "Description", "control_character"),
        ({"Description": "abc\u202etxt.exe"}, "Description", "control_character"),
        ({"Country": "United\u2066Kingdom"}, "Country", "control_character"),
        ({"StockCode": "85123A\t"}, "StockCode", "control_character"),
        ({"InvoiceDate": "0001-01-01 00:00"}, "InvoiceDate", "out_of_range"),
        ({"InvoiceDate": "12/31/1999 23:59"}, "InvoiceDate", "out_of_range"),
        ({"InvoiceDate": "2100-01-01 00:00"}, "InvoiceDate", "out_of_range"),
        ({"UnitPrice": -2.55}, "UnitPrice", "negative_price"),
        ({"InvoiceNo": "C536379", "Quantity": -1, "UnitPrice": "-27.50"}, "UnitPrice", "negative_price"),
        ({"UnitPrice": "1e12"}, "UnitPrice", "out_of_range"),
        ({"invoice_no": "536366"}, "InvoiceNo", "duplicate_field"),
        ({"Country": {"name": "United Kingdom"}}, "Country", "bad_format"),
    ],
)
def test_a_bad_line_is_422_naming_field_and_rule(api: tuple[str, Stream], change: dict, field: str, rule: str) -> None:
    url, stream = api
    r = requests.post(f"{url}/orders", json={**LINE, **change}, timeout=10)
    assert r.status_code == 422
    body = r.json()
    [line] = body["lines"]
    assert line["line"] == 0
    assert {"field": field, "rule": rule} in [{"field": e["field"], "rule": e["rule"]} for e in line["errors"]]
    assert field in body["error"]
    assert _stream_size(stream) == 0


def test_limits_of_the_content_rules_are_accepted(api: tuple[str, Stream]) -> None:
    """The edges that stay legal: the first and last instants of the date range, a price of 0 (free items
    are in the Online Retail data), -0 read as 0, a negative price on an adjustment invoice ("A", as the
    data's "Adjust bad debt" lines), non-ASCII text, and a leading UTF-8 BOM on the body."""
    url, stream = api
    lines = [{**LINE, "InvoiceDate": "2000-01-01 00:00"}, {**LINE, "InvoiceDate": "2099-12-31 23:59:59"},
             {**LINE, "UnitPrice": 0}, {**LINE, "UnitPrice": "-0.0"},
             {**LINE, "InvoiceNo": "A563185", "StockCode": "B", "Quantity": 1, "UnitPrice": "-11062.06"},
             {**LINE, "Description": "CAFÉ crème – 20 cm ☕", "Country": "Österreich"}]
    r = requests.post(f"{url}/orders", data=b"\xef\xbb\xbf" + json.dumps(lines).encode(),
                      headers={"Content-Type": "application/json; charset=utf-8"}, timeout=10)
    assert r.status_code == 202, r.text
    records = [json.loads(rec.data) for rec in _all(stream)]
    assert sorted(rec["UnitPrice"] for rec in records) == sorted(["2.550", "2.550", "0.000", "0.000", "-11062.060",
                                                                  "2.550"])
    assert {rec["InvoiceDate"] for rec in records} >= {"2000-01-01T00:00:00", "2099-12-31T23:59:59"}


def test_duplicate_json_keys_are_refused_not_last_one_wins(api: tuple[str, Stream]) -> None:
    url, stream = api
    body = b'{"InvoiceNo": "536365", "InvoiceNo": "999999", "StockCode": "85123A", "Quantity": 6, ' \
           b'"InvoiceDate": "12/1/2010 8:26", "UnitPrice": 2.55, "Country": "United Kingdom"}'
    r = requests.post(f"{url}/orders", data=body, headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 422
    [line] = r.json()["lines"]
    assert {"field": "InvoiceNo", "rule": "duplicate_field"} in [{k: e[k] for k in ("field", "rule")}
                                                                for e in line["errors"]]
    assert _stream_size(stream) == 0


def _all(stream: Stream) -> list:
    return [r for s in stream.shard_ids() for r in stream.read_after(s, None, 10_000)]


def test_an_array_with_one_bad_line_writes_nothing(api: tuple[str, Stream]) -> None:
    url, stream = api
    lines = [LINE, CANCEL, {**LINE, "UnitPrice": "x"}, LINE]
    r = requests.post(f"{url}/orders", json=lines, timeout=10)
    assert r.status_code == 422
    assert [(p["line"], p["errors"][0]["field"]) for p in r.json()["lines"]] == [(2, "UnitPrice")]
    assert _stream_size(stream) == 0


@pytest.mark.parametrize(
    ("body", "rule"),
    [(b"{not json", "bad_json"), (b"[]", "empty_array"), (b"", "empty_body"), (b'"536365"', "not_object"),
     (json.dumps([LINE] * 501).encode(), "too_many_lines"), (json.dumps(LINE).encode("utf-16"), "bad_encoding"),
     (b'{"InvoiceNo": "\xff"}', "bad_encoding"), (b"\xef\xbb\xbf", "empty_body"), (b"[1e5, NaN", "bad_json")],
)
def test_a_bad_body_is_400(api: tuple[str, Stream], body: bytes, rule: str) -> None:
    url, stream = api
    r = requests.post(f"{url}/orders", data=body, headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 400 and r.json()["rule"] == rule and r.json()["field"] == "body"
    assert _stream_size(stream) == 0


def test_get_invoice_404_then_200_and_health(api: tuple[str, Stream]) -> None:
    url, _ = api
    assert requests.get(f"{url}/invoices/536365", timeout=10).status_code == 404
    from ecommerce_assets.transforms.stream_batches import kv_items, type_batch

    requests.post(f"{url}/orders", json=[LINE, {**LINE, "Quantity": 2}], timeout=10).raise_for_status()
    stream = build_stream(get_settings())
    records = [r for s in stream.shard_ids() for r in stream.read_after(s, None, 100)]
    build_kv_store(get_settings()).put_lines(kv_items(type_batch(records, "test").table))
    r = requests.get(f"{url}/invoices/536365", timeout=10)
    assert r.status_code == 200
    doc = r.json()
    assert doc["line_count"] == 2 and [q["quantity"] for q in doc["lines_by_stock_code"]["85123A"]] == [6, 2]
    assert doc["total"] == "20.400" and doc["customer_id"] == "17850"
    health = requests.get(f"{url}/health", timeout=10)
    assert health.status_code == 200 and health.json()["shards"] == get_settings().stream_shards
    # the kinds of stream and store only: no absolute path (nor the data dir) in the answer
    assert health.json() == {"status": "ok", "stream": "local", "shards": get_settings().stream_shards,
                             "kv_store": "local", "auth": "none"}
    assert "/" not in health.text and str(get_settings().data_dir) not in health.text


def test_interactive_docs_are_off_unless_asked_for(data_dir: Path) -> None:
    settings = get_settings()
    stream, kv = build_stream(settings), build_kv_store(settings)
    with ApiServer(create_app(stream, kv, settings)) as server:
        for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
            assert requests.get(f"{server.url}{path}", timeout=10).status_code == 404, path
    with ApiServer(create_app(stream, kv, settings, docs=True)) as server:
        assert requests.get(f"{server.url}/openapi.json", timeout=10).json()["paths"].keys() >= {"/orders", "/health"}
        assert requests.get(f"{server.url}/docs", timeout=10).status_code == 200


def _lambda(name: str):
    path = Path(__file__).resolve().parents[1] / "lambdas" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"lambda_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_api_gateway_lambda_answers_like_the_server(api: tuple[str, Stream]) -> None:
    url, stream = api
    handler = _lambda("ingest_api").handler
    for body in ([LINE, {**LINE, "Quantity": "x"}], {**LINE, "Zzz": 1}, [LINE], {**LINE, "Quantity": 1e300}):
        server = requests.post(f"{url}/orders", json=body, timeout=10)
        rest = handler({"httpMethod": "POST", "path": "/orders", "body": json.dumps(body),
                        "headers": {"content-type": "application/json"}})
        assert rest["statusCode"] == server.status_code
        if server.status_code != 202:
            assert json.loads(rest["body"]) == server.json()
    v2 = handler({"rawPath": "/invoices/000001", "requestContext": {"http": {"method": "GET"}}})
    assert v2["statusCode"] == 404
    assert handler({"httpMethod": "GET", "path": "/health"})["statusCode"] == 200
    assert handler({"httpMethod": "DELETE", "path": "/orders"})["statusCode"] == 404
    # the same 415 as the server for a body that is not declared JSON
    plain = handler({"httpMethod": "POST", "path": "/orders", "body": json.dumps(LINE),
                     "headers": {"Content-Type": "text/plain"}})
    assert plain["statusCode"] == 415 == requests.post(f"{url}/orders", data=json.dumps(LINE), timeout=10,
                                                       headers={"Content-Type": "text/plain"}).status_code
    assert _stream_size(stream) == 2  # one accepted line from the server, one from the Lambda
