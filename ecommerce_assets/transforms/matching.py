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

The distributor side (tokens, signatures, token counts per brand) depends only on the inventory, so it is
computed once per inventory by :func:`prepare_inventory` and kept beside a fingerprint of the inventory it
was made from: an unchanged inventory is not tokenised again (:func:`find_prepared`), a changed one is.
Each title is tokenised once, into a list, and its features are computed on that list (no unnest and
re-aggregation round trip); only the records that can pair at all (same brand, digit tokens and size
words on both sides) are expanded to one row per token for blocking.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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


def _words(words: list[str]) -> str:
    return ", ".join(f"'{w}'" for w in words)


MACROS = """
CREATE OR REPLACE TEMP MACRO gtin14(code) AS (
    WITH d AS (SELECT regexp_replace(coalesce(CAST(code AS VARCHAR), ''), '[^0-9]', '', 'g') AS digits)
    SELECT CASE WHEN length(digits) IN (8, 12, 13, 14) AND ltrim(digits, '0') <> ''
        AND (10 - list_sum([CAST(substr(lpad(digits, 14, '0'), i, 1) AS INTEGER) * CASE WHEN i % 2 = 1 THEN 3 ELSE 1 END
                            FOR i IN range(1, 14)]) % 10) % 10 = CAST(substr(lpad(digits, 14, '0'), 14, 1) AS INTEGER)
        THEN lpad(digits, 14, '0') END FROM d
);
CREATE OR REPLACE TEMP MACRO compact(s) AS regexp_replace(lower(coalesce(s, '')), '[^a-z0-9]', '', 'g');
-- compact() of a lower-case word (a plain list element: repeating it costs nothing)
CREATE OR REPLACE TEMP MACRO compact_word(w) AS
    CASE WHEN w GLOB '*[!a-z0-9]*' THEN regexp_replace(w, '[^a-z0-9]', '', 'g') ELSE coalesce(w, '') END;
-- units joined to their numbers; each rule runs only on titles containing one of its unit words (the same
-- result, most titles skip most rules). Each rule names its argument several times, which DuckDB computes once
-- in a plain projection: call norm_title()/title_tokens()/clean_tokens() there, never inside a CASE branch, a
-- lambda or a filter it pushes down (there the nested rules would be expanded over and over)
CREATE OR REPLACE TEMP MACRO unit_oz(s) AS CASE WHEN contains(s, 'oz') OR contains(s, 'ounce') THEN regexp_replace(s,
    '(\\d+(?:\\.\\d+)?)\\s*-?\\s*(?:fl\\.?\\s*oz|fluid\\s+ounces?|ounces?|oz)\\b', '\\1oz', 'g') ELSE s END;
CREATE OR REPLACE TEMP MACRO unit_in(s) AS CASE WHEN contains(s, 'in') THEN regexp_replace(s,
    '(\\d+(?:\\.\\d+)?)\\s*-?\\s*(?:inches|inch|in)\\b', '\\1in', 'g') ELSE s END;
CREATE OR REPLACE TEMP MACRO unit_qt(s) AS CASE WHEN contains(s, 'qt') OR contains(s, 'quart') THEN regexp_replace(s,
    '(\\d+(?:\\.\\d+)?)\\s*-?\\s*(?:quarts?|qt)\\b', '\\1qt', 'g') ELSE s END;
CREATE OR REPLACE TEMP MACRO unit_ct(s) AS
    CASE WHEN contains(s, 'count') OR contains(s, 'ct') OR contains(s, 'piece') OR contains(s, 'pc') THEN regexp_replace(s,
    '(\\d+)\\s*-?\\s*(?:count|ct|pieces?|pcs?|piece)\\b', '\\1ct', 'g') ELSE s END;
CREATE OR REPLACE TEMP MACRO unit_pk(s) AS CASE WHEN contains(s, 'pack') OR contains(s, 'pk') THEN regexp_replace(s,
    '(\\d+)\\s*-?\\s*(?:packs?|pk)\\b', '\\1pk', 'g') ELSE s END;
CREATE OR REPLACE TEMP MACRO norm_title(s) AS regexp_replace(unit_pk(unit_ct(unit_qt(unit_in(unit_oz(lower(coalesce(s, ''))))))),
    '(\\d+(?:\\.\\d+)?)\\s+(gb|tb|mb|mah|w|v|mm|cm|ml|l|lb|lbs|kg|g|person)\\b', '\\1\\2', 'g');
CREATE OR REPLACE TEMP MACRO title_tokens(s) AS
    regexp_extract_all(norm_title(s), '[0-9]+(?:\\.[0-9]+)?[a-z]*|[a-z][a-z0-9]*');
""" + f"""
-- a title's clean tokens: each distinct token once (its first occurrence), minus the stop words and the brand's own
-- words (the tokens are bound once as ``all_toks``; the filter is one pass, cheaper than list_distinct)
CREATE OR REPLACE TEMP MACRO clean_tokens(title, brand_toks) AS
    list_transform([title_tokens(title)], lambda all_toks: list_filter(all_toks, lambda tok, i:
        list_position(all_toks, tok) = i AND NOT (tok IN ({_words(STOP_WORDS)}) OR list_contains(brand_toks, tok))))[1];
-- the blocking gates, from the clean tokens: digit tokens and size words (sorted, space-separated), colours
CREATE OR REPLACE TEMP MACRO digit_sig(toks) AS
    array_to_string(list_sort(list_filter(toks, lambda tok: tok GLOB '*[0-9]*')), ' ');
CREATE OR REPLACE TEMP MACRO size_sig(toks) AS
    array_to_string(list_sort(list_filter(toks, lambda tok: tok IN ({_words(SIZE_WORDS)}))), ' ');
CREATE OR REPLACE TEMP MACRO colours(toks) AS
    list_sort(list_filter(toks, lambda tok: tok IN ({_words(COLOUR_WORDS)})));
"""  # noqa: S608 - the constant word lists above


