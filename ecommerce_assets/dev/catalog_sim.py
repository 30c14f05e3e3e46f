"""A local simulator of the seller catalog API, shipped with the product (``ecommerce-assets catalog-sim``).

A real HTTP server (standard library ``ThreadingHTTPServer``) answering
``GET /search?query=&country=US&seller_id=<id>&product_condition=NEW&page=<n>`` like the "Real-Time
Amazon Data" API: 48 products a page, then an empty ``data.products`` page. The data are generated from
a seed: demo sellers with realistic titles and brands, prices like ``"$1,299.99"``, price ranges on
variations, nulls, products missing fields, duplicates across pages and extra fields.

The same seed generates a distributor inventory (``distributor_inventory_rows``) that overlaps the
sellers' products on purpose: some rows by ASIN, some by UPC/EAN/GTIN only, some by title + brand only,
near misses that must NOT match (same brand, another size/model/line) and unrelated items. Its ground
truth (``distributor_truth``) comes from the generator, so tests check the matcher against it.

Faults (constructor arguments and CLI flags): the first N requests answer 429 with ``Retry-After``,
500, slowly, or with malformed JSON; chosen pages always answer malformed JSON or an envelope without
``data.products``; with ``required_key`` a missing key gets 401 and a wrong key 403 (without it any
non-empty key is accepted and a missing key gets 401).
"""

from __future__ import annotations

import csv
import io
import json
import random
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

PAGE_SIZE = 48
DEFAULT_SEED = 20240501
DEMO_SELLERS: dict[str, str] = {
    "A2L77EE7U53NWQ": "Bright Home Goods",
    "A1PA6795UKMFR9": "Peak Outdoor Supply",
    "A3DEMOTECH8K2Q": "Circuit City Deals",
}

# (brand, line, variants, base price, listed variant indexes): variants not listed by any seller are
# what the distributor's near misses use (same brand and line, another size or model).
_FAMILIES: list[tuple[str, str, list[str], float]] = [
    ("Hydro Flask", "Wide Mouth Water Bottle with Flex Cap", ["20 Ounce", "32 Ounce", "40 Ounce", "64 Ounce"], 44.95),
    ("Hydro Flask", "Standard Mouth Water Bottle with Flex Cap", ["21 Ounce", "24 Ounce"], 39.95),
    ("Anker", "PowerCore Portable Charger", ["10000mAh", "20000mAh", "26800mAh"], 39.99),
    ("Logitech", "Wireless Mouse", ["M185", "M325", "M510", "M720"], 24.99),
    ("Ninja", "Air Fryer that Crisps, Roasts, Reheats and Dehydrates", ["AF101", "AF161", "DZ201"], 129.99),
    ("Instant Pot", "Duo 7-in-1 Electric Pressure Cooker", ["3 Quart", "6 Quart", "8 Quart"], 99.95),
    ("Lodge", "Pre-Seasoned Cast Iron Skillet", ["8 Inch", "10.25 Inch", "12 Inch", "15 Inch"], 29.90),
    ("Crayola", "Colored Pencils Art Set", ["24 Count", "50 Count", "100 Count"], 12.99),
    ("SAMSUNG", "EVO Select microSDXC Memory Card with Adapter", ["64GB", "128GB", "256GB", "512GB"], 19.99),
    ("Stanley", "Quencher H2.0 FlowState Stainless Steel Vacuum Insulated Tumbler", ["20 Ounce", "30 Ounce", "40 Ounce"], 45.00),
    ("Burt's Bees", "Lip Balm Moisturizing Original Beeswax", ["4 Pack", "8 Pack"], 11.99),
    ("Cetaphil", "Gentle Skin Cleanser for Dry to Normal Sensitive Skin", ["8 fl oz", "16 fl oz", "20 fl oz"], 14.49),
    ("OXO", "Good Grips Salad Spinner", ["Small", "Large"], 34.99),
    ("LG", "UltraGear QHD Gaming Monitor", ["27GR75Q", "32GN650", "45GR95QE"], 1299.99),
    ("Dyson", "V15 Detect Cordless Vacuum Cleaner", ["Yellow/Nickel", "Gold"], 749.99),
    ("KitchenAid", "Artisan Series Tilt-Head Stand Mixer", ["5 Quart"], 449.99),
    ("Sony", "WH-1000XM5 Wireless Industry Leading Noise Canceling Headphones", ["Black", "Silver"], 399.99),
    ("Apple", "AirTag", ["1 Pack", "4 Pack"], 29.00),
    ("Osprey", "Talon Men's Hiking Backpack", ["22L", "26L", "33L"], 160.00),
    ("Coleman", "Sundome Camping Tent with Rainfly", ["2 Person", "4 Person", "6 Person"], 89.99),
    ("YETI", "Rambler Tumbler with MagSlider Lid", ["10 oz", "20 oz", "30 oz"], 35.00),
    ("Black+Decker", "20V MAX Cordless Drill Driver", ["LDX120C", "BDCDD120C"], 59.99),
    ("Philips Sonicare", "ProtectiveClean Rechargeable Electric Toothbrush", ["4100", "5100", "6100"], 49.96),
    ("Energizer", "MAX Alkaline AA Batteries", ["8 Count", "24 Count", "48 Count"], 9.98),
    ("TP-Link", "Deco Mesh WiFi System", ["X20", "X55", "XE75"], 179.99),
    ("Bose", "QuietComfort Ultra Wireless Earbuds", ["Black", "White Smoke"], 299.00),
    ("Nalgene", "Sustain Tritan BPA-Free Water Bottle", ["16 oz", "32 oz", "48 oz"], 15.99),
    ("Carhartt", "Men's Knit Cuffed Beanie", ["Black", "Brown", "Navy"], 19.99),
    ("Pampers", "Swaddlers Disposable Baby Diapers", ["Size 1", "Size 2", "Size 3", "Size 4"], 48.99),
    ("Rubbermaid", "Brilliance Food Storage Containers", ["10 Piece", "22 Piece", "44 Piece"], 39.99),
]
_MARKETING = [
    "BPA Free", "Dishwasher Safe", "Leakproof", "Durable", "Easy to Clean", "Travel Ready", "Gift Idea",
    "Long Lasting", "Premium Quality", "Everyday Use",
]
_DELIVERY = [
    "FREE delivery Tue, Nov 26 on $35 of items shipped by Amazon",
    "FREE delivery Thu, Nov 28",
    "FREE delivery Wed, Nov 27 for Prime members",
    None,
]
_SALES_VOLUME = ["50+ bought in past month", "100+ bought in past month", "1K+ bought in past month", "5K+ bought in past month", None]


