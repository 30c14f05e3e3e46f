"""Path 5: seller catalog matching (``ecommerce_assets.transforms.matching.match``) at 100k x 100k and
480k x 1M (seller products x distributor items), on seeded synthetic inputs.

The generator makes realistic catalogs: ~4,000 brands (two-word names), product titles built from a
noun, a model number, features, a size with its unit (``32 Ounce``, ``10 Inch``, ``6 Quart``, ``24 Count``),
a size word and a colour; distributor rows carry a SKU, cost, stock, an ASIN for 60 % of them and a valid
UPC-A (GS1 check digit) for 50 %. Seller products are: 30 % the same ASIN as a distributor item, 15 %
another ASIN but the item's UPC (as the GTIN-14 ``gold.amazon_data`` carries), 30 % the item's title rewritten the way sellers write it
(words reordered, units spelled differently, the brand repeated, extra marketing words), 25 % products
the distributor does not carry (same brands, other models).

``product`` measures the figure that counts, **cold** (a new inventory: tokenised, then matched, all in), and
**warm** (the same inventory again: its prepared form reused, then matched) in the same process.
"""

from __future__ import annotations

import resource
from pathlib import Path

import numpy as np

from bench.common import CACHE, timed

SIZES = {"20k": (20_000, 20_000), "100k": (100_000, 100_000), "480k_1m": (480_000, 1_000_000)}
NOUNS = ["Water Bottle", "Camping Tent", "Chef Knife", "Air Fryer", "Blender", "Yoga Mat", "Backpack", "Desk Lamp",
         "Wireless Earbuds", "Phone Case", "Coffee Maker", "Skillet", "Dumbbell", "Sleeping Bag", "Towel Set",
         "Hair Dryer", "Face Serum", "Sunscreen", "Dog Leash", "Cat Litter", "Vitamin C", "Protein Powder",
         "Notebook", "Pen Set", "USB-C Cable", "Power Bank", "Keyboard", "Mouse", "Monitor Stand", "Bike Helmet"]
FEATURES = ["Stainless Steel", "Insulated", "Waterproof", "Non-Stick", "Ergonomic", "Rechargeable", "Portable",
            "Heavy Duty", "Organic", "Lightweight", "Foldable", "BPA Free", "Quick Dry", "Adjustable", "Cordless"]
UNITS = [("Ounce", "oz"), ("Inch", "in"), ("Quart", "qt"), ("Count", "ct"), ("Pack", "pk")]
SIZE_WORDS = ["", "", "Small", "Medium", "Large", "XL"]
COLOURS = ["", "Black", "White", "Blue", "Red", "Green", "Grey", "Pink", "Silver"]
SYLLABLES = ["co", "le", "man", "hy", "dro", "flask", "zen", "tek", "pro", "max", "nor", "dic", "sun", "vale",
             "ark", "ion", "lux", "ora", "vex", "tri", "mon", "kai", "rho", "bel", "ter", "qua", "sol", "fin"]