def install_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Create the matching macros (``gtin14``, ``title_tokens``, ``clean_tokens``, ...) on ``con``."""
    con.execute(MACROS)


_SELLERS = """
CREATE OR REPLACE TEMP TABLE m_sp AS
SELECT row_number() OVER () AS sp_id, seller_id, asin, product_title, product_price, snapshot_date,
       product_gtin AS gtin  -- already a validated GTIN-14 (transforms.catalog.gtin14)
FROM read_parquet(?)
"""

# --- the distributor side: m_items (every inventory row + its features), m_brands, m_token_counts --------

# the inventory rows, read once into memory (a file written as one row group is read by one thread; the
# tokenising that follows runs on all of them); ``di_id`` is the row's place in its file (the same every run)
_INVENTORY = """
CREATE OR REPLACE TEMP TABLE m_di AS
SELECT (file_index::BIGINT << 40) + file_row_number AS di_id, sku, title, brand, cost, quantity_available,
       nullif(upper(trim(asin)), '') AS asin, gtin
FROM read_parquet(?, file_row_number = true)
"""

# each brand spelling's key (letters and digits only); each key's own title words (they are not title words of
# that brand's products), from one spelling per key (the first in sort order: never dependent on row order)
_BRANDS = """
CREATE OR REPLACE TEMP TABLE m_brand_keys AS
SELECT brand, compact(brand) AS brand_key FROM (SELECT DISTINCT brand FROM m_di WHERE brand IS NOT NULL);
CREATE OR REPLACE TEMP TABLE m_brands AS
SELECT brand_key, title_tokens(min(brand)) AS brand_toks FROM m_brand_keys WHERE brand_key <> '' GROUP BY brand_key
"""

# every inventory row with its features, in one tokenising pass. A row without a known brand has NULL features;
# one left without clean tokens, empty ones. (The tokens are computed unconditionally and only then set to NULL:
# inside a CASE branch, or under a filter DuckDB pushes down, the nested macros would be expanded repeatedly.)
_ITEMS = """
SELECT di_id, sku, title, brand, cost, quantity_available, asin, gtin, brand_key, toks,
       digit_sig(toks) AS dsig, size_sig(toks) AS ssig, colours(toks) AS cols
