"""A tiny HTTP server that answers each request with a crafted response: the upstream of the hostile
catalog (kintone, Graph, every AWS API, Slack)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = tuple[int, dict[str, str], bytes]


class HostileServer:
    """Answers ``METHOD path`` with what ``routes`` says (a function of the request count)."""

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[int], Answer]] = {}
        self.counts: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                key = f"{self.command} {self.path.split('?')[0]}"
                n = server.counts.get(key, 0)
                server.counts[key] = n + 1
                status, headers, body = server.routes.get(key, lambda _n: (404, {}, b"{}"))(n)
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
