"""Human verification of the judge: open a run folder for annotation, serve the page, export the scores.

Inputs: a run folder (docs/eval-run-format.md) with `suite.yaml`, `responses.jsonl` and, for the
letter order, `judgments.jsonl` (read by `mixnu.eval.annotate.items`). Written to disk:
`RUN_DIR/annotations.sqlite` only (see `mixnu.eval.annotate.store`); `export_annotations` writes a
CSV or JSONL file where asked.

The page never receives model names or judge scores, so annotators are blind to both. The sample
is stratified by category, seeded, and stored in the database, so every annotator scores the same
items in the same order.

The web app is `create_app(store, items)`: an `AnnotationApp` (`mixnu.eval.annotate.app`) whose
`handle()` maps a request to a response without touching sockets (unit-testable), served by
`make_server` on the standard library's `ThreadingHTTPServer`. It serves three fixed static files
from the package (under four routes) and a small JSON API; no request path is ever mapped onto the
file system.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from mixnu.config import StageConfig
from mixnu.errors import ConfigError, DataError
from mixnu.eval.annotate.app import AnnotationApp, make_server
from mixnu.eval.annotate.items import AnnotationItem, draw_sample, load_items
from mixnu.eval.annotate.store import AnnotationStore, check_annotator
from mixnu.io import write_jsonl, write_text

DB_NAME = "annotations.sqlite"


class AnnotateConfig(StageConfig):
    """Options of `mixnu eval annotate`."""

    run_dir: Path
    sample: int | None = Field(default=None, ge=1, description="items to sample on first use")
    seed: int | None = None  # None: the stored sample's seed, or 0 for a new sample
    annotator: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    max_body: int = Field(default=16384, ge=256)


@dataclass(frozen=True)
class AnnotationSession:
    """A run folder opened for annotation: the store, the sampled items, and the app."""

    store: AnnotationStore
    items: tuple[AnnotationItem, ...]
    seed: int
    created: bool


def open_session(cfg: AnnotateConfig) -> AnnotationSession:
    """Open (or create) `RUN_DIR/annotations.sqlite` and its stored sample.

    The first call needs `cfg.sample`; later calls reuse the stored sample and refuse a different
    `--sample`/`--seed`, so every annotator sees the same items.
    """
    items = load_items(cfg.run_dir)
    if cfg.annotator is not None:
        check_annotator(cfg.annotator)
    store = AnnotationStore(Path(cfg.run_dir) / DB_NAME)
    stored = store.get_sample()
    created = False
    if stored is None:
        if cfg.sample is None:
            raise ConfigError(f"{cfg.run_dir}: no sample yet; pass --sample N to draw one (e.g. --sample 40)")
        seed = cfg.seed if cfg.seed is not None else 0
        stored = store.save_sample(seed, cfg.sample, draw_sample(items, cfg.sample, seed))
        created = True
    elif (cfg.sample is not None and cfg.sample != stored.requested) or \
            (cfg.seed is not None and cfg.seed != stored.seed):
        raise ConfigError(
            f"{cfg.run_dir / DB_NAME} already holds a sample of {stored.requested} (seed {stored.seed}); "
            f"omit --sample/--seed to continue it, or annotate a copy of the run folder for a new sample"
        )
    missing = [r.item_id for r in stored.items if r.item_id not in items]
    if missing:
        raise DataError(f"sampled item {missing[0]!r} is no longer in {cfg.run_dir}/responses.jsonl; "
                        "the responses changed after sampling")
    return AnnotationSession(store, tuple(items[r.item_id] for r in stored.items), stored.seed, created)


def create_app(store: AnnotationStore, items: tuple[AnnotationItem, ...] | list[AnnotationItem], max_body: int = 16384,
               default_annotator: str | None = None) -> AnnotationApp:
    """The web app over `store` and the sampled `items` (no global state)."""
    return AnnotationApp(store, tuple(items), max_body=max_body, default_annotator=default_annotator)


@dataclass(frozen=True)
class AnnotateResult:
    """What a finished annotation server leaves: where, how big, and per-annotator progress."""

    run_dir: Path
    db_path: Path
    url: str
    sample_size: int
    seed: int
    done: dict[str, int]


def serve_annotation(cfg: AnnotateConfig,
                     on_ready: Callable[[str, AnnotationSession], None] | None = None) -> AnnotateResult:
    """Serve the annotation page until Ctrl-C; return each annotator's progress then.

    `on_ready(url, session)` is called once the socket listens (with port 0, `url` has the real
    port). Every score is already on disk when the page says "saved"; stopping loses nothing.
    """
    session = open_session(cfg)
    app = create_app(session.store, session.items, cfg.max_body, cfg.annotator)
    try:
        server = make_server(app, cfg.host, cfg.port)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {cfg.host}:{cfg.port} ({exc.strerror}); pick another --port") from None
    host, port = server.server_address[:2]
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/"
    if cfg.annotator:
        url += f"?annotator={cfg.annotator.replace(' ', '+')}"
    if on_ready is not None:
        on_ready(url, session)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return AnnotateResult(Path(cfg.run_dir), session.store.path, url, len(session.items), session.seed,
                          {a: app.progress(a)["done"] for a in session.store.annotators()})


@dataclass(frozen=True)
class ExportResult:
    """An export of every annotator's scores."""

    path: Path
    format: Literal["csv", "jsonl"]
    rows: int
    annotators: tuple[str, ...]


EXPORT_FIELDS = ("annotator", "item_id", "prompt_id", "sample", "category", "letter", "model",
                 "criterion", "score", "updated_at")


def export_annotations(run_dir: str | Path, out: str | Path) -> ExportResult:
    """Write every score in `RUN_DIR/annotations.sqlite` to `out` (`.csv` or `.jsonl`), atomically.

    One row per (annotator, item, response, criterion), with the model name (the export is for
    analysis, after annotation; the page itself never shows model names).
    """
    out = Path(out)
    fmt: Literal["csv", "jsonl"]
    if out.suffix == ".csv":
        fmt = "csv"
    elif out.suffix == ".jsonl":
        fmt = "jsonl"
    else:
        raise ConfigError(f"{out}: export format comes from the suffix; use .csv or .jsonl")
    db = Path(run_dir) / DB_NAME
    if not db.is_file():
        raise DataError(f"{db}: no annotations yet; run `mixnu eval annotate {run_dir} --sample N` first")
    rows = AnnotationStore(db).all_scores()
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=EXPORT_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text(out, buf.getvalue())
    else:
        write_jsonl(out, rows)
    return ExportResult(out, fmt, len(rows), tuple(sorted({r["annotator"] for r in rows})))

