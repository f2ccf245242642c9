"""Where mixnu's data comes from: the built-in data shipped in the package, or a folder you give.

One rule everywhere (library, CLI, demo, tests, benches), for every data file:
1. an explicit path or config field (`--data DIR`, `ExtendConfig.base`, …);
2. else `$MIXNU_DATA` (a data folder: `corpus/`, `eval/`, `tokenizers/`), or `$MIXNU_SHARED`
   (a folder holding such a `data/`), when set;
3. else the built-in data: four Korean domain corpora, their held-out text, a dev and an
   out-of-domain set, and Llama-2's `tokenizer.model`, shipped xz-compressed under
   `mixnu/_data/datasets/` (licences in its `DATA_LICENSES.md`).

`load_builtin(name)` decompresses one built-in file once into the user cache folder
(`$MIXNU_CACHE`, else `~/.cache/mixnu`), checks its sha256 against
`manifest.json`, and returns its path. Larger peer assets (llama.cpp's vocab-only GGUF files) are
not shipped: `gguf_vocab(name)` takes them from the data folder when set, else fetches them once
from the `llama-cpp-python` source distribution on PyPI into the cache.
Errors a user can fix raise `DataError` with one line saying what to do.
"""

from __future__ import annotations

import functools
import hashlib
import json
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from mixnu.errors import DataError
from mixnu.io import atomic_dir, atomic_write, sha256_file

DOMAINS = ("law", "tech", "daily", "literature")
LLAMA2_TOKENIZER = "tokenizers/llama-2/tokenizer.model"
DEV_SET = "eval/dev_sentences.tsv"
OOD_SET = "eval/ood_sentences.tsv"
LLAMA2_LICENCE_FILES = ("LICENSE", "NOTICE", "USE_POLICY.md")
LLAMA_CPP_SDIST = "llama-cpp-python==0.3.36"  # vendors llama.cpp's models/ggml-vocab-*.gguf


# ---------------------------------------------------------------------------------------- built-in
def _package_dir() -> Path:
    return Path(str(resources.files("mixnu") / "_data" / "datasets"))


@functools.cache
def manifest() -> dict[str, Any]:
    """The built-in data's manifest: `{"name", "version", "files": {relpath: {sha256, bytes, lines, …}}}`."""
    return json.loads((_package_dir() / "manifest.json").read_text(encoding="utf-8"))


def builtin_names() -> list[str]:
    """Relative paths of every built-in file, e.g. `corpus/law.txt`, `tokenizers/llama-2/tokenizer.model`."""
    return list(manifest()["files"])


def cache_dir() -> Path:
    """mixnu's cache folder: `$MIXNU_CACHE`, else `~/.cache/mixnu` (as the tokenised-data cache)."""
    return Path(os.environ.get("MIXNU_CACHE") or Path.home() / ".cache" / "mixnu").expanduser()


def builtin_root() -> Path:
    """The cache folder the built-in files unpack into (one per manifest, so versions never mix)."""
    tag = hashlib.sha256((_package_dir() / "manifest.json").read_bytes()).hexdigest()[:12]
    return cache_dir() / "builtin" / f"{manifest()['name']}-{tag}"


def load_builtin(name: str) -> Path:
    """Path of the built-in file `name` (see `builtin_names`), unpacked and checksummed.

    The first call decompresses `mixnu/_data/datasets/<name>.xz` into `builtin_root()` (atomically)
    and checks the sha256 of the result; later calls check the cached copy's sha256 once per
    process and unpack again if it was changed. Raises `DataError` for an unknown name or a
    package copy whose checksum is wrong (a broken install).
    """
    files = manifest()["files"]
    if name not in files:
        raise DataError(f"no built-in data file '{name}'; built-in files: {', '.join(files)}")
    return _unpacked(name, files[name]["sha256"])


@functools.cache
def _unpacked(name: str, sha: str) -> Path:
    out = builtin_root() / name
    if out.is_file() and sha256_file(out) == sha:
        return out
    src = _package_dir() / f"{name}.xz"
    try:
        raw = lzma.decompress(src.read_bytes())
    except (OSError, lzma.LZMAError) as exc:
        raise DataError(f"built-in data {src} is unreadable ({exc}); reinstall mixnu") from None
    if hashlib.sha256(raw).hexdigest() != sha:
        raise DataError(f"built-in data {src} does not match its sha256 in manifest.json; reinstall mixnu")
    with atomic_write(out, "wb") as fh:
        fh.write(raw)
    return out


