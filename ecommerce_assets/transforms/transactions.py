"""Transactions: landed JSON files -> the typed Iceberg table ``transactions``, with quarantine and reconciliation.

A partition run (``transform_partition`` with ``tables``) replaces the ``date`` partition of the Iceberg table
``transactions`` (identity-partitioned on ``date``, the landing date) in one commit; without ``tables`` (the
one-file-per-call Lambda, the benches) the good records go to plain Hive-partitioned Parquet instead. The
quarantine is plain files either way.

Input files may hold one JSON object, a JSON array of objects, or JSON lines (several formats may be
mixed in one batch). All files of a partition are read by ONE DuckDB statement that streams, so memory
stays bounded by the engine's limit:

* the fast path (``_fast_write``): one typed ``read_json`` pass (``_fast_sql``: text fields read as
  text, numbers as JSON values, so their JSON type is exact) streams every record into one Parquet file.
  Every record meets a cheap test that only a good record passes; only a record that fails it is sent
  through the rules to name its reason. A file without bad records is the output as written; otherwise
  its good records are copied out and its bad ones counted (the JSON is read once). A text field whose
  type the typed read cannot be sure of (``123``, or the string ``"123"``) makes it run again with the
  text fields read as JSON;
* the checked path, only when the fast statement raises (a file that is not JSON, a record that is not
  an object, a repeated key): ``read_json_objects`` + ``json_extract`` into an intermediate Parquet
  file, a malformed file taken out and quarantined whole, then the output.

Both give the same rows, rules and counts (the rule and typed expressions are generated once, by
``_rule_sql``, ``_utc_sql`` and ``_json_cast``, for both); the quarantined records' positions are read
again, per bad file, by ``_quarantined_records`` on either path.

Rules (the first that applies names the record's quarantine reason):

1. ``empty_file`` / ``not_json`` (whole file): the file is empty or cannot be parsed as a JSON object,
   array or JSON lines (the parser's message is kept). The whole file goes to quarantine.
2. ``not_an_object``: a record that is not a JSON object (e.g. a number inside an array).
3. ``missing_<field>``: a required field is absent, ``null`` or an empty string.
4. ``wrong_type_<field>``: text fields must be strings; ``quantity`` an integer; ``price`` and
   ``total_amount`` numbers; ``timestamp`` an ISO-8601 date-time string (an offset such as ``+02:00`` or
   ``Z`` is converted to UTC; no offset means UTC).
5. ``non_positive_quantity`` / ``non_positive_price``: quantity <= 0 or price <= 0.
6. ``out_of_range_timestamp``: the timestamp (in UTC) is before 2000-01-01 or after 2100-12-31.
7. ``control_character_<field>``: a text field holds a control character (NUL, ESC, a line break, DEL, C1)
   or a bidirectional override/isolate (U+202A-U+202E, U+2066-U+2069).

A file holding only white space has no record (it is read, with 0 records in). Text that starts with ``=``, ``+``, ``-`` or ``@``
is data and kept as it is; a CSV written for people neutralises it (``files.csv_for_people``).

Schema evolution. Before the read, one pass lists every top-level key the records hold (``_scan_keys``). A key
beyond the nine fields becomes a nullable column named in lower case (``ExtraField``), added to the Iceberg
table in the partition's own commit: its kind is the table's column type when the table has the column, else
the JSON type of most of its values in the partition (integers with other numbers: a number). A value of
another kind breaks ``wrong_type_<key>`` and is quarantined, never cast. A key that cannot become a column
(characters other than letters, digits and underscores; a name the pipeline reads or derives, in any case;
two keys with one lower-case name) breaks ``unsupported_field_<key>``. An object or array in a string field is
kept as its JSON text. The extra fields are in ``PartitionResult.extra_fields``; the commit names the new columns.

Kept records get typed columns (money as DECIMAL(18,2)), ``year, month, day, hour``,
``day_of_week`` (Monday = 0), and the users' discount rule: **10 % of total_amount when total_amount >=
500.00, 5 % when it is >= 100.00, otherwise 0** (rounded half up to the cent); ``final_amount = total_amount -
discount``. ``source_file`` is the lake key of the file a record came from.

Reconciliation, in every result: ``records_in = records_out + records_quarantined`` and ``files_in =
files_ok + files_quarantined``. Quarantined records carry ``file, row`` (1-based position of the record
in its file: the array index, or the non-blank line for JSON lines), ``field``, ``rule``, ``reason`` and
the record's JSON text.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ecommerce_assets.storage import zones
from ecommerce_assets.storage.lake import Lake, LakeObject

if TYPE_CHECKING:
    import duckdb

    from ecommerce_assets.storage.iceberg import IcebergCommit, IcebergTables

PROCESSED = zones.TRANSACTIONS_PROCESSED
QUARANTINE = zones.TRANSACTIONS_QUARANTINE
INTERMEDIATE = zones.TRANSACTIONS_INTERMEDIATE
DATA_FILE = "transactions.parquet"
# the Lambda way's per-file output: staged outside the table until the date's partition run commits the whole day
LAMBDA_PARTS = f"{zones.TRANSACTIONS_INTERMEDIATE}lambda/"
TABLE = "transactions"  # the Iceberg table of the processed zone (``processed/transactions/``)
PARTITION_BY = ("date",)  # identity partition: the landing date

STRING_FIELDS = ("transaction_id", "customer_id", "product_id", "product_name", "category")
FIELDS = (
    "transaction_id", "timestamp", "customer_id", "product_id", "product_name", "category",
    "quantity", "price", "total_amount",
)
RULES: dict[str, str] = {
    "empty_file": "the file is empty",
    "not_json": "the file is not a JSON object, JSON array or JSON lines",
    "unreadable_file": "the file cannot be read (permissions or an I/O error)",
    "not_an_object": "the record is not a JSON object",
    **{f"missing_{f}": f"{f} is missing, null or empty" for f in FIELDS},
    **{f"wrong_type_{f}": f"{f} must be a string" for f in STRING_FIELDS},
    "wrong_type_timestamp": "timestamp must be an ISO-8601 date-time string",
    "wrong_type_quantity": "quantity must be an integer",
    "wrong_type_price": "price must be a number",
    "wrong_type_total_amount": "total_amount must be a number",
    "non_positive_quantity": "quantity <= 0",
    "non_positive_price": "price <= 0",
    "out_of_range_timestamp": "timestamp (UTC) is before 2000-01-01 or after 2100-12-31",
    **{f"control_character_{f}": f"{f} holds a control or bidirectional-override character" for f in STRING_FIELDS},
}
# the sane range of a transaction's timestamp (UTC): [EARLIEST, END)
EARLIEST, END = "2000-01-01", "2101-01-01"
# a character no text field may hold (RE2): C0 controls (tab and line breaks too), DEL, C1, bidi controls
CONTROL_CHARACTERS = r"[\x00-\x1f\x7f-\x{9f}\x{202a}-\x{202e}\x{2066}-\x{2069}]"
DISCOUNT_RULE = "10% of total_amount when total_amount >= 500.00, 5% when >= 100.00, else 0 (rounded half up to the cent)"

# the columns the pipeline derives (a JSON key of one of these names, in any case, cannot become a column)
DERIVED_COLUMNS = (
    "discount", "final_amount", "year", "month", "day", "hour", "day_of_week", "source_file", *PARTITION_BY,
)
# a JSON key that may become a column (its name in lower case): letters, digits and underscores
_EXTRA_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# names the statements use for their own columns (an extra field of one of these names would be ambiguous)
_INTERNAL_NAMES = ("filename", "file", "rule", "json", "jt", "v", "u", "_row")
_INTERNAL_NAME = re.compile(r"[jcvs][0-9]+")
# an extra field's kind -> the JSON types it accepts, its column type, and what the reason says it must be
EXTRA_KINDS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "string": (("VARCHAR", "OBJECT", "ARRAY"), "VARCHAR", "a string (an object or array is kept as its JSON text)"),
    "integer": (("BIGINT", "UBIGINT"), "BIGINT", "an integer (64-bit)"),
    "number": (("BIGINT", "UBIGINT", "DOUBLE"), "DOUBLE", "a number"),
    "boolean": (("BOOLEAN",), "BOOLEAN", "true or false"),
}
UNSUPPORTED_FIELD = "unsupported_field_"  # + the key: a record holding a key that cannot become a column

_MALFORMED_FILE = re.compile(r'in file "(.+?)"')
_OFFSET = r"[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-])(\d{2}):?(\d{2})$"


@dataclass(frozen=True)
class ExtraField:
    """A field of the incoming JSON beyond ``FIELDS``: kept as the nullable column ``column`` of its ``kind``.

    The kind is the table's column type when the table has the column, else the JSON type of the field's values
    in this partition (``_infer_kind``). A value of another JSON type breaks ``wrong_type_<key>``.
    """

    key: str  # the JSON key
    column: str  # the column: the key in lower case (Glue and Athena fold names to lower case)
    kind: str  # a key of EXTRA_KINDS

    def cast(self, val: str, dialect: str = "duckdb") -> str:
        """The typed value of ``val`` (a JSON value; in ``spark``, a VARIANT) as the column's type."""
        if self.kind == "string":
            if dialect == "spark":
                return f"CASE WHEN {_spark_type(val)} = 'VARCHAR' THEN variant_get({val}, '$', 'string') ELSE to_json({val}) END"
            return f"CASE WHEN json_type({val}) = 'VARCHAR' THEN json_extract_string({val}, '$') ELSE CAST({val} AS VARCHAR) END"
        return f"try_cast({val} AS {EXTRA_KINDS[self.kind][1]})"

    def clean(self, val: str, dialect: str = "duckdb") -> str:
        """The condition that a value ``val`` of the field's kind holds no control character (a string's text, or
        an object's JSON text, which may carry a bidirectional override unescaped); other kinds: always."""
        if self.kind != "string":
            return "true"
        return f"NOT {_matches(self.cast(val, dialect), CONTROL_CHARACTERS, dialect)}"

    def ok(self, val: str, typ: str, dialect: str = "duckdb") -> str:
        """The condition that a present, non-null value ``val`` (of JSON type ``typ``) has the field's kind."""
        types = ", ".join(f"'{t}'" for t in EXTRA_KINDS[self.kind][0])
        exact = f" AND {self.cast(val, dialect)} IS NOT NULL" if self.kind == "integer" else ""
        return f"{typ} IN ({types}){exact}"


