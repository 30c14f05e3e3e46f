"""Run the seller catalog API simulator: a real local HTTP server speaking the catalog API for the demo sellers.

Example: ``ecommerce-assets catalog-sim --port 8765`` then
``curl -H 'x-rapidapi-key: any' 'http://127.0.0.1:8765/search?seller_id=A2L77EE7U53NWQ&page=1'``.
Point the product at another server with ECOMMERCE_CATALOG_API_URL; by default local mode uses this one
at ECOMMERCE_CATALOG_SIM_PORT (8765). Fault switches make it answer 429/500/slowly/malformed.
"""

from __future__ import annotations

import argparse

NAME = "catalog-sim"
HELP = "run the seller catalog API simulator (demo sellers, injectable faults)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ecommerce_assets.dev.catalog_sim import DEFAULT_SEED
    from ecommerce_assets.settings import get_settings

    parser.add_argument("--port", type=int, default=get_settings().catalog_sim_port, help="port (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="data seed (default: %(default)s)")
    parser.add_argument("--api-key", default=None, help="accept only this key (403 otherwise); default: any key")
    parser.add_argument("--inject-429", type=int, default=0, metavar="N", help="first N requests answer 429")
    parser.add_argument("--retry-after", type=int, default=1, metavar="S", help="Retry-After seconds on 429s")
    parser.add_argument("--inject-500", type=int, default=0, metavar="N", help="next N requests answer 500")
    parser.add_argument("--slow", type=int, default=0, metavar="N", help="next N requests answer slowly")
    parser.add_argument("--slow-seconds", type=float, default=2.0, help="delay of a slow answer")
    parser.add_argument("--malformed", type=int, default=0, metavar="N", help="next N requests answer broken JSON")
    parser.add_argument("--malformed-page", type=int, action="append", default=[], metavar="P",
                        help="page P always answers broken JSON (repeatable)")
    parser.add_argument("--missing-products-page", type=int, action="append", default=[], metavar="P",
                        help="page P answers an envelope without data.products (repeatable)")


def main(args: argparse.Namespace) -> int:
    from ecommerce_assets.cli._serve import serve_until_signalled
    from ecommerce_assets.dev.catalog_sim import CatalogSimulator, Faults

    faults = Faults(
        rate_limit_first=args.inject_429, retry_after_seconds=args.retry_after, server_error_first=args.inject_500,
        slow_first=args.slow, slow_seconds=args.slow_seconds, malformed_first=args.malformed,
        malformed_pages=set(args.malformed_page), missing_products_pages=set(args.missing_products_page),
    )
    sim = CatalogSimulator(port=args.port, host=args.host, seed=args.seed, faults=faults, required_key=args.api_key)
    sellers = ", ".join(f"{sid} ({len(entries)} products)" for sid, entries in sim.catalog.sellers.items())
    print(f"catalog simulator on {sim.url}  sellers: {sellers}", flush=True)
    return serve_until_signalled(sim.start, sim.stop)
