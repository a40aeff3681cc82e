"""A local HTTP file server for download tests: byte ranges, request log and fault switches.

The stdlib handler ignores ``Range``; this one answers ``Range: bytes=N-`` with 206 and Content-Range,
so resumption can be tested without the internet.
"""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


class LocalServer:
    """An HTTP server on 127.0.0.1 (a free port) in a background thread; a subclass calls :meth:`_listen` with its
    handler class from ``__init__``. A context manager: started on entry, stopped on exit."""

    def _listen(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        # A short poll interval makes shutdown (and so each test's teardown) quick.
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class FileServer(LocalServer):
    """Serve ``root`` on 127.0.0.1 (a free port) from a background thread.

    Switches, settable between requests:
        cut_after: the next response body stops after this many bytes and the connection closes (once).
        missing: URL paths (e.g. ``"/val2017/1.jpg"``) answered with 404 although the file exists.
        ignore_range: answer 200 with the whole file even when a range is asked for.
        delay: seconds to pause before each 64 KiB of a body (a slow server, so a test can stop a client mid-file).
    ``requests`` logs (path, Range header or None) for every request, in order of arrival.
    """

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.cut_after: int | None = None
        self.missing: set[str] = set()
        self.ignore_range = False
        self.delay = 0.0
        self.requests: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()
        self._listen(_handler(self))

    def _take_cut(self) -> int | None:
        with self._lock:
            cut, self.cut_after = self.cut_after, None
            return cut


def _handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = unquote(urlsplit(self.path).path)
            asked = self.headers.get("Range")
            with server._lock:
                server.requests.append((path, asked))
            file = (server.root / path.lstrip("/")).resolve()
            if path in server.missing or not file.is_relative_to(server.root) or not file.is_file():
                self.send_error(404)
                return
            data = file.read_bytes()
            start = 0
            if asked and not server.ignore_range:
                start = int(asked.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            body = data[start:]
            cut = server._take_cut()
            if cut is not None:
                body = body[:cut]
                self.close_connection = True
            for start in range(0, len(body), 1 << 16):
                if server.delay:
                    time.sleep(server.delay)
                self.wfile.write(body[start:start + (1 << 16)])

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

    return Handler
