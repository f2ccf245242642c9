"""Start and stop a local OpenAI-compatible server (llama.cpp's `python -m llama_cpp.server`) by PID.

`serve(cmd, base_url)` is a context manager: it starts `cmd` (its output goes to a log file), polls
`GET {base_url}/models` until it answers 200, yields, and on exit stops that one process (SIGTERM,
then SIGKILL after `stop_timeout_s`). A server whose process exits, or that does not answer within
`ready_timeout_s`, is stopped and reported as one `ServerNotReadyError` line quoting its last log line.

`llama_cpp_command(...)` builds the command line for llama-cpp-python's server with the settings
measured to work on a loaded 2-core CPU (`--n_threads 1`; see docs/real-model.md). That server's
quirks a client must handle: OpenAI's `response_format: json_schema` is refused with HTTP 500; its own
`{"type": "json_object", "schema": ...}` is enforced by a grammar; the first request can take 10-50 s.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from mixnu.errors import JudgeError


class ServerNotReadyError(JudgeError):
    """A local server exited, or did not answer, before it became ready."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def llama_cpp_command(python: str | Path, gguf: str | Path, port: int, *, n_ctx: int = 2048,
                      n_threads: int = 1, alias: str | None = None) -> list[str]:
    """Command line of `python -m llama_cpp.server` on 127.0.0.1:`port` serving `gguf`."""
    cmd = [str(python), "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(n_threads)]
    if alias:
        cmd += ["--model_alias", alias]
    return cmd


def _ready(base_url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{base_url.rstrip('/')}/models", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _last_line(log: Path) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return (lines[-1] if lines else "no output")[:200]


def stop(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Stop this one process: SIGTERM, wait, then SIGKILL."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout_s)


@contextlib.contextmanager
def serve(cmd: list[str], base_url: str, log: str | Path, *, ready_timeout_s: float = 180.0,
          stop_timeout_s: float = 10.0, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """Run `cmd` until the block ends; yield once `{base_url}/models` answers. See the module docstring.

    Raises `ServerNotReadyError` if the process exits or is not ready within `ready_timeout_s`.
    """
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + ready_timeout_s
        while not _ready(base_url):
            if proc.poll() is not None:
                raise ServerNotReadyError(f"the server ({Path(cmd[0]).name} ...) exited with code {proc.returncode} "
                                          f"before it was ready: {_last_line(log)} (log: {log})")
            if time.monotonic() > deadline:
                raise ServerNotReadyError(f"the server at {base_url} was not ready after {ready_timeout_s:.0f} s "
                                          f"(stopped it; last log line: {_last_line(log)}; log: {log})")
            time.sleep(0.5)
        yield proc
    finally:
        stop(proc, stop_timeout_s)
