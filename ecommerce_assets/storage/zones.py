"""Every lake prefix, written once. The lake has five zones; a source has its folder in each.

| zone | what | written by |
| --- | --- | --- |
| ``landing/<source>/`` | files as a user or an uploader dropped them | users, generators, Lambda |
| ``raw/<source>/`` | exactly what arrived, never changed in place | registration (``storage.registration``) |
| ``processed/<table>/`` | the Iceberg tables (``storage.iceberg``), and the gold / analytics Parquet | the assets |
| ``quarantine/<source>/`` | refused files and rows, each with its reason | the assets |
| ``intermediate/`` | work files of one run (manifests, staging) | the assets |
| ``archive/stream/`` | every stream record as it arrived (the stream's raw zone) | the stream's consumers |
"""

from __future__ import annotations

LANDING = "landing/"
RAW = "raw/"
PROCESSED = "processed/"
QUARANTINE = "quarantine/"
INTERMEDIATE = "intermediate/"


def landing(source: str) -> str:
    """``landing/<source>/``: where a source's files arrive."""
    return f"{LANDING}{source}/"


def raw(source: str) -> str:
    """``raw/<source>/``: the registered copies of a source's landed files."""
    return f"{RAW}{source}/"


def quarantine(source: str) -> str:
    """``quarantine/<source>/``: a source's refused files and rows with their reasons."""
    return f"{QUARANTINE}{source}/"


# --- Online Retail ------------------------------------------------------------------------------------
RETAIL_LANDING = landing("online_retail")
RETAIL_RAW = raw("online_retail")
RETAIL_CLEANED_MANIFEST = f"{PROCESSED}online_retail/cleaned_manifest.json"
RETAIL_GOLD = f"{PROCESSED}online_retail/gold/"
RETAIL_QUARANTINE_ROWS = f"{quarantine('online_retail')}rows/quarantined_rows.parquet"
RETAIL_QUARANTINE_FILES = f"{quarantine('online_retail')}files/"

# --- transactions -------------------------------------------------------------------------------------
TRANSACTIONS_LANDING = landing("transactions")
TRANSACTIONS_RAW = raw("transactions")
TRANSACTIONS_PROCESSED = f"{PROCESSED}transactions/"
TRANSACTIONS_QUARANTINE = quarantine("transactions")
TRANSACTIONS_INTERMEDIATE = f"{INTERMEDIATE}transactions/"
TRANSACTIONS_ANALYTICS = f"{PROCESSED}analytics/transactions/"

# --- seller catalog and distributor -------------------------------------------------------------------
CATALOG_RAW = raw("catalog")
CATALOG_SNAPSHOTS = f"{PROCESSED}catalog/snapshots/"
CATALOG_AMAZON_DATA = f"{PROCESSED}catalog/amazon_data/"
CATALOG_HISTORY = f"{PROCESSED}catalog/amazon_data_history/"
CATALOG_MATCHES = f"{PROCESSED}catalog/matches/"
CATALOG_REPORTS = f"{PROCESSED}catalog/reports/"
CATALOG_QUARANTINE = quarantine("catalog")
DISTRIBUTOR_LANDING = landing("distributor")
DISTRIBUTOR_RAW = raw("distributor")
DISTRIBUTOR_PROCESSED = f"{PROCESSED}distributor/inventory.parquet"
DISTRIBUTOR_MATCHING = f"{PROCESSED}distributor/matching/"  # the inventory tokenised for matching, once per load
DISTRIBUTOR_QUARANTINE = quarantine("distributor")

# --- orders ELT ---------------------------------------------------------------------------------------
ORDERS_API_RAW = f"{RAW}api/products/"


def orders_raw(source: str) -> str:
    """The raw prefix of an orders source (``api_products`` lands from the API under ``raw/api/products/``)."""
    return ORDERS_API_RAW if source == "api_products" else raw(source)


def orders_cleaned(source: str) -> str:
    return f"{PROCESSED}orders/{source}/cleaned.parquet"


def orders_quarantine_rows(source: str) -> str:
    return f"{quarantine(source)}rows.parquet"


def orders_quarantine_files(source: str) -> str:
    return f"{quarantine(source)}files/"


# --- stream -------------------------------------------------------------------------------------------
STREAM_ARCHIVE = "archive/stream/"  # the raw archive of the stream: every record as it arrived
STREAM_QUARANTINE = quarantine("stream")

# --- warehouse work files -----------------------------------------------------------------------------
REDSHIFT_MANIFESTS = f"{INTERMEDIATE}_redshift_manifests/"


# --- layouts before the Iceberg tables (``storage.migration`` converts them; nothing writes them any more) -------
LEGACY_RETAIL_CLEANED = f"{PROCESSED}online_retail/cleaned/"
LEGACY_CATALOG_SNAPSHOTS = f"{PROCESSED}catalog/snapshots/"  # the products.parquet files (the CSV exports stay)
LEGACY_ORDERS = f"{PROCESSED}orders/"  # <source>/cleaned.parquet
LEGACY_STREAM_LINES = f"{PROCESSED}stream/order_lines/"
