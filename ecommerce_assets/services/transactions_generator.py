"""A seeded generator of e-commerce transactions, landing JSON files in ``landing/transactions/``.

Every transaction has ``transaction_id, timestamp, customer_id, product_id, product_name, category,
quantity, price, total_amount``; the product fields always come from one fixed product catalog
(``PRODUCTS``: the product_id is the catalog's, its name, category and price never disagree), and
``total_amount = quantity * price`` (exact, in cents).

Files land at ``landing/transactions/date=YYYY-MM-DD/transactions_<epoch>[_<n>].json`` in one of three
formats: ``object`` (one JSON object per file), ``array`` (a JSON array) or ``lines`` (JSON lines).

The same seed and arguments give byte-identical files. Rows are built column-wise with NumPy and
Arrow string kernels; a file's bytes are a zero-copy slice of one Arrow string buffer, so the
``--count/--days`` backfill makes millions of rows per second instead of formatting row by row.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecommerce_assets.settings import Settings
from ecommerce_assets.storage import zones
from ecommerce_assets.storage.lake import Lake

LANDING = zones.TRANSACTIONS_LANDING
FORMATS = ("object", "array", "lines")
FIELDS = (
    "transaction_id", "timestamp", "customer_id", "product_id", "product_name", "category",
    "quantity", "price", "total_amount",
)

_CATALOG_SPEC: dict[str, list[str]] = {
    "Electronics": ["Wireless Earbuds", "Smartphone", "Laptop", "4K Monitor", "Mechanical Keyboard", "USB-C Hub"],
    "Home & Kitchen": ["Espresso Machine", "Blender", "Chef Knife", "Cast Iron Skillet", "Air Fryer"],
    "Clothing": ["Denim Jacket", "Running Shoes", "Wool Sweater", "Rain Coat", "T-Shirt Pack"],
    "Books": ["Data Engineering Handbook", "Mystery Novel", "Cookbook", "Travel Guide"],
    "Sports & Outdoors": ["Yoga Mat", "Camping Tent", "Mountain Bike", "Dumbbell Set"],
    "Beauty": ["Face Serum", "Hair Dryer", "Perfume", "Sunscreen"],
    "Toys & Games": ["Board Game", "Building Blocks", "Puzzle 1000", "RC Car"],
    "Grocery": ["Coffee Beans", "Green Tea", "Olive Oil", "Dark Chocolate"],
}
_PRICE_RANGE_CENTS: dict[str, tuple[int, int]] = {
    "Electronics": (1_999, 149_999), "Home & Kitchen": (1_499, 39_999), "Clothing": (999, 19_999),
    "Books": (799, 5_999), "Sports & Outdoors": (1_499, 89_999), "Beauty": (599, 14_999),
    "Toys & Games": (999, 12_999), "Grocery": (299, 3_999),
}


@dataclass(frozen=True)
class Product:
    product_id: str
    product_name: str
    category: str
    price_cents: int

    @property
    def price(self) -> float:
        return self.price_cents / 100


def _catalog() -> tuple[Product, ...]:
    """The fixed product catalog (its own seed: the same for every generator run)."""
    rng = np.random.default_rng(20240101)
    products = []
    n = 0
    for category, names in _CATALOG_SPEC.items():
        lo, hi = _PRICE_RANGE_CENTS[category]
        for name in names:
            n += 1
            products.append(Product(f"P{n:04d}", name, category, int(rng.integers(lo, hi))))
    return tuple(products)


PRODUCTS: tuple[Product, ...] = _catalog()


@dataclass(frozen=True)
class GeneratedFile:
    key: str
    records: int
    data: bytes


def _money(cents: pa.Array) -> pa.Array:
    """Cents (int64) -> ``"123.45"`` strings, vectorized."""
    whole = pc.cast(pc.divide(cents, 100), pa.string())
    frac = pc.utf8_lpad(pc.cast(pc.subtract(cents, pc.multiply(pc.divide(cents, 100), 100)), pa.string()), 2, "0")
    return pc.binary_join_element_wise(whole, frac, ".")


def _json_string_column(values: list[str], index: np.ndarray) -> pa.Array:
    """JSON-encoded string literals of ``values[index]`` (catalog strings are escaped once, not per row)."""
    encoded = pa.array([json.dumps(v) for v in values], pa.string())
    return pc.take(encoded, pa.array(index))


def generate_rows(
    count: int,
    *,
    seed: int,
    start: dt.datetime,
    end: dt.datetime,
    customers: int = 2_000,
) -> pa.Table:
    """``count`` transactions with timestamps uniform in ``[start, end)``, sorted by time.

    Returns one column ``line`` (each transaction as a JSON object text) plus ``ts`` (epoch seconds).
    """
    rng = np.random.default_rng(seed)
    t0, t1 = int(start.timestamp()), int(end.timestamp())
    ts = np.sort(rng.integers(t0, max(t1, t0 + 1), size=count, dtype=np.int64))
    product_idx = rng.integers(0, len(PRODUCTS), size=count)
    # quantities 1..10, small ones more likely; customers skewed so lifetime values differ
    quantity = np.minimum(rng.geometric(0.45, size=count), 10).astype(np.int64)
    customer = (rng.pareto(1.2, size=count) * 50).astype(np.int64) % customers + 1
    price_cents = np.array([p.price_cents for p in PRODUCTS], dtype=np.int64)[product_idx]
    total_cents = price_cents * quantity
    run_tag = hashlib.sha1(f"{seed}:{t0}:{t1}:{count}".encode()).hexdigest()[:10]

    seq = pc.utf8_lpad(pc.cast(pa.array(np.arange(count, dtype=np.int64)), pa.string()), 9, "0")
    ids = pc.binary_join_element_wise(pa.scalar(f"TXN-{run_tag}-"), seq, "")
    stamps = pc.strftime(pa.array(ts.astype("datetime64[s]")), format="%Y-%m-%dT%H:%M:%S")
    cust = pc.binary_join_element_wise(
        pa.scalar("C"), pc.utf8_lpad(pc.cast(pa.array(customer), pa.string()), 5, "0"), ""
    )
    parts = [
        '{"transaction_id":"', ids, '","timestamp":"', stamps, '","customer_id":"', cust, '","product_id":',
        _json_string_column([p.product_id for p in PRODUCTS], product_idx), ',"product_name":',
        _json_string_column([p.product_name for p in PRODUCTS], product_idx), ',"category":',
        _json_string_column([p.category for p in PRODUCTS], product_idx), ',"quantity":',
        pc.cast(pa.array(quantity), pa.string()), ',"price":', _money(pa.array(price_cents)),
        ',"total_amount":', _money(pa.array(total_cents)), "}",
    ]
    line = pc.binary_join_element_wise(*[pa.scalar(p) if isinstance(p, str) else p for p in parts], "")
    return pa.table({"line": line, "ts": pa.array(ts)})


def _file_bytes(lines: pa.Array, fmt: str) -> bytes:
    """The file text of a slice of JSON object lines, as a zero-copy slice of the Arrow buffer when possible."""
    if fmt == "object":
        if len(lines) != 1:
            raise ValueError("format 'object' holds exactly one transaction per file")
        return lines[0].as_py().encode() + b"\n"
    sep = "\n" if fmt == "lines" else ",\n"
    joined = pc.binary_join_element_wise(lines, pa.scalar(sep), "")
    arr = joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=len(arr) + 1, offset=arr.offset * 4)
    body = arr.buffers()[2].to_pybytes()[offsets[0] : offsets[-1]]
    if fmt == "lines":
        return body
    return b"[\n" + body[: -len(sep)] + b"\n]\n"


def generate_files(
    count: int,
    *,
    per_file: int = 1,
    fmt: str = "lines",
    seed: int = 42,
    days: int = 1,
    end_date: dt.date | None = None,
    now: dt.datetime | None = None,
    customers: int = 2_000,
) -> Iterator[GeneratedFile]:
    """Transactions spread over ``days`` days ending ``end_date`` (default today, UTC), ``per_file`` per file.

    With ``days == 1`` and no ``end_date`` the timestamps fall in the last five minutes before ``now``
    (what the schedule lands every tick). Files are named after the epoch of their first transaction;
    the date prefix is the date of that transaction.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if count < 0 or per_file < 1 or days < 1:
        raise ValueError("count must be >= 0, per_file >= 1 and days >= 1")
    if fmt == "object" and per_file != 1:
        raise ValueError("format 'object' holds exactly one transaction per file: use per_file=1")
    now = now or dt.datetime.now(dt.UTC)
    if days == 1 and end_date is None:
        start, end = now - dt.timedelta(minutes=5), now
    else:
        last = end_date or now.date()
        first = last - dt.timedelta(days=days - 1)
        start = dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC)
        end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    # day by day so that a file never straddles two date prefixes and memory stays bounded
    day_edges = []
    cursor = start
    while cursor < end:
        nxt = min(end, dt.datetime.combine(cursor.date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC))
        day_edges.append((cursor, nxt))
        cursor = nxt
    total_seconds = (end - start).total_seconds()
    made = 0
    for i, (d0, d1) in enumerate(day_edges):
        n = count - made if i == len(day_edges) - 1 else round(count * (d1 - d0).total_seconds() / total_seconds)
        made += n
        if n <= 0:
            continue
        table = generate_rows(n, seed=seed * 100_003 + i, start=d0, end=d1, customers=customers)
        lines, ts = table.column("line").combine_chunks(), table.column("ts").to_numpy()
        date = d0.date().isoformat()
        for k, lo in enumerate(range(0, n, per_file)):
            hi = min(n, lo + per_file)
            name = f"transactions_{int(ts[lo])}" + (f"_{k:06d}" if per_file < n else "") + ".json"
            yield GeneratedFile(f"{LANDING}date={date}/{name}", hi - lo, _file_bytes(lines.slice(lo, hi - lo), fmt))