Extras = tuple[ExtraField, ...]


def rule_reason(rule: str, extras: Extras = ()) -> str:
    """Why a record or file breaks ``rule`` (the fixed rules, and those of the extra fields)."""
    if rule in RULES:
        return RULES[rule]
    if rule.startswith(UNSUPPORTED_FIELD):
        key = rule[len(UNSUPPORTED_FIELD):]
        return (
            f"the record holds the field {key!r}, which cannot become a column: a column name is letters, digits "
            "and underscores, and is not (in any case) a name the pipeline reads or derives, or another field's"
        )
    for f in extras:
        if rule == f"wrong_type_{f.key}":
            return f"{f.key} must be {EXTRA_KINDS[f.kind][2]}: the type of the column {f.column}"
        if rule == f"control_character_{f.key}" and f.kind == "string":
            return f"{f.key} holds a control or bidirectional-override character"
    raise KeyError(rule)


def _matches(text: str, pattern: str, dialect: str) -> str:
    """Whether ``text`` holds a match of the regular expression ``pattern`` (RE2 in DuckDB, Java's in Spark: the
    patterns here mean the same in both; Spark reads the literal raw, ``spark.sql.parser.escapedStringLiterals``)."""
    return f"{'regexp' if dialect == 'spark' else 'regexp_matches'}({text}, '{pattern}')"


def _v(i: int) -> str:
    return f"v[{i + 1}]"


def _json_type(i: int) -> str:
    return f"json_type({_v(i)})"


def _json_text(i: int) -> str:
    return f"json_extract_string({_v(i)}, '$')"


def _json_cast(val: Callable[[int], str], text: Callable[[int], str]) -> Callable[[int], str]:
    """The typed value of a non-text field: TIMESTAMP from the text, BIGINT / DECIMAL(18,2) from the JSON."""

    def cast(i: int) -> str:
        if FIELDS[i] == "timestamp":
            return f"try_cast({text(i)} AS TIMESTAMP)"
        return f"try_cast({val(i)} AS {'BIGINT' if FIELDS[i] == 'quantity' else 'DECIMAL(18,2)'})"

    return cast


def _rule_sql(
    val: Callable[[int], str] = _v, typ: Callable[[int], str] = _json_type, text: Callable[[int], str] = _json_text,
    cast: Callable[[int], str] | None = None, *, check_object: bool = True, utc: str | None = None,
    extras: Extras = (), unsupported: bool = False, dialect: str = "duckdb",
) -> str:
    """The CASE expression naming the first rule a parsed record breaks (NULL when it is good).

    Field ``i`` is the JSON value ``val(i)`` (SQL NULL when absent), of JSON type ``typ(i)``, with the
    text ``text(i)`` when it is a string and the typed value ``cast(i)`` (``_json_cast``) for the
    timestamp and the numbers. ``check_object=False`` leaves out ``not_an_object``, for a reader that
    has already refused any record that is not an object. ``utc``: a column already holding
    ``_utc_sql(cast, text)``, instead of the expression. ``extras``: field ``len(FIELDS) + k`` is extra field
    ``k``, whose present values must have its kind. ``unsupported``: a record (a ``json`` column) holding a key
    of the variable ``_UNSUPPORTED_VARIABLE`` breaks ``unsupported_field_<key>``. ``dialect``: ``duckdb``, or
    ``spark`` for the Spark job (``spark_job_extras``), whose record is ``json`` (its text) and whose unsupported keys
    are the parameter ``:unsupported``.
    """
    cast = cast or _json_cast(val, text)
    whens = ["WHEN jt <> 'OBJECT' THEN 'not_an_object'"] if check_object else []
    for i, f in enumerate(FIELDS):
        # blank: nothing but spaces (DuckDB's trim strips the Unicode space separators, Zs)
        blank = _matches(text(i), r"^\p{Zs}*$", dialect) if dialect == "spark" else f"trim({text(i)}) = ''"
        whens.append(
            f"WHEN {val(i)} IS NULL OR {typ(i)} = 'NULL' "
            f"OR ({typ(i)} = 'VARCHAR' AND {blank}) "
            f"THEN 'missing_{f}'"
        )
    for i, f in enumerate(FIELDS):
        t = typ(i)
        if f in STRING_FIELDS:
            ok = f"{t} = 'VARCHAR'"
        elif f == "timestamp":
            ok = f"{t} = 'VARCHAR' AND {cast(i)} IS NOT NULL"
        elif f == "quantity":
            ok = f"{t} IN ('BIGINT', 'UBIGINT')"
        else:
            ok = f"{t} IN ('BIGINT', 'UBIGINT', 'DOUBLE') AND {cast(i)} IS NOT NULL"
        whens.append(f"WHEN NOT ({ok}) THEN 'wrong_type_{f}'")
    whens.append(f"WHEN {cast(FIELDS.index('quantity'))} <= 0 THEN 'non_positive_quantity'")
    whens.append(f"WHEN {cast(FIELDS.index('price'))} <= 0 THEN 'non_positive_price'")
    utc = utc or _utc_sql(cast, text, dialect)
    whens.append(f"WHEN {utc} < TIMESTAMP '{EARLIEST}' OR {utc} >= TIMESTAMP '{END}' THEN 'out_of_range_timestamp'")
    for i, f in enumerate(FIELDS):
        if f in STRING_FIELDS:
            whens.append(f"WHEN {_matches(text(i), CONTROL_CHARACTERS, dialect)} THEN 'control_character_{f}'")
    for k, extra in enumerate(extras):
        i = len(FIELDS) + k
        whens.append(
            f"WHEN {val(i)} IS NOT NULL AND {typ(i)} <> 'NULL' AND NOT ({extra.ok(val(i), typ(i), dialect)}) "
            f"THEN 'wrong_type_{extra.key}'"
        )
        if extra.kind == "string":
            whens.append(
                f"WHEN {val(i)} IS NOT NULL AND {typ(i)} <> 'NULL' AND NOT ({extra.clean(val(i), dialect)}) "
                f"THEN 'control_character_{extra.key}'"
            )
    if unsupported and dialect == "spark":
        held = "array_intersect(json_object_keys(json), :unsupported)"
        whens.append(f"WHEN size({held}) > 0 THEN '{UNSUPPORTED_FIELD}' || element_at(array_sort({held}), 1)")
    elif unsupported:
        held = f"list_intersect(json_keys(json), getvariable('{_UNSUPPORTED_VARIABLE}'))"
        whens.append(f"WHEN len({held}) > 0 THEN '{UNSUPPORTED_FIELD}' || list_sort({held})[1]")
    return "CASE " + " ".join(whens) + " END"


def _utc_sql(cast: Callable[[int], str], text: Callable[[int], str], dialect: str = "duckdb") -> str:
    """The timestamp in UTC: its local value minus the offset it names (none: UTC, the value as it is)."""
    ts, local = text(FIELDS.index("timestamp")), cast(FIELDS.index("timestamp"))
    offset = (
        f"(CASE regexp_extract({ts}, '{_OFFSET}', 3) WHEN '-' THEN -1 ELSE 1 END) * "
        f"(CAST(regexp_extract({ts}, '{_OFFSET}', 4) AS INTEGER) * 60 "
        f"+ CAST(regexp_extract({ts}, '{_OFFSET}', 5) AS INTEGER))"
    )
    minutes = (f"make_dt_interval(0, 0, CAST({offset} AS INT), 0)" if dialect == "spark"
               else f"to_minutes(CAST({offset} AS BIGINT))")
    return (
        f"(CASE WHEN length({ts}) > 19 AND {_matches(ts, _OFFSET, dialect)} "
        f"THEN {local} - {minutes} ELSE {local} END)"
    )


def _typed_sql(
    val: Callable[[int], str] = _v, text: Callable[[int], str] = _json_text, cast: Callable[[int], str] | None = None,
    extras: Extras = (),
) -> str:
    cast = cast or _json_cast(val, text)
    s = lambda f: text(FIELDS.index(f))  # noqa: E731
    cols = [f"{s(f)} AS {f}" for f in STRING_FIELDS]
    cols += [f"{_utc_sql(cast, text)} AS timestamp"]
    cols += [f"{cast(FIELDS.index(f))} AS {f}" for f in ("quantity", "price", "total_amount")]
    cols += [f'{x.cast(val(len(FIELDS) + k))} AS "{x.column}"' for k, x in enumerate(extras)]
    return ", ".join(cols)


_READ_ALL = "read_json_objects(?, format = 'auto', filename = true)"
# the keys of a record that cannot become columns (set per partition, see ``_classify_keys``)
_UNSUPPORTED_VARIABLE = "transactions_unsupported"


