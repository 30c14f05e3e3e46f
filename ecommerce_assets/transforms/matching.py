"""Which distributor item supplies each seller product: DuckDB SQL, columnar, no cross joins.

Methods, in order; a seller product matched by an earlier method is not considered by a later one:

1. ``asin``: the distributor row's ASIN equals the seller product's ASIN (score 1.0).
2. ``gtin``: UPC-A / EAN-13 / EAN-8 / GTIN-14 normalised to GTIN-14 with a valid GS1 check digit
   (invalid codes are ignored, never matched) equal on both sides (score 1.0).
3. ``title_brand``: the same brand and similar titles, score >= ``TITLE_THRESHOLD`` (0.75):

   * brand: the distributor's ``brand`` column; for a seller product, the longest distributor brand
     equal to the first 1-4 words of its title (letters and digits only, case-insensitive);
   * title tokens: lower case, units joined to their numbers (``32 Ounce``/``32 oz`` -> ``32oz``,
     ``8 fl oz`` -> ``8oz``, ``10 Inch`` -> ``10in``, ``6 Quart`` -> ``6qt``, ``24 Count`` -> ``24ct``,
     ``4 Pack``/``4-Pack`` -> ``4pk``), words and numbers, minus stop words and the brand's own words;
   * gates (a near miss is the same brand with another model, size or colour): the tokens containing
     a digit (model numbers, sizes, pack counts) must be the same set, the size words (small, large,
     xl, ...) must be the same set, and when both titles name colours they must name the same ones;
   * score over the two token sets, with Dice = 2|A∩B|/(|A|+|B|) and containment = |A∩B|/min(|A|,|B|):
     when one title's words all appear in the other (a distributor's shorter wording of the seller's
     title) score = (Dice + 1) / 2; when each title has words the other lacks (a conflicting attribute
     such as "Wide Mouth" vs "Standard Mouth") score = Dice x containment, which keeps a one-word
     conflict below the threshold for titles sharing up to 6 words.

   Candidates come ONLY from blocking: pairs sharing brand, digit tokens, size words and at least one
   of each side's ``BLOCK_TOKENS`` rarest tokens; a block with more than ``MAX_BLOCK_PAIRS`` pairs is too
   generic to discriminate and is dropped.

One best match per seller product: the highest score, then in stock (quantity > 0), then the lowest
cost, then the SKU. Margin: ``price - price * fee_rate - cost`` (the fee is the marketplace's share of
the sale price); ``margin_pct = margin / price``; ``roi = margin / cost``. A product without a price has
NULL margin and ROI, never 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

TITLE_THRESHOLD = 0.75
BLOCK_TOKENS = 3
MAX_BLOCK_PAIRS = 10_000
METHODS = ("asin", "gtin", "title_brand")
STOP_WORDS = [
    "a", "an", "and", "the", "for", "with", "of", "in", "on", "to", "by", "from", "new", "set", "pack",
]
SIZE_WORDS = ["xs", "xxs", "small", "medium", "large", "xl", "xxl", "xxxl", "mini", "jumbo", "king", "queen", "twin"]
COLOUR_WORDS = [
    "black", "white", "silver", "gold", "grey", "gray", "red", "blue", "navy", "green", "yellow", "pink", "purple",
    "brown", "beige", "orange", "nickel", "smoke", "clear",
]
DISTRIBUTOR_COLUMNS = ["sku", "title", "brand", "cost", "quantity_available"]
ID_COLUMNS = ["asin", "upc", "ean", "gtin"]

MACROS = f"""
CREATE OR REPLACE TEMP MACRO gtin14(code) AS (
    WITH d AS (SELECT regexp_replace(coalesce(CAST(code AS VARCHAR), ''), '[^0-9]', '', 'g') AS digits)
    SELECT CASE WHEN length(digits) IN (8, 12, 13, 14) AND ltrim(digits, '0') <> ''
        AND (10 - list_sum([CAST(substr(lpad(digits, 14, '0'), i, 1) AS INTEGER) * CASE WHEN i % 2 = 1 THEN 3 ELSE 1 END
                            FOR i IN range(1, 14)]) % 10) % 10 = CAST(substr(lpad(digits, 14, '0'), 14, 1) AS INTEGER)
        THEN lpad(digits, 14, '0') END FROM d
);
CREATE OR REPLACE TEMP MACRO compact(s) AS regexp_replace(lower(coalesce(s, '')), '[^a-z0-9]', '', 'g');
CREATE OR REPLACE TEMP MACRO norm_title(s) AS
    regexp_replace(regexp_replace(regexp_replace(regexp_replace(regexp_replace(regexp_replace(
        lower(coalesce(s, '')),
        '(\\d+(?:\\.\\d+)?)\\s*-?\\s*(?:fl\\.?\\s*oz|fluid\\s+ounces?|ounces?|oz)\\b', '\\1oz', 'g'),
        '(\\d+(?:\\.\\d+)?)\\s*-?\\s*(?:inches|inch|in)\\b', '\\1in', 'g'),
        '(\\d+(?:\\.\\d+)?)\\s*-?\\s*(?:quarts?|qt)\\b', '\\1qt', 'g'),
        '(\\d+)\\s*-?\\s*(?:count|ct|pieces?|pcs?|piece)\\b', '\\1ct', 'g'),
        '(\\d+)\\s*-?\\s*(?:packs?|pk)\\b', '\\1pk', 'g'),
        '(\\d+(?:\\.\\d+)?)\\s+(gb|tb|mb|mah|w|v|mm|cm|ml|l|lb|lbs|kg|g|person)\\b', '\\1\\2', 'g');
