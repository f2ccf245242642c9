"""OpenAI-compatible endpoints: API keys from the environment, and calls with our own retries.

Used by the judge (`mixnu.eval.judge`) and by the OpenAI backend of `mixnu generate`. The official
`openai` client is built with `max_retries=0`: retries happen here, so that every attempt is
counted, `Retry-After` is honoured exactly, and the backoff has jitter.

Retried: HTTP 408/409/429/5xx, timeouts, dropped or refused connections, and replies whose body is
not valid JSON (cut off in transit). Not retried (raised as
`JudgeError` at once): 401/403 (bad key), 404 (wrong URL or model). Other 4xx, and 5xx that the
caller's `refused` predicate recognises as a refusal of the request itself, are returned to the
caller as `CallFailure` so it can e.g. drop an unsupported `response_format` and ask again.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import json
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlparse

from mixnu.errors import ConfigError, JudgeError

T = TypeVar("T")

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def host_needs_key(base_url: str) -> bool:
    """True unless the host is local or private (localhost, 127.x, ::1, 10.x, 192.168.x, *.local)."""
    host = (urlparse(base_url).hostname or "").lower()
    if host in ("localhost", "0.0.0.0", "host.docker.internal") or host.endswith((".local", ".localhost")):
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return True
    return not (ip.is_loopback or ip.is_private or ip.is_link_local)


def resolve_api_key(base_url: str, api_key_env: str) -> str:
    """The key from `$api_key_env`; a placeholder for local servers; `ConfigError` if a remote host lacks one.

    The key itself is never logged or written anywhere.
    """
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"endpoint URL {base_url!r} must start with http:// or https:// (e.g. http://127.0.0.1:8000/v1)")
    key = os.environ.get(api_key_env, "") if api_key_env else ""
    if key:
        return key
    if host_needs_key(base_url):
        raise ConfigError(
            f"no API key for {base_url}: set the environment variable {api_key_env or 'OPENAI_API_KEY'} "
            "(or name another one with --api-key-env)"
        )
    return "not-needed"  # local servers (vLLM, Ollama, llama.cpp) accept any key


def make_client(base_url: str, api_key_env: str, timeout_s: float, concurrency: int):
    """An `openai.AsyncOpenAI` for `base_url` with the client's own retries switched off."""
    import httpx
    import openai

    key = resolve_api_key(base_url, api_key_env)
    # One connection per request in flight: httpcore's pool bookkeeping grows with the square of its size.
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    http = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)))
    return openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=timeout_s, http_client=http)


@dataclass
class RetryPolicy:
    """Exponential backoff with jitter: wait `min(max_s, base_s * 2**attempt)` × U(0.5, 1)."""

    max_retries: int = 6
    base_s: float = 0.5
    max_s: float = 30.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, max(self.max_s, retry_after)) + self.rng.uniform(0, 0.05)
        d = min(self.max_s, self.base_s * (2**attempt))
        return d * self.rng.uniform(0.5, 1.0)


@dataclass
class CallStats:
    """Counts shared by all calls of one run (the event loop is single-threaded: no locks needed)."""

    requests: int = 0
    retries: int = 0
    successes: int = 0
    waited_s: float = 0.0


@dataclass(frozen=True)
class CallFailure:
    """A non-retryable 4xx other than auth/not-found (e.g. an unsupported parameter)."""

    status: int
    message: str


class RetriesExhausted(JudgeError):
    """A transient failure (429, 5xx, timeout, dropped connection) outlasted every retry."""


def retry_after_seconds(exc: Exception) -> float | None:
    """Seconds from `Retry-After` / `retry-after-ms` headers of an API error, if any."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    cause = exc.__cause__ or exc.__context__
    text = f"HTTP {status}" if status else type(exc).__name__
    if status is None and cause is not None:
        text += f" ({type(cause).__name__})"
    return text


async def call_with_retries(fn: Callable[[], Awaitable[T]], policy: RetryPolicy, stats: CallStats,
                            where: str, refused: Callable[[int, str], bool] | None = None) -> T | CallFailure:
    """Await `fn()` until it succeeds, retrying transient failures; see the module docstring.

    `refused(status, message)` marks a 5xx as a refusal of the request itself (returned as
    `CallFailure`, not retried), e.g. a server that answers an unsupported `response_format` with 500.
    Raises `JudgeError` for auth/not-found errors, and `RetriesExhausted` for transient errors that
    outlast the retries (its message says what failed and where).
    """
    import openai

    attempt = 0
    while True:
        stats.requests += 1
        try:
            result = await fn()
        except openai.APIStatusError as exc:
            status = exc.status_code
            if status in (401, 403):
                raise JudgeError(f"{where} refused the API key (HTTP {status}); check the key in the environment "
                                 "variable named by --api-key-env") from None
            if status == 404:
                raise JudgeError(f"{where}: HTTP 404 (wrong base URL or unknown model name); check the URL "
                                 "(it usually ends in /v1) and the model") from None
            message = str(getattr(exc, "message", exc))
            if status not in _RETRY_STATUS and status < 500:
                return CallFailure(status, message[:500])
            if refused is not None and refused(status, message):
                return CallFailure(status, message[:500])
            last: Exception = exc
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:  # timeouts, refused, dropped
            last = exc
        except (json.JSONDecodeError, openai.APIResponseValidationError) as exc:  # a cut or garbled body
            last = exc
        else:
            stats.successes += 1
            return result
        if attempt >= policy.max_retries:
            raise RetriesExhausted(f"{where} failed after {attempt + 1} attempts (last: {_describe(last)}); "
                             "check that the server is running and reachable") from None
        wait = policy.delay(attempt, retry_after_seconds(last))
        stats.retries += 1
        stats.waited_s += wait
        attempt += 1
        await asyncio.sleep(wait)


def dump_usage(usage: Any) -> dict[str, int]:
    """`{"prompt_tokens": n, "completion_tokens": m}` from an OpenAI usage object or dict (zeros if absent)."""
    if usage is None:
        return {"prompt_tokens": 0, "completion_tokens": 0}
    get = usage.get if isinstance(usage, dict) else lambda k, d=None: getattr(usage, k, d)
    return {"prompt_tokens": int(get("prompt_tokens", 0) or 0),
            "completion_tokens": int(get("completion_tokens", 0) or 0)}


async def gather_or_cancel(tasks: list[asyncio.Task[Any]]) -> None:
    """Await every task; if one fails (or we are cancelled), cancel the rest before re-raising,
    so no request is left running against the server after the run has ended."""
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
