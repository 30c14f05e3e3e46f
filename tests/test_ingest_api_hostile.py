"""Hostile input, generated: the ingestion API (a real uvicorn server) and its Lambda never answer 5xx.

Hypothesis generates request bodies: arbitrary bytes, arbitrary JSON (NaN/Infinity literals, nesting),
and order lines built field by field from legal and hostile values (huge and tiny numbers as literals,
negative zero, huge strings, control and bidi characters, wrong types, nested values, missing, extra,
aliased and duplicated keys), in several encodings (UTF-8, a BOM, UTF-16/32, Latin-1, invalid bytes), one
line or an array. Every body goes to the server over HTTP and, as an API Gateway event, to the Lambda.

The invariant, checked on each input: never a 5xx; the server and the Lambda give the same status; an
accepted request (202) put each of its lines on the stream exactly once (read back from the stream, and
valid again for the consumers); a refused one (4xx) put nothing on the stream and says why, naming the
field (``field`` for the body, or ``field``/``rule`` for each error of each bad line).

Reproducible: ``derandomize=True`` and no example database. The module prints how many inputs were tried.
"""

from __future__ import annotations

import base64
import datetime as dt
import importlib.util
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecommerce_assets.services.ingest_api import ApiServer, create_app
from ecommerce_assets.settings import get_settings
from ecommerce_assets.storage.kv_store import build_kv_store
from ecommerce_assets.storage.stream import Stream, build_stream
from ecommerce_assets.transforms.order_lines import FIELDS, decode_record

TOKEN = "hostile-test-token"
HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
PROFILE = settings(derandomize=True, database=None, deadline=None, print_blob=False,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                          HealthCheck.large_base_example])
# the last test sums what the others did in this process: under `make test`'s two workers (`--dist loadgroup`)
# the whole module runs on one worker, in order
pytestmark = pytest.mark.xdist_group("ingest_api_hostile")
TRIED: Counter[str] = Counter()  # inputs per strategy
STATUSES: Counter[int] = Counter()
CRASHES: list[str] = []


