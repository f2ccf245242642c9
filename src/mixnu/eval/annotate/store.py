"""Human annotations in SQLite: the stored sample, and every score the moment it is given.

One database per run folder, `RUN_DIR/annotations.sqlite` (docs/eval-run-format.md), shared by
all annotators: rows are keyed by annotator name. The database runs in WAL mode with
`synchronous=FULL`, and every score is its own committed transaction, so closing the browser,
killing the server (even `kill -9`) or losing power loses nothing that the page showed as saved.

Tables:
- `meta(key, value)`: the sample's seed, requested size and creation time;
- `sample_items(position, item_id, prompt_id, sample, category)`: the sample, in presentation
  order, identical for every annotator;
- `scores(annotator, item_id, letter, model, criterion, score, updated_at)`: one row per cell,
  overwritten when the annotator changes their mind;
- `annotators(name, cursor, created_at, updated_at)`: where each annotator left off;
- `skips(annotator, item_id, updated_at)`: items an annotator skipped.

Each call opens its own short-lived connection, so a store can be used from the threads of a
`ThreadingHTTPServer` without sharing a connection between threads.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixnu.errors import DataError
from mixnu.eval.criteria import CRITERIA, sql_in_list

ANNOTATOR_RE = re.compile(r"^\w[\w .-]{0,39}$")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sample_items (
  position INTEGER PRIMARY KEY, item_id TEXT NOT NULL UNIQUE, prompt_id TEXT NOT NULL,
  sample INTEGER NOT NULL, category TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scores (
  annotator TEXT NOT NULL, item_id TEXT NOT NULL, letter TEXT NOT NULL, model TEXT NOT NULL,
  criterion TEXT NOT NULL CHECK (criterion IN {sql_in_list()}),
  score INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5), updated_at REAL NOT NULL,
  PRIMARY KEY (annotator, item_id, letter, criterion));
CREATE TABLE IF NOT EXISTS annotators (
  name TEXT PRIMARY KEY, cursor INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS skips (
  annotator TEXT NOT NULL, item_id TEXT NOT NULL, updated_at REAL NOT NULL, PRIMARY KEY (annotator, item_id));
"""


@dataclass(frozen=True)
class SampleRow:
    """One item of the stored sample: `item_id` is `"<prompt_id>/<sample>"`."""

    position: int
    item_id: str
    prompt_id: str
    sample: int
    category: str


@dataclass(frozen=True)
class StoredSample:
    """The sample every annotator sees: seed, size asked for, and the items in order."""

    seed: int
    requested: int
    created_at: float
    items: tuple[SampleRow, ...]


def check_annotator(name: str) -> str:
    """Return the stripped name, or raise `DataError` if it is not 1-40 letters/digits/` _.-`."""
    name = (name or "").strip()
    if not ANNOTATOR_RE.match(name):
        raise DataError(
            f"annotator name {name!r} is not valid; use 1-40 letters, digits, spaces, '_', '.' or '-'"
        )
    return name


