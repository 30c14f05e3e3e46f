"""The sellers we track: a config file the user edits, ``ECOMMERCE_SELLERS`` overriding it, and the UI.

Each seller is a partition of the dynamic partitions ``sellers``. ``catalog_sellers_sync`` (a sensor, in
``sensors.py``) adds the configured sellers; the job ``add_catalog_seller`` adds one from the UI (Launchpad config).
"""


import re
from dataclasses import dataclass

import dagster as dg
import yaml

from ecommerce_assets.samples.catalog import SELLERS_FILE
from ecommerce_assets.settings import Settings, get_settings

SELLERS_PARTITIONS = "sellers"
sellers_partitions = dg.DynamicPartitionsDefinition(name=SELLERS_PARTITIONS)
DEFAULT_SELLERS_FILE = SELLERS_FILE
_SELLER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Seller:
    seller_id: str
    name: str = ""
    query: str = ""


def validate_seller_id(seller_id: str) -> str:
    """A seller id is letters, digits, ``_`` or ``-`` (it becomes a lake key segment and a partition key)."""
    seller_id = seller_id.strip()
    if not _SELLER_ID.match(seller_id):
        raise ValueError(f"invalid seller id {seller_id!r}: use 1-64 letters, digits, '_' or '-'")
    return seller_id


def load_sellers(settings: Settings | None = None) -> list[Seller]:
    """The configured sellers: ``ECOMMERCE_SELLERS`` when set, else the sellers file (YAML or JSON)."""
    settings = settings or get_settings()
    # the packaged demo sellers only locally: a deployment fetches the sellers it names, and no others
    path = settings.sellers_file or (DEFAULT_SELLERS_FILE if settings.env == "local" else None)
    if path is None:
        return [Seller(validate_seller_id(s)) for s in settings.sellers]
    from_file: dict[str, Seller] = {}
    if path.is_file():
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}  # JSON is YAML too
        entries = doc.get("sellers", []) if isinstance(doc, dict) else doc
        for i, entry in enumerate(entries or [], start=1):
            if isinstance(entry, str):
                entry = {"seller_id": entry}
            if not isinstance(entry, dict) or not entry.get("seller_id"):
                raise ValueError(f"{path}: sellers entry {i} needs a seller_id")
            sid = validate_seller_id(str(entry["seller_id"]))
            from_file[sid] = Seller(sid, str(entry.get("name") or ""), str(entry.get("query") or ""))
    elif settings.sellers_file:
        raise FileNotFoundError(f"ECOMMERCE_SELLERS_FILE={path} does not exist")
    if settings.sellers:
        return [from_file.get(s, Seller(validate_seller_id(s))) for s in settings.sellers]
    return list(from_file.values())


def seller_query(seller_id: str, settings: Settings | None = None) -> str | None:
    """The configured search query of a seller (None: the resource's default)."""
    for seller in load_sellers(settings):
        if seller.seller_id == seller_id:
            return seller.query or None
    return None


class AddSellerConfig(dg.Config):
    seller_id: str


@dg.op(description="Add a seller id as a partition of `sellers` (its catalog is fetched from then on).")
def add_seller_partition(context: dg.OpExecutionContext, config: AddSellerConfig) -> str:
    seller_id = validate_seller_id(config.seller_id)
    if context.instance.has_dynamic_partition(SELLERS_PARTITIONS, seller_id):
        context.log.info(f"seller {seller_id} is already tracked")
    else:
        context.instance.add_dynamic_partitions(SELLERS_PARTITIONS, [seller_id])
        context.log.info(f"seller {seller_id} added; materialize the catalog assets for its partition")
    return seller_id


@dg.job(
    name="add_catalog_seller",
    description="Track a new seller from the UI: Launchpad config `ops: {add_seller_partition: {config: {seller_id: ...}}}`.",
)
def add_catalog_seller() -> None:
    add_seller_partition()