CREATE OR REPLACE TEMP MACRO title_tokens(s) AS
    regexp_extract_all(norm_title(s), '[0-9]+(?:\\.[0-9]+)?[a-z]*|[a-z][a-z0-9]*');
CREATE OR REPLACE TEMP MACRO clean_tokens(toks, brand_toks) AS list_distinct(
    [t FOR t IN toks IF NOT list_contains({STOP_WORDS!r}, t) AND NOT list_contains(brand_toks, t)]);
CREATE OR REPLACE TEMP MACRO digit_sig(toks) AS
    array_to_string(list_sort([t FOR t IN toks IF regexp_matches(t, '[0-9]')]), ' ');
CREATE OR REPLACE TEMP MACRO size_sig(toks) AS
    array_to_string(list_sort([t FOR t IN toks IF list_contains({SIZE_WORDS!r}, t)]), ' ');
CREATE OR REPLACE TEMP MACRO colours(toks) AS list_sort([t FOR t IN toks IF list_contains({COLOUR_WORDS!r}, t)]);
"""  # noqa: S608 - built from the constant word lists above


def install_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Create the matching macros (``gtin14``, ``title_tokens``, ...) on ``con``."""
    con.execute(MACROS)


_PREPARE = """
CREATE OR REPLACE TEMP TABLE m_sp AS
SELECT row_number() OVER () AS sp_id, seller_id, asin, product_title, product_price, snapshot_date,
       product_gtin AS gtin  -- already a validated GTIN-14 (transforms.catalog.gtin14)
FROM read_parquet(?);

CREATE OR REPLACE TEMP TABLE m_di AS
SELECT row_number() OVER () AS di_id, sku, title, brand, cost, quantity_available,
       nullif(upper(trim(asin)), '') AS asin, gtin, compact(brand) AS brand_key
FROM read_parquet(?);

CREATE OR REPLACE TEMP TABLE m_brands AS
SELECT brand_key, any_value(title_tokens(brand)) AS brand_toks FROM m_di WHERE brand_key <> '' GROUP BY brand_key;
"""

_EXACT = """
CREATE OR REPLACE TEMP TABLE m_exact AS
WITH a AS (
    SELECT s.sp_id, d.di_id, 'asin' AS method, 1.0 AS score, 1 AS rank_method
    FROM m_sp s JOIN m_di d ON s.asin = d.asin
), g AS (
    SELECT s.sp_id, d.di_id, 'gtin' AS method, 1.0 AS score, 2 AS rank_method
    FROM m_sp s JOIN m_di d ON s.gtin = d.gtin
    WHERE s.gtin IS NOT NULL AND s.sp_id NOT IN (SELECT sp_id FROM a)
)
SELECT * FROM a UNION ALL SELECT * FROM g;
"""

