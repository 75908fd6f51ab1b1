"""A quiet HTTP server on 127.0.0.1 for download tests: started on a free port in a thread, stopped and
closed on exit. Its handler errors (a client that went away on cancel) and request logs stay silent."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A request handler that logs nothing."""

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def local_server(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[tuple[QuietServer, str]]:
    """``handler`` served on 127.0.0.1; yields the server and its base URL (``http://127.0.0.1:PORT``)."""
    server = QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