class Target:
    """The server, the Lambda and the stream they share, with the number of records expected on it."""

    def __init__(self, url: str, handler: Any, stream: Stream):
        self.url, self.handler, self.stream = url, handler, stream
        self.session = requests.Session()
        self.expected = 0

    def count(self) -> int:
        return sum(len(self.stream.read_after(s, None, 1_000_000)) for s in self.stream.shard_ids())


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    data = tmp_path_factory.mktemp("hostile") / "data"
    data.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ECOMMERCE_ENV", "local")
        mp.setenv("ECOMMERCE_DATA_DIR", str(data))
        mp.setenv("ECOMMERCE_INGEST_TOKENS", TOKEN)
        settings_ = get_settings()
        stream, kv = build_stream(settings_), build_kv_store(settings_)
        path = Path(__file__).resolve().parents[1] / "lambdas" / "ingest_api.py"
        spec = importlib.util.spec_from_file_location("lambda_ingest_api_hostile", path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        with ApiServer(create_app(stream, kv, settings_)) as server:
            yield Target(server.url, module.handler, stream)
    print(f"\nhostile inputs tried: {sum(TRIED.values())} ({dict(TRIED)}); statuses {dict(sorted(STATUSES.items()))}; "
          f"crashes (5xx or server/Lambda disagreeing): {len(CRASHES)}")


def _check_answer(status: int, answer: dict[str, Any], lines: int | None) -> None:
    if 200 <= status < 300:
        assert status == 202 and answer["accepted"] == len(answer["records"]) > 0
        if lines is not None:
            assert answer["accepted"] == lines
        return
    assert 400 <= status < 500, status
    assert isinstance(answer.get("error"), str) and answer["error"]
    if "lines" in answer:
        assert answer["lines"] and answer["rejected"] == len(answer["lines"])
        for problem in answer["lines"]:
            assert problem["errors"]
            for error in problem["errors"]:
                assert error["field"] and error["rule"] and error["message"], error
    else:
        assert answer["field"] in ("body", "Content-Type", "Content-Length", "Authorization") and answer["rule"]


def _exactly_once(target: Target, answer: dict[str, Any]) -> None:
    seen = set()
    for rec in answer["records"]:
        key = (rec["shard_id"], rec["sequence_number"])
        assert key not in seen
        seen.add(key)
        [on_stream] = target.stream.read_range(rec["shard_id"], rec["sequence_number"], rec["sequence_number"])
        assert on_stream.partition_key == rec["invoice_no"]
        line, errors = decode_record(on_stream.data)  # the consumers accept what the API accepted
        assert line is not None and not errors, errors


def post_everywhere(target: Target, body: bytes, kind: str, lines: int | None = None) -> int:
    """POST ``body`` to the server and to the Lambda; check the invariant; return the status."""
    TRIED[kind] += 1
    try:
        r = target.session.post(f"{target.url}/orders", data=body, headers=HEADERS, timeout=30)
    except requests.RequestException as exc:  # the server dropped the connection: a crash
        CRASHES.append(f"{kind}: {exc!r}")
        raise
    STATUSES[r.status_code] += 1
    if r.status_code >= 500:
        CRASHES.append(f"{kind}: HTTP {r.status_code}")
    assert r.status_code < 500, (r.status_code, r.text[:500])
    answer = r.json()
    _check_answer(r.status_code, answer, lines)
    if r.status_code == 202:
        target.expected += answer["accepted"]
        _exactly_once(target, answer)
    try:
        text = body.decode("utf-8")
        event = {"httpMethod": "POST", "path": "/orders", "headers": dict(HEADERS), "body": text,
                 "isBase64Encoded": False}
    except UnicodeDecodeError:
        event = {"httpMethod": "POST", "path": "/orders", "headers": dict(HEADERS),
                 "body": base64.b64encode(body).decode("ascii"), "isBase64Encoded": True}
    out = target.handler(event)
    if out["statusCode"] != r.status_code:
        CRASHES.append(f"{kind}: server {r.status_code} but Lambda {out['statusCode']}")
    assert out["statusCode"] == r.status_code, (out, r.text[:500])
    lambda_answer = json.loads(out["body"])
    _check_answer(out["statusCode"], lambda_answer, lines)
    if out["statusCode"] == 202:
        target.expected += lambda_answer["accepted"]
        _exactly_once(target, lambda_answer)
    else:
        assert lambda_answer == answer  # the same reasons, word for word
    assert target.count() == target.expected  # nothing else reached the stream
    return r.status_code


# --- strategies -----------------------------------------------------------------------------

HUGE_NUMBERS = st.one_of(
    st.integers(300, 3_000_000).map(lambda e: f"1e{e}"),
    st.integers(300, 3_000_000).map(lambda e: f"-1e{e}"),
    st.integers(300, 3_000_000).map(lambda e: f"1e-{e}"),
    st.integers(1, 200_000).map(lambda n: "9" * n),
    st.integers(1, 2000).map(lambda n: "1." + "0" * n + "1"),
    st.sampled_from(["-0", "-0.0", "0e-999999", "-0e5", "NaN", "Infinity", "-Infinity", "1E400", "4.9e-324",
                     "9007199254740993", "-9007199254740992", "1e15", "0.0005", "2.555", "1e12", "-1e12"]),
)
CONTROL = st.sampled_from(["\x00", "\x1b", "\x07", "\t", "\r\n", "\x7f", "\x85", "\u202e", "\u202d", "\u2066",
                           "\u200f", "\u2028", "\ufeff", "\ud800", "\udfff"])
HUGE_TEXT = st.builds(lambda c, n: c * n, st.characters(codec="utf-8"),
                      st.one_of(st.integers(0, 1000), st.integers(200_000, 1_100_000)))  # up to over the 1 MB limit
NESTED = st.integers(1, 20_000).map(lambda n: "[" * n + "]" * n)


def _dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=True, ensure_ascii=False)


def _fmt_date(d: Any, fmt: str) -> str:
    return d.strftime(fmt).replace("{M}", str(d.month)).replace("{D}", str(d.day)).replace("{H}", str(d.hour))