def _upc(body: np.ndarray) -> np.ndarray:
    """11-digit bodies -> 12-digit UPC-A strings with a valid check digit."""
    digits = np.stack([(body // 10 ** (10 - i)) % 10 for i in range(11)], axis=1)
    total = (digits[:, 0::2].sum(axis=1) * 3 + digits[:, 1::2].sum(axis=1)) % 10
    check = (10 - total) % 10
    return np.char.add(np.char.zfill(body.astype(str), 11), check.astype(str))


def _asins(head: str, n: int, salt: int) -> np.ndarray:
    """``n`` distinct ASIN-like identifiers (``B0`` + 8 base-36 characters), scrambled by a prime stride."""
    codes = (np.arange(n, dtype=np.int64) * 1_000_003 + salt * 7_919) % 36**8
    return np.array([head + np.base_repr(int(c), 36).zfill(8) for c in codes])


def _brands(rng: np.random.Generator, n: int) -> list[str]:
    out: set[str] = set()
    while len(out) < n:
        a, b, c = rng.choice(SYLLABLES, 3)
        out.add((a + b).capitalize() + " " + c.capitalize() + rng.choice(["", "s", "ix", "on"]))
    return sorted(out)


def generate(size: str) -> tuple[Path, Path]:
    """(seller products Parquet, distributor inventory Parquet) for ``size``, made once in the cache."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n_sp, n_di = SIZES[size]
    folder = CACHE / f"matching_{size}"
    sp_path, di_path = folder / "seller_products.parquet", folder / "inventory.parquet"
    if sp_path.exists() and di_path.exists():
        return sp_path, di_path
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    brands = _brands(rng, max(200, n_di // 250))
    b = rng.integers(0, len(brands), n_di)
    noun = rng.integers(0, len(NOUNS), n_di)
    f1, f2 = rng.integers(0, len(FEATURES), n_di), rng.integers(0, len(FEATURES), n_di)
    model = rng.integers(100, 9999, n_di)
    amount = rng.choice([4, 8, 10, 12, 16, 20, 24, 32, 40, 64], n_di)
    unit = rng.integers(0, len(UNITS), n_di)
    sizew = rng.integers(0, len(SIZE_WORDS), n_di)
    colour = rng.integers(0, len(COLOURS), n_di)
    titles = [
        f"{brands[b[i]]} {NOUNS[noun[i]]} {FEATURES[f1[i]]} {FEATURES[f2[i]]} {chr(65 + model[i] % 26)}{model[i]}, "
        f"{amount[i]} {UNITS[unit[i]][0]}" + (f", {SIZE_WORDS[sizew[i]]}" if SIZE_WORDS[sizew[i]] else "")
        + (f", {COLOURS[colour[i]]}" if COLOURS[colour[i]] else "")
        for i in range(n_di)
    ]
    asin = _asins("B0", n_di, 1)
    has_asin = rng.random(n_di) < 0.6
    upc = _upc(rng.integers(10**9, 10**11 - 1, n_di, dtype=np.int64))
    has_upc = rng.random(n_di) < 0.5
    di = pa.table({
        "sku": [f"DST-{i:07d}" for i in range(n_di)],
        "title": titles,
        "brand": [brands[x] for x in b],
        "cost": pa.array(np.round(rng.uniform(2, 300, n_di), 2)).cast(pa.decimal128(12, 2)),
        "quantity_available": rng.integers(0, 500, n_di),
        "asin": pa.array(np.where(has_asin, asin, None).tolist(), pa.string()),
        "gtin": pa.array([("00" + u) if h else None for u, h in zip(upc.tolist(), has_upc, strict=True)], pa.string()),
    })
    pq.write_table(di, di_path)

    # seller products
    kind = rng.choice(4, n_sp, p=[0.30, 0.15, 0.30, 0.25])
    src = rng.integers(0, n_di, n_sp)
    src_asin = np.where(has_asin[src], src, rng.integers(0, n_di, n_sp))  # asin matches need an item with an ASIN
    src_upc = np.where(has_upc[src], src, rng.integers(0, n_di, n_sp))
    own_asin = _asins("B1", n_sp, 2)
    extra = ["Premium", "Best Seller", "2024 Model", "Gift Idea", "Value Pack", "Original"]
    out_title, out_asin, out_gtin = [], [], []
    for i in range(n_sp):
        k = kind[i]
        if k == 0:
            j = src_asin[i]
            out_asin.append(asin[j] if has_asin[j] else own_asin[i])
            out_title.append(titles[j])
            out_gtin.append(None)
            continue
        out_asin.append(own_asin[i])
        if k == 1:
            j = src_upc[i]
            out_title.append(titles[j] + " - " + extra[i % len(extra)])
            out_gtin.append("00" + upc[j])  # gold.amazon_data carries the code as a validated GTIN-14
        elif k == 2:
            j = src[i]
            short = UNITS[unit[j]][1]
            out_title.append(
                f"{brands[b[j]]} {FEATURES[f2[j]]} {NOUNS[noun[j]]} {chr(65 + model[j] % 26)}{model[j]} "
                f"{FEATURES[f1[j]]} {amount[j]}{short}"
                + (f" {SIZE_WORDS[sizew[j]]}" if SIZE_WORDS[sizew[j]] else "")
                + (f" ({COLOURS[colour[j]]})" if COLOURS[colour[j]] else "") + f" {extra[i % len(extra)]}"
            )
            out_gtin.append(None)
        else:
            j = src[i]
            m = (model[j] + 7) % 9999
            out_title.append(f"{brands[b[j]]} {NOUNS[noun[j]]} {FEATURES[f1[j]]} Z{m} {amount[j] + 1} {UNITS[unit[j]][0]}")
            out_gtin.append(None)
    sp = pa.table({
        "seller_id": [f"S{(i % 20) + 1:03d}" for i in range(n_sp)],
        "asin": out_asin,
        "product_title": out_title,
        "product_price": pa.array(np.round(rng.uniform(5, 500, n_sp), 2)).cast(pa.decimal128(12, 2)),
        "snapshot_date": pa.array(["2024-03-10"] * n_sp).cast(pa.date32()),
        "product_gtin": pa.array(out_gtin, pa.string()),
    })
    pq.write_table(sp, sp_path)
    return sp_path, di_path


def _cpu_seconds() -> float:
    """CPU time of this process so far, all threads (DuckDB's included): what a run costs, whatever else the
    machine is doing at the time (its wall time is longer when other processes take the cores)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def product(params: dict, work: Path) -> dict:
    """The inventory prepared then matched, twice in one process, each step with its own engine (as the two
    assets run them): **cold** (the inventory is new: tokenised and written, then matched; what a new inventory
    costs all in) and **warm** (the same inventory again: its prepared form is found current by its fingerprint
    and reused without tokenising, then matched). ``seconds`` is the cold figure; both runs must agree."""
    from ecommerce_assets.storage.lake import LocalLake
    from ecommerce_assets.transforms import matching

    sp, di = generate(params["size"])
    lake = LocalLake(base_dir=str(work / "lake"))

    def run(tag: str) -> dict:
        cpu = _cpu_seconds()
        con = lake.engine()  # what the inventory asset does when the distributor file is loaded
        prep_seconds, prepared = timed(lambda: matching.prepare_inventory(con, str(di), lake.output_uri("prepared/")))
        con.close()

        def match() -> matching.MatchResult:
            con = lake.engine()  # what the matching asset does
            try:
                return matching.match(con, str(sp), prepared, lake.output_uri(f"{tag}/matches.parquet"),
                                      lake.output_uri(f"{tag}/unmatched.parquet"), fee_rate=0.15)
            finally:
                con.close()

        match_seconds, res = timed(match)
        return {"prepare": prep_seconds, "match": match_seconds, "cpu": _cpu_seconds() - cpu,
                "reused": prepared.reused, "result": res}

    cold, warm = run("cold"), run("warm")
    if cold["reused"] or not warm["reused"] or cold["result"] != warm["result"]:
        raise AssertionError(f"cold and warm runs disagree: {cold} / {warm}")
    res = cold["result"]
    cold_s, warm_s = cold["prepare"] + cold["match"], warm["prepare"] + warm["match"]
    return {
        "seconds": cold_s,
        "inventory_prepare_seconds": round(cold["prepare"], 2), "cold_match_seconds": round(cold["match"], 2),
        "cold_cpu_seconds": round(cold["cpu"], 2),
        "warm_seconds": round(warm_s, 2), "warm_prepare_seconds": round(warm["prepare"], 2),
        "warm_match_seconds": round(warm["match"], 2), "warm_cpu_seconds": round(warm["cpu"], 2),
        "note": (f"cold {cold_s:.2f} s = prepare {cold['prepare']:.2f} + match {cold['match']:.2f} "
                 f"(cpu {cold['cpu']:.1f} s); warm {warm_s:.2f} s = reuse {warm['prepare']:.2f} + match "
                 f"{warm['match']:.2f} (cpu {warm['cpu']:.1f} s)"),
        "seller_products": res.seller_products, "distributor_items": res.distributor_items, "matched": res.matched,
        "candidate_pairs": res.candidate_pairs, "unmatched": res.unmatched,
    }
