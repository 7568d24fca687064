"""A practice system's push endpoint for tests: a real HTTP server on a free port that
records what Wijkbrug sends (replies are POSTed, status updates PUT), and can be told to
fail the first N requests."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bridge.homeserver import free_port


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class PushReceiver:
    """``with PushReceiver() as r: ... r.url ... r.received``"""

    fail_first: int = 0
    received: list[Received] = field(default_factory=list)
    attempts: int = 0
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self._record(201)

            def do_PUT(self) -> None:
                self._record(200)

            def _record(self, status: int) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                receiver.attempts += 1
                if receiver.attempts <= receiver.fail_first:
                    self.send_response(500)
                    self.end_headers()
                    return
                receiver.received.append(
                    Received(self.command, self.path, dict(self.headers), body)
                )
                self.send_response(status)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def replies(self) -> list[Received]:
        return [r for r in self.received if r.method == "POST"]

    def statuses(self) -> list[dict[str, Any]]:
        """The status updates received, as the resources pushed."""
        return [json.loads(r.body) for r in self.received if r.method == "PUT"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> PushReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
