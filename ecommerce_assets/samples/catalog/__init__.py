"""Catalog sourcing samples: the sellers config and a distributor inventory generated from the simulator's seed.

``distributor_inventory_sample.csv`` is ``catalog_sim.distributor_csv(DEFAULT_SEED)`` (regenerate with
``ecommerce_assets.dev.catalog_sim.write_distributor_sample()``); it overlaps the demo sellers by ASIN, by UPC/EAN/GTIN
only and by title + brand only, and carries near misses that must not match.
"""

from __future__ import annotations

from pathlib import Path

from ecommerce_assets.settings import Settings
from ecommerce_assets.storage import zones
from ecommerce_assets.storage.lake import Lake

HERE = Path(__file__).resolve().parent
DISTRIBUTOR_SAMPLE = HERE / "distributor_inventory_sample.csv"
SELLERS_FILE = HERE / "sellers.yaml"
DISTRIBUTOR_KEY = f"{zones.DISTRIBUTOR_LANDING}distributor_inventory_sample.csv"


def seed(settings: Settings, lake: Lake) -> list[str]:
    """Land the distributor sample in ``landing/distributor/`` (unchanged if it is already there)."""
    data = DISTRIBUTOR_SAMPLE.read_bytes()
    if lake.exists(DISTRIBUTOR_KEY) and lake.read_bytes(DISTRIBUTOR_KEY) == data:
        return [DISTRIBUTOR_KEY]
    lake.write_bytes(DISTRIBUTOR_KEY, data)
    return [DISTRIBUTOR_KEY]