def builtin_dir() -> Path:
    """Unpack every built-in file (and the Llama-2 licence texts) and return the root folder.

    Layout (the one `$MIXNU_DATA` takes): `corpus/<domain>.txt`, `eval/<domain>_heldout.txt`,
    `eval/dev_sentences.tsv`, `eval/ood_sentences.tsv`, `tokenizers/llama-2/tokenizer.model`
    (+ LICENSE, NOTICE, USE_POLICY.md).
    """
    for name in builtin_names():
        load_builtin(name)
    root = builtin_root()
    for extra in (*(f"tokenizers/llama-2/{f}" for f in LLAMA2_LICENCE_FILES), "DATA_LICENSES.md"):
        if not (root / extra).is_file():
            with atomic_write(root / extra, "wb") as fh:
                fh.write((_package_dir() / extra).read_bytes())
    return root


def builtin_table() -> list[dict[str, Any]]:
    """One row per built-in file: path, dataset, domain, lines, chars, bytes, xz_bytes, licence."""
    return [{"file": name, **{k: v for k, v in info.items() if k != "sha256"}}
            for name, info in manifest()["files"].items()]


def export_builtin(out: str | Path, force: bool = False) -> list[str]:
    """Write the built-in data to `out` as plain files (the layout `$MIXNU_DATA` and `mixnu demo --data` take).

    Written atomically (`atomic_dir`); returns the relative paths written. Raises
    `OutputExistsError` if `out` exists and not `force`.
    """
    root = builtin_dir()
    with atomic_dir(out, force=force) as tmp:
        shutil.copytree(root, tmp, dirs_exist_ok=True)
        for stray in tmp.rglob(".*.tmp"):  # a concurrent unpack's temporary file
            stray.unlink(missing_ok=True)
        return sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------- resolution
def env_data_dir() -> Path | None:
    """`$MIXNU_DATA`, else `$MIXNU_SHARED/data`, else None; `DataError` if the one set is missing."""
    for var, sub in (("MIXNU_DATA", ""), ("MIXNU_SHARED", "data")):
        value = os.environ.get(var)
        if value:
            path = (Path(value).expanduser() / sub).resolve()
            if not path.is_dir():
                raise DataError(f"{var}={value}: {path} is not a folder; fix {var} or unset it to use "
                                "the built-in data")
            return path
    return None


def data_dir(explicit: str | Path | None = None) -> Path:
    """The data folder: `explicit`, else `$MIXNU_DATA` / `$MIXNU_SHARED/data`, else the built-in one."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_dir():
            raise DataError(f"{path}: data folder not found")
        return path
    return env_data_dir() or builtin_dir()


def data_file(name: str) -> Path:
    """One file of the data folder by relative path (e.g. `eval/dev_sentences.tsv`), by the rule above."""
    env = env_data_dir()
    if env is None:
        return load_builtin(name)
    path = env / name
    if not path.is_file():
        raise DataError(f"{path} not found in the data folder set by MIXNU_DATA/MIXNU_SHARED; add it "
                        "there or unset the variable to use the built-in data")
    return path


def llama2_tokenizer_model() -> Path:
    """The real Llama-2 SentencePiece model (32,000 pieces), by the resolution rule."""
    return data_file(LLAMA2_TOKENIZER)


def dev_set() -> Path:
    """The 1,000-line `domain<TAB>text` dev set (tokenizer statistics)."""
    return data_file(DEV_SET)


def ood_set() -> Path:
    """The 911-line `domain<TAB>text` out-of-domain set (sources absent from the corpora)."""
    return data_file(OOD_SET)


def corpus_files(folder: str | Path | None = None) -> dict[str, Path]:
    """Map domain -> corpus file: in `folder` (or its `corpus/`), default the data folder's `corpus/`.

    A domain file is any `NAME.txt` or `NAME.jsonl` (optionally `.gz`) in the folder.
    """
    folder = data_dir(folder)
    if (folder / "corpus").is_dir():
        folder = folder / "corpus"
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        name = path.name[:-3] if path.name.endswith(".gz") else path.name
        for ext in (".txt", ".jsonl"):
            if name.endswith(ext) and path.is_file() and not name.endswith("_heldout" + ext):
                found[name[: -len(ext)]] = path
    if not found:
        raise DataError(f"{folder}: no domain files (NAME.txt or NAME.jsonl, optionally .gz) in this folder")
    return found


def heldout_files(folder: str | Path | None = None) -> dict[str, Path]:
    """Map domain -> held-out file `<domain>_heldout.txt`: in `folder` (or its `eval/`), default the data folder's."""
    folder = data_dir(folder)
    if (folder / "eval").is_dir():
        folder = folder / "eval"
    out = {p.name[: -len("_heldout.txt")]: p for p in sorted(folder.glob("*_heldout.txt"))}
    if not out:
        raise DataError(f"{folder}: no *_heldout.txt files")
    return out


