"""A stand-in HTTP target for testing the runner's own behaviour (verdicts on dead, failing and
hung targets) without a sandbox. It answers the embedder's API shape; it is not a model."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeTarget:
    """mode: `ok`; `fail_after` (500s after `after_s`); `hang_after` (no answer after `after_s`).
    In any mode, `PUT /fault` (what a test's fault command sends) makes it answer 503 with a
    JSON error for `FAULT_S`."""

    FAULT_S = 1.0

    def __init__(self, mode: str = "ok", after_s: float = 0.0) -> None:
        self.mode, self.after_s = mode, after_s
        self.started = time.time()
        self.requests = 0
        self.faulted_at: float | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_PUT(self) -> None:
                outer.faulted_at = time.time()
                self._reply(200, {"faulted": True})

            def do_POST(self) -> None:
                outer.requests += 1
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                late = time.time() - outer.started >= outer.after_s
                if outer.mode == "hang_after" and late:
                    time.sleep(60)
                    return
                if outer.mode == "fail_after" and late:
                    self._reply(500, {"error": "injected"})
                    return
                if outer.faulted_at and time.time() - outer.faulted_at < outer.FAULT_S:
                    self._reply(503, {"error": {"message": "no replica", "code": 503}})
                    return
                texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
                data = [
                    {"object": "embedding", "index": i, "embedding": [0.1, 0.2]}
                    for i in range(len(texts))
                ]
                usage = {"prompt_tokens": 1, "total_tokens": 1}
                self._reply(200, {"object": "list", "data": data, "model": "m", "usage": usage})

            def _reply(self, status: int, doc: dict) -> None:
                raw = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
