"""Files in and out: atomic writes, JSONL, and the corpus reader every stage shares.

Every output goes through `atomic_write` / `atomic_dir`: content is written to a temporary path
in the same directory and moved into place with `os.replace`, so a killed run leaves either the
old output or nothing, never a file or folder that looks complete but is not.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mixnu.errors import DataError, OutputExistsError
from mixnu.text import normalize_text


@functools.cache
def _umask() -> int:
    """The process umask (read once: `os.umask` can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    """Open a temp file beside `path`; on clean exit fsync it and rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; the output gets the mode `open()` would give it
    binary = "b" in mode
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write a text file and return its path."""
    with atomic_write(path) as fh:
        fh.write(text)
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write `obj` as indented UTF-8 JSON (Korean stays readable: no ASCII escapes)."""
    return write_text(path, json.dumps(obj, ensure_ascii=False, indent=2, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def to_jsonable(obj: Any) -> Any:
    """Round-trip `obj` (dataclass, pydantic model, paths …) into plain JSON types."""
    return json.loads(json.dumps(obj, ensure_ascii=False, default=_json_default))


def check_output(path: str | Path, force: bool) -> Path:
    """Refuse an existing output path unless `force` (then it is replaced only at the end)."""
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path} already exists; choose another output path or pass --force to replace it")
    return path


@contextlib.contextmanager
def atomic_dir(path: str | Path, force: bool = False) -> Iterator[Path]:
    """Build a folder in a temp dir beside `path`; on clean exit move it to `path`.

    An existing `path` is refused unless `force`; with `force` the old folder is removed only
    after the new one is complete. On any error (or a kill) the temp folder is removed or left
    under a dot-name that never looks like the output.
    """
    path = check_output(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; the output gets the mode `mkdir()` would give it
    try:
        yield tmp
        _plain_modes(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _plain_modes(folder: Path) -> None:
    """Give every file under `folder` the mode a plain `open(..., "w")` would (0666 & ~umask, keeping
    execute bits): libraries that write through their own temp files leave 0600 (safetensors weights
    saved by transformers 5), which another user or a serving account cannot read."""
    mask = _umask()
    for f in folder.rglob("*"):
        if f.is_file() and not f.is_symlink():
            mode = f.stat().st_mode & 0o777
            want = (0o666 & ~mask) | (mode & 0o111 & ~mask)
            if mode != want:
                f.chmod(want)


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one record and fsync, so a kill -9 loses at most the record being written.

    Each JSONL file has one writer; readers skip a torn last line (see `read_jsonl`).
    """
    append_jsonl_many(path, [record])


def append_jsonl_many(path: str | Path, records: list[dict[str, Any]]) -> None:
    """Append records as JSONL lines with one write and one fsync (a kill loses at most this batch,
    leaving at worst a torn last line: `read_jsonl` skips it, `repair_torn_tail` cuts it)."""
    text = "".join(json.dumps(r, ensure_ascii=False, default=_json_default) + "\n" for r in records)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def repair_torn_tail(path: str | Path) -> None:
    """Cut a torn last line (a kill mid-append) so the next append starts on a fresh line."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    with open(path, "r+b") as fh:
        fh.truncate(data.rfind(b"\n") + 1)
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: str | Path, tolerate_torn_tail: bool = True) -> list[dict[str, Any]]:
    """Read a JSONL file. A torn final line (from a kill mid-write) is dropped, not an error."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    records: list[dict[str, Any]] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if tolerate_torn_tail and i == len(lines):
                break
            raise DataError(f"{path}:{i}: not valid JSON ({exc.msg}); fix or remove that line") from None
    return records


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> Path:
    """Atomically write a whole JSONL file."""
    with atomic_write(path) as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False, default=_json_default) + "\n")
    return Path(path)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (inputs can be many GB)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "chat_template.jinja", "chat_template.json")


def copy_tokenizer_files(src: str | Path, dest: str | Path) -> list[str]:
    """Copy the tokenizer files of folder `src` into `dest` byte for byte; returns the names copied.

    Used after `save_pretrained`, which in transformers 5 rewrites tokenizer_config.json (renames the
    class, drops `add_bos_token`), so every folder down the recipe declares the special tokens the
    extended tokenizer declared (docs/tokenizer.md).
    """
    copied = []
    for name in TOKENIZER_FILES:
        if (Path(src) / name).is_file():
            shutil.copyfile(Path(src) / name, Path(dest) / name)
            copied.append(name)
    return copied


def _open_bytes(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def iter_corpus(path: str | Path, text_field: str = "text", allow_empty: bool = False) -> Iterator[str]:
    """Yield the NFC-normalised documents of a corpus file, skipping blank ones.

    Formats, by suffix (optionally followed by `.gz`):
    - `.txt` (or anything else): one document or line per line;
    - `.jsonl`: one JSON object per line, text in its `text_field` field (default `text`).

    Raises `DataError` naming file and line for bad UTF-8, bad JSON or a missing text field,
    and for a missing file or (unless `allow_empty`) an empty one.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: corpus file not found; check the path")
    stem = path.name[:-3] if path.name.endswith(".gz") else path.name
    is_jsonl = stem.endswith(".jsonl")
    n = 0
    try:
        with _open_bytes(path) as fh:
            for lineno, raw in enumerate(fh, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DataError(
                        f"{path}:{lineno}: not valid UTF-8 (byte {exc.start}); re-encode the file as UTF-8"
                    ) from None
                if is_jsonl:
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
                    if not isinstance(obj, dict) or not isinstance(obj.get(text_field), str):
                        has = ", ".join(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
                        raise DataError(f"{path}:{lineno}: JSONL records need a string field '{text_field}' "
                                        f"(this one has: {has or 'no fields'})")
                    line = obj[text_field]
                line = normalize_text(line.rstrip("\r\n"))
                if line.strip():
                    n += 1
                    yield line
    except (OSError, EOFError) as exc:
        if isinstance(exc, gzip.BadGzipFile) or isinstance(exc, EOFError):
            raise DataError(f"{path}: not a valid gzip file ({exc}); decompress or re-create it") from None
        raise
    if n == 0 and not allow_empty:
        raise DataError(f"{path}: corpus is empty (no non-blank lines); give a file with text in it")


def read_corpus(path: str | Path, max_lines: int | None = None) -> list[str]:
    """The documents of a corpus file as a list (see `iter_corpus`), optionally the first `max_lines`."""
    out: list[str] = []
    for line in iter_corpus(path):
        out.append(line)
        if max_lines is not None and len(out) >= max_lines:
            break
    return out


def read_domain_tsv(path: str | Path) -> list[tuple[str, str]]:
    """Read `domain<TAB>text` lines (the format of `dev_sentences.tsv`), NFC-normalised.

    A first line `domain<TAB>text` is a header and is skipped.
    """
    rows: list[tuple[str, str]] = []
    for i, line in enumerate(iter_corpus(path), 1):
        if i == 1 and line.strip().lower() == "domain\ttext":
            continue
        if "\t" not in line:
            raise DataError(f"{path}:{i}: expected 'domain<TAB>text'")
        domain, text = line.split("\t", 1)
        rows.append((domain.strip(), text))
    return rows
