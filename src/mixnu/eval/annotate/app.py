"""The annotation page's HTTP side: a request -> response app, and the server that runs it.

`AnnotationApp.handle(method, target, headers, body)` is a pure mapping from a request to an
`HttpResponse` (tests call it directly); `make_server` wraps it in a `ThreadingHTTPServer`
that enforces the transport limits (Content-Length required, body size, socket timeout).

Routes (everything else is 404; no path is ever mapped onto the file system):
- `GET /`, `/static/app.js`, `/static/app.css`: fixed package files;
- `GET /api/state?annotator=NAME`: sample size, progress, cursor, rubric;
- `GET /api/item?annotator=NAME&position=K`: one item, with that annotator's scores so far
  (letters and text only: never model names or the judge's scores);
- `POST /api/score` `{"annotator", "item", "letter", "criterion", "score"}`: saves one score;
- `POST /api/navigate` `{"annotator", "position", "skip"}`: remembers the position.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from mixnu.errors import DataError
from mixnu.eval.annotate.items import AnnotationItem
from mixnu.eval.annotate.store import AnnotationStore, check_annotator
from mixnu.eval.criteria import CRITERIA, LANGUAGE_NOTE, RUBRIC, Criterion

STATIC = (("/", "index.html", "text/html; charset=utf-8"),
          ("/index.html", "index.html", "text/html; charset=utf-8"),
          ("/static/app.js", "app.js", "text/javascript; charset=utf-8"),
          ("/static/app.css", "app.css", "text/css; charset=utf-8"))

SECURITY_HEADERS = (
    ("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                                "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)


class ScoreIn(BaseModel):
    """Body of `POST /api/score`."""

    model_config = ConfigDict(extra="forbid")
    annotator: StrictStr = Field(max_length=40)
    item: StrictStr = Field(max_length=200)
    letter: StrictStr = Field(pattern=r"^[A-Z]$")
    criterion: Criterion
    score: StrictInt


class NavigateIn(BaseModel):
    """Body of `POST /api/navigate`: move to `position`, optionally marking item `skip` as skipped."""

    model_config = ConfigDict(extra="forbid")
    annotator: StrictStr = Field(max_length=40)
    position: StrictInt
    skip: StrictStr | None = Field(default=None, max_length=200)


@dataclass(frozen=True)
class HttpResponse:
    """Status, content type and body of one answer."""

    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


class RequestError(Exception):
    """A request the app refuses: HTTP status and a one-line message shown to the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _json(status: int, obj: Any) -> HttpResponse:
    return HttpResponse(status, "application/json; charset=utf-8", json.dumps(obj, ensure_ascii=False).encode())


