"""An HTTP proxy on 127.0.0.1 that forwards to a storage server and injects faults.

Per request it can answer 500, 503 SlowDown, 403 AccessDenied, a canned response, reset the
connection, or stall until released; it can rewrite a request body on its way (a byte flipped in
transit) and a response on its way back (ETags as another service computes them, a listing page
cut short); it can terminate TLS with a given context
(a server certificate, and a CA that client certificates must chain to for mutual TLS). It
records when each request arrived so tests can measure request rates, and counts connections
and failed TLS handshakes. Loopback only, and every loop is bounded by the test that drives it.
"""

from __future__ import annotations

import http.client
import random
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")
INTERNAL = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
            b"<Message>We encountered an internal error.</Message></Error>")
DENIED = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
          b"<Message>Access Denied</Message></Error>")
_ERRORS = {"500": INTERNAL, "503": SLOW_DOWN, "403": DENIED}


@dataclass(frozen=True)
class Canned:
    """A response the proxy gives instead of forwarding (an error a real service sends)."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


Rule = Callable[[str, str], "str | Canned | None"]
"""(method, path) -> None to forward, a Canned response, or one of "500", "503", "403", "reset", "stall"."""
RequestFilter = Callable[[str, str, bytes], bytes]
"""(method, path, body) -> the body to forward."""
ResponseFilter = Callable[[str, str, dict[str, str], bytes], tuple[dict[str, str], bytes]]
"""(method, path, headers, payload) -> the headers and payload to answer with (Content-Length follows)."""


def bodies(rewrite: Callable[[str, str, bytes], bytes]) -> ResponseFilter:
    """A response filter that rewrites only the payload."""
    return lambda method, path, headers, payload: (headers, rewrite(method, path, payload))


@dataclass
class Faults:
    rule: Rule = lambda method, path: None
    request_filter: RequestFilter = lambda method, path, body: body
    response_filter: ResponseFilter = lambda method, path, headers, payload: (headers, payload)
    release: threading.Event = field(default_factory=threading.Event)
    stalled: threading.Event = field(default_factory=threading.Event)
    log: list[tuple[float, str, str, str]] = field(default_factory=list)
    drop_stalled: bool = False
    """After a release, drop the stalled request instead of forwarding it (its client was killed)."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    connections: int = 0
    handshake_failures: list[str] = field(default_factory=list)

    def connected(self) -> None:
        with self.lock:
            self.connections += 1

    def handshake_failed(self, error: Exception) -> None:
        with self.lock:
            self.handshake_failures.append(str(error))

    def seen(self, method: str, path: str, action: str) -> None:
        with self.lock:
            self.log.append((time.monotonic(), method, path, action))


def random_faults(rate: float, seed: int = 7, kinds: tuple[str, ...] = ("500", "503", "reset", "stall-short"),
                  methods: tuple[str, ...] = ("GET", "PUT", "POST", "HEAD", "DELETE")) -> Rule:
    rng = random.Random(seed)
    lock = threading.Lock()

    def rule(method: str, path: str) -> str | None:
        with lock:
            hit = rng.random() < rate and method in methods
            return rng.choice(kinds) if hit else None

    return rule


class FaultProxy:
    def __init__(self, upstream: str, faults: Faults | None = None, tls: ssl.SSLContext | None = None) -> None:
        """``tls``: a server-side context; clients then speak HTTPS to the proxy (upstream stays as given)."""
        self.upstream = urlsplit(upstream)
        self.faults = faults or Faults()
        self.tls = tls
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                action = proxy.faults.rule(self.command, self.path)
                proxy.faults.seen(self.command, self.path, _name(action))
                if isinstance(action, Canned):
                    self._answer(action.status, dict(action.headers), action.body)
                    return
                if action == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                    return
                if action in _ERRORS:
                    self._answer(int(action), {"Content-Type": "application/xml"}, _ERRORS[action])
                    return
                if action == "stall":
                    proxy.faults.stalled.set()
                    proxy.faults.release.wait(timeout=120)
                    if proxy.faults.drop_stalled:
                        self.close_connection = True
                        return
                elif action == "stall-short":
                    time.sleep(0.5)
                self._forward(proxy.faults.request_filter(self.command, self.path, body))

            def _forward(self, body: bytes) -> None:
                connection = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                connection.request(self.command, self.path, body=body or None, headers=headers)
                response = connection.getresponse()
                kept = {key: value for key, value in response.getheaders()
                        if key.lower() not in ("connection", "transfer-encoding", "content-length", "server", "date")}
                kept, payload = proxy.faults.response_filter(self.command, self.path, kept, response.read())
                # A HEAD has no body: its length is the object's, as the server gave it.
                self._answer(response.status, kept, payload, response.getheader("Content-Length") or "0")
                connection.close()

            def _answer(self, status: int, headers: dict[str, str], payload: bytes, head_length: str = "0") -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", head_length if self.command == "HEAD" else str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def finish_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
                proxy.faults.connected()
                if proxy.tls is None:
                    super().finish_request(request, client_address)
                    return
                # The handshake runs on the connection's own thread, so one stuck client holds up no other.
                try:
                    secure = proxy.tls.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError) as exc:
                    proxy.faults.handshake_failed(exc)
                    return
                try:
                    super().finish_request(secure, client_address)
                except ssl.SSLError as exc:  # TLS 1.3 checks a client certificate after the handshake
                    proxy.faults.handshake_failed(exc)
                finally:
                    secure.close()

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.faults.release.set()
        self.server.shutdown()
        self.server.server_close()


def _name(action: str | Canned | None) -> str:
    if isinstance(action, Canned):
        return str(action.status)
    return action or "forward"