def land(lake: Lake, files: Iterator[GeneratedFile], skip_identical: bool = False) -> tuple[int, int, list[str]]:
    """Write generated files into the lake; return (files, records, keys). ``skip_identical``: a file already
    landed with the same bytes is left alone (so re-seeding changes nothing)."""
    keys: list[str] = []
    records = 0
    for f in files:
        if not (skip_identical and lake.exists(f.key) and lake.read_bytes(f.key) == f.data):
            lake.write_bytes(f.key, f.data)
        keys.append(f.key)
        records += f.records
    return len(keys), records, keys


def catalog_json() -> str:
    """The product catalog as JSON (what ``ecommerce-assets generate --catalog`` prints)."""
    return json.dumps(
        [{"product_id": p.product_id, "product_name": p.product_name, "category": p.category, "price": p.price}
         for p in PRODUCTS], indent=2,
    )


BAD_RECORDS_SAMPLE = (
    b'{"transaction_id":"DEMO-BAD-1","timestamp":"2024-01-01T10:00:00","customer_id":"C00001","product_id":"P0001",'
    b'"product_name":"Wireless Earbuds","category":"Electronics","quantity":0,"price":19.99,"total_amount":0}\n'
    b'{"transaction_id":"DEMO-BAD-2","timestamp":"2024-01-01T10:01:00","customer_id":"C00002","product_id":"P0002",'
    b'"product_name":"Smartphone","category":"Electronics","quantity":"two","price":19.99,"total_amount":39.98}\n'
    b'{"transaction_id":"DEMO-OK-1","timestamp":"2024-01-01T10:02:00","customer_id":"C00003","product_id":"P0003",'
    b'"product_name":"Laptop","category":"Electronics","quantity":1,"price":19.99,"total_amount":19.99}\n'
)
NOT_JSON_SAMPLE = b"transaction_id,quantity\nDEMO-CSV-1,3\n"


def seed(settings: Settings, lake: Lake) -> list[str]:
    """Demo data: three days of generated transactions (all three file formats), one file with bad
    records and one file that is not JSON, in ``landing/transactions/``. Deterministic; no network."""
    today = dt.datetime.now(dt.UTC).date()
    keys: list[str] = []
    for i, (fmt, per_file) in enumerate((("lines", 40), ("array", 25), ("object", 1))):
        count = 400 if fmt != "object" else 12
        files = generate_files(count, per_file=per_file, fmt=fmt, seed=1000 + i, days=3, end_date=today)
        keys += land(lake, files, skip_identical=True)[2]
    prefix = f"{LANDING}date={today.isoformat()}/"
    samples = [GeneratedFile(prefix + "transactions_demo_bad_records.json", 0, BAD_RECORDS_SAMPLE),
               GeneratedFile(prefix + "transactions_demo_not_json.json", 0, NOT_JSON_SAMPLE)]
    keys += land(lake, iter(samples), skip_identical=True)[2]
    return keys