_TITLE = f"""
-- seller side: brand from the first 1-4 title words, the longest known distributor brand wins
CREATE OR REPLACE TEMP TABLE m_sp_brand AS
WITH words AS (
    SELECT sp_id, string_split(trim(regexp_replace(lower(coalesce(product_title, '')), '\\s+', ' ', 'g')), ' ') AS w
    FROM m_sp WHERE sp_id NOT IN (SELECT sp_id FROM m_exact)
), prefixes AS (
    SELECT sp_id, k, compact(array_to_string(w[1:k], '')) AS brand_key
    FROM words, range(1, 5) AS r(k) WHERE len(w) >= k
)
SELECT p.sp_id, arg_max(p.brand_key, p.k) AS brand_key
FROM prefixes p JOIN m_brands b ON p.brand_key = b.brand_key
GROUP BY p.sp_id;

CREATE OR REPLACE TEMP TABLE m_tok AS
SELECT 's' AS side, s.sp_id AS id, sb.brand_key, title_tokens(s.product_title) AS raw
FROM m_sp s JOIN m_sp_brand sb USING (sp_id)
UNION ALL
SELECT 'd' AS side, d.di_id AS id, d.brand_key, title_tokens(d.title) AS raw
FROM m_di d WHERE d.brand_key IN (SELECT DISTINCT brand_key FROM m_sp_brand);

CREATE OR REPLACE TEMP TABLE m_clean AS
SELECT t.side, t.id, t.brand_key, clean_tokens(t.raw, b.brand_toks) AS toks
FROM m_tok t JOIN m_brands b USING (brand_key);

CREATE OR REPLACE TEMP TABLE m_feat AS
SELECT side, id, brand_key, toks, digit_sig(toks) AS dsig, size_sig(toks) AS ssig, colours(toks) AS cols
FROM m_clean WHERE len(toks) > 0;

-- blocking keys: (brand, digit tokens, size words, one of the record's rarest tokens within the brand)
CREATE OR REPLACE TEMP TABLE m_unnest AS
SELECT side, id, brand_key, dsig, ssig, unnest(toks) AS token FROM m_feat;

CREATE OR REPLACE TEMP TABLE m_blocks AS
WITH df AS (SELECT brand_key, token, count(*) AS df FROM m_unnest GROUP BY brand_key, token),
rare AS (
    SELECT u.side, u.id, any_value(u.brand_key) AS brand_key, any_value(u.dsig) AS dsig, any_value(u.ssig) AS ssig,
           min_by(u.token, df.df * 1000000 + hash(u.token) % 1000000, {BLOCK_TOKENS}) AS tokens
    FROM m_unnest u JOIN df USING (brand_key, token)
    GROUP BY u.side, u.id
)
SELECT side, id, brand_key, dsig, ssig, unnest(tokens) AS token FROM rare;

CREATE OR REPLACE TEMP TABLE m_pairs AS
WITH sizes AS (
    SELECT brand_key, dsig, ssig, token,
           count(*) FILTER (WHERE side = 's') AS ns, count(*) FILTER (WHERE side = 'd') AS nd
    FROM m_blocks GROUP BY ALL
), ok AS (
    SELECT brand_key, dsig, ssig, token FROM sizes WHERE ns > 0 AND nd > 0 AND ns * nd <= {MAX_BLOCK_PAIRS}
)
SELECT DISTINCT s.id AS sp_id, d.id AS di_id
FROM ok
JOIN m_blocks s ON s.side = 's' AND s.brand_key = ok.brand_key AND s.dsig = ok.dsig AND s.ssig = ok.ssig AND s.token = ok.token
JOIN m_blocks d ON d.side = 'd' AND d.brand_key = ok.brand_key AND d.dsig = ok.dsig AND d.ssig = ok.ssig AND d.token = ok.token;

CREATE OR REPLACE TEMP TABLE m_title AS
WITH scored AS (
    SELECT p.sp_id, p.di_id, len(list_intersect(fs.toks, fd.toks)) AS inter,
           least(len(fs.toks), len(fd.toks)) AS shorter, len(fs.toks) + len(fd.toks) AS total
    FROM m_pairs p
    JOIN m_feat fs ON fs.side = 's' AND fs.id = p.sp_id
    JOIN m_feat fd ON fd.side = 'd' AND fd.id = p.di_id
    WHERE (len(fs.cols) = 0 OR len(fd.cols) = 0 OR fs.cols = fd.cols)
)
SELECT sp_id, di_id, 'title_brand' AS method,
       round(CASE WHEN inter = shorter THEN (2.0 * inter / total + 1.0) / 2
                  ELSE (2.0 * inter / total) * (1.0 * inter / shorter) END, 4) AS score,
       3 AS rank_method
FROM scored;
"""  # noqa: S608 - only the integer constants above are formatted in