FROM (
    SELECT * EXCLUDE (all_toks, known_brand), CASE WHEN known_brand THEN all_toks END AS toks
    FROM (
        SELECT d.*, coalesce(k.brand_key, '') AS brand_key, b.brand_key IS NOT NULL AS known_brand,
               clean_tokens(d.title, coalesce(b.brand_toks, [])) AS all_toks
        FROM m_di d
        LEFT JOIN m_brand_keys k ON k.brand = d.brand
        LEFT JOIN m_brands b ON b.brand_key = k.brand_key
    )
)
"""

# per brand, how many items have each token (the distributor's share of the token frequencies)
_TOKEN_COUNTS = """
SELECT brand_key, token, count(*) AS n
FROM (SELECT brand_key, unnest(toks) AS token FROM {items} WHERE len(toks) > 0)
GROUP BY ALL
"""

# --- matching ----------------------------------------------------------------------------------------------

_EXACT = """
CREATE OR REPLACE TEMP TABLE m_exact AS
WITH a AS (
    SELECT s.sp_id, d.di_id, 'asin' AS method, 1.0 AS score, 1 AS rank_method
    FROM m_sp s JOIN (SELECT di_id, asin FROM m_items WHERE asin IS NOT NULL) d ON s.asin = d.asin
), g AS (
    SELECT s.sp_id, d.di_id, 'gtin' AS method, 1.0 AS score, 2 AS rank_method
    FROM m_sp s JOIN (SELECT di_id, gtin FROM m_items WHERE gtin IS NOT NULL) d ON s.gtin = d.gtin
    WHERE s.gtin IS NOT NULL AND s.sp_id NOT IN (SELECT sp_id FROM a)
)
SELECT * FROM a UNION ALL SELECT * FROM g
"""

# seller side: brand from the first 1-4 title words (whitespace-separated), the longest known distributor brand
# wins (a title with fewer words repeats its last key, which changes nothing). The words: split at spaces, tabs,
# line feeds, form feeds and carriage returns (what ``\s`` matches in a regular expression, without running one),
# each compacted like a brand key (by a regular expression only when it has something to remove)
_SELLER_BRANDS = """
CREATE OR REPLACE TEMP TABLE m_sp_brand AS
WITH words AS (
    SELECT sp_id, list_filter(string_split(replace(replace(replace(replace(lower(coalesce(product_title, '')),
                              chr(9), ' '), chr(10), ' '), chr(12), ' '), chr(13), ' '), ' '), lambda w: w <> '') AS w
    FROM m_sp ANTI JOIN m_exact USING (sp_id)
), prefixes AS (  -- compact() drops characters one by one, so the key of words 1..k is key(1..k-1) || compact(word k)
    SELECT sp_id, compact_word(w[1]) AS k1, k1 || compact_word(w[2]) AS k2, k2 || compact_word(w[3]) AS k3,
           k3 || compact_word(w[4]) AS k4
    FROM words
), candidates AS (
    SELECT sp_id, unnest([k1, k2, k3, k4]) AS brand_key, unnest([1, 2, 3, 4]) AS n_words FROM prefixes
)
SELECT c.sp_id, arg_max(c.brand_key, c.n_words) AS brand_key
FROM candidates c SEMI JOIN m_brands b ON b.brand_key = c.brand_key
GROUP BY c.sp_id
"""

# the seller products left, with a distributor brand: their clean tokens and gates (one tokenising pass)
_SELLER_FEATURES = """
CREATE OR REPLACE TEMP TABLE m_sfeat AS
SELECT id, brand_key, toks, digit_sig(toks) AS dsig, size_sig(toks) AS ssig, colours(toks) AS cols
FROM (
    SELECT sb.sp_id AS id, sb.brand_key, clean_tokens(s.product_title, b.brand_toks) AS toks
    FROM m_sp_brand sb JOIN m_sp s USING (sp_id) JOIN m_brands b USING (brand_key)
);
DELETE FROM m_sfeat WHERE len(toks) = 0
"""

# A pair needs the same (brand, digit tokens, size words) on both sides: only records whose key occurs on
# both sides can share a block, so only they are expanded to one row per token. The token frequencies
# (``m_df``) count every record of the brand on both sides, as the rule says, for the tokens those records use.
_BLOCKS = f"""
CREATE OR REPLACE TEMP TABLE m_dfeat AS
SELECT di_id AS id, brand_key, toks, dsig, ssig, cols FROM m_items
WHERE len(toks) > 0 AND (brand_key, dsig, ssig) IN (SELECT brand_key, dsig, ssig FROM m_sfeat);

