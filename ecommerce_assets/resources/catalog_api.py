"""The seller catalog API ("Real-Time Amazon Data" seller search, as sold on RapidAPI).

``GET {base_url}/search?query=<q>&country=US&seller_id=<id>&product_condition=NEW&page=<n>`` with the
headers ``x-rapidapi-key`` and ``x-rapidapi-host``. The resource pages 1..n until a page whose
``data.products`` is empty or ``max_pages`` pages, and hands every page back *exactly as received*
(bytes) so the raw zone keeps what the API said.

Resilience, per request (the session and retry policy come from ``ecommerce_assets.resources.http``):

* a request-rate limit (``requests_per_second``, shared by every try of one client, retries included);
* urllib3's ``Retry`` retries HTTP 429/500/502/503/504, timeouts and connection errors: ``max_retries``
  retries, the first at once, retry n >= 2 after ``backoff_base_seconds * 2**(n - 1)`` plus up to
  ``backoff_base_seconds`` of jitter, each wait capped at ``backoff_max_seconds``; a ``Retry-After`` header (seconds or an HTTP date)
  is honoured instead of the backoff, capped at ``backoff_max_seconds``;
* a 200 whose body is not JSON is fetched again (up to ``max_retries`` times, waiting the policy's
  backoff; each fetch has the policy's retries of its own); after that the body is kept as received;
* 401/403 raise ``CatalogAuthError`` naming ``ECOMMERCE_CATALOG_API_KEY`` (never retried);
* any other 4xx (and a 5xx outside the list above) raises ``CatalogApiError`` at once.

The key is a secret: it is only ever put in the request header. It is excluded from the resource's
repr, never logged, and never appears in URLs, errors or metadata.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlencode

import dagster as dg
from pydantic import Field

from ecommerce_assets.resources.http import RateLimiter, build_session, policy_of, send
from ecommerce_assets.settings import Settings

KEY_ENV_VAR = "ECOMMERCE_CATALOG_API_KEY"
SIMULATOR_KEY = "local-simulator-key"  # what the bundled simulator accepts; not a secret
PAGE_SIZE = 48  # the API's page size


class CatalogApiError(RuntimeError):
    """The catalog API failed in a way retries did not fix (or that must not be retried)."""


class CatalogAuthError(CatalogApiError):
    """HTTP 401/403: the key was refused."""


@dataclass
class Attempt:
    """One HTTP attempt: its outcome and how long the client waited before the next one."""

    page: int
    outcome: str  # "ok", "http_429", "http_503", "timeout", "connection_error", "malformed_json", ...
    wait_seconds: float = 0.0
    retry_after: float | None = None


@dataclass
class Page:
    """One page exactly as the API answered it, plus what the client could read from it."""

    page: int
    body: bytes
    status_code: int
    products: int | None  # len(data.products), or None when the body has no readable product list
    total_products: int | None
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def is_readable(self) -> bool:
        return self.products is not None


def _inspect(body: bytes) -> tuple[bool, int | None, int | None]:
    """(is JSON, number of products or None, total_products or None)."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False, None, None
    data = doc.get("data") if isinstance(doc, dict) else None
    products = data.get("products") if isinstance(data, dict) else None
    total = data.get("total_products") if isinstance(data, dict) else None
    return (
        True,
        len(products) if isinstance(products, list) else None,
        total if isinstance(total, int) and not isinstance(total, bool) else None,
    )


