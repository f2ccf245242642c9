"""Human verification of the judge: a local web page where annotators score a stored sample.

Inputs: a run folder (docs/eval-run-format.md) with `suite.yaml`, `responses.jsonl` and, for the
letter order, `judgments.jsonl`. Written to disk: `RUN_DIR/annotations.sqlite` only (see
`annotation_store`); `export_annotations` writes a CSV or JSONL file where asked.

An *item* is one (prompt, sample): the prompt, its category, attribute and human notes, and
every model's response to it under the letter the judge saw (the lowest rotation's `order` in
`judgments.jsonl`). The page never receives model names or judge scores, so annotators are
blind to both. The sample is stratified by category, seeded, and stored in the database, so
every annotator scores the same items in the same order.

The web app is `create_app(store, items)`: an `AnnotationApp` whose `handle()` maps a request
to a response without touching sockets (unit-testable), served by `make_server` on the
standard library's `ThreadingHTTPServer`. It serves four fixed static files from the package
and a small JSON API; no request path is ever mapped onto the file system.
"""

from __future__ import annotations

import csv
import io
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from mixnu.config import StageConfig
from mixnu.errors import ConfigError, DataError
from mixnu.eval.annotate_app import AnnotationApp, make_server
from mixnu.eval.annotation_store import CRITERIA, AnnotationStore, SampleRow, check_annotator
from mixnu.eval.suite import load_suite
from mixnu.io import read_jsonl, write_jsonl, write_text
from mixnu.text import normalize_text

DB_NAME = "annotations.sqlite"


@dataclass(frozen=True)
class ShownResponse:
    """One response as the annotator sees it (`letter`), and whose it is (`model`, server side only)."""

    letter: str
    model: str
    text: str


@dataclass(frozen=True)
class Item:
    """One (prompt, sample) to annotate."""

    item_id: str
    prompt_id: str
    sample: int
    category: str
    attribute: str
    prompt: str
    notes: tuple[tuple[str, str], ...]
    responses: tuple[ShownResponse, ...]


def load_items(run_dir: str | Path) -> dict[str, Item]:
    """Read a run folder into items keyed by `"<prompt_id>/<sample>"`.

    Letters follow the `order` of the item's judgment with the lowest rotation; models missing
    from it (or items never judged) follow the order of `responses.jsonl`.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: run folder not found; give the folder that `mixnu eval run` wrote")
    for name in ("suite.yaml", "responses.jsonl"):
        if not (run_dir / name).is_file():
            raise DataError(f"{run_dir / name}: missing; a run folder needs suite.yaml and responses.jsonl")
    prompts = load_suite(run_dir / "suite.yaml").by_id()
    texts: dict[tuple[str, int], dict[str, str]] = defaultdict(dict)
    for i, rec in enumerate(read_jsonl(run_dir / "responses.jsonl"), 1):
        try:
            key = (str(rec["prompt_id"]), int(rec["sample"]))
            texts[key][str(rec["model"])] = normalize_text(str(rec["response"]))  # shown as the judge saw it
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{run_dir / 'responses.jsonl'}: record {i} lacks prompt_id, sample, model or response") from None
        if key[0] not in prompts:
            raise DataError(f"{run_dir / 'responses.jsonl'}: prompt id {key[0]!r} is not in suite.yaml")
    orders: dict[tuple[str, int], tuple[int, list[str]]] = {}
    if (run_dir / "judgments.jsonl").is_file():
        for rec in read_jsonl(run_dir / "judgments.jsonl"):
            try:
                key, rot, order = (str(rec["prompt_id"]), int(rec["sample"])), int(rec["rotation"]), list(rec["order"])
            except (KeyError, TypeError, ValueError):
                continue
            if key not in orders or rot < orders[key][0]:
                orders[key] = (rot, [str(m) for m in order])
    items: dict[str, Item] = {}
    for (pid, sample), by_model in sorted(texts.items()):
        order = [m for m in orders.get((pid, sample), (0, []))[1] if m in by_model]
        order += [m for m in by_model if m not in order]
        if len(order) > 26:
            raise DataError(f"{pid}: more than 26 models answered; letters run out")
        p = prompts[pid]
        notes = tuple((k, v) for k, v in (("human", p.notes.human), ("confusable", p.notes.confusable),
                                          ("meaning", p.notes.meaning)) if v)
        item_id = f"{pid}/{sample}"
        items[item_id] = Item(item_id, pid, sample, p.category, p.attribute, p.prompt, notes, tuple(
            ShownResponse(chr(ord("A") + i), m, by_model[m]) for i, m in enumerate(order)))
    if not items:
        raise DataError(f"{run_dir / 'responses.jsonl'}: no responses; run `mixnu generate` first")
    return items


def draw_sample(items: dict[str, Item], n: int, seed: int) -> list[SampleRow]:
    """A sample of `n` items stratified by category, in a seeded shuffled order.

    Each category gets a share proportional to its size (largest remainder), and at least one
    item when `n` is at least the number of categories. Asking for more than there are takes all.
    """
    by_cat: dict[str, list[str]] = defaultdict(list)
    for item_id in sorted(items):
        by_cat[items[item_id].category].append(item_id)
    total = len(items)
    n = min(n, total)
    cats = sorted(by_cat)
    # Largest-remainder (Hamilton) apportionment of n over the categories' sizes.
    quota = {c: n * len(by_cat[c]) // total for c in cats}
    for c in sorted(cats, key=lambda c: (-(n * len(by_cat[c]) % total), c))[: n - sum(quota.values())]:
        quota[c] += 1
    if n >= len(cats):  # every category shows up: take one from the largest share for each empty one
        for c in cats:
            if quota[c] == 0:
                quota[max(cats, key=lambda k: (quota[k], k))] -= 1
                quota[c] = 1
    rng = random.Random(seed)
    chosen = [i for c in cats for i in rng.sample(by_cat[c], quota[c])]
    rng.shuffle(chosen)
    return [SampleRow(k, i, items[i].prompt_id, items[i].sample, items[i].category) for k, i in enumerate(chosen)]


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
    items: tuple[Item, ...]
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


def create_app(store: AnnotationStore, items: tuple[Item, ...] | list[Item], max_body: int = 16384,
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


__all__ = ["CRITERIA", "AnnotateConfig", "AnnotateResult", "AnnotationApp", "Item", "create_app",
           "draw_sample", "export_annotations", "load_items", "open_session", "serve_annotation"]