CREATE OR REPLACE TEMP TABLE m_keys AS
SELECT row_number() OVER () AS key_id, * FROM (SELECT DISTINCT brand_key, dsig, ssig FROM m_dfeat);

CREATE OR REPLACE TEMP TABLE m_rec_tok AS
WITH seller_df AS (
    SELECT brand_key, token, count(*) AS n
    FROM (SELECT brand_key, unnest(toks) AS token FROM m_sfeat WHERE brand_key IN (SELECT brand_key FROM m_keys))
    GROUP BY ALL
), rec AS (
    SELECT 's' AS side, f.id, k.key_id, f.brand_key, unnest(f.toks) AS token
    FROM m_sfeat f JOIN m_keys k USING (brand_key, dsig, ssig)
    UNION ALL
    SELECT 'd' AS side, f.id, k.key_id, f.brand_key, unnest(f.toks) AS token
    FROM m_dfeat f JOIN m_keys k USING (brand_key, dsig, ssig)
)
SELECT r.side, r.id, r.key_id, r.token, coalesce(s.n, 0) + coalesce(d.n, 0) AS df
FROM rec r
LEFT JOIN seller_df s ON s.brand_key = r.brand_key AND s.token = r.token
LEFT JOIN m_token_counts d ON d.brand_key = r.brand_key AND d.token = r.token;

-- blocking keys: (brand, digit tokens, size words) as ``key_id`` and one of the record's rarest tokens within
-- the brand, rarity ties broken by a hash of the token, then by the full hash (never by the row order)
CREATE OR REPLACE TEMP TABLE m_blocks AS
SELECT side, id, key_id, token FROM m_rec_tok
QUALIFY row_number() OVER (PARTITION BY side, id ORDER BY df, hash(token) % 1000000, hash(token))
        <= {BLOCK_TOKENS};

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
WITH c AS (SELECT * FROM m_exact UNION ALL SELECT * FROM m_title WHERE score >= ?)
SELECT * FROM (
    SELECT c.*, d.sku, d.title, d.brand, d.cost, d.quantity_available, row_number() OVER (
        PARTITION BY c.sp_id
        ORDER BY c.rank_method, c.score DESC, (d.quantity_available > 0) DESC, d.cost, d.sku) AS _n
    FROM c JOIN (SELECT di_id, sku, title, brand, cost, quantity_available FROM m_items) d USING (di_id)
) WHERE _n = 1;
"""

_OUTPUT = """
SELECT s.seller_id, s.asin, s.product_title, s.snapshot_date,
       b.method AS match_method, CAST(b.score AS DECIMAL(5, 4)) AS match_score,
       b.sku AS distributor_sku, b.title AS distributor_title, b.brand AS distributor_brand,
       b.cost AS distributor_cost, b.quantity_available,
       s.product_price AS seller_price,
       CAST(round(s.product_price * f.fee, 2) AS DECIMAL(12, 2)) AS marketplace_fee,
       CAST(round(s.product_price - s.product_price * f.fee - b.cost, 2) AS DECIMAL(12, 2)) AS estimated_margin,
       CAST(round((s.product_price - s.product_price * f.fee - b.cost) / nullif(s.product_price, 0), 4)
            AS DECIMAL(10, 4)) AS margin_pct,
       CAST(round((s.product_price - s.product_price * f.fee - b.cost) / nullif(b.cost, 0), 4) AS DECIMAL(10, 4))
           AS roi
FROM m_best b JOIN m_sp s USING (sp_id), (SELECT getvariable('matching_fee_rate') AS fee) f
ORDER BY estimated_margin DESC NULLS LAST, s.seller_id, s.asin
"""

_UNMATCHED = """
SELECT s.seller_id, s.asin, s.product_title, s.product_price AS seller_price, s.snapshot_date
FROM m_sp s ANTI JOIN m_best b USING (sp_id)
ORDER BY s.seller_id, s.asin
"""

# --- the prepared inventory ---------------------------------------------------------------------------------

# an inventory's content as matching sees it: the columns it reads (the ASIN normalised as it is matched), as
# the row count and the sum of the rows' hashes (which does not depend on the row order)
_CONTENT = """
SELECT count(*), coalesce(sum(hash(sku, title, brand, cost, quantity_available, nullif(upper(trim(asin)), ''),
                                   gtin)::HUGEINT), 0)