LEGAL: dict[str, st.SearchStrategy[str]] = {
    "InvoiceNo": st.builds(lambda p, n: p + str(n), st.sampled_from(["", "", "", "", "", "C", "A"]),
                           st.integers(1, 99_999_999)).map(_dumps),
    "StockCode": st.from_regex(r"[A-Z0-9]{1,8}", fullmatch=True).map(_dumps),
    "Description": st.text(st.characters(categories=["L", "N", "P", "S", "Zs"]), max_size=40).map(_dumps),
    "Quantity": st.one_of(st.integers(1, 500).map(str), st.integers(-500, 500).map(lambda i: _dumps(str(i)))),
    "InvoiceDate": st.builds(_fmt_date, st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 12, 31)),
                             st.sampled_from(["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "{M}/{D}/%Y {H}:%M"])).map(_dumps),
    "UnitPrice": st.decimals(min_value=0, max_value=5000, places=3, allow_nan=False).map(
        lambda d: str(d) if int(d * 1000) % 2 else _dumps(str(d))),  # a JSON number or a string
    "CustomerID": st.one_of(st.from_regex(r"[0-9]{5}(\.0)?", fullmatch=True).map(_dumps), st.just('""'),
                            st.just("null"), st.integers(10000, 99999).map(str)),
    "Country": st.sampled_from(["United Kingdom", "France", "EIRE", "Österreich", "日本"]).map(_dumps),
}


HOSTILE_VALUE = st.one_of(
    HUGE_NUMBERS,
    HUGE_NUMBERS.map(_dumps),  # the same, as text
    st.builds(lambda a, c, b, ascii_only: json.dumps(a + c + b, ensure_ascii=ascii_only),  # raw or \u-escaped
              st.text(max_size=8), CONTROL, st.text(max_size=8), st.booleans()),
    HUGE_TEXT.map(_dumps),
    NESTED,
    st.sampled_from(["true", "false", "null", "{}", "[]", '""', '"   "', '{"a": 1}', "[1, 2]", '"0001-01-01 00:00"',
                     '"2/30/2011 10:00"', '"99/99/9999 99:99"', '"12/1/2010 8:26"', '"-0"']),
    st.recursive(st.none() | st.booleans() | st.floats() | st.text(max_size=5),
                 lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                 max_leaves=8).map(_dumps),
)
ALIASES = {"InvoiceNo": "invoice_no", "StockCode": "stock_code", "InvoiceDate": "invoice_date",
           "UnitPrice": "unit_price", "CustomerID": "customer_id", "Quantity": "quantity", "Country": "COUNTRY"}


PERCENT = st.sampled_from(range(100))


@st.composite
def order_line(draw: st.DrawFn) -> str:
    """One order line as raw JSON text: every field legal, hostile or missing; extra, aliased and
    duplicated keys; so that about half of the lines are legal."""
    pairs: list[tuple[str, str]] = []
    hostile_share = draw(st.sampled_from([0.0, 0.0, 0.0, 0.1, 0.3]))
    for name in FIELDS:
        roll = draw(PERCENT) / 100  # (uniform: hypothesis' own integers and floats lean to the edges)
        if roll < hostile_share / 4:
            continue  # missing
        value = draw(HOSTILE_VALUE) if roll < hostile_share else draw(LEGAL[name])
        pairs.append((name, value))
    if draw(PERCENT) < 8 and pairs:
        name, value = draw(st.sampled_from(pairs))
        pairs.append((ALIASES.get(name, name) if draw(st.booleans()) else name, value))  # duplicate
    if draw(PERCENT) < 8:
        pairs.append((draw(st.one_of(st.text(max_size=12), CONTROL, st.just(" InvoiceNo "))), draw(HOSTILE_VALUE)))
    if draw(st.booleans()):
        pairs = draw(st.permutations(pairs))
    return "{" + ",".join(f"{_dumps(k)}:{v}" for k, v in pairs) + "}"


@st.composite
def encoded(draw: st.DrawFn, text: str) -> bytes:
    how = draw(st.sampled_from(["utf-8"] * 12 + ["bom", "utf-16", "utf-32", "latin-1", "bad-bytes", "crlf"]))
    if how == "bom":
        return b"\xef\xbb\xbf" + text.encode("utf-8", "surrogatepass")
    if how in ("utf-16", "utf-32"):
        return text.encode(how, "surrogatepass")
    if how == "latin-1":  # the same bytes as UTF-8 when the text is ASCII
        return text.encode("latin-1", "replace")
    if how == "bad-bytes":
        raw = text.encode("utf-8", "surrogatepass")
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"])) + raw[at:]
    if how == "crlf":
        return ("\r\n " + text.replace(",", ",\r\n") + "\r\n").encode("utf-8", "surrogatepass")
    return text.encode("utf-8", "surrogatepass")


# --- the properties -------------------------------------------------------------------------


@settings(PROFILE, max_examples=150)
@given(body=st.one_of(st.binary(max_size=300), st.sampled_from([b"", b" ", b"\r\n", b"\xef\xbb\xbf", b"\x00",
                                                                 b"null", b"[]", b"{}", b"[{}]", b'"x"', b"1e999999"])))
def test_arbitrary_bytes(target: Target, body: bytes) -> None:
    post_everywhere(target, body, "bytes")


@settings(PROFILE, max_examples=150)
@given(value=st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
                          lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                     max_size=4), max_leaves=20),
       deep=st.one_of(st.none(), NESTED))
def test_arbitrary_json(target: Target, value: Any, deep: str | None) -> None:
    text = deep if deep is not None else _dumps(value)
    post_everywhere(target, text.encode("utf-8", "surrogatepass"), "json")


@settings(PROFILE, max_examples=600)
@given(data=st.data(), lines=st.lists(order_line(), min_size=1, max_size=4), as_array=st.booleans())
def test_order_lines(target: Target, data: st.DataObject, lines: list[str], as_array: bool) -> None:
    text = "[" + ",".join(lines) + "]" if as_array or len(lines) > 1 else lines[0]
    body = data.draw(encoded(text))
    post_everywhere(target, body, "order_lines", lines=len(lines))


def test_the_generated_inputs_reached_every_outcome(target: Target) -> None:
    """Runs last: the generators are not trivially all-accepted or all-refused, and nothing crashed."""
    assert STATUSES[202] > 20 and STATUSES[422] > 20 and STATUSES[400] > 20 and STATUSES[413] > 0, STATUSES
    assert sum(TRIED.values()) >= 500 and CRASHES == []
    assert target.count() == target.expected