def _paths(extras: Extras) -> str:
    return "[" + ", ".join(f"'$.{f}'" for f in (*FIELDS, *(x.key for x in extras))) + "]"


def _checked_rule(extras: Extras, unsupported: bool) -> str:
    return _rule_sql(extras=extras, unsupported=unsupported)


def _checked_sql(source: str, extras: Extras = (), unsupported: bool = False) -> str:
    """Parse + rule + typed columns over ``source`` (a relation with ``filename`` and ``json``)."""
    return (
        f"SELECT filename, {_checked_rule(extras, unsupported)} AS rule, "  # noqa: S608
        "* EXCLUDE (v, jt, json, filename) FROM ("
        f"SELECT filename, json, jt, v, {_typed_sql(extras=extras)} FROM ("
        f"SELECT filename, json, json_type(json) AS jt, json_extract(json, {_paths(extras)}) AS v FROM {source}))"
    )


# characters no text field may hold (RE2 class body): CONTROL_CHARACTERS's, for use inside other classes
_CONTROL_CLASS = CONTROL_CHARACTERS[1:-1]
# characters that may not start a good text: white space (what ``trim`` strips, and more) and controls
_BLANK_CLASS = rf"\s\pZ\x{{180e}}\x{{200b}}\x{{feff}}{_CONTROL_CLASS}"
# a good text of any kind: not blank, no control character (the checked path's rules, as one RE2 match)
_GOOD_TEXT = rf"[^{_BLANK_CLASS}][^{_CONTROL_CLASS}]*"
# a good text that is not JSON text either: its first character starts no JSON value, or it starts like a
# number and goes on with a character no number holds (``4K Monitor``, ``2024-03-05T10:00:00``)
_JSON_START_CLASS = r"{}\[\]\"0-9+\-.tfnNiI/"
_NUMBER_CLASS = r"0-9.eE+\-"
_PLAIN_TEXT = (
    rf"(?:[^{_BLANK_CLASS}{_JSON_START_CLASS}]|[0-9][{_NUMBER_CLASS}]*[^{_BLANK_CLASS}{_NUMBER_CLASS}])"
    rf"[^{_CONTROL_CLASS}]*"
)
# a JSON string text (quotes included) whose text is good and holds no escape
_GOOD_JSON_STRING = rf'"[^{_BLANK_CLASS}"\\][^{_CONTROL_CLASS}"\\]*"'
# raised by the typed read on a text field it cannot type for sure (the caller then reads the fields as JSON)
_AMBIGUOUS = "transactions: a text field holds JSON text; its JSON type is needed"
_TEXT_FIELDS = (*STRING_FIELDS, "timestamp")


def _fast_sql(files: str, *, text_as_json: bool = False, extras: Extras = ()) -> str:
    """The same columns as ``_checked_sql`` from ONE typed ``read_json`` of ``files``, in one streaming pass.

    The numbers are read as JSON values (``j<i>``, SQL NULL when absent), so their JSON type is exact,
    and cast once (``c<i>``, the checked path's casts). The text fields are read as VARCHAR (``v<i>``):
    the reader gives a string's text, and any other value as its JSON text. So a text that is not valid
    JSON was a string; a text that is valid JSON (``"123"``, ``true``, ``{...}``: a wrong type, or a
    string that looks like one) stops the statement with ``_AMBIGUOUS``, and the caller runs it again
    with ``text_as_json``: every text field read as JSON, its type from its JSON text.

    Every record first meets a cheap test that only a good record passes (a regular expression per text
    field, comparisons for the numbers; the same conditions as the rules, stated more strictly); only a
    record that fails it gets the rules (``_rule_sql``, the same expression as the checked path) to name
    its reason. The ``extras`` are read as JSON values and typed by their kind. The reader raises (and the caller falls back to the checked path) on a file that is not
    JSON, a record that is not an object, or a repeated key.
    """
    ts, q, p, total = (FIELDS.index(f) for f in ("timestamp", "quantity", "price", "total_amount"))
    texts = [i for i, f in enumerate(FIELDS) if f in _TEXT_FIELDS]
    strings = [i for i, f in enumerate(FIELDS) if f in STRING_FIELDS]
    c = lambda i: f"c{i}"  # noqa: E731
    if text_as_json:
        val = lambda i: f"j{i}"  # noqa: E731
        typ = lambda i: f"json_type(j{i})"  # noqa: E731
        text = lambda i: f"s{i}" if i in texts else f"json_extract_string(j{i}, '$')"  # noqa: E731
        texts_sql = "".join(f", json_extract_string(j{i}, '$') AS s{i}" for i in texts)
        good_texts = [f"regexp_full_match(j{i}::VARCHAR, '{_GOOD_JSON_STRING}')" for i in strings]
        good_texts.append(f"starts_with(j{ts}::VARCHAR, '\"')")
        ambiguous = ""
    else:
        val = lambda i: f"v{i}" if i in texts else f"j{i}"  # noqa: E731
        typ = lambda i: "'VARCHAR'" if i in texts else f"json_type(j{i})"  # noqa: E731
        text = lambda i: f"v{i}" if i in texts else f"json_extract_string(j{i}, '$')"  # noqa: E731
        texts_sql = ""
        good_texts = [
            f"(regexp_full_match(v{i}, '{_PLAIN_TEXT}') OR "
            f"(regexp_full_match(v{i}, '{_GOOD_TEXT}') AND NOT json_valid(v{i})))"
            for i in strings
        ]
        # four digits and a dash start no JSON value
        good_texts.append(f"(v{ts} GLOB '[0-9][0-9][0-9][0-9]-*' OR NOT json_valid(v{ts}))")
        ambiguous = f"WHEN {' OR '.join(f'json_valid(v{i})' for i in texts)} THEN error('{_AMBIGUOUS}') "
    utc = _utc_sql(c, text)
    good = " AND ".join([
        *good_texts,
        f"u >= TIMESTAMP '{EARLIEST}' AND u < TIMESTAMP '{END}'",
        # an integer's JSON text is its canonical text; a number's starts with a digit or a minus
        f"j{q}::VARCHAR = c{q}::VARCHAR AND c{q} > 0",
        f"j{p}::VARCHAR >= '-' AND j{p}::VARCHAR < ':' AND c{p} > 0",
        f"j{total}::VARCHAR >= '-' AND j{total}::VARCHAR < ':' AND c{total} IS NOT NULL",
        *(f"(j{i} IS NULL OR json_type(j{i}) = 'NULL' OR ({x.ok(f'j{i}', f'json_type(j{i})')} AND {x.clean(f'j{i}')}))"
          for i, x in enumerate(extras, start=len(FIELDS))),
    ])
    rule = _rule_sql(val, typ, text, c, check_object=False, utc="u", extras=extras)
    keys = (*FIELDS, *(x.key for x in extras))
    columns = "{" + ", ".join(f"'{f}': '{'JSON' if text_as_json or f not in _TEXT_FIELDS else 'VARCHAR'}'"
                              for f in keys) + "}"
    parsed = ", ".join(f'"{f}" AS {val(i)}' for i, f in enumerate(keys))
    casts = ", ".join(f"{_json_cast(val, text)(i)} AS c{i}" for i in range(len(FIELDS)) if i not in strings and i != q)
    # the quantity from its JSON text: the same value as the JSON cast for any JSON integer (the only type
    # whose value a rule looks at), and the good test above takes only an integer's canonical text
    casts += f", try_cast(j{q}::VARCHAR AS BIGINT) AS c{q}"
    typed = ", ".join(f"{text(i)} AS {FIELDS[i]}" for i in strings)
    typed_extras = "".join(f', {x.cast(f"j{i}")} AS "{x.column}"' for i, x in enumerate(extras, start=len(FIELDS)))
    return (
        f"SELECT filename, CASE WHEN {good} THEN NULL {ambiguous}ELSE {rule} END AS rule, {typed}, "  # noqa: S608
        f"u AS timestamp, c{q} AS quantity, c{p} AS price, c{total} AS total_amount{typed_extras} FROM ("
        f"SELECT *, {utc} AS u FROM ("
        f"SELECT *{texts_sql}, {casts} FROM ("
        f"SELECT filename, {parsed} FROM read_json({files}, format = 'auto', records = true, "
        f"filename = true, columns = {columns}))))"
    )


# the files are a session variable, not a parameter: a parameter would make the Python client
# materialize the whole result before writing it, the variable lets the write stream
_FILES_VARIABLE = "transactions_files"
_KEY_START_VARIABLE = "transactions_key_start"  # where the lake key starts in a file's URI (1-based)


