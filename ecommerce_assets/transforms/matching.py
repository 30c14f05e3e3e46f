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

MACROS = """
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
"""


def install_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Create the matching macros (``gtin14``, ``title_tokens``, ...) on ``con``."""
    con.execute(MACROS)


def _words(words: list[str]) -> str:
    return ", ".join(f"'{w}'" for w in words)


_SELLERS = """
CREATE OR REPLACE TEMP TABLE m_sp AS
SELECT row_number() OVER () AS sp_id, seller_id, asin, product_title, product_price, snapshot_date,
       product_gtin AS gtin  -- already a validated GTIN-14 (transforms.catalog.gtin14)
FROM read_parquet(?)
"""

_INVENTORY = """
CREATE OR REPLACE TEMP TABLE m_di AS
SELECT row_number() OVER () AS di_id, sku, title, brand, cost, quantity_available,
       nullif(upper(trim(asin)), '') AS asin, gtin, compact(brand) AS brand_key
FROM read_parquet(?)
"""

# each brand key's own title words (they are not title words of that brand's products); one brand spelling
# per key (the first in sort order), so the result never depends on row order
_BRANDS = """
CREATE OR REPLACE TEMP TABLE m_brands AS
SELECT brand_key, title_tokens(brand) AS brand_toks
FROM (SELECT brand_key, min(brand) AS brand FROM m_di WHERE brand_key <> '' GROUP BY brand_key)
"""

# the words a title token must not be: each brand's own words and the stop words, one anti-join
_BRAND_TOKENS = f"""
CREATE OR REPLACE TEMP TABLE m_skip AS
SELECT brand_key, unnest(brand_toks) AS token FROM m_brands
UNION
SELECT b.brand_key, w.token FROM m_brands b, (SELECT unnest([{_words(STOP_WORDS)}]) AS token) w
"""  # noqa: S608 - the constant word list above


def _features_sql(target: str, source: str) -> list[str]:
    """SQL making ``<target>_tok`` (id, brand_key, token: one row per distinct clean title token) and ``target``
    (id, brand_key, toks, dsig, ssig, cols) for the records of ``source`` (id, brand_key, title) whose brand is a
    distributor brand; a record left without tokens has no row. Set-based: one tokenising pass, the stop and
    brand words removed by a join, the signatures by aggregates (no per-row list lambdas)."""
    return [
        f"""
CREATE OR REPLACE TEMP TABLE {target}_tok AS
SELECT s.id, s.brand_key, unnest(list_distinct(title_tokens(s.title))) AS token
FROM {source} s SEMI JOIN m_brands b ON s.brand_key = b.brand_key
""",  # noqa: S608 - table names
        f"DELETE FROM {target}_tok u USING m_skip k WHERE k.brand_key = u.brand_key AND k.token = u.token",  # noqa: S608
        f"""
CREATE OR REPLACE TEMP TABLE {target} AS
SELECT id, any_value(brand_key) AS brand_key, list(token) AS toks,
       coalesce(array_to_string(list_sort(list(token) FILTER (WHERE regexp_matches(token, '[0-9]'))), ' '), '')
           AS dsig,
       coalesce(array_to_string(list_sort(list(token) FILTER (WHERE token IN ({_words(SIZE_WORDS)}))), ' '), '')
           AS ssig,
       coalesce(list_sort(list(token) FILTER (WHERE token IN ({_words(COLOUR_WORDS)}))), []::VARCHAR[]) AS cols
FROM {target}_tok GROUP BY id
""",  # noqa: S608 - a table name and the constant word lists
    ]


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
SELECT * FROM a UNION ALL SELECT * FROM g
"""

# seller side: brand from the first 1-4 title words (whitespace-separated), the longest known distributor brand
# wins (a title with fewer words repeats its last key, which changes nothing)
_SELLER_BRANDS = """
CREATE OR REPLACE TEMP TABLE m_sp_brand AS
WITH words AS (
    SELECT sp_id, string_split(trim(regexp_replace(lower(coalesce(product_title, '')), '\\s+', ' ', 'g')), ' ') AS w
    FROM m_sp ANTI JOIN m_exact USING (sp_id)
), prefixes AS (  -- compact() drops characters one by one, so the key of words 1..k is key(1..k-1) || compact(word k)
    SELECT sp_id, compact(w[1]) AS k1, k1 || compact(w[2]) AS k2, k2 || compact(w[3]) AS k3, k3 || compact(w[4]) AS k4
    FROM words
)
SELECT sp_id, brand_key FROM (
    SELECT sp_id, CASE WHEN k4 IN (SELECT brand_key FROM m_brands) THEN k4
                       WHEN k3 IN (SELECT brand_key FROM m_brands) THEN k3
                       WHEN k2 IN (SELECT brand_key FROM m_brands) THEN k2
                       WHEN k1 IN (SELECT brand_key FROM m_brands) THEN k1 END AS brand_key
    FROM prefixes
) WHERE brand_key IS NOT NULL
"""