class CatalogClient:
    """The HTTP client behind ``CatalogApiResource`` (plain Python, usable outside Dagster)."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        host: str,
        requests_per_second: float = 5.0,
        max_retries: int = 5,
        backoff_base_seconds: float = 0.5,
        backoff_max_seconds: float = 30.0,
        timeout_seconds: float = 30.0,
        country: str = "US",
        product_condition: str = "NEW",
        log: Callable[[str], None] | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self._headers = {"x-rapidapi-key": api_key, "x-rapidapi-host": host, "accept": "application/json"}
        self.max_retries = max_retries
        self.backoff_base = backoff_base_seconds
        self.backoff_max = backoff_max_seconds
        self.timeout = timeout_seconds
        self.country = country
        self.product_condition = product_condition
        self._limiter = RateLimiter(requests_per_second)
        self._session = build_session(
            attempts=max_retries + 1,
            backoff_factor=backoff_base_seconds,
            backoff_max=backoff_max_seconds,
            limiter=self._limiter,
        )
        self._log = log or (lambda _msg: None)

    def __repr__(self) -> str:  # never show the key
        return f"CatalogClient(base_url={self.base_url!r})"

    def close(self) -> None:
        self._session.close()

    def page_url(self, seller_id: str, page: int, query: str) -> str:
        params = {
            "query": query,
            "country": self.country,
            "seller_id": seller_id,
            "product_condition": self.product_condition,
            "page": page,
        }
        return f"{self.base_url}/search?{urlencode(params)}"

    def fetch_page(self, seller_id: str, page: int, query: str = "") -> Page:
        """GET one page (the session retries transient failures); return its body exactly as received."""
        url = self.page_url(seller_id, page, query)
        attempts: list[Attempt] = []
        for fetch in range(self.max_retries + 1):  # again only for a 200 whose body is not JSON
            exchange = send(self._session, "GET", url, headers=self._headers, timeout=self.timeout)
            attempts += [Attempt(page, t.outcome, t.wait_seconds, t.retry_after) for t in exchange.failures]
            for failed in exchange.failures:
                if not failed.gave_up:
                    self._log(
                        f"seller {seller_id} page {page}: {failed.outcome}; retried after {failed.wait_seconds:.2f}s"
                    )
            if exchange.last is not None:  # the policy gave up on a 429/5xx, a timeout or a connection error
                raise CatalogApiError(
                    f"catalog API failed for {url} after {len(attempts)} attempts (last: {exchange.last.outcome}); "
                    f"outcomes: {', '.join(a.outcome for a in attempts)}"
                )
            resp = exchange.response
            assert resp is not None  # no last failure: the exchange ended on a response
            code = resp.status_code
            if code in (401, 403):
                raise CatalogAuthError(
                    f"catalog API refused the key (HTTP {code}) for {url}: set {KEY_ENV_VAR} to a valid "
                    "API key (and ECOMMERCE_CATALOG_API_HOST to the API's host)"
                )
            if code >= 400:
                raise CatalogApiError(f"catalog API answered HTTP {code} for {url}: {resp.text[:200]}")
            is_json, n, total = _inspect(resp.content)
            if is_json:
                attempts.append(Attempt(page=page, outcome="ok"))
                return Page(page, resp.content, code, n, total, attempts)
            if fetch == self.max_retries:
                # keep what arrived: the raw zone stores it and cleaning quarantines it
                attempts.append(Attempt(page=page, outcome="malformed_json"))
                self._log(f"page {page} of seller {seller_id} is still not JSON after {fetch + 1} fetches")
                return Page(page, resp.content, code, None, None, attempts)
            wait = policy_of(self._session, url).backoff_after(fetch + 1)
            attempts.append(Attempt(page=page, outcome="malformed_json", wait_seconds=wait))
            self._log(f"seller {seller_id} page {page}: malformed_json; fetch {fetch + 2} in {wait:.2f}s")
            time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def iter_pages(self, seller_id: str, query: str = "", max_pages: int = 20) -> Iterator[Page]:
        """Pages 1..n: stop after a page whose ``data.products`` is an empty list, or after ``max_pages``.

        A page without a readable product list (not JSON, no ``data.products``) does not stop paging: it
        is handed back like any other page (cleaning quarantines it) and the next page is fetched.
        """
        for number in range(1, max_pages + 1):
            page = self.fetch_page(seller_id, number, query)
            yield page
            if page.products == 0:
                return


class CatalogApiResource(dg.ConfigurableResource):
    """The seller catalog API client: paging, rate limit, retries (urllib3) with backoff + jitter, Retry-After.

    ``api_key`` comes from ``dg.EnvVar("ECOMMERCE_CATALOG_API_KEY")``; it is never logged or shown.
    """

    base_url: str = Field(description="API base URL, e.g. https://real-time-amazon-data.p.rapidapi.com")
    api_key: str = Field(repr=False, description="API key (secret; from ECOMMERCE_CATALOG_API_KEY)")
    host: str = Field(default="real-time-amazon-data.p.rapidapi.com", description="x-rapidapi-host header")
    requests_per_second: float = Field(default=5.0, description="request-rate limit (0 = unlimited)")
    max_retries: int = Field(default=5, description="retries per page on 429/5xx/timeouts/connection errors")
    backoff_base_seconds: float = Field(
        default=0.5,
        description="backoff factor: retry 1 at once, retry n after base * 2**(n-1) plus up to base of jitter",
    )
    backoff_max_seconds: float = Field(
        default=30.0, description="largest single wait (also caps Retry-After)"
    )
    timeout_seconds: float = Field(default=30.0, description="connect/read timeout per request")
    max_pages: int = Field(default=20, description="stop paging a seller after this many pages")
    default_query: str = Field(default="", description="search query used when a seller has none")

    def get_client(self, log: Callable[[str], None] | None = None) -> CatalogClient:
        return CatalogClient(
            base_url=self.base_url,
            api_key=self.api_key,
            host=self.host,
            requests_per_second=self.requests_per_second,
            max_retries=self.max_retries,
            backoff_base_seconds=self.backoff_base_seconds,
            backoff_max_seconds=self.backoff_max_seconds,
            timeout_seconds=self.timeout_seconds,
            log=log,
        )

    def fetch_seller(
        self, seller_id: str, query: str | None = None, log: Callable[[str], None] | None = None
    ) -> list[Page]:
        """Every page of one seller's listing (see ``CatalogClient.iter_pages``)."""
        client = self.get_client(log)
        try:
            return list(
                client.iter_pages(
                    seller_id, query if query is not None else self.default_query, self.max_pages
                )
            )
        finally:
            client.close()