_BEST = """
CREATE OR REPLACE TEMP TABLE m_best AS
SELECT * FROM (
    SELECT c.*, row_number() OVER (
        PARTITION BY c.sp_id
        ORDER BY c.rank_method, c.score DESC, (d.quantity_available > 0) DESC, d.cost, d.sku) AS _n
    FROM (SELECT * FROM m_exact UNION ALL SELECT * FROM m_title WHERE score >= ?) c
    JOIN m_di d USING (di_id)
) WHERE _n = 1;
"""

_OUTPUT = """
SELECT s.seller_id, s.asin, s.product_title, s.snapshot_date,
       b.method AS match_method, CAST(b.score AS DECIMAL(5, 4)) AS match_score,
       d.sku AS distributor_sku, d.title AS distributor_title, d.brand AS distributor_brand,
       d.cost AS distributor_cost, d.quantity_available,
       s.product_price AS seller_price,
       CAST(round(s.product_price * ?, 2) AS DECIMAL(12, 2)) AS marketplace_fee,
       CAST(round(s.product_price - s.product_price * ? - d.cost, 2) AS DECIMAL(12, 2)) AS estimated_margin,
       CAST(round((s.product_price - s.product_price * ? - d.cost) / nullif(s.product_price, 0), 4) AS DECIMAL(10, 4))
           AS margin_pct,
       CAST(round((s.product_price - s.product_price * ? - d.cost) / nullif(d.cost, 0), 4) AS DECIMAL(10, 4)) AS roi
FROM m_best b JOIN m_sp s USING (sp_id) JOIN m_di d USING (di_id)
ORDER BY estimated_margin DESC NULLS LAST, s.seller_id, s.asin
"""

_UNMATCHED = """
SELECT s.seller_id, s.asin, s.product_title, s.product_price AS seller_price, s.snapshot_date
FROM m_sp s ANTI JOIN m_best b USING (sp_id)
ORDER BY s.seller_id, s.asin
"""


@dataclass
class MatchResult:
    seller_products: int
    distributor_items: int
    matched: dict[str, int]  # by method
    candidate_pairs: int  # title pairs scored (after blocking)
    unmatched: int

    @property
    def matched_total(self) -> int:
        return sum(self.matched.values())