def gtin_check_digit(body: str) -> str:
    """The GS1 check digit for the digits of a GTIN without its last digit."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


@dataclass(frozen=True)
class MasterProduct:
    """One real-world product: what sellers list and distributors stock."""

    key: str
    brand: str
    line: str
    variant: str
    base_price: float
    asin: str
    upc: str  # UPC-A, 12 digits, valid check digit
    exposes_code: bool = True  # whether the API's answer carries the product's UPC/EAN (an extra field)

    @property
    def title(self) -> str:
        return f"{self.brand} {self.line}, {self.variant}"


@dataclass
class Catalog:
    """Everything one seed generates."""

    masters: list[MasterProduct]
    listed: set[str]  # master keys some seller lists
    sellers: dict[str, list[dict[str, Any]]]  # seller id -> listing entries, in page order (dups included)


def _asin(rng: random.Random) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "B0" + "".join(rng.choice(alphabet) for _ in range(8))


def _upc(rng: random.Random) -> str:
    body = "0" + "".join(str(rng.randint(0, 9)) for _ in range(10))
    return body + gtin_check_digit(body)


def _money(value: float) -> str:
    return f"${value:,.2f}"


def _product_json(m: MasterProduct, rng: random.Random, seller_price: float) -> dict[str, Any]:
    has_variations = rng.random() < 0.2
    price: str | None = _money(seller_price)
    roll = rng.random()
    if roll < 0.06:
        price = None  # "currently unavailable"
    elif has_variations and roll < 0.35:
        price = f"{_money(seller_price)} - {_money(seller_price * 1.35)}"
    extra = f" - {rng.choice(_MARKETING)}" if rng.random() < 0.5 else ""
    rating = None if rng.random() < 0.08 else f"{rng.uniform(3.4, 4.9):.1f}"
    doc: dict[str, Any] = {
        "asin": m.asin,
        "product_title": m.title + extra,
        "product_price": price,
        "product_original_price": _money(seller_price * 1.2) if rng.random() < 0.3 else None,
        "currency": "USD",
        "product_star_rating": rating,
        "product_num_ratings": rng.randint(0, 40000) if rating else 0,
        "product_url": f"https://www.amazon.com/dp/{m.asin}",
        "product_photo": f"https://m.media-amazon.com/images/I/{m.asin}._AC_UL960_QL65_.jpg",
        "product_num_offers": rng.randint(1, 25),
        "product_minimum_offer_price": _money(seller_price * 0.95),
        "is_best_seller": rng.random() < 0.1,
        "is_amazon_choice": rng.random() < 0.15,
        "is_prime": rng.random() < 0.7,
        "climate_pledge_friendly": rng.random() < 0.2,
        "sales_volume": rng.choice(_SALES_VOLUME),
        "delivery": rng.choice(_DELIVERY),
        "has_variations": has_variations,
    }
    if m.exposes_code:  # the code rides along as an extra field, as a UPC or an EAN-13
        if m.key.endswith(("0", "2")):
            doc["upc"] = m.upc
        else:
            doc["ean"] = "0" + m.upc
    if rng.random() < 0.25:  # extra fields the API sometimes adds
        doc["unit_price"] = _money(seller_price / 4)
        doc["unit_count"] = 4
    if rng.random() < 0.1:
        doc["coupon_text"] = "Save 10% with coupon"
    if rng.random() < 0.1:
        doc["product_badge"] = "Overall Pick"
    if rng.random() < 0.05:  # a product missing fields altogether
        for name in ("product_star_rating", "product_num_ratings", "delivery", "sales_volume"):
            doc.pop(name, None)
    return doc


def generate_catalog(seed: int = DEFAULT_SEED) -> Catalog:
    """The demo sellers' listings and the product universe, all from ``seed``."""
    rng = random.Random(seed)
    masters: list[MasterProduct] = []
    for f, (brand, line, variants, base) in enumerate(_FAMILIES):
        for v, variant in enumerate(variants):
            price = round(base * (1 + 0.18 * v), 2) if base < 1000 else round(base + 200 * v, 2)
            code = (f + v) % 3 != 0
            masters.append(MasterProduct(f"F{f:02d}V{v}", brand, line, variant, price, _asin(rng), _upc(rng), code))
    by_family: dict[str, list[MasterProduct]] = {}
    for m in masters:
        by_family.setdefault(m.key[:3], []).append(m)
    # every family with 2+ variants keeps its last variant unlisted: the near misses use it
    listable = [m for fam in by_family.values() for m in (fam[:-1] if len(fam) > 1 else fam)]
    sellers: dict[str, list[dict[str, Any]]] = {}
    listed: set[str] = set()
    for s, seller_id in enumerate(DEMO_SELLERS):
        srng = random.Random(seed * 31 + s)
        chosen = srng.sample(listable, k=min(len(listable), 46 + 15 * s))
        entries: list[dict[str, Any]] = []
        for m in chosen:
            listed.add(m.key)
            entries.append(_product_json(m, srng, round(m.base_price * srng.uniform(1.05, 1.3), 2)))
        # duplicates across pages: a few products show up again on a later page
        for m in srng.sample(chosen, k=4):
            entries.append(_product_json(m, srng, round(m.base_price * srng.uniform(1.05, 1.3), 2)))
        sellers[seller_id] = entries
    return Catalog(masters=masters, listed=listed, sellers=sellers)


