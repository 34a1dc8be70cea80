"""A small real HTTP server on 127.0.0.1 for integration tests.

    from httpserver import Route, serve   # tests/ is on sys.path under pytest

    with serve({"/privacy": (200, {"Content-Type": "text/html"}, "<p>v1</p>")}) as srv:
        url = srv.url("/privacy")              # http://127.0.0.1:PORT/privacy
        ...                                    # fetch it
        srv.routes["/privacy"] = Route(body="<p>v2</p>", delay=0.2)   # live change
        assert srv.hits["/privacy"] == 1
        assert srv.requests[-1].headers["User-Agent"].startswith("policy-monitor")

A route is one of:

- ``(status, headers, body)``: a tuple; ``body`` is ``bytes`` or ``str`` (UTF-8 encoded);
- :class:`Route`: the same plus ``delay``, seconds to wait before answering;
- a callable ``(Request) -> tuple | Route``: decides per request (conditional GETs...).

Routes are matched on the path with its query string first, then on the path alone; an
unknown path answers 404 (so a missing ``/robots.txt`` means "allow all"). ``srv.routes`` is
a plain dict that may be changed while the server runs. ``srv.hits`` counts requests per path
(without query) and ``srv.requests`` keeps every request in arrival order. GET and HEAD only.
The server runs in a daemon thread and stops when the ``with`` block ends.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeAlias
from urllib.parse import urlsplit

__all__ = ["Request", "Route", "Server", "serve"]


@dataclass(frozen=True)
class Request:
    """What the server received: method, path (without query), query, headers."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]


@dataclass(frozen=True)
class Route:
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | str = b""
    delay: float = 0.0


RouteResult: TypeAlias = Route | tuple[int, Mapping[str, str], bytes | str]
RouteSpec: TypeAlias = RouteResult | Callable[[Request], RouteResult]


class Server:
    """A running server; see the module docstring."""

    def __init__(self, routes: Mapping[str, RouteSpec]) -> None:
        self.routes: dict[str, RouteSpec] = dict(routes)
        self.hits: Counter[str] = Counter()
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._httpd = _QuietServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self.port: int = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    def _record(self, request: Request) -> None:
        with self._lock:
            self.hits[request.path] += 1
            self.requests.append(request)

    def _resolve(self, request: Request) -> Route:
        full = request.path + ("?" + request.query if request.query else "")
        spec = self.routes.get(full, self.routes.get(request.path))
        if spec is None:
            return Route(404, {"Content-Type": "text/plain"}, b"not found")
        if callable(spec):
            spec = spec(request)
        if isinstance(spec, Route):
            return spec
        status, headers, body = spec
        return Route(status, headers, body)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a timeout test) leaves a broken pipe behind: not a failure.
        exc = sys.exc_info()[1]
        if not isinstance(exc, ConnectionError):
            super().handle_error(request, client_address)


def _make_handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real sites do

        def do_GET(self) -> None:
            self._answer(send_body=True)

        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def _answer(self, *, send_body: bool) -> None:
            parts = urlsplit(self.path)
            request = Request(self.command, parts.path, parts.query, dict(self.headers.items()))
            server._record(request)
            route = server._resolve(request)
            if route.delay:
                time.sleep(route.delay)
            body = route.body.encode("utf-8") if isinstance(route.body, str) else route.body
            self.send_response(route.status)
            names = {name.lower() for name in route.headers}
            for name, value in route.headers.items():
                self.send_header(name, value)
            if "content-length" not in names and route.status not in (204, 304):
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if send_body and route.status not in (204, 304):
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output clean

    return Handler


@contextmanager
def serve(routes: Mapping[str, RouteSpec] | None = None) -> Iterator[Server]:
    """Run a :class:`Server` on an ephemeral 127.0.0.1 port for the ``with`` block."""
    server = Server(routes or {})
    server._thread.start()
    try:
        yield server
    finally:
        server._httpd.shutdown()
        server._httpd.server_close()
        server._thread.join(timeout=5)
