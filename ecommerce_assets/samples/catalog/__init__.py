"""Catalog sourcing samples: the sellers config and a distributor inventory generated from the simulator's seed.

``distributor_inventory_sample.csv`` is ``catalog_sim.distributor_csv(DEFAULT_SEED)`` (regenerate with
``python -m ecommerce_assets.samples.catalog``); it overlaps the demo sellers by ASIN, by UPC/EAN/GTIN
only and by title + brand only, and carries near misses that must not match.
"""

from __future__ import annotations

from pathlib import Path

from ecommerce_assets.resources.lake import Lake
from ecommerce_assets.settings import Settings

HERE = Path(__file__).resolve().parent
DISTRIBUTOR_SAMPLE = HERE / "distributor_inventory_sample.csv"
SELLERS_FILE = HERE / "sellers.yaml"
DISTRIBUTOR_KEY = "landing/distributor/distributor_inventory_sample.csv"


def seed(settings: Settings, lake: Lake) -> list[str]:
    """Land the distributor sample in ``landing/distributor/`` (unchanged if it is already there)."""
    data = DISTRIBUTOR_SAMPLE.read_bytes()
    if lake.exists(DISTRIBUTOR_KEY) and lake.read_bytes(DISTRIBUTOR_KEY) == data:
        return [DISTRIBUTOR_KEY]
    lake.write_bytes(DISTRIBUTOR_KEY, data)
    return [DISTRIBUTOR_KEY]


if __name__ == "__main__":
    from ecommerce_assets.catalog_sim import DEFAULT_SEED, distributor_csv

    DISTRIBUTOR_SAMPLE.write_bytes(distributor_csv(DEFAULT_SEED))
    print(f"wrote {DISTRIBUTOR_SAMPLE}")
