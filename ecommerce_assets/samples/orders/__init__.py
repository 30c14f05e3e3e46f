"""Orders samples: two small batches in the users' shapes (see README.md beside this file).

``seed(settings, lake)`` lands batch 1 for the demo; ``land_batch(lake, 2)`` lands the second batch
(a customer moves city, an order is updated, new orders arrive) to show the SCD type 2 history and the
incremental fact after the next run.
"""

from __future__ import annotations

from importlib import resources

from ecommerce_assets.settings import Settings
from ecommerce_assets.storage import zones
from ecommerce_assets.storage.lake import Lake

BATCH_DATES = {1: "2026-01-05", 2: "2026-01-06"}
FILES = {"orders": "orders.csv", "customers": "customers.json", "products": "products.csv"}


def sample_bytes(batch: int, source: str) -> bytes:
    """The bytes of one shipped sample file (``batch`` 1 or 2, ``source`` orders|customers|products)."""
    return resources.files(__name__).joinpath(f"batch_{batch}", FILES[source]).read_bytes()


def land_batch(lake: Lake, batch: int) -> list[str]:
    """Land sample batch ``batch`` under ``landing/<source>/date=<batch date>/``; return the keys."""
    keys = []
    for source, name in FILES.items():
        key = f"{zones.landing(source)}date={BATCH_DATES[batch]}/{name}"
        data = sample_bytes(batch, source)
        if not (lake.exists(key) and lake.read_bytes(key) == data):  # landing the same bytes again is a no-op
            lake.write_bytes(key, data)
        keys.append(key)
    return keys


def seed(settings: Settings, lake: Lake) -> list[str]:
    """The demo's orders data: batch 1 (the products API is served by the local simulator)."""
    return land_batch(lake, 1)