"""

PREPARED_FORMAT = 2  # the layout of the prepared files; a prepared inventory of another format is made anew
# the prepared files are read back by this code only: the fastest zstd level (15 % less CPU to write, 5 % larger)
_PREPARED_PARQUET = "FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1"

@functools.cache
def _rules_digest() -> str:
    """What a prepared inventory depends on besides its inventory: its layout, the tokenising and feature
    rules (the macros and word lists) and the engine that computed them (its hash function keys the content
    check). Computed on first use, so that importing this module does not import DuckDB."""
    import duckdb

    return hashlib.sha256(json.dumps(
        [PREPARED_FORMAT, MACROS, _INVENTORY, _BRANDS, _ITEMS, _TOKEN_COUNTS, _CONTENT, duckdb.__version__]
    ).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class InventoryFingerprint:
    """What identifies an inventory's content for :func:`prepare_inventory`.

    ``files``: each file's name, size and modification time (free to read: an unchanged file is recognised
    without reading it). ``content``: the row count and an order-independent hash of every row (read only
    when the files differ: an inventory rewritten with the same rows is still recognised)."""

    files: str
    content: str | None = None


@dataclass(frozen=True)
class PreparedInventory:
    """A distributor inventory with its matching features computed once, when it was loaded
    (:func:`prepare_inventory`): ``items.parquet`` (the inventory rows with a stable ``di_id``, ``brand_key`` and
    the clean title tokens and signatures), ``token_counts.parquet`` (per brand, how many items have each token),
    ``brands.parquet`` (each brand key's own words) and ``fingerprint.json`` (which inventory it was made from,
    with which rules; written last). A match run against it tokenises only seller titles.

    ``reused``: :func:`prepare_inventory` found it already made from the same inventory and did not tokenise."""

    uri: str  # the folder (with or without a trailing "/")
    reused: bool = False

    ITEMS = "items.parquet"
    TOKEN_COUNTS = "token_counts.parquet"
    BRANDS = "brands.parquet"
    FINGERPRINT = "fingerprint.json"

    def part(self, name: str) -> str:
        return self.uri.rstrip("/") + "/" + name


def inventory_fingerprint(
    con: duckdb.DuckDBPyConnection, inventory_uri: str | list[str], *, content: bool = True
) -> InventoryFingerprint:
    """The fingerprint of the inventory Parquet at ``inventory_uri`` (a file, a glob or a list; local or S3):
    its files' names, sizes and modification times, and with ``content`` its rows (count + the sum of every
    row's hash, which does not depend on the row order)."""
    files = con.execute(
        "SELECT filename, size, CAST(epoch_ms(last_modified) AS BIGINT) FROM read_blob(?) ORDER BY filename",
        [inventory_uri],
    ).fetchall()
    summary = _content(con, "read_parquet(?)", [inventory_uri]) if content else None
    return InventoryFingerprint(files=json.dumps(files), content=summary)


def _content(con: duckdb.DuckDBPyConnection, relation: str, params: list | None = None) -> str:
    rows, total = con.execute(f"{_CONTENT} FROM {relation}", params).fetchone()  # noqa: S608 - our own relation
    return json.dumps([int(rows), str(total)])


def _stored_fingerprint(con: duckdb.DuckDBPyConnection, prepared: PreparedInventory) -> InventoryFingerprint | None:
    """The fingerprint a prepared inventory was made from, if it is complete and made with today's rules."""
    import duckdb

    try:
        row = con.execute(
            "SELECT rules, files, content FROM read_json(?, columns = {rules: 'VARCHAR', files: 'VARCHAR', "
            "content: 'VARCHAR'})", [prepared.part(prepared.FINGERPRINT)],
        ).fetchone()
    except duckdb.Error:  # missing, unreadable or half-written: not a prepared inventory to reuse
        return None
    if row is None or row[0] != _rules_digest() or row[2] is None:
        return None
    return InventoryFingerprint(files=row[1], content=row[2])


