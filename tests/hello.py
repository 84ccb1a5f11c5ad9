"""A `hello` instance in the test's own process: two fewer processes to start per test."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hello(ThreadingHTTPServer):
    """An instance of `hello` in the test's process (two fewer processes to start): answers
    its name, and 503 to every `fail_every`th request once set; /healthz stays 200."""

    daemon_threads = True
    # Its accept thread shares the test's process: under load a backlog of 5 (the
    # default) fills, and the kernel drops connections a mesh node then times out on.
    request_queue_size = 128

    def __init__(self, label: str) -> None:
        super().__init__(("127.0.0.1", 0), _HelloHandler)
        self.label, self.port = label, self.server_address[1]
        self.fail_every, self.answered = 0, 0
        self._lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def status(self) -> int:
        with self._lock:
            self.answered += 1
            if self.fail_every and self.answered % self.fail_every == 0:
                return 503
            return 200

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _HelloHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the mesh's pools expect
    server: Hello

    def do_GET(self) -> None:
        status = 200 if self.path == "/healthz" else self.server.status()
        body = json.dumps({"service": "hello", "instance": self.server.label}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # a line per request on the test's stderr otherwise
