"""Small, seeded sample data that ships with the product (the demo never downloads anything).

``online_retail_sample.csv`` is produced by ``make_online_retail_sample()`` (run this module to
regenerate it): 400 lines in the users' Online Retail format with the defects their real files have:
exact duplicate lines, cancellations (``C`` invoices, negative quantities), zero prices, blank
customers, ``17850.0``-style customer ids, quotes and commas in descriptions, a customer seen in two
countries and both date formats.
"""

from __future__ import annotations

import csv
import io
import random
from importlib import resources
from pathlib import Path

from ecommerce_assets.settings import Settings
from ecommerce_assets.storage import zones
from ecommerce_assets.storage.lake import Lake

RETAIL_SAMPLE = "online_retail_sample.csv"
RETAIL_HEADER = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]

_PRODUCTS = [
    ("85123A", "WHITE HANGING HEART T-LIGHT HOLDER", 2.55), ("71053", "WHITE METAL LANTERN", 3.39),
    ("84406B", "CREAM CUPID HEARTS COAT HANGER", 2.75), ("84029G", "KNITTED UNION FLAG HOT WATER BOTTLE", 3.39),
    ("22752", "SET 7 BABUSHKA NESTING BOXES", 7.65), ("21730", "GLASS STAR FROSTED T-LIGHT HOLDER", 4.25),
    ("22633", "HAND WARMER UNION JACK", 1.85), ("22632", "HAND WARMER RED POLKA DOT", 1.85),
    ("84879", "ASSORTED COLOUR BIRD ORNAMENT", 1.69), ("22745", "POPPY'S PLAYHOUSE BEDROOM", 2.10),
    ("22748", "POPPY'S PLAYHOUSE KITCHEN", 2.10), ("22310", "IVORY KNITTED MUG COSY", 1.65),
    ("84969", "BOX OF 6 ASSORTED COLOUR TEASPOONS", 4.25), ("22623", "BOX OF VINTAGE JIGSAW BLOCKS", 4.95),
    ("21754", "HOME BUILDING BLOCK WORD", 5.95), ("21755", "LOVE BUILDING BLOCK WORD", 5.95),
    ("21777", 'RECIPE BOX WITH METAL HEART, "LOVE"', 7.95), ("48187", "DOORMAT NEW ENGLAND", 7.95),
    ("POST", "POSTAGE", 18.00), ("22960", "JAM MAKING SET WITH JARS", 4.25),
]
_CUSTOMERS = [
    ("17850", "United Kingdom"), ("13047", "United Kingdom"), ("12583", "France"), ("13748", "United Kingdom"),
    ("15100", "United Kingdom"), ("15291", "United Kingdom"), ("14688", "United Kingdom"), ("12662", "Germany"),
    ("12431", "Australia"), ("17548", "United Kingdom"), ("12394", "Belgium"), ("12370", "Cyprus"),
]


def make_online_retail_sample(rows: int = 400, seed: int = 7) -> str:
    """The sample as CSV text: deterministic for a given seed."""
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RETAIL_HEADER)
    lines: list[list[str]] = []
    invoice = 536365
    day, month, year, minute = 1, 12, 2010, 8 * 60
    while len(lines) < rows:
        invoice += 1
        minute += rng.randint(3, 90)
        if minute >= 19 * 60:
            minute, day = 8 * 60 + rng.randint(0, 30), day + 1
            if day > 28:
                day, month = 1, month % 12 + 1
                year += 1 if month == 1 else 0
        customer, country = rng.choice(_CUSTOMERS)
        if customer == "12583" and rng.random() < 0.3:
            country = "Switzerland"  # a customer seen in two countries
        blank = rng.random() < 0.08
        cancelled = rng.random() < 0.05
        two_digit_year = rng.random() < 0.2
        stamp = f"{month}/{day}/{str(year)[2:] if two_digit_year else year} {minute // 60}:{minute % 60:02d}"
        for _ in range(rng.randint(1, 6)):
            code, desc, price = rng.choice(_PRODUCTS)
            qty = rng.choice([1, 2, 3, 4, 6, 8, 12, 24])
            if cancelled:
                qty = -qty
            unit = 0.0 if rng.random() < 0.02 else price
            cust = "" if blank else (f"{customer}.0" if rng.random() < 0.7 else customer)
            inv = f"C{invoice}" if cancelled else str(invoice)
            line = [inv, code, desc, str(qty), stamp, f"{unit:.2f}", cust, country]
            lines.append(line)
            if rng.random() < 0.03:
                lines.append(list(line))  # an exact duplicate line, as exported twice
    for line in lines[:rows]:
        writer.writerow(line)
    return out.getvalue()


def retail_sample_path() -> Path:
    return Path(str(resources.files(__package__).joinpath(RETAIL_SAMPLE)))


def seed_online_retail(settings: Settings, lake: Lake) -> list[str]:
    """Land the shipped Online Retail sample in ``landing/online_retail/``."""
    key = f"{zones.RETAIL_LANDING}{RETAIL_SAMPLE}"
    data = retail_sample_path().read_bytes()
    if not (lake.exists(key) and lake.read_bytes(key) == data):  # landing the same bytes again is a no-op
        lake.write_bytes(key, data)
    return [key]


def main() -> None:
    """Regenerate the shipped sample file."""
    retail_sample_path().write_text(make_online_retail_sample())
    print(f"wrote {retail_sample_path()}")