def _output_sql(source: str, *, every_record: bool = False, key_by_prefix: bool = False, extras: Extras = ()) -> str:
    """The processed columns of the good records of ``source`` (``_checked_sql``/``_fast_sql`` columns).

    ``every_record``: the bad records too, in the same columns, so that one streaming pass writes one
    file: a bad record has no ``transaction_id`` (a good one always has) and its rule in ``category``
    (its other columns mean nothing). ``_fast_write`` keeps that file as the output when it holds no bad
    record, which its Parquet statistics tell.

    ``source_file`` is the lake key of the record's file: looked up in ``files_map``, or, with
    ``key_by_prefix`` (every URI is one prefix + the key), the URI after that prefix (no join). The ``extras``
    columns come last.
    """
    key = f"substr(filename, getvariable('{_KEY_START_VARIABLE}'))" if key_by_prefix else "files_map.file"
    join = "" if key_by_prefix else " LEFT JOIN files_map USING (filename)"
    return f"""
SELECT {"CASE WHEN rule IS NULL THEN transaction_id END AS " if every_record else ""}transaction_id, "timestamp",
       customer_id, product_id, product_name, {"coalesce(rule, category) AS " if every_record else ""}category,
       quantity, price, total_amount, discount, total_amount - discount AS final_amount,
       year("timestamp")::INTEGER AS year, month("timestamp")::INTEGER AS month, day("timestamp")::INTEGER AS day,
       hour("timestamp")::INTEGER AS hour, (isodow("timestamp") - 1)::INTEGER AS day_of_week, source_file{
       "".join(f', "{x.column}"' for x in extras)}
FROM (
  -- (the products are exact in DECIMAL(38,4): in DECIMAL(18,4) an amount of 10^14 or more would overflow)
  SELECT *, round(CASE WHEN total_amount >= 500 THEN total_amount::DECIMAL(38,2) * 0.10
                       WHEN total_amount >= 100 THEN total_amount::DECIMAL(38,2) * 0.05 ELSE 0 END,
                  2)::DECIMAL(18,2) AS discount,
         {key} AS source_file
  FROM {source} AS c{join}{"" if every_record else " WHERE rule IS NULL"}
)
"""  # noqa: S608


@functools.lru_cache(maxsize=64)
def _fast_output(extras: Extras, as_json: bool, by_prefix: bool) -> str:
    """The fast statement (text fields as JSON or not, lake keys by prefix or by join); the typed read is tried
    first."""
    fast = _fast_sql(f"getvariable('{_FILES_VARIABLE}')", text_as_json=as_json, extras=extras)
    return _output_sql(f"({fast})", every_record=True, key_by_prefix=by_prefix, extras=extras)


@dataclass
class PartitionResult:
    """What one partition's transform did; the counts reconcile."""

    date: str
    files_in: int = 0
    files_ok: int = 0
    records_in: int = 0
    records_out: int = 0
    records_quarantined: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)
    bad_files: list[dict[str, str]] = field(default_factory=list)  # {"file", "rule", "problem"}
    output_key: str | None = None  # the plain Parquet output (no Iceberg table given)
    quarantine_keys: list[str] = field(default_factory=list)
    commit: IcebergCommit | None = None  # the Iceberg commit that replaced the partition (an Iceberg table given)
    extra_fields: dict[str, str] = field(default_factory=dict)  # column -> kind of the fields beyond FIELDS
    extras: Extras = ()

    @property
    def files_quarantined(self) -> int:
        return len(self.bad_files)

    @property
    def reconciles(self) -> bool:
        return (
            self.records_in == self.records_out + self.records_quarantined
            and self.files_in == self.files_ok + self.files_quarantined
            and sum(self.by_rule.values()) == self.records_quarantined
        )

    def as_metadata(self) -> dict[str, object]:
        return {
            "files_in": self.files_in, "files_ok": self.files_ok, "files_quarantined": self.files_quarantined,
            "records_in": self.records_in, "records_out": self.records_out,
            "records_quarantined": self.records_quarantined, "quarantined_by_rule": dict(sorted(self.by_rule.items())),
            "bad_files": self.bad_files, "reconciles": self.reconciles, "discount_rule": DISCOUNT_RULE,
            "extra_fields": dict(sorted(self.extra_fields.items())),
        }

    def reason(self, rule: str) -> str:
        return rule_reason(rule, self.extras)


def partition_prefix(zone_prefix: str, date: str) -> str:
    return f"{zone_prefix}date={date}/"


def _write_parquet(con: duckdb.DuckDBPyConnection, sql: str, params: list, uri: str) -> None:
    """Stream the result of ``sql`` (parameters bound) into a Parquet file at ``uri``."""
    con.sql(sql, params=params).write_parquet(uri, compression="zstd", row_group_size=122_880)


def _first_line(exc: Exception) -> str:
    """The first line of an engine error (its next lines quote the file); a message that could not be
    decoded is named by its type."""
    if isinstance(exc, UnicodeDecodeError):
        return "Invalid Input Error: the file is not valid UTF-8 JSON"
    return str(exc).split("\n")[0]


def _find_unparseable(con: duckdb.DuckDBPyConnection, uris: list[str]) -> dict[str, str]:
    """The files among ``uris`` that DuckDB cannot parse as JSON, with the parser's message (bisection)."""
    import duckdb

    try:
        con.execute("SELECT count(*) FROM read_json_objects(?, format = 'auto')", [uris]).fetchone()
        return {}
    except (duckdb.InvalidInputException, duckdb.IOException, UnicodeDecodeError) as exc:
        if len(uris) == 1:
            return {uris[0]: _first_line(exc)}
    mid = len(uris) // 2
    return _find_unparseable(con, uris[:mid]) | _find_unparseable(con, uris[mid:])


def _parse_all(
    con: duckdb.DuckDBPyConnection, uris: list[str], checked_uri: str, extras: Extras = (), unsupported: bool = False
) -> dict[str, str]:
    """Parse every file into ``checked_uri`` (Parquet) in one statement; return the unparseable files.

    A malformed file makes the statement fail: it is taken out (named by the error, else found by
    bisection) and the statement runs again over the rest.
    """
    import duckdb

    bad: dict[str, str] = {}
    todo = list(uris)
    while todo:
        try:
            _write_parquet(con, _checked_sql(_READ_ALL, extras, unsupported), [todo], checked_uri)
            return bad
        except (duckdb.InvalidInputException, duckdb.IOException, UnicodeDecodeError) as exc:  # not JSON, unreadable
            m = _MALFORMED_FILE.search(str(exc))
            named = m.group(1) if m and m.group(1) in todo else None
            found = {named: _first_line(exc)} if named else _find_unparseable(con, todo)
            if not found:
                raise
            bad |= found
            todo = [u for u in todo if u not in found]
    return bad


def _key_start(uris: Sequence[str], keys: Sequence[str]) -> int | None:
    """Where the lake key starts in every file's URI (1-based, in characters, as SQL ``substr`` counts) when
    every URI is one prefix followed by its key, so the key is a substring of the URI (which costs less
    than a join); else None."""
    if not uris or not uris[0].endswith(keys[0]):
        return None
    prefix = uris[0][: len(uris[0]) - len(keys[0])]
    return len(prefix) + 1 if all(u == prefix + k for u, k in zip(uris, keys, strict=True)) else None


def _fast_write(
    lake: Lake, con: duckdb.DuckDBPyConnection, uris: list[str], staging: str, keys: list[str] | None = None,
    extras: Extras = (),
) -> tuple[str, list[tuple[str, str | None, int]]] | None:
    """The fast path: ONE typed ``read_json`` statement over every file (``_fast_sql``) streams every
    record into one Parquet file in ``staging`` (a lake folder), the bad ones marked (``_output_sql``).

    With no bad record (the file's statistics: no ``transaction_id`` is NULL) that file is the output;
    otherwise its good records are copied to the output file and its bad ones counted (the JSON is not
    read again). Returns the key of the staged output file and the counts ``(filename, rule or None, n)``
    the checked path would give; None when the statement raises (a file that is not JSON, a record that
    is not an object, a repeated key...): the caller then runs the checked path, which names the problem.
    ``keys``: the lake keys of ``uris`` (default: looked up in ``files_map``).
    """
    import duckdb

    con.execute(f"SET VARIABLE {_FILES_VARIABLE} = ?", [uris])
    if keys is None:
        key_of = dict(con.execute("SELECT filename, file FROM files_map").fetchall())
        keys = [key_of[u] for u in uris]
    key_start = _key_start(uris, keys)
    if key_start is not None:
        con.execute(f"SET VARIABLE {_KEY_START_VARIABLE} = ?", [key_start])
    by_prefix = key_start is not None
    every = f"{staging}records.parquet"
    for sql in (_fast_output(extras, False, by_prefix), _fast_output(extras, True, by_prefix)):
        try:
            con.execute(
                f"COPY ({sql}) TO ? (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)",  # noqa: S608
                [lake.output_uri(every)],
            )
            break
        except (duckdb.InvalidInputException, duckdb.ConversionException, duckdb.IOException,
                UnicodeDecodeError) as exc:
            # (the engine's message quoting bytes that are not UTF-8 reaches Python as a UnicodeDecodeError)
            lake.delete_prefix(staging)
            if _AMBIGUOUS not in str(exc):  # the reader refused a file: the fields as JSON would not help
                return None
    rows, n_bad, unknown = con.execute(
        "SELECT coalesce(sum(row_group_num_rows), 0), coalesce(sum(stats_null_count), 0), "
        "count(*) FILTER (WHERE stats_null_count IS NULL) FROM parquet_metadata(?) "
        "WHERE path_in_schema = 'transaction_id'",
        [lake.uri(every)],
    ).fetchone()
    if unknown:  # a row group without statistics: count the bad records instead
        n_bad = con.execute("SELECT count(*) FROM read_parquet(?) WHERE transaction_id IS NULL",
                            [lake.uri(every)]).fetchone()[0]
    out, counts = every, list[tuple[str, str | None, int]]()
    if n_bad:
        out = f"{staging}{DATA_FILE}"
        con.execute(
            "COPY (SELECT * FROM read_parquet($1) WHERE transaction_id IS NOT NULL) "
            "TO $2 (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)",
            [lake.uri(every), lake.output_uri(out)],
        )
        uri_of = dict(zip(keys, uris, strict=True))  # lake key -> uri
        counts = [
            (uri_of[file], rule, int(n))
            for file, rule, n in con.execute(
                "SELECT source_file, category, count(*) FROM read_parquet(?) WHERE transaction_id IS NULL GROUP BY ALL",
                [lake.uri(every)],
            ).fetchall()
        ]
    # the good records are only counted as a whole (their file does not matter to the caller)
    if rows > n_bad:
        counts.insert(0, (uris[0], None, int(rows - n_bad)))
    return out, counts


