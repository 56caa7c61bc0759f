"""The HTTP plumbing of the fakes, shared by the Tines fake (tests) and bench/fakes.py.

`JsonHandler` reads a request (path, query, JSON body), asks `respond` for the answer and
sends it as JSON over a keep-alive HTTP/1.1 connection; `start` serves a handler class on
127.0.0.1 in a daemon thread.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Json = Any
Answer = tuple[int, Json, dict[str, str]]


class JsonHandler(BaseHTTPRequestHandler):
    """Subclasses implement `respond`; it returns (status, JSON body, extra headers), or None
    when it has dealt with the connection itself (`reset`)."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without this, Nagle's algorithm and
    # delayed ACKs add ~40 ms to every answer.
    disable_nagle_algorithm = True

    def respond(self, method: str, path: str, query: dict[str, str], body: Json) -> Answer | None:
        raise NotImplementedError

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the fakes keep their own records."""

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body: Json = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        answer = self.respond(method, url.path, query, body)
        if answer is not None:
            self.answer(*answer)

    def answer(self, status: int, body: Json, headers: dict[str, str]) -> None:
        payload = b"" if status == 204 else json.dumps(body).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if payload:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        try:
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its timeout)

    def reset(self) -> None:
        """Drop the connection with a TCP RST: the client sees a reset connection."""
        # SO_LINGER 0 makes close() send a RST instead of a FIN.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()


def start(handler: type[JsonHandler], port: int = 0) -> ThreadingHTTPServer:
    """Serve `handler` on 127.0.0.1:`port` (0: a free one) in a daemon thread."""
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    return server