@dataclass(frozen=True)
class DataSource:
    """The data a run used: its name ("built-in mixnu-builtin v1" or a folder), files and one sha256."""

    name: str
    corpus: dict[str, Path]
    heldout: dict[str, Path]
    dev: Path
    sha256: str  # over the corpus and held-out files' own sha256s, in domain order


def resolve_inputs(data: str | Path | None = None, eval_data: str | Path | None = None) -> DataSource:
    """Corpus, held-out and dev files for a run (the demo's `data` / `eval_data`), by the rule above.

    `data` is a folder with one corpus file per domain, or a data folder with `corpus/` and `eval/`
    (what `mixnu data export` and `mixnu data prepare` write); held-out text comes from `eval_data`,
    else from `data` when it has some, else from the default data folder. Raises `DataError` when a
    domain has no held-out file.
    """
    files = corpus_files(data)
    held_dir = eval_data
    if held_dir is None and data is not None and (list(Path(data).glob("*_heldout.txt"))
                                                   or (Path(data) / "eval").is_dir()):
        held_dir = data
    held = heldout_files(held_dir)
    missing = [d for d in files if d not in held]
    if missing:
        where = held_dir or "the default data folder"
        raise DataError(f"no held-out file for domain '{missing[0]}' in {where}; add {missing[0]}_heldout.txt "
                        "there or point eval_data at a folder that has one per domain")
    dev = next((Path(p) / sub / "dev_sentences.tsv" for p in (eval_data, data) if p is not None
                for sub in ("", "eval") if (Path(p) / sub / "dev_sentences.tsv").is_file()), None)
    held = {d: held[d] for d in files}
    env = env_data_dir() if data is None else None
    name = str(Path(data).resolve()) if data is not None else (
        str(env) if env else f"built-in {manifest()['name']} v{manifest()['version']}")
    return DataSource(name=name, corpus=files, heldout=held, dev=dev or dev_set(), sha256=fingerprint(files, held))


def fingerprint(*groups: dict[str, Path]) -> str:
    """One sha256 over `domain:role:sha256(file)` lines of the given domain -> file maps."""
    lines = [f"{d}:{i}:{sha256_file(p)}" for i, g in enumerate(groups) for d, p in sorted(g.items())]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


# ---------------------------------------------------------------------------------------- GGUF peers
def gguf_vocab(name: str) -> Path:
    """llama.cpp's vocab-only file `ggml-vocab-<name>.gguf` (e.g. `llama-bpe` = Llama-3, `qwen2`).

    From `<data folder>/tokenizers/gguf/` when `$MIXNU_DATA`/`$MIXNU_SHARED` holds it; else from the
    cache, filled on first use by `pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36`
    (all `vendor/llama.cpp/models/ggml-vocab-*.gguf` files are kept, the 77 MB sdist is not).
    Raises `DataError` with the reason when the file cannot be had.
    """
    fname = f"ggml-vocab-{name}.gguf"
    env = env_data_dir()
    if env is not None and (env / "tokenizers" / "gguf" / fname).is_file():
        return env / "tokenizers" / "gguf" / fname
    folder = cache_dir() / "gguf" / LLAMA_CPP_SDIST.replace("==", "-")
    if not (folder / fname).is_file():
        _fetch_gguf_vocabs(folder)
    if not (folder / fname).is_file():
        have = sorted(p.name[len("ggml-vocab-"):-len(".gguf")] for p in folder.glob("ggml-vocab-*.gguf"))
        raise DataError(f"no {fname} in {LLAMA_CPP_SDIST}; vocab names there: {', '.join(have)}")
    return folder / fname


def _fetch_gguf_vocabs(folder: Path) -> None:
    """Download the llama-cpp-python sdist with pip and keep its ggml-vocab-*.gguf files in `folder`."""
    with tempfile.TemporaryDirectory(prefix="mixnu-sdist-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q",
               "--disable-pip-version-check", "-d", tmp, LLAMA_CPP_SDIST]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        archives = list(Path(tmp).glob("*.tar.gz"))
        if proc.returncode != 0 or not archives:
            why = (proc.stderr.strip().splitlines() or ["no archive downloaded"])[-1]
            raise DataError(f"could not fetch GGUF vocab files: `pip download {LLAMA_CPP_SDIST}` failed ({why}); "
                            "set MIXNU_DATA to a folder with tokenizers/gguf/ggml-vocab-*.gguf")
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=_mkdir(folder.parent)))
        try:
            with tarfile.open(archives[0]) as tar:
                for member in tar:
                    base = member.name.rsplit("/", 1)[-1]
                    if (member.isfile() and "/vendor/llama.cpp/models/" in member.name
                            and base.startswith("ggml-vocab-") and base.endswith(".gguf")):
                        with tar.extractfile(member) as src, open(staging / base, "wb") as dst:
                            shutil.copyfileobj(src, dst)
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