def _quarantined_records(
    con: duckdb.DuckDBPyConnection, uri: str, label: str, extras: Extras = (), unsupported: bool = False
) -> list[tuple]:
    """The bad records of one file with their 1-based position (the file is read in order, one thread)."""
    con.execute("SET preserve_insertion_order = true")
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    con.execute("SET threads = 1")
    try:
        source = (
            "(SELECT ? AS filename, json, row_number() OVER () AS _row "
            "FROM read_json_objects(?, format = 'auto'))"
        )
        rows = con.execute(
            f"SELECT c._row, c.rule, c.json FROM (SELECT _row, json, {_checked_rule(extras, unsupported)} AS rule "  # noqa: S608
            f"FROM (SELECT _row, json, json_type(json) AS jt, json_extract(json, {_paths(extras)}) AS v FROM {source})) c "
            "WHERE c.rule IS NOT NULL ORDER BY c._row",
            [label, uri],
        ).fetchall()
    finally:
        con.execute("SET threads = ?", [int(threads)])
        con.execute("SET preserve_insertion_order = false")
    return [(label, int(r), _rule_field(rule), rule, rule_reason(rule, extras), text) for r, rule, text in rows]


def _rule_field(rule: str) -> str:
    for prefix in (UNSUPPORTED_FIELD, "missing_", "wrong_type_", "non_positive_", "out_of_range_", "control_character_"):
        if rule.startswith(prefix):
            return rule[len(prefix):]
    return ""


_SCAN_KEYS = "SELECT DISTINCT unnest(json_keys(json)) FROM read_json_objects(?, format = 'auto')"


def _scan_keys(con: duckdb.DuckDBPyConnection, uris: list[str]) -> tuple[set[str], dict[str, str]]:
    """Every top-level key the records of ``uris`` hold (one pass over the JSON), and the files that are not
    JSON with the parser's message (taken out one by one as the statement names them, else by bisection)."""
    import duckdb

    bad: dict[str, str] = {}
    todo = list(uris)
    while todo:
        try:
            return {k for (k,) in con.execute(_SCAN_KEYS, [todo]).fetchall()}, bad
        except (duckdb.InvalidInputException, duckdb.IOException, UnicodeDecodeError) as exc:
            m = _MALFORMED_FILE.search(str(exc))
            named = m.group(1) if m and m.group(1) in todo else None
            found = {named: _first_line(exc)} if named else _find_unparseable(con, todo)
            if not found:
                raise
            bad |= found
            todo = [u for u in todo if u not in found]
    return set(), bad


def _line_feed_copies(
    lake: Lake, con: duckdb.DuckDBPyConnection, uris: list[str], by_uri: dict[str, str], folder: Path
) -> dict[str, str]:
    """For each file the reader refused that holds a CR: a copy in ``folder`` with every CR a LF (outside a string
    a CR is white space, and inside one it is not valid JSON either way), kept when the reader reads it (JSON
    lines separated by a lone CR, with a record that is not an object); ``{uri: copy}``."""
    import duckdb

    copies: dict[str, str] = {}
    for i, uri in enumerate(uris):
        try:
            source = lake.open_local(by_uri[uri])
            with source.open("rb") as fh:
                if not any(b"\r" in chunk for chunk in iter(lambda: fh.read(1 << 20), b"")):
                    continue
                fh.seek(0)
                copy = folder / f"{i}-{source.name}"
                with copy.open("wb") as out:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        out.write(chunk.replace(b"\r", b"\n"))
            con.execute("SELECT count(*) FROM read_json_objects(?, format = 'auto')", [str(copy)]).fetchone()
        except (OSError, duckdb.InvalidInputException, duckdb.IOException, UnicodeDecodeError):
            continue  # still not JSON: the original's problem stands
        copies[uri] = str(copy)
    return copies


def _classify_keys(keys: set[str]) -> tuple[list[str], list[str]]:
    """The keys beyond ``FIELDS`` that may become columns, and those that cannot (``unsupported_field_<key>``).

    A key becomes a column named in lower case. It cannot when its name holds other characters than letters,
    digits and underscores, when it names (in any case) a field the pipeline reads, a column it derives or one
    its statements use (``filename``, ``file``, ``rule``, ``json``, ``v1``...), or when another key has the same
    lower-case name (the one already in lower case, if any, is kept).
    """
    taken = {c.lower() for c in (*FIELDS, *DERIVED_COLUMNS, *_INTERNAL_NAMES)}
    by_column: dict[str, list[str]] = {}
    unsupported = []
    for key in sorted(keys - set(FIELDS)):
        if _EXTRA_KEY.fullmatch(key) and key.lower() not in taken and not _INTERNAL_NAME.fullmatch(key.lower()):
            by_column.setdefault(key.lower(), []).append(key)
        else:
            unsupported.append(key)
    candidates = []
    for column, named in sorted(by_column.items()):
        keep = column if column in named else (named[0] if len(named) == 1 else None)
        candidates += [k for k in named if k == keep]
        unsupported += [k for k in named if k != keep]
    return candidates, sorted(unsupported)


# the JSON types of values -> the kind of an extra field (the kind of most values; ties go to the first here)
_KIND_OF_TYPE = {"VARCHAR": "string", "OBJECT": "string", "ARRAY": "string", "DOUBLE": "number",
                 "BIGINT": "integer", "UBIGINT": "integer", "BOOLEAN": "boolean"}


def _infer_kinds(con: duckdb.DuckDBPyConnection, uris: list[str], keys: list[str]) -> dict[str, str]:
    """The kind of each new key from the JSON types of its values in ``uris`` (absent: only nulls).

    Integers and other numbers together are numbers; otherwise the kind of most values wins (a tie goes to
    string, then number, integer, boolean) and the records of another kind break ``wrong_type_<key>``. An
    integer beyond 64 bits makes the field a number.
    """
    con.execute("SET VARIABLE transactions_new_keys = ?", [keys])
    counts: dict[str, dict[str, int]] = {}
    for key, typ, n in con.execute(
        # an integer beyond 64 bits counts as a number
        "SELECT k, CASE WHEN t = 'UBIGINT' AND try_cast(v AS BIGINT) IS NULL THEN 'DOUBLE' ELSE t END, count(*) "
        "FROM (SELECT k, v, json_type(v) AS t FROM (SELECT k, json_extract(json, '$.' || k) AS v FROM ("
        "SELECT json, unnest(getvariable('transactions_new_keys')) AS k FROM read_json_objects(?, format = 'auto') "
        "WHERE json_type(json) = 'OBJECT'))) WHERE t IS NOT NULL AND t <> 'NULL' GROUP BY ALL",
        [uris],
    ).fetchall():
        kind = _KIND_OF_TYPE.get(typ)
        if kind is not None:
            counts.setdefault(key, {})[kind] = counts.get(key, {}).get(kind, 0) + n
    order = list(EXTRA_KINDS)
    kinds = {}
    for key, by_kind in counts.items():
        if set(by_kind) <= {"integer", "number"} and "number" in by_kind:
            kinds[key] = "number"
        else:
            kinds[key] = min(by_kind, key=lambda k: (-by_kind[k], order.index(k)))
    return kinds


_ICEBERG_KIND = {"string": "string", "long": "integer", "int": "integer", "double": "number", "float": "number",
                 "boolean": "boolean"}


def table_kinds(tables: IcebergTables | None) -> dict[str, str]:
    """The kind of each extra column the table ``transactions`` has (none without the table)."""
    if tables is None or not tables.exists(TABLE):
        return {}
    base = {*FIELDS, *DERIVED_COLUMNS}
    kinds = {}
    for f in tables.load(TABLE).schema().fields:
        if f.name not in base:
            typ = str(f.field_type)
            kinds[f.name] = _ICEBERG_KIND.get(typ, "number" if typ.startswith("decimal") else "string")
    return kinds


def _extra_fields(
    con: duckdb.DuckDBPyConnection, uris: list[str], keys: set[str], have: dict[str, str]
) -> tuple[Extras, list[str]]:
    """The extra fields of a partition (the table's kind for a column it has, else inferred) and the keys that
    cannot become columns."""
    candidates, unsupported = _classify_keys(keys)
    new = [k for k in candidates if k.lower() not in have]
    inferred = _infer_kinds(con, uris, new) if new else {}
    extras = tuple(
        ExtraField(k, k.lower(), have.get(k.lower()) or inferred[k])
        for k in candidates if k.lower() in have or k in inferred
    )
    return extras, unsupported


