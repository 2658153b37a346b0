"""The guard's audit log: `<home>/guard.db`, one row per layer that fired.

Boundary: events in, rows out; stdlib `sqlite3`, numbered migrations (`edgeai.migrate`), WAL, a
busy timeout, one short transaction per `record` (a turn's events land together or not at all).
A row says when, which surface ("tui", "plain", "serve", "ingest"), which layer and rule fired,
what was done (refused, flagged, redacted, stripped, dropped, blocked, noted), where the text came
from (user, passage, output, file), and the text's sha256; the text itself (an excerpt) only when
redaction is off: with redaction on, the log never holds what was redacted. Opened per write, so
a clean turn costs nothing here.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeai.errors import EdgeAIError
from edgeai.migrate import NewerSchema, apply_migrations

APPLICATION_ID = 0x45444747  # "EDGG": marks a guard.db as ours
FILE = "guard.db"
EXCERPT = 160  # characters of the text kept when redaction is off

MIGRATIONS: list[tuple[str, str]] = [
    ("m001_events", """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, surface TEXT NOT NULL,
            layer TEXT NOT NULL, rule TEXT NOT NULL, action TEXT NOT NULL, source TEXT NOT NULL,
            sha256 TEXT NOT NULL, excerpt TEXT, detail TEXT NOT NULL DEFAULT '');
        CREATE INDEX events_by_time ON events(at);
    """),
]


@dataclass(frozen=True)
class Event:
    """One layer firing on one text."""

    layer: str  # input | injection | moderation | pii | output
    rule: str  # what fired: a rule name, a category, an entity kind
    action: str  # refused | flagged | redacted | stripped | dropped | blocked | noted
    source: str  # user | passage | output | file
    text: str  # what it fired on (hashed; kept as an excerpt only when redaction is off)
    detail: str = ""  # a short reason, never the raw text


def path_of(home: Path) -> Path:
    return Path(home) / FILE


def _open(path: Path) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(path, timeout=5.0, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA busy_timeout=5000")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL: a crash of the process loses nothing committed
        found = db.execute("PRAGMA application_id").fetchone()[0]
        if found not in (0, APPLICATION_ID):
            raise EdgeAIError(f"guard audit log {path} is another program's database",
                              "move it aside; a fresh one is created on the next event")
        apply_migrations(db, MIGRATIONS, APPLICATION_ID)
    except NewerSchema as exc:
        raise EdgeAIError(f"guard audit log {path} {exc}", "upgrade edgeai") from None
    except sqlite3.DatabaseError as exc:
        raise EdgeAIError(f"guard audit log {path} is damaged: {exc}",
                          "move it aside; a fresh one is created on the next event") from None
    return db


def record(home: Path, surface: str, events: list[Event], *, redacted: bool, clock=time.time) -> None:
    """Write a turn's events in one transaction (nothing when there are none)."""
    if not events:
        return
    Path(home).mkdir(parents=True, exist_ok=True)
    db = _open(path_of(home))
    try:
        now = clock()
        rows = [(now, surface, e.layer, e.rule, e.action, e.source,
                 hashlib.sha256(e.text.encode("utf-8", "replace")).hexdigest(),
                 None if redacted else e.text[:EXCERPT], e.detail) for e in events]
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO events(at, surface, layer, rule, action, source, sha256, excerpt,"
                           " detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    finally:
        db.close()


def read(home: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The newest `limit` rows (all when None), oldest first; [] when there is no log yet."""
    path = path_of(home)
    if not path.exists():
        return []
    db = _open(path)
    try:
        db.row_factory = sqlite3.Row
        sql = "SELECT * FROM events ORDER BY id DESC" + (" LIMIT ?" if limit else "")
        rows = db.execute(sql, (limit,) if limit else ()).fetchall()
    finally:
        db.close()
    return [dict(r) for r in reversed(rows)]