def simulator_url(settings: Settings) -> str:
    """Where the bundled simulator listens by default in local mode."""
    return f"http://127.0.0.1:{settings.catalog_sim_port}"


def catalog_api_resource(settings: Settings) -> dg.ConfigurableResource:
    """The ``catalog_api`` resource for ``settings``.

    It needs ``ECOMMERCE_CATALOG_API_URL`` (in aws mode the public API's address is the default) and
    ``ECOMMERCE_CATALOG_API_KEY``, which stays an env reference (``dg.EnvVar``), never a value in the run
    config. When either is missing the resource is a placeholder that fails only the fetch step and says
    which setting turns the catalog fetch on.
    """
    from ecommerce_assets.resources.unconfigured import UnconfiguredResource

    url = settings.catalog_api_url or (
        "https://real-time-amazon-data.p.rapidapi.com" if settings.env == "aws" else None
    )
    if url is None:
        return UnconfiguredResource(
            resource_key="catalog_api",
            problem=(
                f"set ECOMMERCE_CATALOG_API_URL and {KEY_ENV_VAR} to fetch seller catalogs (to try it locally: "
                f"`ecommerce-assets catalog-sim`, then ECOMMERCE_CATALOG_API_URL={simulator_url(settings)})"
            ),
        )
    if not settings.catalog_api_key_set:
        return UnconfiguredResource(
            resource_key="catalog_api", problem=f"set {KEY_ENV_VAR} to fetch seller catalogs"
        )
    return CatalogApiResource(
        base_url=url,
        api_key=dg.EnvVar(KEY_ENV_VAR),
        host=settings.catalog_api_host,
        max_pages=settings.catalog_max_pages,
    )
