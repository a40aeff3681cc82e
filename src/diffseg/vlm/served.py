"""The client of the ``openai`` backend: a served VLM asked through the OpenAI chat completions API.

vLLM, SGLang and TGI serve Qwen2.5-VL behind ``POST /v1/chat/completions`` and batch the requests in flight
continuously (docs/scale.md, "Served VLM"). Each request carries the conversation with its images as PNG data
URLs (at the size the planner or judge fitted them to), greedy decoding (``temperature: 0``) and
``max_tokens: max_new_tokens``. ``concurrency`` requests are in flight at once; answers come back in request
order. A connection error, a timeout, HTTP 429 or a 5xx is tried again (``retries`` times, waiting
``BACKOFF_S`` doubled per try, or the server's ``Retry-After``); any other failure is the item's, never the
stage's: the caller records it as the answer's error. Only the standard library: urllib in a thread pool.
"""
from __future__ import annotations

import base64
import http.client
import io
import json
import os
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from diffseg.errors import UserError
from diffseg.params import VLM

BACKOFF_S = 1.0  # the wait before the first retry; doubled before each further one
MAX_WAIT_S = 60.0  # the longest wait before a retry, a server's Retry-After included
SEED = 0  # greedy decoding draws nothing; a server that samples anyway then draws alike on every run
ERROR_CHARS = 300  # how much of a server's error message an item's error keeps
# The request's (role, image_id, turn, attempt) as JSON: lets a server's log, or a test's stub, tell requests apart.
KEY_HEADER = "X-Request-Key"


class Failure(Exception):
    """One failed try: ``retry`` says whether another try may succeed; ``status`` is the HTTP status, if any."""

    def __init__(self, message: str, retry: bool, status: int | None = None, wait: float | None = None):
        super().__init__(message)
        self.message, self.retry, self.status, self.wait = message, retry, status, wait