_SELLER_SOURCE = "(SELECT s.sp_id AS id, sb.brand_key, s.product_title AS title FROM m_sp s JOIN m_sp_brand sb USING (sp_id))"
_DIRECT_SOURCE = "(SELECT di_id AS id, brand_key, title FROM m_di WHERE brand_key IN (SELECT brand_key FROM m_sp_brand))"

# A pair needs the same (brand, digit tokens, size words) on both sides: only records whose key occurs on
# both sides can share a block, so only they get blocking keys. The token frequencies (``m_df``) count every
# record of the brand on both sides, as the rule says.
_BLOCKS = f"""
CREATE OR REPLACE TEMP TABLE m_keys AS
SELECT row_number() OVER () AS key_id, * FROM (
    SELECT brand_key, dsig, ssig FROM m_sfeat INTERSECT SELECT brand_key, dsig, ssig FROM m_dfeat
);

CREATE OR REPLACE TEMP TABLE m_df AS
SELECT brand_key, token, sum(n) AS df FROM (
    SELECT brand_key, token, count(*) AS n FROM m_sfeat_tok GROUP BY ALL
    UNION ALL
    SELECT t.brand_key, t.token, t.n FROM m_ddf t SEMI JOIN m_brands b ON t.brand_key = b.brand_key
) GROUP BY ALL;

CREATE OR REPLACE TEMP TABLE m_rec_tok AS
SELECT 's' AS side, t.id, r.key_id, t.brand_key, t.token
FROM m_sfeat_tok t JOIN (SELECT f.id, k.key_id FROM m_sfeat f JOIN m_keys k USING (brand_key, dsig, ssig)) r USING (id)
UNION ALL
SELECT 'd' AS side, id, key_id, brand_key, unnest(toks) AS token
FROM m_dfeat JOIN m_keys USING (brand_key, dsig, ssig);

-- blocking keys: (brand, digit tokens, size words) as ``key_id`` and one of the record's rarest tokens within
-- the brand, rarity ties broken by a hash of the token, then by the full hash (never by the row order)
CREATE OR REPLACE TEMP TABLE m_blocks AS
SELECT u.side, u.id, u.key_id,
       unnest(min_by(u.token, (f.df * 1000000 + hash(u.token) % 1000000)::HUGEINT * 18446744073709551616
                              + hash(u.token), {BLOCK_TOKENS})) AS token
FROM m_rec_tok u JOIN m_df f ON f.brand_key = u.brand_key AND f.token = u.token
GROUP BY u.side, u.id, u.key_id;

CREATE OR REPLACE TEMP TABLE m_pairs AS
WITH sizes AS (
    SELECT key_id, token, count(*) FILTER (WHERE side = 's') AS ns, count(*) FILTER (WHERE side = 'd') AS nd
    FROM m_blocks GROUP BY ALL
), ok AS (
    SELECT key_id, token FROM sizes WHERE ns > 0 AND nd > 0 AND ns * nd <= {MAX_BLOCK_PAIRS}
)
SELECT DISTINCT s.id AS sp_id, d.id AS di_id
FROM ok
JOIN m_blocks s ON s.side = 's' AND s.key_id = ok.key_id AND s.token = ok.token
JOIN m_blocks d ON d.side = 'd' AND d.key_id = ok.key_id AND d.token = ok.token;

CREATE OR REPLACE TEMP TABLE m_title AS
WITH scored AS (
    SELECT p.sp_id, p.di_id, len(list_intersect(fs.toks, fd.toks)) AS inter,
           least(len(fs.toks), len(fd.toks)) AS shorter, len(fs.toks) + len(fd.toks) AS total
    FROM m_pairs p
    JOIN m_sfeat fs ON fs.id = p.sp_id
    JOIN m_dfeat fd ON fd.id = p.di_id
    WHERE (len(fs.cols) = 0 OR len(fd.cols) = 0 OR fs.cols = fd.cols)
)
SELECT sp_id, di_id, 'title_brand' AS method,
       round(CASE WHEN inter = shorter THEN (2.0 * inter / total + 1.0) / 2
                  ELSE (2.0 * inter / total) * (1.0 * inter / shorter) END, 4) AS score,
       3 AS rank_method
FROM scored
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


@dataclass(frozen=True)
class PreparedInventory:
    """A distributor inventory with its matching features computed once, when it was loaded
    (:func:`prepare_inventory`): ``items.parquet`` (the inventory rows with a stable ``di_id``, ``brand_key`` and
    the clean title tokens and signatures), ``token_counts.parquet`` (per brand, how many items have each token)
    and ``brands.parquet`` (each brand key's own words). A match run against it tokenises only seller titles."""

    uri: str  # the folder (with or without a trailing "/")

    ITEMS = "items.parquet"
    TOKEN_COUNTS = "token_counts.parquet"
    BRANDS = "brands.parquet"

    def part(self, name: str) -> str:
        return self.uri.rstrip("/") + "/" + name


def prepare_inventory(con: duckdb.DuckDBPyConnection, inventory_uri: str | list[str], prepared_uri: str) -> PreparedInventory:
    """Tokenise the distributor inventory (Parquet, the ``gold.distributor_inventory`` columns) once and write it
    with its matching features under the folder ``prepared_uri``; pass the result to :func:`match`.

    ``match`` gives the same matches from the inventory itself or from its prepared form (the same SQL
    computes the features in both cases); the prepared form only moves the distributor side's work to load time.
    """
    install_macros(con)
    prepared = PreparedInventory(prepared_uri.rstrip("/") + "/")
    con.execute(_INVENTORY, [inventory_uri])
    con.execute(_BRANDS)
    con.execute(_BRAND_TOKENS)
    for stmt in _features_sql("m_dfeat", "(SELECT di_id AS id, brand_key, title FROM m_di)"):
        con.execute(stmt)
    con.execute(
        "COPY (SELECT d.*, f.toks, f.dsig, f.ssig, f.cols FROM m_di d LEFT JOIN m_dfeat f ON f.id = d.di_id) "
        "TO ? (FORMAT parquet, COMPRESSION zstd)", [prepared.part(prepared.ITEMS)],
    )
    con.execute("COPY (SELECT brand_key, token, count(*) AS n FROM m_dfeat_tok GROUP BY ALL) "
                "TO ? (FORMAT parquet, COMPRESSION zstd)", [prepared.part(prepared.TOKEN_COUNTS)])
    con.execute("COPY m_brands TO ? (FORMAT parquet, COMPRESSION zstd)", [prepared.part(prepared.BRANDS)])
    return prepared


def _distributor_features(con: duckdb.DuckDBPyConnection, inventory: str | list[str] | PreparedInventory) -> None:
    """``m_dfeat`` (+ ``m_ddf``: token counts per brand) for the distributor items of the sellers' brands."""
    if isinstance(inventory, PreparedInventory):
        # only the items whose (brand, digit tokens, size words) a seller product has can be paired
        con.execute(
            "CREATE OR REPLACE TEMP TABLE m_dfeat AS SELECT di_id AS id, brand_key, toks, dsig, ssig, cols "
            "FROM read_parquet(?) d WHERE toks IS NOT NULL AND (brand_key, dsig, ssig) IN "
            "(SELECT brand_key, dsig, ssig FROM m_sfeat)", [inventory.part(inventory.ITEMS)],
        )
        con.execute("CREATE OR REPLACE TEMP TABLE m_ddf AS SELECT brand_key, token, n FROM read_parquet(?) "
                    "WHERE brand_key IN (SELECT brand_key FROM m_sp_brand)", [inventory.part(inventory.TOKEN_COUNTS)])
        return
    for stmt in _features_sql("m_dfeat", _DIRECT_SOURCE):
        con.execute(stmt)
    con.execute("CREATE OR REPLACE TEMP TABLE m_ddf AS SELECT brand_key, token, count(*) AS n FROM m_dfeat_tok GROUP BY ALL")


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
    inventory: str | list[str] | PreparedInventory,
    matches_uri: str,
    unmatched_uri: str,
    *,
    fee_rate: float,
    threshold: float = TITLE_THRESHOLD,
) -> MatchResult:
    """Match seller products (``gold.amazon_data`` Parquet) against the distributor inventory: its Parquet, or
    the :class:`PreparedInventory` made from it when it was loaded (same matches, the distributor titles are
    not tokenised again).

    Writes one best match per matched product to ``matches_uri`` and the unmatched products to
    ``unmatched_uri`` (both Parquet); returns the counts.
    """
    install_macros(con)
    con.execute(_SELLERS, [seller_products_uri])
    if isinstance(inventory, PreparedInventory):
        con.execute(
            "CREATE OR REPLACE TEMP TABLE m_di AS SELECT di_id, sku, title, brand, cost, quantity_available, asin, "
            "gtin, brand_key FROM read_parquet(?)", [inventory.part(inventory.ITEMS)],
        )
        con.execute("CREATE OR REPLACE TEMP TABLE m_brands AS SELECT brand_key, brand_toks FROM read_parquet(?)",
                    [inventory.part(inventory.BRANDS)])
    else:
        con.execute(_INVENTORY, [inventory])
        con.execute(_BRANDS)
    con.execute(_BRAND_TOKENS)
    con.execute(_EXACT)
    con.execute(_SELLER_BRANDS)
    for stmt in _features_sql("m_sfeat", _SELLER_SOURCE):
        con.execute(stmt)
    _distributor_features(con, inventory)
    for stmt in _BLOCKS.split(";"):
        con.execute(stmt)
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
