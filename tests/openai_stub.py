"""A local OpenAI-compatible chat completions server for the ``openai`` VLM backend's tests.

It answers from a recorded transcript (``transcript.jsonl`` lines: role, image_id, turn, attempt, answer; lines
with an error are left out), finding each request's line by the ``X-Request-Key`` header the backend sends
(the request's role, image id, turn and attempt as JSON). A request it holds no line for gets a 400.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from http_fixture import LocalServer

NOT_JSON = b"<html>502 Bad Gateway</html>"


class ChatServer(LocalServer):
    """Serve chat completions on 127.0.0.1 (a free port) from a background thread.

    Switches, settable between requests:
        models: the ids ``/v1/models`` lists; None answers it with 404 (a server that lists nothing).
        faults: per request key (role, image_id, turn, attempt), the faults of its next tries, one per try:
            ``slow`` (answers after ``slow_s``), ``not_json`` (a 200 with an HTML body), ``no_choices`` (a 200
            with ``{"choices": []}``), ``400`` (a refusal with an OpenAI error body), ``429`` or ``503``.
        delay: seconds every answer takes (so that requests in flight overlap).
        stop_after: the server shuts down after answering this many completion requests (later ones are refused).
        api_key: when set, requests without ``Authorization: Bearer <api_key>`` get a 401.
    Records: ``requests`` (key, payload, Authorization header or None) per completion request in order of arrival,
    ``max_in_flight`` (the most completion requests it held at once).
    """

    def __init__(self, transcript: Path | list[dict], models: list[str] | None = ("served-vlm",)):
        lines = transcript if isinstance(transcript, list) else [
            json.loads(line) for line in Path(transcript).read_text().splitlines() if line.strip()]
        self.answers = {(e["role"], e["image_id"], e["turn"], int(e["attempt"])): e["answer"]
                        for e in lines if not e.get("error")}
        self.models = None if models is None else list(models)
        self.faults: dict[tuple, list[str]] = {}
        self.delay, self.slow_s = 0.0, 2.0
        self.stop_after: int | None = None
        self.api_key: str | None = None
        self.requests: list[tuple[tuple, dict, str | None]] = []
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        self._listen(_handler(self))

    def take(self, key: tuple, payload: dict, auth: str | None) -> tuple[str | None, int]:
        """Log a completion request; its fault (or None) and its number in order of arrival."""
        with self._lock:
            self.requests.append((key, payload, auth))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            queue = self.faults.get(key, [])
            return (queue.pop(0) if queue else None), len(self.requests)

    def done(self) -> None:
        with self._lock:
            self.in_flight -= 1


def _handler(server: ChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/v1/models" or server.models is None:
                self._json(404, {"error": {"message": f"no route {self.path}"}})
            elif not self._authorised():
                self._json(401, {"error": {"message": "invalid API key"}})
            else:
                self._json(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in server.models]})

        def do_POST(self) -> None:
            payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            key = tuple(json.loads(self.headers.get("X-Request-Key", "[]")))
            fault, number = server.take(key, payload, self.headers.get("Authorization"))
            try:
                self._answer(key, fault)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (a slow answer)
                pass
            finally:
                server.done()
            if server.stop_after is not None and number == server.stop_after:
                server.stop()  # a server going away: every later request is refused

        def _answer(self, key: tuple, fault: str | None) -> None:
            time.sleep(server.slow_s if fault == "slow" else server.delay)
            if not self._authorised():
                self._json(401, {"error": {"message": "invalid API key"}})
            elif fault == "not_json":
                self._raw(200, NOT_JSON, "text/html")
            elif fault == "no_choices":
                self._json(200, {"id": "x", "object": "chat.completion", "choices": []})
            elif fault == "400":
                refusal = {"message": "stub: the request was refused", "type": "invalid_request_error"}
                self._json(400, {"error": refusal})
            elif fault in ("429", "503"):
                self._json(int(fault), {"error": {"message": f"stub: {fault}, try later"}})
            elif key not in server.answers:
                self._json(400, {"error": {"message": f"stub: no recorded answer for {list(key)}"}})
            else:
                message = {"role": "assistant", "content": server.answers[key]}
                self._json(200, {"id": "x", "object": "chat.completion",
                                 "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})

        def _authorised(self) -> bool:
            return server.api_key is None or self.headers.get("Authorization") == f"Bearer {server.api_key}"

        def _json(self, status: int, body: dict) -> None:
            self._raw(status, json.dumps(body).encode(), "application/json")

        def _raw(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

    return Handler
