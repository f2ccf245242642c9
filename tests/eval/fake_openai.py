"""A real HTTP server on 127.0.0.1 speaking the OpenAI chat-completions and completions API, for tests.

It judges like a deterministic judge (scores derived from each response's text, see `expected_scores`)
and can be told to misbehave: per request it picks a mode from `script` (a queue), else a fault with
probability `fault_rate`, else `good`. Modes:

- `good`: a JSON reply with every score; `slow`: the same after `slow_s` more seconds;
- `429` (with `Retry-After: retry_after`), `500`, `401` (bad key), `400` (rejected; these two only when scripted);
- `malformed`: text with no scores; `partial`: JSON cut in the middle; `broken_body`: the HTTP body
  itself is cut (invalid JSON); `out_of_range`: scores 0, 7 and 4.5 for every model;
  `one_out_of_range`: one model's fluency is 7; `text`: scores in free text;
- `drop`: the connection is closed without a reply; `hang`: no reply until the client gives up (or
  `hang_s` passes), then the connection is closed; `stall`: the reply is held until the client
  goes away or `release()` is called (then it is answered `good`); every judge request after the
  first `stall_after` stalls.

A script entry may also be a dict: `{"content": "…"}` answers 200 with that reply text;
`{"status": 500, "body": {…}}` answers that error.

`flavor="llama-cpp-python"` reproduces that server's `response_format` handling (llama-cpp-python
0.3.x, measured 2026-11-30): `{"type": "json_object"}` and its own `{"type": "json_object", "schema": …}`
are accepted; any other type (OpenAI's `json_schema`) fails FastAPI's request validation, which its
error handler turns into **HTTP 500** with the pydantic error list as the message (`LLAMA_CPP_RF_ERROR`).
`reject_response_format` makes the server refuse those types with 400 instead (an OpenAI-like server).

Every request is logged (`log`), with a hash of its system and first user message (the judgment,
whatever follow-up turns re-asks add), so tests can assert that no prompt was judged twice. Run
standalone: `python tests/eval/fake_openai.py --port 8000 --latency 0.2`.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import random
import re
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CRITERIA = ("fluency", "relevance", "accuracy")
FAULTS = ("429", "500", "malformed", "partial", "broken_body", "out_of_range", "one_out_of_range", "drop", "hang",
          "text")
CONTENT_FAULTS = ("malformed", "partial", "out_of_range", "one_out_of_range")  # a 200 reply without every score
# The message llama-cpp-python's server (FastAPI + pydantic 2) returns with HTTP 500 for a response_format
# type other than text/json_object: str() of FastAPI's RequestValidationError, i.e. its error list.
LLAMA_CPP_RF_ERROR = ("[{'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
                      "'msg': \"Input should be 'text' or 'json_object'\", 'input': '{rf}', "
                      "'ctx': {'expected': \"'text' or 'json_object'\"}}]")


def expected_scores(response: str) -> dict[str, int]:
    """The scores this fake judge gives a response: a pure function of its text."""
    h = hashlib.sha256(response.encode()).digest()
    return {c: 1 + h[i] % 5 for i, c in enumerate(CRITERIA)}


def shown_responses(user: str) -> dict[str, str]:
    """Letter -> response text, from mixnu's default template (`<A>…</A>`) or the card's (`A: …`)."""
    blocks = dict(re.findall(r"^<([A-Z])>\n(.*?)\n</\1>$", user, re.S | re.M))
    if blocks:
        return blocks
    body = user.split("\nPrompt: ", 1)[-1]
    return dict(re.findall(r"^([A-Z]): (.*?)(?=\n[A-Z]: |\nDeduct |\Z)", body, re.S | re.M))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default 5 refuses bursts of concurrent connections

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):  # clients killed or dropped on purpose
            super().handle_error(request, client_address)


class FakeOpenAI:
    """Start with `with FakeOpenAI(...) as srv:`; `srv.base_url` ends in /v1."""

    def __init__(self, latency_s: float = 0.0, fault_rate: float = 0.0, faults: tuple[str, ...] = FAULTS,
                 seed: int = 0, retry_after: float = 0.05, slow_s: float = 1.0,
                 reject_response_format: tuple[str, ...] = (), bias_letter_a: int = 0,
                 stall_after: int | None = None, flavor: str = "openai", hang_s: float = 30.0) -> None:
        self.latency_s, self.fault_rate, self.faults = latency_s, fault_rate, faults
        self.retry_after, self.slow_s = retry_after, slow_s
        self.reject_response_format = reject_response_format
        self.bias_letter_a = bias_letter_a
        self.stall_after = stall_after  # judge requests after this many are held (`stall`)
        self.flavor, self.hang_s = flavor, hang_s
        self._picked = 0
        self.rng = random.Random(seed)
        self.script: collections.deque[str | dict[str, Any]] = collections.deque()
        self.log: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self._release = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
        self._httpd.shutdown()
        self._httpd.server_close()

    def release(self) -> None:
        self._release.set()

    def judged(self) -> collections.Counter[str]:
        """How many good (200, scored) replies each distinct judge request got."""
        return collections.Counter(e["hash"] for e in self.log
                                   if e["kind"] == "judge" and e["outcome"] in ("ok", "text", "scripted"))

    def _pick(self) -> str | dict[str, Any]:
        with self.lock:
            self._picked += 1
            if self.stall_after is not None and self._picked > self.stall_after:
                return "stall"
            if self.script:
                return self.script.popleft()
            if self.fault_rate and self.rng.random() < self.fault_rate:
                return self.rng.choice(self.faults)
            return "good"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                # No Nagle: a reply split in two writes would otherwise wait ~40 ms for the delayed ACK.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self._headers_buffer.extend([b"\r\n", body])  # headers and body in one write
                self.flush_headers()

            def do_GET(self) -> None:  # /v1/models
                self._send(200, json.dumps({"object": "list", "data": [{"id": "fake", "object": "model"}]}).encode())

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                server._serve(self, body)

            def client_gone(self) -> bool:
                r, _, _ = select.select([self.connection], [], [], 0.02)
                if not r:
                    return False
                try:
                    return self.connection.recv(1, socket.MSG_PEEK) == b""
                except OSError:
                    return True

        return Handler

    def _serve(self, h: Any, body: dict[str, Any]) -> None:
        msgs = body.get("messages")
        users = [m["content"] for m in msgs or [] if m.get("role") == "user"]
        user = users[0] if users else body.get("prompt", "")
        is_judge = bool(msgs) and "Fluency Rubric" in user
        rf_obj = body.get("response_format") or {}
        rf = rf_obj.get("type")
        entry = {"t": time.time(), "path": h.path, "kind": "judge" if is_judge else "generate",
                 "hash": hashlib.sha256(json.dumps((msgs or [])[:2] or user, ensure_ascii=False).encode()).hexdigest(),
                 "user": user, "turns": len(msgs or []), "body": body,
                 "response_format": f"{rf}+schema" if rf and "schema" in rf_obj else rf}
        mode = self._pick() if is_judge else "good"
        if self.latency_s:
            time.sleep(self.latency_s)
        if rf and self.flavor == "llama-cpp-python" and rf not in ("text", "json_object"):
            error = {"message": LLAMA_CPP_RF_ERROR.replace("{rf}", rf), "type": "internal_server_error",
                     "param": None, "code": None}
            return self._finish(h, entry, "rf_500", 500, {"error": error})
        if rf and rf in self.reject_response_format:
            return self._finish(h, entry, "400", 400, {"error": {"message": f"response_format {rf} unsupported"}})
        if isinstance(mode, dict):
            if "status" in mode:
                return self._finish(h, entry, str(mode["status"]), mode["status"], mode["body"])
            return self._finish(h, entry, "scripted", 200, self._envelope(body, mode["content"], user))
        if mode == "slow":
            time.sleep(self.slow_s)
        if mode in ("stall", "hang"):
            deadline = time.time() + (self.hang_s if mode == "hang" else float("inf"))
            while mode == "hang" or not self._release.is_set():
                if h.client_gone() or time.time() > deadline or (mode == "hang" and self._release.is_set()):
                    entry["outcome"] = "aborted" if mode == "stall" else "hang"
                    with self.lock:
                        self.log.append(entry)
                    h.close_connection = True
                    return None
            mode = "good"
        if mode == "429":
            return self._finish(h, entry, "429", 429, {"error": {"message": "rate limited"}},
                                {"Retry-After": str(self.retry_after)})
        if mode in ("500", "401", "400"):
            return self._finish(h, entry, mode, int(mode), {"error": {"message": "boom"}})
        if mode == "drop":
            entry["outcome"] = "drop"
            with self.lock:
                self.log.append(entry)
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return None
        if not is_judge:
            text = f" 응답: {user[:40]}"
            return self._finish(h, entry, "ok", 200, self._envelope(body, text, user))
        letters = shown_responses(user)
        content = self._judge_content(mode, letters)
        if mode == "broken_body":
            raw = json.dumps(self._envelope(body, content, user)).encode()[:60]
            entry["outcome"] = "broken_body"
            with self.lock:
                self.log.append(entry)
            h._send(200, raw)
            return None
        return self._finish(h, entry, "ok" if mode in ("good", "slow") else mode, 200,
                            self._envelope(body, content, user))

    def _judge_content(self, mode: str, letters: dict[str, str]) -> str:
        scores = {x: expected_scores(r) for x, r in letters.items()}
        if self.bias_letter_a and "A" in scores:
            scores["A"] = {c: min(5, v + self.bias_letter_a) for c, v in scores["A"].items()}
        if mode == "malformed":
            return "I am sorry, I cannot evaluate these responses."
        if mode == "partial":
            return json.dumps(scores)[:25]
        if mode == "out_of_range":
            return json.dumps({x: {"fluency": 0, "relevance": 7, "accuracy": 4.5} for x in letters})
        if mode == "one_out_of_range":
            return json.dumps({**scores, min(scores): {**scores[min(scores)], "fluency": 7}})
        if mode == "text":
            return "\n".join(f"Model {x}: Fluency: {s['fluency']}, Relevance: {s['relevance']}, "
                             f"Accuracy: {s['accuracy']}" for x, s in scores.items())
        return json.dumps(scores)

    def _envelope(self, body: dict[str, Any], content: str, user: str) -> dict[str, Any]:
        usage = {"prompt_tokens": len(user) // 2, "completion_tokens": max(1, len(content) // 2)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if "messages" in body:
            choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "finish_reason": "length", "text": content, "logprobs": None}
            obj = "text_completion"
        return {"id": "fake-1", "object": obj, "created": int(time.time()), "model": body.get("model", "fake"),
                "choices": [choice], "usage": usage}

    def _finish(self, h: Any, entry: dict[str, Any], outcome: str, code: int, payload: dict[str, Any],
                headers: dict[str, str] | None = None) -> None:
        entry["outcome"] = outcome
        with self.lock:
            self.log.append(entry)
        try:
            h._send(code, json.dumps(payload, ensure_ascii=False).encode(), headers)
        except OSError:
            pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--fault-rate", type=float, default=0.0)
    ap.add_argument("--hang-s", type=float, default=30.0, help="longest a `hang` fault holds a request")
    ap.add_argument("--flavor", choices=("openai", "llama-cpp-python"), default="openai")
    ap.add_argument("--port-file", help="write the port here once listening")
    args = ap.parse_args()
    srv = FakeOpenAI(latency_s=args.latency, fault_rate=args.fault_rate, hang_s=args.hang_s, flavor=args.flavor)
    if args.port:
        srv._httpd.server_close()
        srv._httpd = _Server(("127.0.0.1", args.port), srv._handler())
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as fh:
            fh.write(str(srv._httpd.server_address[1]))
        os.replace(args.port_file + ".tmp", args.port_file)
    print(srv.base_url, flush=True)
    try:
        srv._httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