def _parse(model: Any, data: dict[str, Any]) -> Any:
    """`model` validated from a request body, or a 400 naming the first bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "body"
        raise RequestError(400, f"{loc}: {first['msg']}") from None


@dataclass
class AnnotationApp:
    """The annotation web app over one store and its sampled items (see module docstring)."""

    store: AnnotationStore
    items: tuple[AnnotationItem, ...]
    max_body: int = 16384
    default_annotator: str | None = None
    allowed_hosts: frozenset[str] | None = None  # set by make_server for loopback binds
    _by_id: dict[str, AnnotationItem] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {it.item_id: it for it in self.items}

    # --- progress -------------------------------------------------------------------------
    def progress(self, annotator: str) -> dict[str, int]:
        """`done` (every cell scored), `skipped` (skipped, not done), `total`, and `first_open` (first not done)."""
        counts = self.store.cell_counts(annotator)
        done = {it.item_id for it in self.items if counts.get(it.item_id, 0) >= len(it.responses) * len(CRITERIA)}
        skipped = self.store.skipped(annotator) - done
        first_open = next((i for i, it in enumerate(self.items) if it.item_id not in done), len(self.items))
        return {"done": len(done), "skipped": len(skipped & set(self._by_id)), "total": len(self.items),
                "first_open": first_open}

    # --- dispatch -------------------------------------------------------------------------
    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes = b"") -> HttpResponse:
        """Answer one request; never raises for bad input (4xx with `{"error": message}`)."""
        try:
            if self.allowed_hosts is not None and headers.get("Host", "") not in self.allowed_hosts:
                raise RequestError(421, "unexpected Host header; open the page at the address the server printed")
            url = urlsplit(target)
            if url.path == "/favicon.ico":
                return HttpResponse(204, "image/x-icon", b"")
            for route, name, ctype in STATIC:
                if url.path == route:
                    if method != "GET":
                        raise RequestError(405, f"{method} is not allowed here")
                    data = (resources.files("mixnu") / "_data" / "annotate" / name).read_bytes()
                    return HttpResponse(200, ctype, data)
            api = {("GET", "/api/state"): self._state, ("GET", "/api/item"): self._item,
                   ("POST", "/api/score"): self._score, ("POST", "/api/navigate"): self._navigate}
            if url.path not in {p for _, p in api}:
                raise RequestError(404, "not found")
            fn = api.get((method, url.path))
            if fn is None:
                raise RequestError(405, f"{method} is not allowed on {url.path}")
            if method == "GET":
                query = parse_qs(url.query, max_num_fields=10)
                return _json(200, fn({k: v[0] for k, v in query.items()}))
            ctype = headers.get("Content-Type", "")
            if ctype.split(";")[0].strip().lower() != "application/json":
                raise RequestError(415, "send the body as application/json")
            if len(body) > self.max_body:
                raise RequestError(413, f"request body over {self.max_body} bytes")
            try:
                data = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise RequestError(400, "the body is not valid UTF-8 JSON") from None
            if not isinstance(data, dict):
                raise RequestError(400, "the body must be a JSON object")
            return _json(200, fn(data))
        except RequestError as exc:
            return _json(exc.status, {"error": str(exc)})
        except ValueError as exc:  # query parsing limits
            return _json(400, {"error": f"bad request: {exc}"})

    # --- handlers -------------------------------------------------------------------------
    def _annotator(self, name: Any) -> str:
        if not isinstance(name, str):
            raise RequestError(400, "annotator: give your name")
        try:
            return check_annotator(name)
        except DataError as exc:
            raise RequestError(400, str(exc)) from None

    def _state(self, query: dict[str, str]) -> dict[str, Any]:
        name = self._annotator(query.get("annotator"))
        self.store.ensure_annotator(name)
        cursor = min(self.store.get_cursor(name), len(self.items))
        return {"annotator": name, "cursor": cursor, **self.progress(name),
                "criteria": list(CRITERIA), "rubric": {c: list(levels) for c, levels in RUBRIC},
                "language_note": LANGUAGE_NOTE}

    def _item(self, query: dict[str, str]) -> dict[str, Any]:
        name = self._annotator(query.get("annotator"))
        try:
            pos = int(query.get("position", ""))
        except ValueError:
            raise RequestError(400, "position: give a whole number") from None
        if not 0 <= pos < len(self.items):
            raise RequestError(404, f"position {pos} is outside the sample (0-{len(self.items) - 1})")
        it = self.items[pos]
        return {
            "position": pos, "item": it.item_id, "category": it.category, "attribute": it.attribute,
            "prompt": it.prompt, "notes": [list(n) for n in it.notes],
            "responses": [{"letter": r.letter, "text": r.text} for r in it.responses],
            "scores": self.store.item_scores(name, it.item_id),
            "skipped": it.item_id in self.store.skipped(name), **self.progress(name),
        }

    def _score(self, data: dict[str, Any]) -> dict[str, Any]:
        req = _parse(ScoreIn, data)
        name = self._annotator(req.annotator)
        if not 1 <= req.score <= 5:
            raise RequestError(400, f"score {req.score} rejected: scores are whole numbers from 1 to 5")
        it = self._by_id.get(req.item)
        if it is None:
            raise RequestError(404, f"item {req.item!r} is not in the sample")
        shown = {r.letter: r.model for r in it.responses}
        if req.letter not in shown:
            raise RequestError(400, f"item {req.item} has no response {req.letter}")
        self.store.set_score(name, it.item_id, req.letter, shown[req.letter], req.criterion, req.score)
        scores = self.store.item_scores(name, it.item_id)
        complete = sum(len(v) for v in scores.values()) >= len(it.responses) * len(CRITERIA)
        if complete:
            self.store.set_skipped(name, it.item_id, False)
        return {"saved": True, "item_complete": complete, **self.progress(name)}

    def _navigate(self, data: dict[str, Any]) -> dict[str, Any]:
        req = _parse(NavigateIn, data)
        name = self._annotator(req.annotator)
        if not 0 <= req.position <= len(self.items):
            raise RequestError(400, f"position {req.position} is outside the sample (0-{len(self.items)})")
        if req.skip is not None:
            if req.skip not in self._by_id:
                raise RequestError(404, f"item {req.skip!r} is not in the sample")
            self.store.set_skipped(name, req.skip, True)
        self.store.set_cursor(name, req.position)
        return {"position": req.position, **self.progress(name)}


def make_server(app: AnnotationApp, host: str = "127.0.0.1", port: int = 0,
                timeout: float = 15.0) -> ThreadingHTTPServer:
    """Bind `app` to `host:port` (port 0 = any free port); call `serve_forever()` on the result.

    On a loopback address the `Host` header must name that address (defeats DNS rebinding).
    Request bodies need a Content-Length no larger than `app.max_body`; slow clients time out.
    """

    class Handler(BaseHTTPRequestHandler):
        server_version = "mixnu-annotate"
        sys_version = ""

        def setup(self) -> None:
            self.timeout = timeout
            super().setup()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            return

        def do_GET(self) -> None:  # noqa: N802 - stdlib naming
            self._dispatch("GET", b"")

        def do_POST(self) -> None:  # noqa: N802
            if self.headers.get("Transfer-Encoding"):
                return self._send(_json(411, {"error": "send a Content-Length, not a chunked body"}), close=True)
            length = self.headers.get("Content-Length")
            if length is None or not length.strip().isdigit():
                return self._send(_json(411, {"error": "a Content-Length header is required"}), close=True)
            if int(length) > app.max_body:
                return self._send(_json(413, {"error": f"request body over {app.max_body} bytes"}), close=True)
            body = self.rfile.read(int(length))
            if len(body) < int(length):
                return self._send(_json(400, {"error": "the body is shorter than its Content-Length"}), close=True)
            self._dispatch("POST", body)

        def _dispatch(self, method: str, body: bytes) -> None:
            self._send(app.handle(method, self.path, self.headers, body))

        def _send(self, resp: HttpResponse, close: bool = False) -> None:
            self.send_response(resp.status)
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Content-Length", str(len(resp.body)))
            for k, v in SECURITY_HEADERS + resp.headers:
                self.send_header(k, v)
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(resp.body)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    bound_port = server.server_address[1]
    if host in ("127.0.0.1", "localhost", "::1"):
        app.allowed_hosts = frozenset({f"127.0.0.1:{bound_port}", f"localhost:{bound_port}",
                                       f"[::1]:{bound_port}"})
    return server