# --- the distributor's inventory, overlapping the sellers on purpose ------------------------------------

DISTRIBUTOR_COLUMNS = ["sku", "title", "brand", "cost", "quantity_available", "asin", "upc", "ean", "gtin"]


def _reword(m: MasterProduct, rng: random.Random) -> str:
    """A distributor's own wording of a product title: other order, case and unit spelling."""
    variant = (
        m.variant.replace(" Ounce", "oz").replace(" fl oz", " FL OZ").replace(" Inch", "in").replace(" Quart", "QT")
        .replace(" Count", "ct").replace(" Pack", "-Pack")
    )
    words = m.line.replace(",", "").split()
    style = rng.randint(0, 2)
    if style == 0:
        return f"{m.brand.upper()} {' '.join(words)} {variant}".upper()
    if style == 1:
        return f"{variant} {' '.join(words)} - {m.brand}"
    return f"{m.brand} {' '.join(words).lower()} ({variant})"


@dataclass(frozen=True)
class DistributorTruth:
    """What the generator meant a distributor row to be."""

    sku: str
    kind: str  # asin | gtin | title | near_miss | unrelated
    asin: str | None  # the seller ASIN it supplies (None for near misses and unrelated items)


def _distributor(seed: int) -> tuple[list[dict[str, Any]], list[DistributorTruth]]:
    catalog = generate_catalog(seed)
    rng = random.Random(seed + 7)
    listed = [m for m in catalog.masters if m.key in catalog.listed]
    unlisted = [m for m in catalog.masters if m.key not in catalog.listed]
    rng.shuffle(listed)
    rows: list[dict[str, Any]] = []
    truth: list[DistributorTruth] = []

    def add(m: MasterProduct, kind: str, title: str, ids: dict[str, str], supplies: str | None) -> None:
        sku = f"DST-{len(rows) + 1:05d}"
        cost = round(m.base_price * rng.uniform(0.45, 0.75), 2)
        row = {"sku": sku, "title": title, "brand": m.brand, "cost": f"{cost:.2f}",
               "quantity_available": str(rng.choice([0, 3, 12, 40, 150, 600])), "asin": "", "upc": "", "ean": "", "gtin": ""}
        row.update(ids)
        rows.append(row)
        truth.append(DistributorTruth(sku, kind, supplies))

    with_code = [m for m in listed if m.exposes_code]
    without_code = [m for m in listed if not m.exposes_code]
    by_asin = with_code[: len(with_code) * 4 // 10] + without_code[: len(without_code) // 3]
    by_gtin = with_code[len(with_code) * 4 // 10 : len(with_code) * 7 // 10]
    by_title = without_code[len(without_code) // 3 : len(without_code) * 3 // 4] + with_code[len(with_code) * 9 // 10 :]
    for m in by_asin:
        add(m, "asin", m.title, {"asin": m.asin, "upc": m.upc if rng.random() < 0.5 else ""}, m.asin)
    for i, m in enumerate(by_gtin):
        form = i % 3
        ids = {"upc": m.upc} if form == 0 else {"ean": "0" + m.upc} if form == 1 else {"gtin": "00" + m.upc}
        add(m, "gtin", _reword(m, rng), ids, m.asin)
    for m in by_title:
        add(m, "title", _reword(m, rng), {}, m.asin)
    # near misses: same brand and line, a size/model no seller lists; an invalid UPC is ignored
    for i, m in enumerate(unlisted):
        ids = {"upc": m.upc[:-1] + str((int(m.upc[-1]) + 1) % 10)} if i % 4 == 0 else {}
        add(m, "near_miss", _reword(m, rng) if i % 2 else m.title, ids, None)
    # unrelated items of brands no seller lists
    for i in range(12):
        fake = MasterProduct(f"U{i}", rng.choice(["Acme", "Globex", "Initech", "Umbrella"]),
                             rng.choice(["Garden Hose", "Desk Lamp", "Yoga Mat", "Phone Case", "Notebook"]),
                             f"Model {100 + i}", rng.uniform(5, 80), _asin(rng), _upc(rng))
        add(fake, "unrelated", fake.title, {"upc": fake.upc}, None)
    return rows, truth


def distributor_inventory_rows(seed: int = DEFAULT_SEED) -> list[dict[str, Any]]:
    """The distributor inventory sample for ``seed`` (the columns of ``DISTRIBUTOR_COLUMNS``, as text)."""
    return _distributor(seed)[0]


def distributor_truth(seed: int = DEFAULT_SEED) -> list[DistributorTruth]:
    """The generator's ground truth for ``distributor_inventory_rows(seed)``."""
    return _distributor(seed)[1]


def distributor_csv(seed: int = DEFAULT_SEED) -> bytes:
    """The distributor sample as the CSV a distributor sends (UTF-8, header row)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=DISTRIBUTOR_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(distributor_inventory_rows(seed))
    return buf.getvalue().encode()


# --- the HTTP server ------------------------------------------------------------------------------------


@dataclass
class Faults:
    """Injected failures. ``*_first`` counters apply to the first N requests (in that order of checks)."""

    rate_limit_first: int = 0  # 429 with Retry-After
    retry_after_seconds: int = 1
    server_error_first: int = 0  # 500
    slow_first: int = 0  # answer after slow_seconds
    slow_seconds: float = 2.0
    malformed_first: int = 0  # 200 with a truncated JSON body
    malformed_pages: set[int] = field(default_factory=set)  # always malformed
    missing_products_pages: set[int] = field(default_factory=set)  # envelope without data.products


@dataclass(frozen=True)
class RequestRecord:
    at: float  # time.monotonic() when the request arrived
    seller_id: str | None
    page: int | None
    status: int
    fault: str | None


class CatalogSimulator:
    """The simulator server; ``start()`` runs it in a background thread, ``stop()`` shuts it down."""

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        seed: int = DEFAULT_SEED,
        faults: Faults | None = None,
        required_key: str | None = None,
        **fault_args: Any,
    ):
        self.catalog = generate_catalog(seed)
        self.faults = faults or Faults(**fault_args)
        self.required_key = required_key
        self.requests: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._count = 0
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._server.server_address[0]}:{self.port}"

    def start(self) -> CatalogSimulator:
        self._thread = threading.Thread(target=self._server.serve_forever, name="catalog-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> CatalogSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def total_products(self, seller_id: str) -> int:
        return len(self.catalog.sellers.get(seller_id, []))

    def _fault_for(self, number: int) -> str | None:
        f = self.faults
        bounds = [("rate_limit", f.rate_limit_first), ("server_error", f.server_error_first),
                  ("slow", f.slow_first), ("malformed", f.malformed_first)]
        start = 0
        for name, n in bounds:
            if start <= number < start + n:
                return name
            start += n
        return None

    def answer(self, path: str, headers: Any) -> tuple[int, dict[str, str], bytes, str | None, str | None, int | None]:
        """(status, headers, body, fault, seller, page) for one request; shared by the handler and tests."""
        parts = urlsplit(path)
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        seller = params.get("seller_id")
        try:
            page = int(params.get("page", "1"))
        except ValueError:
            page = None
        json_headers = {"Content-Type": "application/json"}
        if parts.path.rstrip("/") != "/search":
            return 404, json_headers, b'{"status":"ERROR","error":"not found"}', None, seller, page
        key = headers.get("x-rapidapi-key")
        if not key:
            return 401, json_headers, b'{"message":"Invalid API key. Go to https://docs.rapidapi.com/docs/keys"}', "no_key", seller, page
        if self.required_key is not None and key != self.required_key:
            return 403, json_headers, b'{"message":"You are not subscribed to this API."}', "bad_key", seller, page
        with self._lock:
            number = self._count
            self._count += 1
        fault = self._fault_for(number)
        if fault == "rate_limit":
            hdrs = {**json_headers, "Retry-After": str(self.faults.retry_after_seconds)}
            return 429, hdrs, b'{"message":"Too many requests"}', fault, seller, page
        if fault == "server_error":
            return 500, json_headers, b'{"message":"Internal Server Error"}', fault, seller, page
        if fault == "slow":
            time.sleep(self.faults.slow_seconds)
        if not seller or page is None or page < 1:
            return 400, json_headers, b'{"status":"ERROR","error":"seller_id and page are required"}', None, seller, page
        entries = self.catalog.sellers.get(seller, [])
        query = params.get("query", "").strip().lower()
        if query and query not in ("*", "all"):
            entries = [e for e in entries if query in (e.get("product_title") or "").lower()]
        chunk = entries[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        data: dict[str, Any] = {"total_products": len(entries), "country": params.get("country", "US"),
                                "domain": "www.amazon.com", "products": chunk}
        if page in self.faults.missing_products_pages:
            del data["products"]
            fault = "missing_products"
        doc = {"status": "OK", "request_id": f"sim-{number:06d}", "parameters": params, "data": data}
        body = json.dumps(doc).encode()
        if fault == "malformed" or page in self.faults.malformed_pages:
            body, fault = body[: len(body) // 2], "malformed"
        return 200, json_headers, body, fault, seller, page

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        sim = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                status, headers, body, fault, seller, page = sim.answer(self.path, self.headers)
                with sim._lock:
                    sim.requests.append(RequestRecord(time.monotonic(), seller, page, status, fault))
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by default
                return

        return Handler


def seller_ids(seed: int = DEFAULT_SEED) -> Iterable[str]:
    return generate_catalog(seed).sellers.keys()


def write_distributor_sample() -> Path:
    """Regenerate the shipped distributor sample (``samples/catalog/``) from the default seed."""
    from ecommerce_assets.samples.catalog import DISTRIBUTOR_SAMPLE

    DISTRIBUTOR_SAMPLE.write_bytes(distributor_csv(DEFAULT_SEED))
    return DISTRIBUTOR_SAMPLE