def _write_fingerprint(
    con: duckdb.DuckDBPyConnection, prepared: PreparedInventory, fingerprint: InventoryFingerprint | None
) -> None:
    """Write ``fingerprint.json`` (``None``: mark the folder as not reusable while its parts are rewritten)."""
    rules = _rules_digest() if fingerprint else "incomplete"
    con.execute(  # (a COPY binds its target before its query's parameters: the row is made first)
        "CREATE OR REPLACE TEMP TABLE m_fingerprint AS SELECT ?::VARCHAR AS rules, ?::VARCHAR AS files, "
        "?::VARCHAR AS content",
        [rules, fingerprint.files if fingerprint else None, fingerprint.content if fingerprint else None],
    )
    con.execute("COPY m_fingerprint TO ? (FORMAT json)", [prepared.part(prepared.FINGERPRINT)])
    con.execute("DROP TABLE m_fingerprint")


def find_prepared(
    con: duckdb.DuckDBPyConnection, inventory_uri: str | list[str], prepared_uri: str
) -> PreparedInventory | None:
    """The prepared inventory in the folder ``prepared_uri`` if it was made from this inventory (the same files,
    or files with the same rows) with today's rules, else ``None`` (missing, incomplete or stale).

    Cheap when the inventory's files are the ones it was made from (their sizes and times are compared); when
    they differ (e.g. the inventory was rewritten), the inventory's rows are hashed and compared."""
    prepared = PreparedInventory(prepared_uri.rstrip("/") + "/", reused=True)
    stored = _stored_fingerprint(con, prepared)
    if stored is None:
        return None
    current = inventory_fingerprint(con, inventory_uri, content=False)
    if current.files == stored.files:
        return prepared
    current = inventory_fingerprint(con, inventory_uri)
    if current.content != stored.content:
        return None
    _write_fingerprint(con, prepared, current)  # the same rows in other files: recognised for free next time
    return prepared


def _drop(con: duckdb.DuckDBPyConnection, *names: str) -> None:
    """Drop the temp tables or views ``names`` (either kind) if they exist."""
    found = con.execute(
        "SELECT 'TABLE', table_name FROM duckdb_tables() WHERE temporary AND list_contains(?, table_name) "
        "UNION ALL SELECT 'VIEW', view_name FROM duckdb_views() WHERE temporary AND list_contains(?, view_name)",
        [list(names), list(names)],
    ).fetchall()
    for kind, name in found:
        con.execute(f"DROP {kind} {name}")  # noqa: S608 - our own names, found in the catalog


def _inventory_tables(con: duckdb.DuckDBPyConnection, inventory_uri: str | list[str]) -> str:
    """``m_di`` (the inventory rows), ``m_brand_keys`` and ``m_brands`` (temp tables); returns the inventory's
    content fingerprint (the one :func:`inventory_fingerprint` computes from the file)."""
    install_macros(con)
    con.execute(_INVENTORY, [inventory_uri])
    brand_keys, brands = _BRANDS.split(";")
    con.execute(brand_keys)
    con.execute(brands)
    return _content(con, "m_di")


def _prepare_tables(con: duckdb.DuckDBPyConnection, inventory_uri: str | list[str]) -> None:
    """``m_brands``, ``m_items`` and ``m_token_counts`` for the inventory Parquet, as temp tables (a match run
    against the inventory itself)."""
    _drop(con, "m_items", "m_token_counts")
    _inventory_tables(con, inventory_uri)
    con.execute(f"CREATE TEMP TABLE m_items AS {_ITEMS}")  # noqa: S608 - constant SQL
    con.execute(f"CREATE TEMP TABLE m_token_counts AS {_TOKEN_COUNTS.format(items='m_items')}")
    _drop(con, "m_di", "m_brand_keys")