class Client:
    """A chat completions endpoint for one stage; ``key`` (``propose.vlm``, ``filter.vlm``) names it in errors."""

    def __init__(self, cfg: VLM, key: str):
        self.cfg, self.key = cfg, key
        base = cfg.endpoint.rstrip("/")
        self.base = base[:-3] if base.endswith("/v1") else base  # http://host:8000 and http://host:8000/v1 alike
        self.sent = self.retried = 0  # completion requests sent, and how many of them were retries
        self._lock = threading.Lock()

    def check(self) -> None:
        """Stop before any work when no server answers, it refuses the key, or it serves another model."""
        try:
            listed = self._once("GET", "/v1/models")
        except Failure as fail:
            if fail.status in (401, 403):
                raise UserError(f"{self.key}.api_key_env: the server at {self.base} refused the request "
                                f"({fail.message}); set {self.cfg.api_key_env or 'api_key_env'} to its API key"
                                ) from None
            if fail.status == 404:  # a server that does not list its models: the first request will tell
                return
            raise UserError(f"{self.key}.endpoint: no OpenAI-compatible server answers at {self.base}/v1/models "
                            f"({fail.message}); start one (docs/scale.md, Served VLM) or fix the URL") from None
        data = listed.get("data") if isinstance(listed, dict) else None
        served = [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)] if isinstance(
            data, list) else []
        if served and self.cfg.model not in served:
            raise UserError(f"{self.key}.model: the server at {self.base} serves {', '.join(served)}, not "
                            f"'{self.cfg.model}' (vllm serve names the model by the id it loads unless "
                            f"--served-model-name says otherwise)")

    def answer_all(self, jobs: list[tuple[tuple, list[dict], list[Image.Image]]]) -> list[tuple[str, str]]:
        """(text, error) per (key, messages, images) job, in job order, ``concurrency`` in flight."""
        with ThreadPoolExecutor(max_workers=self.cfg.concurrency) as pool:
            return list(pool.map(lambda job: self.complete(*job), jobs))

    def complete(self, key: tuple, messages: list[dict], images: list[Image.Image]) -> tuple[str, str]:
        payload = {"model": self.cfg.model, "messages": to_openai(messages, images), "temperature": 0,
                   "max_tokens": self.cfg.max_new_tokens, "seed": SEED}
        try:
            return _content(self._tried("POST", "/v1/chat/completions", payload, {KEY_HEADER: json.dumps(key)})), ""
        except Failure as fail:
            return "", f"vlm error: {fail.message}"

    def _tried(self, method: str, path: str, payload: dict, headers: dict) -> object:
        attempt = 0
        while True:
            with self._lock:
                self.sent += 1
            try:
                return self._once(method, path, payload, headers)
            except Failure as fail:
                if not fail.retry or attempt == self.cfg.retries:
                    tries = f" (after {attempt + 1} tries)" if attempt else ""
                    raise Failure(fail.message + tries, False, fail.status) from None
                with self._lock:
                    self.retried += 1
                time.sleep(min(MAX_WAIT_S, fail.wait if fail.wait is not None else BACKOFF_S * 2 ** attempt))
                attempt += 1

    def _once(self, method: str, path: str, payload: dict | None = None, headers: dict | None = None) -> object:
        """One HTTP try; its JSON body, or a :class:`Failure`."""
        head = {"Content-Type": "application/json", **(headers or {})}
        api_key = os.environ.get(self.cfg.api_key_env) if self.cfg.api_key_env else None
        if api_key:  # read at each request and sent only in the header: never logged or written
            head["Authorization"] = f"Bearer {api_key}"
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self.base + path, data=data, headers=head, method=method)
        try:
            # The timeout bounds each wait on the socket; a non-streamed completion sends nothing until it is done.
            with urllib.request.urlopen(request, timeout=self.cfg.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            status = err.code
            raise Failure(f"HTTP {status}: {_error_text(err)}", status == 429 or status >= 500, status,
                          _retry_after(err.headers.get("Retry-After"))) from None
        except TimeoutError:
            raise Failure(f"no answer within timeout_s ({self.cfg.timeout_s:g} s)", True) from None
        except urllib.error.URLError as err:
            if isinstance(err.reason, TimeoutError):
                raise Failure(f"no answer within timeout_s ({self.cfg.timeout_s:g} s)", True) from None
            raise Failure(f"connection failed: {err.reason}", True) from None
        except (OSError, http.client.HTTPException) as err:  # reset or cut off mid-answer
            raise Failure(f"connection failed: {type(err).__name__}: {err}", True) from None
        try:
            return json.loads(raw)
        except ValueError:
            raise Failure(f"malformed response: not JSON ({raw[:60]!r})", False) from None


def to_openai(messages: list[dict], images: list[Image.Image]) -> list[dict]:
    """The chat messages in OpenAI's form: each ``{"type": "image"}`` slot becomes the next image, a PNG data URL."""
    queue = iter(images)
    out = []
    for message in messages:
        content = message["content"]
        if not isinstance(content, str):
            content = [{"type": "image_url", "image_url": {"url": data_url(next(queue))}} if part["type"] == "image"
                       else {"type": "text", "text": part["text"]} for part in content]
        out.append({"role": message["role"], "content": content})
    return out


def data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _content(body: object) -> str:
    """The answer's text; a refusal the server reports apart (``message.refusal``) is the text too."""
    try:
        message = body["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        raise Failure("malformed response: no choices[0].message", False) from None
    for field in ("content", "refusal"):
        if isinstance(message, dict) and isinstance(message.get(field), str):
            return message[field]
    raise Failure("malformed response: choices[0].message has no text content", False)


def _error_text(err: urllib.error.HTTPError) -> str:
    """The server's error message, else the start of the body. OpenAI writes ``{"error": {"message": ...}}``,
    TGI ``{"error": "..."}`` and older vLLM ``{"message": ...}``."""
    try:
        raw = err.read()
    except (OSError, http.client.HTTPException):
        raw = b""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        text = error.get("message") if isinstance(error, dict) else error if error else body.get("message")
        if isinstance(text, str):
            return text.strip()[:ERROR_CHARS]
    return raw.decode("utf-8", "replace").strip()[:ERROR_CHARS] or (err.reason or "no message")


def _retry_after(value: str | None) -> float | None:
    """A Retry-After in seconds (the HTTP-date form is rare from model servers and waits the default)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
