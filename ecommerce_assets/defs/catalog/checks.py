"""Quality gates on the matches (the per-seller checks run inside their assets: see ``assets.py``)."""

import dagster as dg

from ecommerce_assets.defs.catalog.assets import MATCHES_KEY
from ecommerce_assets.storage.warehouses.base import Warehouse
from ecommerce_assets.transforms.matching import TITLE_THRESHOLD

MATCH_SCORE_VIOLATIONS_SQL = """
SELECT seller_id, asin, match_method, CAST(match_score AS DOUBLE PRECISION) AS match_score
FROM gold.distributor_availability_matches
WHERE match_score IS NULL OR match_score < 0 OR match_score > 1
   OR (match_method IN ('asin', 'gtin') AND match_score <> 1)
   OR (match_method = 'title_brand' AND match_score < ?)
   OR match_method NOT IN ('asin', 'gtin', 'title_brand')
"""


@dg.asset_check(
    asset=MATCHES_KEY,
    blocking=True,
    description=(
        "Every match score is in [0, 1]; exact ASIN/GTIN matches score 1; title+brand matches score at least "
        "the stated threshold; one row per seller product."
    ),
)
def match_scores_in_range(warehouse: dg.ResourceParam[Warehouse]) -> dg.AssetCheckResult:
    bad = warehouse.query(MATCH_SCORE_VIOLATIONS_SQL, [TITLE_THRESHOLD])
    dups = warehouse.query(
        "SELECT seller_id, asin, count(*) AS n FROM gold.distributor_availability_matches "
        "GROUP BY seller_id, asin HAVING count(*) > 1"
    )
    return dg.AssetCheckResult(
        passed=bad.num_rows == 0 and dups.num_rows == 0,
        metadata={
            "out_of_range": bad.num_rows,
            "duplicate_products": dups.num_rows,
            "samples": dg.MetadataValue.json(bad.slice(0, 10).to_pylist()),
            "threshold": TITLE_THRESHOLD,
        },
    )