def match(
    con: duckdb.DuckDBPyConnection,
    seller_products_uri: str | list[str],
    inventory_uri: str | list[str],
    matches_uri: str,
    unmatched_uri: str,
    *,
    fee_rate: float,
    threshold: float = TITLE_THRESHOLD,
) -> MatchResult:
    """Match seller products (``gold.amazon_data`` Parquet) against the distributor inventory Parquet.

    Writes one best match per matched product to ``matches_uri`` and the unmatched products to
    ``unmatched_uri`` (both Parquet); returns the counts.
    """
    install_macros(con)
    prepare = [stmt for stmt in _PREPARE.split(";") if stmt.strip()]
    con.execute(prepare[0], [seller_products_uri])
    con.execute(prepare[1], [inventory_uri])
    con.execute(prepare[2])
    con.execute(_EXACT)
    con.execute(_TITLE)
    con.execute(_BEST, [threshold])
    fee = [fee_rate] * 4
    con.execute(f"CREATE OR REPLACE TEMP TABLE m_output AS {_OUTPUT}", fee)  # noqa: S608 - constant SQL
    con.execute("COPY m_output TO ? (FORMAT parquet, COMPRESSION zstd)", [matches_uri])
    con.execute(f"COPY ({_UNMATCHED}) TO ? (FORMAT parquet, COMPRESSION zstd)", [unmatched_uri])  # noqa: S608
    by_method = dict(con.execute("SELECT method, count(*) FROM m_best GROUP BY method").fetchall())
    sp, di, pairs = con.execute(
        "SELECT (SELECT count(*) FROM m_sp), (SELECT count(*) FROM m_di), (SELECT count(*) FROM m_pairs)"
    ).fetchone()
    matched = {m: int(by_method.get(m, 0)) for m in METHODS}
    return MatchResult(
        seller_products=int(sp), distributor_items=int(di), matched=matched, candidate_pairs=int(pairs),
        unmatched=int(sp) - sum(matched.values()),
    )


# --- the distributor inventory ---------------------------------------------------------------------------

INVENTORY_RULES = {
    "null_sku": "sku is null or blank",
    "null_title": "title is null or blank",
    "unparseable_cost": "cost is missing, not a number or negative",
    "unparseable_quantity_available": "quantity_available is missing, not a whole number or negative",
}


# Over the temp table ``inv_src`` (every column as text, NULL where a file lacks it, + ``_file``, ``_row``,
# ``_mtime``). The first failing rule removes a row; GTIN: the gtin, else ean, else upc column, normalised.
INVENTORY_RULED = """
CREATE OR REPLACE TEMP TABLE inv_ruled AS
WITH parsed AS (
    SELECT *,
        nullif(trim(sku), '') AS _sku,
        nullif(trim(title), '') AS _title,
        TRY_CAST(regexp_replace(trim(cost), '^[$]', '') AS DECIMAL(12, 2)) AS _cost,
        TRY_CAST(trim(quantity_available) AS BIGINT) AS _qty,
        nullif(upper(trim(asin)), '') AS _asin,
        coalesce(gtin14(gtin), gtin14(ean), gtin14(upc)) AS _gtin,
        coalesce(nullif(trim(gtin), ''), nullif(trim(ean), ''), nullif(trim(upc), '')) AS _code
    FROM inv_src
)
SELECT *,
    CASE
        WHEN _sku IS NULL THEN 'null_sku'
        WHEN _title IS NULL THEN 'null_title'
        WHEN _cost IS NULL OR _cost < 0 THEN 'unparseable_cost'
        WHEN _qty IS NULL OR _qty < 0 THEN 'unparseable_quantity_available'
    END AS _rule
FROM parsed
"""

# Stated rule for a SKU seen in several files (or twice in one): the row from the newest file (modification
# time, then file name), then the last row, wins; the others are counted as ``superseded_sku``.
INVENTORY_CLEAN = """
SELECT _sku AS sku, _title AS title, nullif(trim(brand), '') AS brand, _cost AS cost,
       _qty AS quantity_available, _asin AS asin, _gtin AS gtin,
       (_code IS NOT NULL AND _gtin IS NULL) AS gtin_invalid, _file AS source_file
FROM (
    SELECT *, row_number() OVER (PARTITION BY _sku ORDER BY _mtime DESC, _file DESC, _row DESC) AS _copy
    FROM inv_ruled WHERE _rule IS NULL
) WHERE _copy = 1
ORDER BY sku
"""

INVENTORY_QUARANTINE = """
SELECT sku, title, brand, cost, quantity_available, _file AS source_file, _row AS source_row, _rule AS rule,
       regexp_replace(_rule, '^(null|unparseable)_', '') AS field
FROM inv_ruled WHERE _rule IS NOT NULL
"""