def transform_partition(
    lake: Lake,
    date: str,
    objects: Sequence[LakeObject],
    *,
    part: str | None = None,
    tables: IcebergTables | None = None,
    properties: dict[str, str] | None = None,
) -> PartitionResult:
    """Turn the raw files of one date partition into typed rows and quarantine, exactly.

    With ``tables`` the good records replace the partition ``date`` of the Iceberg table ``transactions`` in one
    commit (created on first use; ``properties`` go into the snapshot summary; ``result.commit`` says what the
    commit did). The partition is emptied when no record is good. Any plain Parquet left in
    ``processed/transactions/date=<date>/`` (the Lambda's parts, the layout before Iceberg) is removed after the
    commit. Without ``tables`` the good records go to ``processed/transactions/date=<date>/transactions.parquet``.

    The partition's rows and its quarantine are replaced (never appended): re-running a partition
    gives the same rows. Returns the reconciled counts.

    With ``part`` (the one-file-per-call Lambda way) nothing is deleted: the output is
    ``intermediate/transactions/lambda/date=<date>/part-<part>.parquet`` (outside the table, which only a whole
    day's commit changes) and the quarantine ``records-<part>.parquet``; the next partition run of the sensor path
    commits the whole day and removes them.
    """
    result = PartitionResult(date=date, files_in=len(objects))
    out_prefix = partition_prefix(PROCESSED if part is None else LAMBDA_PARTS, date)
    q_prefix = partition_prefix(QUARANTINE, date)
    con = lake.engine()
    tmp: Path | None = None
    plan: _Plan | None = None
    try:
        staging = f"{INTERMEDIATE}{uuid.uuid4().hex}/"
        plan = _plan_partition(lake, con, objects, tables, result)
        by_uri, uris, unparseable, extras, unsupported = (
            plan.by_uri, plan.uris, plan.unparseable, plan.extras, plan.unsupported)
        readable = [u for u in uris if u not in unparseable]
        if unsupported:
            con.execute(f"SET VARIABLE {_UNSUPPORTED_VARIABLE} = ?", [unsupported])
        # the fast path: one statement reads every file and writes the output + the bad records' counts (a key that
        # cannot become a column, or a file that is not JSON, needs the checked path, which sees every key)
        fast = (
            _fast_write(lake, con, uris, staging, [by_uri[u] for u in uris], extras)
            if uris and not unparseable and not unsupported else None
        )
        if fast is None and readable:  # the checked path, through an intermediate file
            tmp = Path(tempfile.mkdtemp(prefix="transactions-"))
        checked = str(tmp / "checked.parquet") if tmp else ""
        if fast is None and readable:
            unparseable |= _parse_all(con, readable, checked, extras, bool(unsupported))
        _name_bad_files(result, plan)
        good_uris = [u for u in uris if u not in unparseable]

        if fast is not None:
            counts = fast[1]
        elif good_uris:
            counts = con.execute("SELECT filename, rule, count(*) FROM read_parquet(?) GROUP BY ALL", [checked]).fetchall()
        else:
            counts = []
        per_file_bad: dict[str, int] = {}
        for filename, rule, n in counts:
            result.records_in += n
            if rule is None:
                result.records_out += n
            else:
                result.records_quarantined += n
                result.by_rule[rule] = result.by_rule.get(rule, 0) + n
                per_file_bad[filename] = per_file_bad.get(filename, 0) + n
        result.files_ok = len(good_uris)

        staged: str | None = None
        if good_uris:
            if fast is None:
                staged = f"{staging}{DATA_FILE}"
                _write_parquet(con, _output_sql("read_parquet(?)", extras=extras), [checked], lake.output_uri(staged))
            else:
                staged = fast[0]
        if tables is not None:  # one commit replaces the partition; then the files around it are replaced
            result.commit = _commit_partition(tables, con, lake, date, staged, properties or {})
        # the partition is replaced exactly: old output and quarantine go, the new ones come in
        if part is None:
            lake.delete_prefix(out_prefix)
            lake.delete_prefix(partition_prefix(LAMBDA_PARTS, date))
            lake.delete_prefix(q_prefix)
        if staged is not None and tables is None:
            result.output_key = out_prefix + (DATA_FILE if part is None else f"part-{part}.parquet")
            lake.copy(staged, result.output_key)
        lake.delete_prefix(staging)

        records: list[tuple] = []
        for filename in sorted(per_file_bad):
            rows = _quarantined_records(con, filename, by_uri.get(filename, filename), extras, bool(unsupported))
            if len(rows) != per_file_bad[filename]:
                raise RuntimeError(f"{filename}: {per_file_bad[filename]} bad records, re-read found {len(rows)}")
            records.extend(rows)
        if records:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE q (file VARCHAR, row BIGINT, field VARCHAR, rule VARCHAR, "
                "reason VARCHAR, record VARCHAR)"
            )
            con.executemany("INSERT INTO q VALUES (?, ?, ?, ?, ?, ?)", records)
            _write_quarantine(lake, con, q_prefix + ("records.parquet" if part is None else f"records-{part}.parquet"),
                              result)
        _quarantine_files(lake, q_prefix, result)
    finally:
        con.close()
        for folder in (tmp, plan.copies_dir if plan else None):
            if folder:
                shutil.rmtree(folder, ignore_errors=True)
    if not result.reconciles:
        raise RuntimeError(f"transactions {date}: counts do not reconcile: {result.as_metadata()}")
    return result


@dataclass
class _Plan:
    """What the read of a partition needs to know first: the files (``by_uri``: uri -> lake key; a file of JSON lines
    separated by a lone CR is read through a copy in ``copies_dir``), those that are not JSON, the extra fields and the
    keys that cannot become columns."""

    by_uri: dict[str, str]
    uris: list[str]
    unparseable: dict[str, str]
    extras: Extras
    unsupported: list[str]
    copies_dir: Path | None


def _plan_partition(
    lake: Lake, con: duckdb.DuckDBPyConnection, objects: Sequence[LakeObject], tables: IcebergTables | None,
    result: PartitionResult,
) -> _Plan:
    """One pass over the partition's JSON lists the keys its records hold (a field beyond FIELDS becomes a column:
    schema evolution) and finds the files that are not JSON; an empty file is a bad file of ``result`` at once.
    Registers ``files_map`` (uri, lake key) in ``con``."""
    import pyarrow as pa

    by_uri = {lake.uri(o.key): o.key for o in objects}
    uris = []
    for o in objects:
        if o.size == 0:
            result.bad_files.append({"file": o.key, "rule": "empty_file", "problem": rule_reason("empty_file")})
        else:
            uris.append(lake.uri(o.key))
    con.register("files_map", pa.table({"filename": list(by_uri), "file": list(by_uri.values())}))
    keys, unparseable = _scan_keys(con, uris) if uris else (set(), {})
    copies_dir = None
    if unparseable:  # a file of JSON lines separated by a lone CR: read through a copy with LFs
        copies_dir = Path(tempfile.mkdtemp(prefix="transactions-lf-"))
        copies = _line_feed_copies(lake, con, [u for u in unparseable if by_uri.get(u)], by_uri, copies_dir)
        if copies:
            for old, new in copies.items():
                by_uri[new] = by_uri.pop(old)
                del unparseable[old]
            uris = [copies.get(u, u) for u in uris]
            con.register("files_map", pa.table({"filename": list(by_uri), "file": list(by_uri.values())}))
            more_keys, still = _scan_keys(con, list(copies.values()))
            keys, unparseable = keys | more_keys, unparseable | still
    readable = [u for u in uris if u not in unparseable]
    extras, unsupported = _extra_fields(con, readable, keys, table_kinds(tables)) if readable else ((), [])
    result.extras, result.extra_fields = extras, {x.column: x.kind for x in extras}
    return _Plan(by_uri, uris, unparseable, extras, unsupported, copies_dir)


def _name_bad_files(result: PartitionResult, plan: _Plan) -> None:
    """The files that are not JSON (or cannot be read) become bad files of ``result``, with the parser's message."""
    for uri, problem in sorted(plan.unparseable.items()):
        rule = "unreadable_file" if problem.startswith("IO Error") else "not_json"
        result.bad_files.append({"file": plan.by_uri[uri], "rule": rule, "problem": problem})


def _write_quarantine(lake: Lake, con: duckdb.DuckDBPyConnection, key: str, result: PartitionResult) -> None:
    """Write the quarantined records (the temp table ``q``: file, row, field, rule, reason, record) to ``key``."""
    with lake.writing(key) as uri:
        con.execute("COPY (SELECT * FROM q ORDER BY file, row) TO ? (FORMAT parquet)", [uri])
    result.quarantine_keys.append(key)


def _quarantine_files(lake: Lake, q_prefix: str, result: PartitionResult) -> None:
    """Copy each bad file of ``result`` whole to the quarantine, with its reason beside it."""
    for bad in result.bad_files:
        name = bad["file"].rsplit("/", 1)[-1]
        dst = f"{q_prefix}files/{name}"
        try:
            lake.copy(bad["file"], dst)
            copied = True
        except OSError:  # an unreadable file cannot be copied: its reason is written all the same
            copied = False
        reason = {**bad, "reason": rule_reason(bad["rule"]), "copied": copied}
        lake.write_bytes(dst + ".reason.json", json.dumps(reason, indent=2).encode())
        result.quarantine_keys.append(dst)


def _commit_partition(
    tables: IcebergTables, con: duckdb.DuckDBPyConnection, lake: Lake, date: str, staged: str | None,
    properties: dict[str, str],
) -> IcebergCommit | None:
    """Replace the partition ``date`` of the Iceberg table with the staged good records, in one commit.

    The rows get the partition column ``date``. With nothing staged (no readable file) the partition is emptied,
    or nothing is done while the table does not exist yet.
    """
    if staged is None:
        if not tables.exists(TABLE):
            return None
        rows = tables.load(TABLE).schema().as_arrow().empty_table()
    else:
        rows = con.execute(
            "SELECT *, CAST(? AS DATE) AS date FROM read_parquet(?)", [date, lake.uri(staged)]
        ).to_arrow_table()
        tables.ensure_table(TABLE, rows.schema, PARTITION_BY)
    return tables.write(
        TABLE, rows, [{"date": dt.date.fromisoformat(date)}],
        properties={"ecommerce.partition": date, **properties},
    )


