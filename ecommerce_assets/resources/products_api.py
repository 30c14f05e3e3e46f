"""The products REST API (fake-store shaped): ``GET <base_url>/products`` -> a JSON list of products.

The resource times out every request and retries HTTP 429/500/502/503/504, timeouts and connection errors
with urllib3's ``Retry`` (``ecommerce_assets.resources.http``: the first retry at once, then exponential
backoff with jitter; a ``Retry-After`` is honoured, capped at ``max_backoff_seconds``). Any other status
fails at once. It validates the payload before anyone stores it:

* the body must be JSON and a list of objects, else ``ProductsPayloadError`` (nothing is stored);
* each item is checked field by field (``id`` present, ``title`` text, ``price`` a number >= 0, ``rating``
  an object with numeric ``rate``/``count`` when present); problems are returned as ``ItemProblem``
  (index, field, rule) so the caller can report them. The cleaning step quarantines the same rows
  (``ecommerce_assets.transforms.orders.clean_api_products``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from pydantic import Field

from ecommerce_assets.resources.http import build_session, send


class ProductsApiError(RuntimeError):
    """The API could not be reached or kept failing after the retries."""


class ProductsPayloadError(ValueError):
    """The API answered something that is not a JSON list of product objects (``body``: what it answered)."""

    def __init__(self, message: str, body: bytes = b"") -> None:
        super().__init__(message)
        self.body = body


@dataclass(frozen=True)
class ItemProblem:
    index: int  # position in the response list (0-based)
    field: str
    rule: str  # null_id | null_title | invalid_title | null_price | unparseable_price | negative_price | invalid_rating
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.index, "field": self.field, "rule": self.rule, "detail": self.detail}


@dataclass
class ProductsFetch:
    """One successful fetch: the exact body, the parsed items, per-item problems and how many attempts."""

    body: bytes
    items: list[dict[str, Any]]
    problems: list[ItemProblem] = field(default_factory=list)
    attempts: int = 1
    url: str = ""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate_products(
    body: bytes, source: str = "response"
) -> tuple[list[dict[str, Any]], list[ItemProblem]]:
    """Parse and validate a ``/products`` body; raise ``ProductsPayloadError`` when it is not a list of objects."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProductsPayloadError(
            f"{source}: not valid JSON ({exc}); first bytes: {body[:80]!r}", body
        ) from exc
    if not isinstance(payload, list):
        raise ProductsPayloadError(
            f"{source}: expected a JSON list of products, got a JSON {type(payload).__name__}", body
        )
    problems: list[ItemProblem] = []
    for i, item in enumerate(payload):
        if not isinstance(item, dict):
            raise ProductsPayloadError(
                f"{source}: item {i} is a JSON {type(item).__name__}, expected an object", body
            )
        pid = item.get("id")
        if pid is None or (isinstance(pid, str) and not pid.strip()):
            problems.append(ItemProblem(i, "id", "null_id", "id is missing or blank"))
        title = item.get("title")
        if title is None or (isinstance(title, str) and not title.strip()):
            problems.append(ItemProblem(i, "title", "null_title", "title is missing or blank"))
        elif not isinstance(title, str):
            problems.append(ItemProblem(i, "title", "invalid_title", f"title is a {type(title).__name__}"))
        price = item.get("price")
        if price is None:
            problems.append(ItemProblem(i, "price", "null_price", "price is missing"))
        elif not _is_number(price):
            try:
                price = float(str(price))
            except ValueError:
                problems.append(
                    ItemProblem(i, "price", "unparseable_price", f"price {price!r} is not a number")
                )
                price = None
        if price is not None and _is_number(price) and price < 0:
            problems.append(ItemProblem(i, "price", "negative_price", f"price {price} < 0"))
        rating = item.get("rating")
        if rating is not None and not (
            isinstance(rating, dict)
            and all(rating.get(k) is None or _is_number(rating.get(k)) for k in ("rate", "count"))
        ):
            problems.append(
                ItemProblem(i, "rating", "invalid_rating", "rating must be {rate: number, count: number}")
            )
    return payload, problems


class ProductsApi(dg.ConfigurableResource):
    """HTTP client of the products API with timeout, retries with backoff, and payload validation."""

    base_url: str = Field(
        default="",
        description="Base URL of the API, e.g. http://127.0.0.1:8765 (no trailing /products); "
        "from ECOMMERCE_PRODUCTS_API_URL.",
    )
    timeout_seconds: float = Field(default=10.0, description="Connect and read timeout of one request.")
    max_attempts: int = Field(default=5, description="Attempts in all (1 = no retry).")
    backoff_seconds: float = Field(
        default=0.5,
        description="Backoff factor: retry 1 at once, retry n after backoff * 2**(n-1) (plus jitter).",
    )
    max_backoff_seconds: float = Field(default=8.0, description="Cap on one backoff (and on Retry-After).")

    def get(self, path: str) -> tuple[bytes, int]:
        """GET ``base_url + path`` with the retry policy; return (body, attempts). Raise ``ProductsApiError``."""
        if not self.base_url:
            raise ProductsApiError(
                "the products API URL is not set: set ECOMMERCE_PRODUCTS_API_URL (the demo starts the local "
                "simulator, `python -m ecommerce_assets.dev.products_api_sim`, and sets it)"
            )
        url = self.base_url.rstrip("/") + path
        with build_session(
            attempts=self.max_attempts,
            backoff_factor=self.backoff_seconds,
            backoff_max=self.max_backoff_seconds,
        ) as session:
            exchange = send(
                session, "GET", url, timeout=self.timeout_seconds, headers={"Accept": "application/json"}
            )
        response = exchange.response
        if response is not None and response.status_code == 200:
            return response.content, exchange.attempts
        if response is None:
            assert exchange.last is not None  # an exchange without a response ended on a failure
            last_problem = exchange.last.detail
        else:
            last_problem = f"HTTP {response.status_code}: {response.text[:200]}"
            if not exchange.gave_up:
                raise ProductsApiError(f"GET {url} failed (not retried): {last_problem}")
        raise ProductsApiError(f"GET {url} failed after {exchange.attempts} attempts; last: {last_problem}")

    def fetch_products(self) -> ProductsFetch:
        """``GET /products``, validated (see the module docstring)."""
        body, attempts = self.get("/products")
        url = self.base_url.rstrip("/") + "/products"
        items, problems = validate_products(body, source=f"GET {url}")
        return ProductsFetch(body=body, items=items, problems=problems, attempts=attempts, url=url)