def prepare_inventory(
    con: duckdb.DuckDBPyConnection, inventory_uri: str | list[str], prepared_uri: str, *, reuse: bool = True
) -> PreparedInventory:
    """Tokenise the distributor inventory (Parquet, the ``gold.distributor_inventory`` columns) once and write it
    with its matching features under the folder ``prepared_uri``; pass the result to :func:`match`.

    With ``reuse`` (the default), a prepared inventory already in ``prepared_uri`` that was made from the same
    inventory (:func:`find_prepared`) is returned as it is (``reused=True``), without tokenising; otherwise the
    folder's parts are (re)written, the fingerprint last, so a crash never leaves a folder that looks current.

    ``match`` gives the same matches from the inventory itself or from its prepared form (the same SQL
    computes the features in both cases); the prepared form only moves the distributor side's work to load time.
    """
    if reuse and (found := find_prepared(con, inventory_uri, prepared_uri)) is not None:
        return found
    prepared = PreparedInventory(prepared_uri.rstrip("/") + "/")
    if "://" not in prepared.uri:
        os.makedirs(prepared.uri, exist_ok=True)
    # the files first: a file changed while it is read then looks changed next time (never the other way)
    files = inventory_fingerprint(con, inventory_uri, content=False).files
    _write_fingerprint(con, prepared, None)
    content = _inventory_tables(con, inventory_uri)
    items, counts = prepared.part(prepared.ITEMS), prepared.part(prepared.TOKEN_COUNTS)
    # tokenised as it is written (nothing of it held in memory), then the token counts read back from it
    con.execute(f"COPY ({_ITEMS}) TO ? ({_PREPARED_PARQUET})", [items])  # noqa: S608 - constant SQL
    con.execute("SET VARIABLE matching_items_uri = ?", [items])  # (a COPY binds its target first: no ? in its query)
    token_counts = _TOKEN_COUNTS.format(items="read_parquet(getvariable('matching_items_uri'))")
    con.execute(f"COPY ({token_counts}) TO ? ({_PREPARED_PARQUET})", [counts])  # noqa: S608
    con.execute(f"COPY m_brands TO ? ({_PREPARED_PARQUET})", [prepared.part(prepared.BRANDS)])  # noqa: S608
    _write_fingerprint(con, prepared, InventoryFingerprint(files=files, content=content))
    _drop(con, "m_di", "m_brand_keys", "m_brands")
    return prepared


def _use_prepared(con: duckdb.DuckDBPyConnection, prepared: PreparedInventory) -> None:
    """``m_items`` and ``m_token_counts`` as views over the prepared files (read where used, never copied);
    ``m_brands`` (small) as a table."""
    _drop(con, "m_items", "m_token_counts")
    for view, name in (("m_items", prepared.ITEMS), ("m_token_counts", prepared.TOKEN_COUNTS)):
        con.execute(f"SET VARIABLE {view}_uri = ?", [prepared.part(name)])
        sql = f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT * FROM read_parquet(getvariable('{view}_uri'))"  # noqa: S608
        con.execute(sql)
    con.execute("CREATE OR REPLACE TEMP TABLE m_brands AS SELECT brand_key, brand_toks FROM read_parquet(?)",
                [prepared.part(prepared.BRANDS)])


@dataclass
class MatchResult:
    """What :func:`match` found: the counts of its inputs and outputs."""

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
    if isinstance(inventory, PreparedInventory):
        _use_prepared(con, inventory)
    else:
        _prepare_tables(con, inventory)
    con.execute(_SELLERS, [seller_products_uri])
    con.execute(_EXACT)
    con.execute(_SELLER_BRANDS)
    for stmt in _SELLER_FEATURES.split(";"):
        con.execute(stmt)
    for stmt in _BLOCKS.split(";"):
        con.execute(stmt)
    con.execute(_BEST, [threshold])
    con.execute("SET VARIABLE matching_fee_rate = ?", [fee_rate])
    con.execute(f"COPY ({_OUTPUT}) TO ? (FORMAT parquet, COMPRESSION zstd)", [matches_uri])  # noqa: S608
    con.execute(f"COPY ({_UNMATCHED}) TO ? (FORMAT parquet, COMPRESSION zstd)", [unmatched_uri])  # noqa: S608
    by_method = dict(con.execute("SELECT method, count(*) FROM m_best GROUP BY method").fetchall())
    sp, di, pairs = con.execute(
        "SELECT (SELECT count(*) FROM m_sp), (SELECT count(*) FROM m_items), (SELECT count(*) FROM m_pairs)"
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