class AnnotationStore:
    """The SQLite file of a run folder's human annotations (created on first use)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            with self._connect() as con:
                con.execute("PRAGMA journal_mode=WAL")
                con.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise DataError(f"{self.path}: not a usable annotation database ({exc}); move it aside") from None

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA busy_timeout=30000")
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One committed transaction (`BEGIN IMMEDIATE` serialises writers across processes)."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    # --- the sample -------------------------------------------------------------------------
    def get_sample(self) -> StoredSample | None:
        """The stored sample, or None before the first `save_sample`."""
        with self._connect() as con:
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
            rows = con.execute(
                "SELECT position, item_id, prompt_id, sample, category FROM sample_items ORDER BY position"
            ).fetchall()
        if "seed" not in meta:
            return None
        return StoredSample(int(meta["seed"]), int(meta["requested"]), float(meta["created_at"]),
                            tuple(SampleRow(*r) for r in rows))

    def save_sample(self, seed: int, requested: int, items: list[SampleRow]) -> StoredSample:
        """Store the sample unless one exists already; return the one that is stored.

        Two servers starting at once cannot store two samples: the check and the insert are one
        `BEGIN IMMEDIATE` transaction.
        """
        with self._write() as con:
            if con.execute("SELECT 1 FROM meta WHERE key='seed'").fetchone() is None:
                con.executemany("INSERT INTO meta VALUES (?, ?)", [
                    ("seed", str(seed)), ("requested", str(requested)), ("created_at", repr(time.time())),
                ])
                con.executemany("INSERT INTO sample_items VALUES (?, ?, ?, ?, ?)", [
                    (i, r.item_id, r.prompt_id, r.sample, r.category) for i, r in enumerate(items)
                ])
        stored = self.get_sample()
        assert stored is not None
        return stored

    # --- annotators -------------------------------------------------------------------------
    def ensure_annotator(self, name: str) -> None:
        """Register `name` (idempotent)."""
        now = time.time()
        with self._write() as con:
            con.execute("INSERT OR IGNORE INTO annotators VALUES (?, 0, ?, ?)", (name, now, now))

    def annotators(self) -> list[str]:
        """Names of everyone who has opened the sample or given a score, sorted."""
        with self._connect() as con:
            names = {r[0] for r in con.execute("SELECT name FROM annotators")}
            names |= {r[0] for r in con.execute("SELECT DISTINCT annotator FROM scores")}
        return sorted(names)

    def get_cursor(self, name: str) -> int:
        """The position where `name` left off (0 for a new annotator)."""
        with self._connect() as con:
            row = con.execute("SELECT cursor FROM annotators WHERE name=?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def set_cursor(self, name: str, position: int) -> None:
        """Remember that `name` is now at `position`."""
        now = time.time()
        with self._write() as con:
            con.execute(
                "INSERT INTO annotators VALUES (?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET cursor=excluded.cursor, updated_at=excluded.updated_at",
                (name, position, now, now),
            )

    # --- scores -----------------------------------------------------------------------------
    def set_score(self, annotator: str, item_id: str, letter: str, model: str, criterion: str,
                  score: int) -> None:
        """Save one score now (committed and fsynced before this returns); replaces an earlier one."""
        if criterion not in CRITERIA or not isinstance(score, int) or isinstance(score, bool) \
                or not 1 <= score <= 5:
            raise ValueError(f"invalid score {criterion}={score!r}")
        with self._write() as con:
            con.execute(
                "INSERT INTO scores VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(annotator, item_id, letter, criterion) "
                "DO UPDATE SET score=excluded.score, model=excluded.model, updated_at=excluded.updated_at",
                (annotator, item_id, letter, model, criterion, score, time.time()),
            )

    def item_scores(self, annotator: str, item_id: str) -> dict[str, dict[str, int]]:
        """`{letter: {criterion: score}}` that `annotator` gave on one item."""
        out: dict[str, dict[str, int]] = {}
        with self._connect() as con:
            for letter, criterion, score in con.execute(
                "SELECT letter, criterion, score FROM scores WHERE annotator=? AND item_id=?", (annotator, item_id)
            ):
                out.setdefault(letter, {})[criterion] = score
        return out

    def cell_counts(self, annotator: str) -> dict[str, int]:
        """Number of scored cells per item for `annotator`."""
        with self._connect() as con:
            return dict(con.execute(
                "SELECT item_id, COUNT(*) FROM scores WHERE annotator=? GROUP BY item_id", (annotator,)
            ).fetchall())

    def set_skipped(self, annotator: str, item_id: str, skipped: bool) -> None:
        """Mark (or unmark) an item as skipped by `annotator`."""
        with self._write() as con:
            if skipped:
                con.execute("INSERT OR REPLACE INTO skips VALUES (?, ?, ?)", (annotator, item_id, time.time()))
            else:
                con.execute("DELETE FROM skips WHERE annotator=? AND item_id=?", (annotator, item_id))

    def skipped(self, annotator: str) -> set[str]:
        """Item ids `annotator` skipped."""
        with self._connect() as con:
            return {r[0] for r in con.execute("SELECT item_id FROM skips WHERE annotator=?", (annotator,))}

    def all_scores(self) -> list[dict[str, Any]]:
        """Every score of every annotator, with the item's prompt id, sample and category."""
        with self._connect() as con:
            con.row_factory = sqlite3.Row
            rows = con.execute(
                "SELECT s.annotator, s.item_id, i.prompt_id, i.sample, i.category, s.letter, s.model, "
                "s.criterion, s.score, s.updated_at FROM scores s LEFT JOIN sample_items i USING (item_id) "
                "ORDER BY s.annotator, i.position, s.letter, s.criterion"
            ).fetchall()
        return [dict(r) for r in rows]
