"""Distributor matching: known true and false pairs (incl. near misses), methods in order, one best match."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ecommerce_assets.dev.catalog_sim import distributor_inventory_rows, distributor_truth, generate_catalog
from ecommerce_assets.transforms import catalog as tf
from ecommerce_assets.transforms import matching

DATE = "2024-05-01"


def inventory_parquet(con: duckdb.DuckDBPyConnection, rows: list[dict], path: Path) -> str:
    """The distributor rows through the inventory SQL the asset uses (all text, like a CSV)."""
    cols = matching.DISTRIBUTOR_COLUMNS + matching.ID_COLUMNS
    src = pa.Table.from_pylist(
        [{**{c: (None if r.get(c) in (None, "") else str(r[c])) for c in cols}, "_file": "f.csv", "_row": i, "_mtime": 0.0}
         for i, r in enumerate(rows, start=1)],
        schema=pa.schema([*[(c, pa.string()) for c in cols], ("_file", pa.string()), ("_row", pa.int64()),
                          ("_mtime", pa.float64())]),
    )
    matching.install_macros(con)
    con.register("inv_arrow", src)
    con.execute("CREATE OR REPLACE TEMP TABLE inv_src AS SELECT * FROM inv_arrow")
    con.execute(matching.INVENTORY_RULED)
    con.execute(f"COPY ({matching.INVENTORY_CLEAN}) TO ? (FORMAT parquet)", [str(path)])  # noqa: S608
    return str(path)


def seller_parquet(products: list[dict], path: Path, seller: str = "S1") -> str:
    body = json.dumps({"status": "OK", "data": {"total_products": len(products), "products": products}}).encode()
    res = tf.clean_page(body, seller, DATE, page=1)
    tf.build_snapshot(duckdb.connect(), [res], str(path.with_suffix(".csv")), str(path))  # one row per ASIN
    return str(path)


def run_match(tmp_path: Path, sellers: str | list[str], inventory: list[dict], fee: float = 0.15):
    con = duckdb.connect()
    inv = inventory_parquet(con, inventory, tmp_path / "inv.parquet")
    res = matching.match(con, sellers, inv, str(tmp_path / "m.parquet"), str(tmp_path / "u.parquet"), fee_rate=fee)
    return res, pq.read_table(tmp_path / "m.parquet").to_pylist(), pq.read_table(tmp_path / "u.parquet").to_pylist()


def dist(sku: str, title: str, brand: str, cost: str = "10.00", qty: str = "5", **ids: str) -> dict:
    return {"sku": sku, "title": title, "brand": brand, "cost": cost, "quantity_available": qty, **ids}


def test_the_simulator_distributor_sample_against_its_ground_truth(tmp_path: Path) -> None:
    catalog = generate_catalog()
    paths = []
    for seller, entries in catalog.sellers.items():
        paths.append(seller_parquet(entries, tmp_path / f"{seller}.parquet", seller))
    res, matches, unmatched = run_match(tmp_path, paths, distributor_inventory_rows())
    truth = {t.sku: t for t in distributor_truth()}
    # precision: every match is a pair the generator made to match
    for m in matches:
        t = truth[m["distributor_sku"]]
        assert t.kind in ("asin", "gtin", "title") and t.asin == m["asin"], (m["product_title"], m["distributor_title"])
    # near misses (same brand, another size/model/colour) and unrelated items never match
    matched_skus = {m["distributor_sku"] for m in matches}
    assert not matched_skus & {t.sku for t in truth.values() if t.kind in ("near_miss", "unrelated")}
    # recall: every seller listing of a product the distributor supplies is matched, by the expected method
    expected_method = {"asin": "asin", "gtin": "gtin", "title": "title_brand"}
    supplied = {t.asin: expected_method[t.kind] for t in truth.values() if t.asin}
    listings = {(s, e["asin"]) for s, entries in catalog.sellers.items() for e in entries}
    expected = {(s, a): supplied[a] for s, a in listings if a in supplied}
    got = {(m["seller_id"], m["asin"]): m["match_method"] for m in matches}
    assert got == expected
    assert all(v > 0 for v in res.matched.values())  # the sample exercises every method
    assert res.unmatched == len(unmatched) == len(listings) - len(expected)
    assert len(got) == len(matches)  # one best match per seller product


def test_known_pairs_and_near_misses(tmp_path: Path) -> None:
    products = [
        {"asin": "B0HYDRO032", "product_title": "Hydro Flask Wide Mouth Water Bottle with Flex Cap, 32 Ounce - BPA Free", "product_price": "$44.95"},
        {"asin": "B0OXOSMALL", "product_title": "OXO Good Grips Salad Spinner, Small", "product_price": "$29.99"},
        {"asin": "B0DYSONYEL", "product_title": "Dyson V15 Detect Cordless Vacuum Cleaner, Yellow/Nickel", "product_price": "$749.99"},
        {"asin": "B0STDMOUTH", "product_title": "Hydro Flask Standard Mouth Water Bottle Flex Cap, 21 oz", "product_price": "$39.95"},
        {"asin": "B0LOGI0325", "product_title": "Logitech Wireless Mouse, M325", "product_price": "$24.99"},
        {"asin": "B0CRAYON24", "product_title": "Crayola Colored Pencils Art Set, 24 Count", "product_price": "$12.99"},
    ]
    inventory = [
        # true: same product in the distributor's words
        dist("T1", "HYDRO FLASK 32oz WIDE MOUTH WATER BOTTLE FLEX CAP", "Hydro Flask"),
        dist("T2", "24ct Colored Pencils Art Set - Crayola", "Crayola"),
        # near misses: other size, other size word, other colour, other line, other model, other brand
        dist("N1", "Hydro Flask Wide Mouth Water Bottle with Flex Cap, 40 Ounce", "Hydro Flask"),
        dist("N2", "OXO Good Grips Salad Spinner, Large", "OXO"),
        dist("N3", "Dyson V15 Detect Cordless Vacuum Cleaner, Gold", "Dyson"),
        dist("N4", "Hydro Flask Wide Mouth Water Bottle Flex Cap, 21 oz", "Hydro Flask"),
        dist("N5", "Logitech Wireless Mouse, M185", "Logitech"),
        dist("N6", "Colored Pencils Art Set, 24 Count", "Prismacolor"),
    ]
    res, matches, _ = run_match(tmp_path, seller_parquet(products, tmp_path / "s.parquet"), inventory)
    got = {m["asin"]: (m["distributor_sku"], m["match_method"]) for m in matches}
    assert got == {"B0HYDRO032": ("T1", "title_brand"), "B0CRAYON24": ("T2", "title_brand")}
    assert all(Decimal(str(matching.TITLE_THRESHOLD)) <= m["match_score"] <= 1 for m in matches)
    assert res.matched == {"asin": 0, "gtin": 0, "title_brand": 2}


def test_methods_in_order_gtin_forms_and_best_match(tmp_path: Path) -> None:
    upc = "036000291452"  # a valid UPC-A
    products = [
        {"asin": "B0AAAAAAA1", "product_title": "Acme Anvil 10 lb", "product_price": "$100.00"},
        {"asin": "B0AAAAAAA2", "product_title": "Acme Rocket Skates", "product_price": "$50.00", "ean": "0" + upc},
        {"asin": "B0AAAAAAA3", "product_title": "Acme Giant Magnet", "product_price": None},
        {"asin": "B0AAAAAAA4", "product_title": "Acme Tornado Seeds", "product_price": "$20.00", "upc": "036000291453"},
    ]
    inventory = [
        dist("A-OUT", "Acme Anvil 10 lb", "Acme", cost="40.00", qty="0", asin="B0AAAAAAA1"),
        dist("A-CHEAP", "Anvil", "Acme", cost="45.00", qty="7", asin="b0aaaaaaa1"),  # in stock wins over cheaper
        dist("A-TITLE", "Acme Anvil 10 lb", "Acme", cost="1.00", qty="9"),  # a title match never beats an ASIN
        dist("G-14", "Skates", "Acme", cost="20.00", gtin="00" + upc),
        dist("M-1", "ACME GIANT MAGNET", "ACME", cost="5.00"),
        dist("BAD", "Tornado seeds", "Other", cost="1.00", upc="036000291453"),  # invalid check digit on both sides
    ]
    res, matches, unmatched = run_match(tmp_path, seller_parquet(products, tmp_path / "s.parquet"), inventory, fee=0.15)
    by = {m["asin"]: m for m in matches}
    assert (by["B0AAAAAAA1"]["distributor_sku"], by["B0AAAAAAA1"]["match_method"]) == ("A-CHEAP", "asin")
    assert (by["B0AAAAAAA2"]["distributor_sku"], by["B0AAAAAAA2"]["match_method"]) == ("G-14", "gtin")
    assert (by["B0AAAAAAA3"]["distributor_sku"], by["B0AAAAAAA3"]["match_method"]) == ("M-1", "title_brand")
    assert [u["asin"] for u in unmatched] == ["B0AAAAAAA4"]
    anvil = by["B0AAAAAAA1"]
    # margin = price - 15% fee - cost = 100 - 15 - 45 = 40; ROI = 40 / 45
    assert anvil["marketplace_fee"] == Decimal("15.00") and anvil["estimated_margin"] == Decimal("40.00")
    assert anvil["roi"] == Decimal("0.8889") and anvil["margin_pct"] == Decimal("0.4000")
    magnet = by["B0AAAAAAA3"]
    assert magnet["seller_price"] is None and magnet["estimated_margin"] is None and magnet["roi"] is None
    assert [m["asin"] for m in matches][:2] == ["B0AAAAAAA1", "B0AAAAAAA2"]  # ranked by margin (40 > 22.50)
    assert res.matched == {"asin": 1, "gtin": 1, "title_brand": 1}


def test_blocking_drops_oversized_blocks(tmp_path: Path) -> None:
    # 120 x 120 identical generic titles of one brand: a block of 14,400 pairs > MAX_BLOCK_PAIRS is dropped
    assert 120 * 120 > matching.MAX_BLOCK_PAIRS
    products = [{"asin": f"B0{i:08d}", "product_title": "Generico Widget", "product_price": "$5.00"} for i in range(120)]
    inventory = [dist(f"W{i}", "Generico Widget", "Generico") for i in range(120)]
    res, matches, _ = run_match(tmp_path, seller_parquet(products, tmp_path / "s.parquet"), inventory)
    assert res.candidate_pairs == 0 and matches == []


@pytest.mark.parametrize(
    ("a", "b"),
    [("Hydro Flask 32 Ounce", "hydro flask 32oz"), ("Cetaphil Cleanser 8 fl oz", "CETAPHIL CLEANSER 8 FL OZ"),
     ("Lodge Skillet 10.25 Inch", "Lodge skillet 10.25in"), ("Burt's Bees 4 Pack", "Burt's Bees 4-Pack"),
     ("Instant Pot 6 Quart", "Instant Pot 6QT"), ("Samsung 128 GB", "Samsung 128GB")],
)
def test_unit_spellings_tokenize_alike(a: str, b: str) -> None:
    con = duckdb.connect()
    matching.install_macros(con)
    ta, tb = (con.execute("SELECT list_sort(title_tokens(?))", [t]).fetchone()[0] for t in (a, b))
    assert ta == tb


def seeded_catalog(seed: int = 7, items: int = 600) -> tuple[list[dict], list[dict]]:
    """A seeded seller catalog and distributor inventory: items by ASIN, by UPC, reworded titles, near misses
    (another model, size, size word or colour of the same brand), unrelated products and generic titles."""
    rng = random.Random(seed)
    brands = ["Hydro Flask", "OXO", "Lodge", "Instant Pot", "Acme Tools", "Nordic Ware", "Zen Tek", "Crayola"]
    nouns = ["Water Bottle", "Skillet", "Salad Spinner", "Pressure Cooker", "Colored Pencils", "Bundt Pan", "Lamp"]
    features = ["Stainless Steel", "Insulated", "Non-Stick", "Cordless", "Wide Mouth", "Heavy Duty", "Portable"]
    units = {"Ounce": "oz", "Inch": "in", "Quart": "qt", "Count": "ct", "Pack": "pk"}
    sizes, colours = ["", "Small", "Large", "XL"], ["", "Black", "Red", "Blue", "Silver"]

    def title(b: str, n: str, f: str, model: int, amount: int, unit: str, size: str, colour: str) -> str:
        return f"{b} {n} {f} M{model}, {amount} {unit}" + (f", {size}" if size else "") + (f", {colour}" if colour else "")

    inventory, products = [], []
    for i in range(items):
        parts = (rng.choice(brands), rng.choice(nouns), rng.choice(features), rng.randrange(10, 60),
                 rng.choice([8, 12, 16, 32]), rng.choice(list(units)), rng.choice(sizes), rng.choice(colours))
        upc = f"{rng.randrange(10**10, 10**11):011d}"
        check = (10 - (sum(int(d) * (3 if k % 2 == 0 else 1) for k, d in enumerate(upc)))) % 10
        inventory.append(dist(f"D{i:04d}", title(*parts), parts[0], cost=f"{rng.uniform(2, 90):.2f}",
                              qty=str(rng.randrange(0, 5)), asin=f"B0D{i:07d}" if i % 3 == 0 else "",
                              upc=upc + str(check) if i % 4 == 1 else ""))
        kind = i % 6
        b, n, f, model, amount, unit, size, colour = parts
        if kind == 0:  # same ASIN
            products.append({"asin": f"B0D{i:07d}", "product_title": title(*parts)})
        elif kind == 1:  # the item's UPC
            products.append({"asin": f"B0S{i:07d}", "product_title": title(*parts) + " - Gift", "upc": upc + str(check)})
        elif kind == 2:  # reworded
            products.append({"asin": f"B0S{i:07d}",
                             "product_title": f"{b} {f} {n} M{model} {amount}{units[unit]} {size} {colour}".strip()})
        elif kind == 3:  # near miss: another model, size word or colour
            near = rng.choice([(model + 1, size, colour), (model, "Small" if size != "Small" else "Large", colour)]
                              + ([(model, size, "Green")] if colour else []))  # no colour conflicts with none
            products.append({"asin": f"B0S{i:07d}", "product_title": title(b, n, f, near[0], amount, unit, near[1], near[2])})
        elif kind == 4:  # unrelated brand
            products.append({"asin": f"B0S{i:07d}", "product_title": f"Generico {n} {f} M{model}, {amount} {unit}"})
        else:  # a generic title shared by many
            products.append({"asin": f"B0S{i:07d}", "product_title": f"{b} {n}"})
        products[-1]["product_price"] = f"${rng.uniform(5, 150):.2f}"
    return products, inventory


def test_prepared_inventory_gives_the_same_matches_as_the_inventory(tmp_path: Path) -> None:
    catalog = generate_catalog()
    sellers = [seller_parquet(entries, tmp_path / f"{seller}.parquet", seller) for seller, entries in catalog.sellers.items()]
    products, inventory = seeded_catalog()
    sellers.append(seller_parquet(products, tmp_path / "seeded.parquet", "SEEDED"))
    con = duckdb.connect()
    inv = inventory_parquet(con, distributor_inventory_rows() + inventory, tmp_path / "inv.parquet")
    (tmp_path / "prepared").mkdir()
    prepared = matching.prepare_inventory(con, inv, str(tmp_path / "prepared"))
    items = pq.read_table(prepared.part(prepared.ITEMS))
    assert items.num_rows == pq.read_metadata(inv).num_rows and {"toks", "dsig", "ssig", "cols"} <= set(items.column_names)
    results = {}
    for name, source in (("direct", inv), ("prepared", prepared)):
        con = duckdb.connect()  # a fresh engine: nothing carried over from the other run
        res = matching.match(con, sellers, source, str(tmp_path / f"{name}_m.parquet"), str(tmp_path / f"{name}_u.parquet"),
                             fee_rate=0.15)
        results[name] = (res, pq.read_table(tmp_path / f"{name}_m.parquet").to_pylist(),
                         pq.read_table(tmp_path / f"{name}_u.parquet").to_pylist())
    (res_d, m_d, u_d), (res_p, m_p, u_p) = results["direct"], results["prepared"]
    assert res_d == res_p and m_d == m_p and u_d == u_p
    assert all(n > 0 for n in res_d.matched.values()) and res_d.candidate_pairs > 0 and u_d  # a non-trivial data set
    # the seeded near misses (another model, size word or colour), other brands and generic titles never match;
    # every product listed by ASIN or reworded is found, by the method its kind implies
    kind = {p["asin"]: i % 6 for i, p in enumerate(products)}
    got = {m["asin"]: m["match_method"] for m in m_d if m["seller_id"] == "SEEDED"}
    assert {kind[a] for a in got} <= {0, 1, 2}
    assert all(got.get(a) == "asin" for a, k in kind.items() if k == 0)
    assert all(got.get(a) == "title_brand" for a, k in kind.items() if k == 2)
