"""A local products REST API in the shape of the public fake-store API, for the demo and the tests.

``GET /products`` answers a JSON list of ``{id, title, price, description, category, image,
rating: {rate, count}}``; ``GET /health`` answers ``ok``. It is a real HTTP server (the standard library's
threading server) started in-process on 127.0.0.1, so the resource is exercised over real sockets.

Fault switches (set them on ``ProductsApiSim.faults`` between requests):

* ``fail_next``: a list of HTTP statuses the next requests answer with, in order (e.g. ``[503, 429]``);
  a 429 carries ``Retry-After: 0``;
* ``drop_next``: how many of the next requests are answered by closing the connection (no response);
* ``delay_seconds``: sleep before answering (to trip a client's timeout);
* ``body``: a fixed body to answer with instead of the products (e.g. ``b"not json"``);
* ``products``: the list served (defaults to ``SAMPLE_PRODUCTS``), e.g. with a bad item in it.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SAMPLE_PRODUCTS: list[dict[str, Any]] = [
    {
        "id": 1,
        "title": "Trail Running Backpack 20L",
        "price": 64.5,
        "description": "Light pack with hydration sleeve and two side pockets.",
        "category": "sports",
        "image": "https://example.invalid/img/1.png",
        "rating": {"rate": 4.4, "count": 212},
    },
    {
        "id": 2,
        "title": "Cotton Crew T-Shirt",
        "price": 12.99,
        "description": "Plain organic cotton t-shirt, regular fit.",
        "category": "men's clothing",
        "image": "https://example.invalid/img/2.png",
        "rating": {"rate": 4.1, "count": 530},
    },
    {
        "id": 3,
        "title": "Silver Hoop Earrings",
        "price": 29.0,
        "description": "Sterling silver hoops, 25 mm.",
        "category": "jewelery",
        "image": "https://example.invalid/img/3.png",
        "rating": {"rate": 3.9, "count": 88},
    },
    {
        "id": 4,
        "title": "USB-C Portable SSD 1TB",
        "price": 109.0,
        "description": "Pocket-size solid state drive, 1,050 MB/s.",
        "category": "electronics",
        "image": "https://example.invalid/img/4.png",
        "rating": {"rate": 4.7, "count": 1204},
    },
    {
        "id": 5,
        "title": "Rain Jacket",
        "price": 79.95,
        "description": "Waterproof, breathable, packs into its own pocket.",
        "category": "women's clothing",
        "image": "https://example.invalid/img/5.png",
        "rating": {"rate": 4.3, "count": 341},
    },
]


@dataclass
class Faults:
    """What the simulator does wrong next (see the module docstring)."""

    fail_next: list[int] = field(default_factory=list)
    drop_next: int = 0
    delay_seconds: float = 0.0
    body: bytes | None = None
    products: list[dict[str, Any]] | None = None


class ProductsApiSim:
    """The simulator: ``start()`` it (or use it as a context manager), read ``url``, ``stop()`` it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.faults = Faults()
        self.requests: list[tuple[str, int]] = []  # (path, status) in order; status 0 = dropped
        self._lock = threading.Lock()
        sim = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                return

            def _send(self, status: int, body: bytes, content_type: str = "application/json",
                      headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - the base class's name
                path = self.path.split("?", 1)[0].rstrip("/") or "/"
                with sim._lock:
                    faults = sim.faults
                    drop = faults.drop_next > 0
                    if drop:
                        faults.drop_next -= 1
                    status = faults.fail_next.pop(0) if (not drop and faults.fail_next) else 200
                    delay = faults.delay_seconds
                    body = faults.body
                    products = copy.deepcopy(faults.products if faults.products is not None else SAMPLE_PRODUCTS)
                    sim.requests.append((path, 0 if drop else status))
                if delay:
                    time.sleep(delay)
                if drop:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if path == "/health":
                    self._send(200, b"ok", "text/plain")
                    return
                if path not in ("/products",) and not path.startswith("/products/"):
                    self._send(404, json.dumps({"error": f"no route {path}"}).encode())
                    return
                if status != 200:
                    headers = {"Retry-After": "0"} if status == 429 else None
                    self._send(status, json.dumps({"error": f"simulated {status}"}).encode(), headers=headers)
                    return
                if body is not None:
                    self._send(200, body)
                    return
                if path.startswith("/products/"):
                    wanted = path.rsplit("/", 1)[-1]
                    match = [p for p in products if str(p.get("id")) == wanted]
                    if not match:
                        self._send(404, json.dumps({"error": f"no product {wanted}"}).encode())
                        return
                    self._send(200, json.dumps(match[0]).encode())
                    return
                self._send(200, json.dumps(products).encode())

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ProductsApiSim:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, name="products-api-sim", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> ProductsApiSim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_products_api_sim(port: int = 0) -> ProductsApiSim:
    """Start a simulator on 127.0.0.1 (``port=0``: a free port) in a background thread; return it."""
    return ProductsApiSim(port=port).start()


if __name__ == "__main__":  # pragma: no cover - manual use: python -m ecommerce_assets.dev.products_api_sim
    import sys

    sim = ProductsApiSim(port=int(sys.argv[1]) if len(sys.argv) > 1 else 8765)
    print(f"products API simulator on {sim.url}/products (Ctrl-C stops it)")
    try:
        sim._server.serve_forever()
    except KeyboardInterrupt:
        sim.stop()