# --- analytics: each a SELECT over the processed rows (bound as ``tx``) --------------------------------
ANALYTICS: dict[str, tuple[str, str]] = {
    "sales_by_category": (
        "Revenue, units and orders per product category.",
        """SELECT category, count(*) AS transactions, sum(quantity) AS units, sum(total_amount) AS gross_sales,
                  sum(discount) AS discounts, sum(final_amount) AS net_sales, round(avg(final_amount), 2) AS avg_order_value
           FROM tx GROUP BY category ORDER BY net_sales DESC, category""",
    ),
    "hourly_pattern": (
        "Transactions and sales per hour of day (UTC), over all days.",
        """SELECT hour, count(*) AS transactions, sum(final_amount) AS net_sales,
                  round(avg(final_amount), 2) AS avg_order_value
           FROM tx GROUP BY hour ORDER BY hour""",
    ),
    "top_customers": (
        "The 20 customers with the highest lifetime value, with their first and last purchase.",
        """SELECT customer_id, sum(final_amount) AS lifetime_value, count(*) AS transactions,
                  min("timestamp") AS first_purchase, max("timestamp") AS last_purchase
           FROM tx GROUP BY customer_id ORDER BY lifetime_value DESC, customer_id LIMIT 20""",
    ),
    "product_performance": (
        "Units, revenue and buyers per product (its name and category as its latest transaction gives them).",
        """SELECT product_id, arg_max(product_name, ("timestamp", transaction_id)) AS product_name,
                  arg_max(category, ("timestamp", transaction_id)) AS category,
                  count(*) AS transactions, sum(quantity) AS units, sum(final_amount) AS net_sales,
                  count(DISTINCT customer_id) AS customers, round(avg(price), 2) AS avg_price
           FROM tx GROUP BY product_id ORDER BY net_sales DESC, product_id""",
    ),
    "daily_trend": (
        "Transactions and sales per calendar day (of the transaction timestamp).",
        """SELECT CAST("timestamp" AS DATE) AS day, count(*) AS transactions, sum(quantity) AS units,
                  sum(final_amount) AS net_sales, count(DISTINCT customer_id) AS customers
           FROM tx GROUP BY 1 ORDER BY 1""",
    ),
    "day_of_week_pattern": (
        "Transactions and sales per day of week (Monday = 0).",
        """SELECT day_of_week, dayname(min("timestamp")) AS day_name, count(*) AS transactions,
                  sum(final_amount) AS net_sales, round(avg(final_amount), 2) AS avg_order_value
           FROM tx GROUP BY day_of_week ORDER BY day_of_week""",
    ),
    "large_transactions": (
        "Every transaction over 1,000 (total_amount > 1000.00).",
        """SELECT transaction_id, "timestamp", customer_id, product_id, product_name, category, quantity,
                  price, total_amount, discount, final_amount
           FROM tx WHERE total_amount > 1000 ORDER BY total_amount DESC, transaction_id""",
    ),
}


def processed_glob(lake: Lake) -> str:
    """The plain Parquet output of ``transform_partition`` without an Iceberg table (every date)."""
    return lake.uri(f"{PROCESSED}*/*.parquet")


def bind_iceberg(con: duckdb.DuckDBPyConnection, tables: IcebergTables) -> str:
    """Bind ``tx`` in ``con`` to the Iceberg table at its current snapshot; return that snapshot's metadata file.

    ``con`` is the lake's engine (for an S3 lake it reads S3 already).
    """
    from ecommerce_assets.storage.iceberg import create_scan_view

    location = tables.metadata_location(TABLE)
    create_scan_view(con, "tx", location)
    return location


def write_analytics(con: duckdb.DuckDBPyConnection, name: str, out_uri: str) -> int:
    """Compute analytic ``name`` over ``tx`` (``bind_iceberg``) into ``out_uri``; return its row count."""
    con.sql(ANALYTICS[name][1]).write_parquet(out_uri, compression="zstd")
    return int(con.execute("SELECT count(*) FROM read_parquet(?)", [out_uri]).fetchone()[0])


def build_analytics(con: duckdb.DuckDBPyConnection, processed_uri: str, name: str, out_uri: str) -> int:
    """Compute analytic ``name`` over plain processed Parquet (``processed_glob``) into ``out_uri``."""
    con.read_parquet(processed_uri, hive_partitioning=True).to_view("tx", replace=True)
    return write_analytics(con, name, out_uri)


# --- the Spark engine (``ECOMMERCE_ENGINE=spark``): the same rules, rendered in Spark SQL ------------------------
# The job (``ecommerce_assets/spark_jobs/transactions_process.py``) splits the files into records and parses each into a
# VARIANT (``tx_records``: filename = the lake key, _row, json = the record's text, rec); the statements below type
# them, name the first rule each breaks (``_rule_sql``, the DuckDB path's expression, in the Spark dialect) and derive
# the columns. The plan (which files are JSON, which keys become columns, of what kind) is the DuckDB path's
# (``_scan_keys``, ``_extra_fields``), made once by the asset before the job starts.

# a date-time text DuckDB's TIMESTAMP cast takes: a date (``-`` or ``/``), an optional time, an optional UTC offset
_SPARK_TIMESTAMP = (
    r"^\s*([0-9]{4})[-/]([0-9]{1,2})[-/]([0-9]{1,2})(?:[T ]([0-9]{1,2}):([0-9]{1,2})(?::([0-9]{1,2})(\.[0-9]+)?)?)?"
    r"\s*(?:Z|UTC|[+-][0-9]{2}(?::?[0-9]{2})?)?\s*$"
)
# DuckDB's special date-time texts (each out of the sane range: the record breaks out_of_range_timestamp)
_SPECIAL_TIMESTAMPS = {"epoch": "1970-01-01 00:00:00", "infinity": "9999-12-31 23:59:59.999999",
                       "-infinity": "0001-01-01 00:00:00"}


def _spark_type(val: str, raw: str = "NULL") -> str:
    """DuckDB's ``json_type`` name of a VARIANT value (NULL when absent): an integer beyond 64 bits signed is
    ``UBIGINT`` up to 2^64 - 1 and ``DOUBLE`` beyond, a number with a point or an exponent ``DOUBLE``. Spark's parser
    keeps ``3.0`` as the whole number 3 (a ``DECIMAL(1,0)``): ``raw``, the value's JSON text, tells such a number
    from an integer."""
    s = f"schema_of_variant({val})"
    return (
        f"CASE WHEN {val} IS NULL THEN NULL WHEN {s} IN ('BIGINT', 'INT', 'SMALLINT', 'TINYINT') THEN 'BIGINT' "
        f"WHEN {s} = 'STRING' THEN 'VARCHAR' WHEN {s} = 'VOID' THEN 'NULL' WHEN {s} = 'BOOLEAN' THEN 'BOOLEAN' "
        f"WHEN {s} LIKE 'OBJECT%' THEN 'OBJECT' WHEN {s} LIKE 'ARRAY%' THEN 'ARRAY' "
        f"WHEN {s} LIKE 'DECIMAL(%,0)' AND NOT coalesce(regexp({raw}, '[.eE]'), false) "
        f"AND try_cast({val} AS DECIMAL(38,0)) BETWEEN 0 AND 18446744073709551615 THEN 'UBIGINT' ELSE 'DOUBLE' END"
    )


def _spark_timestamp(text: str) -> str:
    """DuckDB's ``try_cast(text AS TIMESTAMP)`` in Spark: the forms DuckDB takes (``_SPARK_TIMESTAMP``; an offset is
    read and left to ``_utc_sql``), its special texts, NULL for anything else or an impossible date."""
    group = lambda k: f"regexp_extract({text}, '{_SPARK_TIMESTAMP}', {k})"  # noqa: E731
    number = lambda k: f"CAST(coalesce(nullif({group(k)}, ''), '0') AS INT)"  # noqa: E731
    seconds = f"CAST(concat(coalesce(nullif({group(6)}, ''), '0'), substr({group(7)}, 1, 7)) AS DECIMAL(16, 6))"
    special = " ".join(f"WHEN '{k}' THEN TIMESTAMP '{v}'" for k, v in _SPECIAL_TIMESTAMPS.items())
    return (
        f"CASE lower(trim({text})) {special} ELSE CASE WHEN {_matches(text, _SPARK_TIMESTAMP, 'spark')} "
        f"AND {number(6)} < 60 THEN make_timestamp_ntz({number(1)}, {number(2)}, {number(3)}, {number(4)}, "
        f"{number(5)}, {seconds}) END END"
    )


def _spark_money(val: str, typ: str) -> str:
    """DuckDB's ``try_cast(json AS DECIMAL(18,2))`` in Spark: an integer exactly; any other number as DuckDB casts a
    DOUBLE (x 100 in floating point, rounded half away from zero); NULL when it does not fit."""
    return (
        f"CASE WHEN {typ} IN ('BIGINT', 'UBIGINT') THEN try_cast({val} AS DECIMAL(18, 2)) "
        f"ELSE try_cast(CAST(round(try_cast({val} AS DOUBLE) * 100D) AS DECIMAL(38, 0)) / 100 AS DECIMAL(18, 2)) END"
    )


