"""Numbered SQLite migrations, shared by chat.db and the RAG collections.

A database records how many migrations it has had in `PRAGMA user_version`; each missing one runs
in its own transaction together with the version bump, so a crash leaves the schema at the last
whole step. A file from a newer edgeai (more migrations than this one knows) is refused.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence


class NewerSchema(Exception):
    def __init__(self, version: int):
        super().__init__(f"was written by a newer edgeai (schema {version})")
        self.version = version


def apply_migrations(db: sqlite3.Connection, migrations: Sequence[tuple[str, str]],
                     application_id: int) -> None:
    """Bring `db` (opened with isolation_level=None) up to `len(migrations)`."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(migrations):
        raise NewerSchema(version)
    for number, (_name, sql) in enumerate(migrations[version:], start=version + 1):
        try:
            db.executescript(f"BEGIN IMMEDIATE; {sql}; PRAGMA application_id={application_id}; "
                             f"PRAGMA user_version={number}; COMMIT;")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