def spark_checked_sql(extras: Extras = (), unsupported: bool = False) -> str:
    """Every record of ``tx_records`` with its rule (NULL: good) and typed columns, in Spark SQL (parameter
    ``:unsupported``, the keys that cannot become columns, when ``unsupported``)."""
    keys = (*FIELDS, *(x.key for x in extras))
    ts, q = FIELDS.index("timestamp"), FIELDS.index("quantity")
    val, typ, text, cast = (lambda i: f"v{i}"), (lambda i: f"t{i}"), (lambda i: f"s{i}"), (lambda i: f"c{i}")
    raw = lambda k: f"get_json_object(json, '$.{k}')"  # noqa: E731
    casts = {ts: _spark_timestamp(text(ts)), q: f"try_cast(v{q} AS BIGINT)",
             **{FIELDS.index(f): _spark_money(val(FIELDS.index(f)), typ(FIELDS.index(f))) for f in ("price", "total_amount")}}
    rule = _rule_sql(val, typ, text, cast, utc="u", extras=extras, unsupported=unsupported, dialect="spark")
    typed = [f"s{i} AS {f}" if f in STRING_FIELDS else ("u AS `timestamp`" if i == ts else f"c{i} AS {f}")
             for i, f in enumerate(FIELDS)]
    typed += [f"{x.cast(f'v{i}', 'spark')} AS `{x.column}`" for i, x in enumerate(extras, start=len(FIELDS))]
    types = ", ".join(f"{_spark_type(val(i), raw(k))} AS t{i}" for i, k in enumerate(keys))
    texts = ", ".join(f"variant_get(v{i}, '$', 'string') AS s{i}" for i in range(len(FIELDS)))
    values = ", ".join(f"variant_get(rec, '$.{k}') AS v{i}" for i, k in enumerate(keys))
    return (
        f"SELECT filename, _row, json, {rule} AS rule, {', '.join(typed)} FROM ("  # noqa: S608
        f"SELECT *, {_utc_sql(cast, text, 'spark')} AS u FROM ("
        f"SELECT *, {', '.join(f'{sql} AS c{i}' for i, sql in casts.items())} FROM ("
        f"SELECT *, {types}, {texts} FROM ("
        f"SELECT filename, _row, json, {_spark_type('rec')} AS jt, {values} FROM tx_records))))"
    )


def spark_output_sql(extras: Extras = ()) -> str:
    """The processed columns of the good records of ``tx_checked`` (``spark_checked_sql``), as the DuckDB path's
    ``_output_sql`` gives them, with the partition column ``date`` (parameter ``:date``)."""
    money = "CAST(total_amount AS DECIMAL(38, 2))"
    columns = "".join(f", `{x.column}`" for x in extras)
    return f"""
SELECT transaction_id, `timestamp`, customer_id, product_id, product_name, category, quantity, price, total_amount,
       discount, CAST(total_amount - discount AS DECIMAL(18, 2)) AS final_amount,
       year(`timestamp`) AS year, month(`timestamp`) AS month, day(`timestamp`) AS day, hour(`timestamp`) AS hour,
       (dayofweek(`timestamp`) + 5) % 7 AS day_of_week, filename AS source_file{columns}, CAST(:date AS DATE) AS date
FROM (
  SELECT *, CAST(round(CASE WHEN total_amount >= 500 THEN {money} * 0.10 WHEN total_amount >= 100 THEN {money} * 0.05
                            ELSE 0 END, 2) AS DECIMAL(18, 2)) AS discount
  FROM tx_checked WHERE rule IS NULL
)
"""  # noqa: S608


SPARK_QUARANTINE_SQL = "SELECT filename AS file, _row AS row, rule, json AS record FROM tx_checked WHERE rule IS NOT NULL"


def spark_job_extras(
    files: Sequence[tuple[str, str]], date: str, extras: Extras, unsupported: Sequence[str], output_dir: str,
    quarantine_dir: str,
) -> dict[str, object]:
    """What the PySpark job ``transactions_process`` needs, as its Pipes extras: the ``files`` (path the job reads,
    lake key), the statements and their parameters, and where to write the good records (Parquet with ``date``)
    and the quarantined ones (file, row, rule, record)."""
    return {
        "files": [{"path": path, "key": key} for path, key in files],
        "checked_sql": spark_checked_sql(extras, bool(unsupported)),
        "output_sql": spark_output_sql(extras),
        "quarantine_sql": SPARK_QUARANTINE_SQL,
        "parameters": {"date": date, **({"unsupported": list(unsupported)} if unsupported else {})},
        "output_dir": output_dir,
        "quarantine_dir": quarantine_dir,
    }


SparkRunner = Callable[[dict[str, object]], dict[str, object]]


def transform_partition_on_spark(
    lake: Lake, date: str, objects: Sequence[LakeObject], run_job: SparkRunner, *, tables: IcebergTables,
    properties: dict[str, str] | None = None, remote: bool = False,
) -> PartitionResult:
    """``transform_partition`` with the records typed and ruled by the Spark job ``transactions_process``.

    The plan is the DuckDB path's (``_plan_partition``: the files that are not JSON, the extra fields); ``run_job``
    runs the job with its extras (``spark_job_extras``) and returns what it reported. Its good records, Parquet below
    the table's location, replace the partition ``date`` of the table ``transactions`` as they are (one commit,
    ``add_files``); its quarantined records get their field and reason and are published as the DuckDB path's.
    ``remote``: the job runs on AWS (a lone-CR file's LF copy is uploaded for it to read).
    """
    from pyiceberg.exceptions import CommitStateUnknownException

    from ecommerce_assets.storage.iceberg import replace_rows_with_files

    result = PartitionResult(date=date, files_in=len(objects))
    q_prefix = partition_prefix(QUARANTINE, date)
    run = uuid.uuid4().hex
    staged = f"{PROCESSED}data/spark-{run}/"  # below the table's location: added as they are
    # the job's scratch (an LF copy it reads, its quarantine output): below the quarantine zone, which the Spark
    # job's role may write (deploy/iam/spark-job.json), published whole below
    staging = f"{QUARANTINE}spark-staging/{run}/"
    con = lake.engine()
    plan: _Plan | None = None
    committed = False
    try:
        plan = _plan_partition(lake, con, objects, tables, result)
        _name_bad_files(result, plan)
        files = []
        for uri in (u for u in plan.uris if u not in plan.unparseable):
            key = plan.by_uri[uri]
            if remote and uri != lake.uri(key):  # a local LF copy: where the job can read it
                copy_key = f"{staging}sources/{len(files)}-{Path(uri).name}"
                lake.write_bytes(copy_key, Path(uri).read_bytes())
                uri = lake.uri(copy_key)
            files.append((uri, key))
        extras = spark_job_extras(files, date, plan.extras, plan.unsupported, lake.uri(staged),
                                  lake.uri(f"{staging}quarantine/"))
        reported = run_job(extras)
        result.files_ok = len(files)
        result.records_in, result.records_out = int(reported["records_in"]), int(reported["records_out"])
        result.by_rule = {str(k): int(v) for k, v in dict(reported["quarantined_by_rule"]).items()}  # type: ignore[call-overload]
        result.records_quarantined = sum(result.by_rule.values())
        data_files = sorted(lake.uri(o.key) for o in lake.list_objects(staged) if o.key.endswith(".parquet"))
        summary = {"ecommerce.partition": date, **(properties or {})}
        if data_files:
            schema = con.execute("SELECT * FROM read_parquet(?) LIMIT 0", [data_files]).to_arrow_table().schema
            result.commit = replace_rows_with_files(tables, TABLE, schema, data_files, PARTITION_BY,
                                                    [{"date": dt.date.fromisoformat(date)}], summary)
        else:
            result.commit = _commit_partition(tables, con, lake, date, None, summary)
        committed = True
        lake.delete_prefix(partition_prefix(PROCESSED, date))
        lake.delete_prefix(partition_prefix(LAMBDA_PARTS, date))
        lake.delete_prefix(q_prefix)
        quarantined = [lake.uri(o.key) for o in lake.list_objects(f"{staging}quarantine/") if o.key.endswith(".parquet")]
        if result.records_quarantined:
            import pyarrow as pa

            rules = sorted(result.by_rule)
            con.register("rule_reasons", pa.table({"rule": rules, "field": [_rule_field(r) for r in rules],
                                                   "reason": [rule_reason(r, plan.extras) for r in rules]}))
            con.execute("CREATE OR REPLACE TEMP TABLE q AS SELECT file, row, field, rule, reason, record "
                        "FROM read_parquet(?) JOIN rule_reasons USING (rule)", [quarantined])
            written = con.execute("SELECT count(*) FROM q").fetchone()[0]
            if written != result.records_quarantined:
                raise RuntimeError(f"transactions {date}: the Spark job quarantined {result.records_quarantined} "
                                   f"records and wrote {written}")
            _write_quarantine(lake, con, q_prefix + "records.parquet", result)
        _quarantine_files(lake, q_prefix, result)
    except BaseException as exc:
        # nothing of a failed attempt is referenced by the table: its files go (unless the catalog may hold the
        # commit, or it was made)
        if not committed and not isinstance(exc, CommitStateUnknownException):
            lake.delete_prefix(staged)
        raise
    finally:
        con.close()
        lake.delete_prefix(staging)
        if plan and plan.copies_dir:
            shutil.rmtree(plan.copies_dir, ignore_errors=True)
    if not result.reconciles:
        raise RuntimeError(f"transactions {date}: counts do not reconcile: {result.as_metadata()}")
    return result
