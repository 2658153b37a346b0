"""Conversations on disk: `chat.db`, one SQLite file with numbered migrations.

Stdlib `sqlite3` only, WAL, a busy timeout, short transactions, one connection guarded by a
lock (the chat's worker thread saves partial replies while the UI thread reads). A reply is
written as `streaming` and updated as it grows, so a killed process loses at most the last
save; on the next open such replies are marked `interrupted` and kept — by a process that finds no
other one holding chat.db open (a lock file), so a second window never relabels a live reply;
`data_version` and `others_open` let a window see another one's writes. A file that is not a
SQLite database, or is somebody else's database, raises `ChatDBError` and is left untouched;
`backup_and_recreate` moves it aside and starts a fresh one. A message's attachments (an image sent
with it) are records in its own row naming a content-addressed copy under the data dir
(`edgeai.chat.attachments` makes the copies); they are read back with the copy's absolute path.
`ChatDB.in_memory()` is the same store kept in memory only: `edgeai chat --plain` runs the app's
turn on it without persisting.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from edgeai.errors import EdgeAIError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

APPLICATION_ID = 0x45444741  # "EDGA": marks a chat.db as ours
MEMORY = ":memory:"  # SQLite's name for a database that lives and dies with its connection


class ChatDBError(EdgeAIError):
    def __init__(self, path: Path, problem: str):
        super().__init__(f"chat database {path} {problem}",
                         "move it aside and start a fresh one: edgeai chat --reset-db")
        self.path = path


# Numbered migrations: the database's user_version says how many have run. Append only.
# AUTOINCREMENT: a deleted conversation's id is never handed to a new one (its KV file, a
# reply still finishing for it, must not land in someone else's conversation).
MIGRATIONS: list[tuple[str, str]] = [
    ("m001_conversations", """
        CREATE TABLE conversations (
            id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL, created REAL NOT NULL,
            updated REAL NOT NULL, system TEXT, model TEXT, backend TEXT,
            params TEXT NOT NULL DEFAULT '{}');
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            role TEXT NOT NULL, content TEXT NOT NULL, reasoning TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL DEFAULT 'done', stats TEXT NOT NULL DEFAULT '{}',
            created REAL NOT NULL);
        CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
    """),
    # RAG: a conversation's attached collection (and whether the quality model was offered);
    # a reply's strategy and the sources placed/cited, so citations survive a restart
    ("m002_rag", """
        ALTER TABLE conversations ADD COLUMN rag TEXT NOT NULL DEFAULT '{}';
        ALTER TABLE messages ADD COLUMN rag TEXT NOT NULL DEFAULT '{}';
    """),
    # this database's own id: files kept beside it (KV states) are named by it plus a row id,
    # so a fresh chat.db (--reset-db, or one deleted by hand), whose ids restart at 1, never
    # picks up an earlier database's conversation 1
    ("m003_uid", """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta(key, value) VALUES ('uid', lower(hex(randomblob(16))));
    """),
    # what a message carried besides its text (#15): a JSON list of attachment records, each
    # naming its content-addressed copy under the data dir (`attachments/<sha256>.<ext>`), so an
    # image survives a restart, an export and a regenerate however the original file moves
    ("m004_attachments", """
        ALTER TABLE messages ADD COLUMN attachments TEXT NOT NULL DEFAULT '[]';
    """),
]


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    created: float
    updated: float
    system: str | None = None
    model: str | None = None
    backend: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    rag: dict[str, Any] = field(default_factory=dict)  # {"collection": name, "quality_asked": bool}


@dataclass(frozen=True)
class StoredMessage:
    id: int
    conversation_id: int
    role: str
    content: str
    reasoning: str = ""
    status: str = "done"  # done | streaming | interrupted | error
    stats: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0
    rag: dict[str, Any] = field(default_factory=dict)  # {"strategy", "label", "sources": [...]}
    # {"kind": "image", "name", "file" (relative to the data dir), "sha256", "bytes", "width",
    # "height"} as stored, plus "path": the copy's absolute path, resolved when read
    attachments: tuple[dict[str, Any], ...] = ()

    @property
    def images(self) -> tuple[Path, ...]:
        """The stored copies of the images sent with this message, in order."""
        return tuple(Path(a["path"]) for a in self.attachments if a.get("kind") == "image")


def _conversation(row: sqlite3.Row) -> Conversation:
    return Conversation(row["id"], row["title"], row["created"], row["updated"], row["system"],
                        row["model"], row["backend"], json.loads(row["params"]), json.loads(row["rag"]))


def _message(row: sqlite3.Row, base: Path) -> StoredMessage:
    return StoredMessage(row["id"], row["conversation_id"], row["role"], row["content"],
                         row["reasoning"], row["status"], json.loads(row["stats"]), row["created"],
                         json.loads(row["rag"]), _resolved(json.loads(row["attachments"]), base))


def _resolved(records: list[dict[str, Any]], base: Path) -> tuple[dict[str, Any], ...]:
    return tuple({**r, "path": str(base / r["file"])} for r in records)


def _stored(records: Sequence[Mapping[str, Any]]) -> str:
    """Attachment records as kept: the resolved "path" is never written (the data dir may move)."""
    for record in records:
        if "file" not in record:
            raise ValueError(f"an attachment record needs its stored file: {dict(record)}")
    return json.dumps([{k: v for k, v in r.items() if k != "path"} for r in records])


class ChatDB:
    def __init__(self, path: Path | str, clock: Callable[[], float] = time.time):
        self.persistent = str(path) != MEMORY
        self.path = Path(path)
        # what attachment records' relative "file" names are under: the data dir chat.db is in
        # (an in-memory one's is given to `in_memory`; absolute names are left as they are)
        self.base = self.path.parent if self.persistent else Path("/")
        self.clock = clock
        self._lock = threading.Lock()
        self._presence: IO[str] | None = None  # our slot in <chat.db>.open/, locked while open
        if self.persistent:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise EdgeAIError(f"cannot create {self.path.parent}: {exc.strerror}") from None
        self._db = self._open()

    @classmethod
    def in_memory(cls, clock: Callable[[], float] = time.time, home: Path | None = None) -> ChatDB:
        """A chat.db that is never written to disk (gone on close): the same migrations and
        methods, for a session that keeps no history. Its ids are not unique beyond it, so
        nothing on disk (a KV file, a chat collection) may be named after them. `home` is the
        data dir its attachments were copied into (`edgeai.chat.attachments`)."""
        db = cls(MEMORY, clock)
        if home is not None:
            db.base = Path(home)
        return db

    # -- opening, migrations, recovery ---------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        fresh = not self.persistent or not self.path.exists() or self.path.stat().st_size == 0
        target = str(self.path) if self.persistent else MEMORY
        try:
            db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise EdgeAIError(f"cannot open chat database {self.path}: {exc}") from None
        db.row_factory = sqlite3.Row
        try:
            app_id = db.execute("PRAGMA application_id").fetchone()[0]
            tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if not fresh and app_id != APPLICATION_ID and tables:
                raise ChatDBError(self.path, "belongs to another program (its tables lack the edgeai mark)")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=5000")
            db.execute("PRAGMA foreign_keys=ON")
            self._migrate(db)
            self.uid = db.execute("SELECT value FROM meta WHERE key='uid'").fetchone()[0]
            gate = self._gate()
            try:
                if self._join():  # a `streaming` reply is a dead process's, not a live window's
                    with db:
                        db.execute("UPDATE messages SET status='interrupted' WHERE status='streaming'")
            finally:
                if gate is not None:
                    gate.close()
        except sqlite3.OperationalError as exc:  # locked, disk I/O, permissions: the file may be fine
            db.close()
            self._leave()
            raise EdgeAIError(f"cannot use chat database {self.path}: {exc}",
                              "is another edgeai writing to it? check the disk and permissions") from None
        except sqlite3.DatabaseError as exc:  # "file is not a database", "malformed"
            db.close()
            self._leave()
            raise ChatDBError(self.path, f"is damaged or not a database ({exc})") from None
        except ChatDBError:
            db.close()
            raise
        return db

    def _migrate(self, db: sqlite3.Connection) -> None:
        from edgeai.migrate import NewerSchema, apply_migrations

        try:
            apply_migrations(db, MIGRATIONS, APPLICATION_ID)
        except NewerSchema as exc:
            raise ChatDBError(self.path, str(exc)) from None

    @staticmethod
    def backup_and_recreate(path: Path, clock: Callable[[], float] = time.time) -> Path:
        """Move a broken chat.db (and its WAL files) aside; return where the old one went."""
        path = Path(path)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(clock()))
        backup = path.with_name(f"{path.name}.broken-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            old = Path(str(path) + suffix)
            if old.exists():
                old.rename(Path(str(backup) + suffix))
        return backup

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._leave()

    # -- other processes on the same file (two chat windows, a server with --store) ----------
    # Each open chat.db holds an exclusive flock on its own slot file in `<chat.db>.open/` until
    # it closes (the kernel drops it when a process dies, and a stale slot is removed by whoever
    # finds it unlocked). Opening happens under `<chat.db>.lock`, so "no live slot" means alone:
    # only then is a `streaming` reply a dead process's, safe to relabel `interrupted`.
    def _join(self) -> bool:
        """Take a slot; True when no other process has this chat.db open. Called under the gate."""
        if not self.persistent or fcntl is None:  # Windows: no advisory locks; recover as before
            return True
        slots = self.path.with_name(self.path.name + ".open")
        slots.mkdir(exist_ok=True)
        alone = not self.others_open(slots)
        self._presence = open(slots / f"{os.getpid()}-{secrets.token_hex(4)}", "a")  # noqa: SIM115
        fcntl.flock(self._presence, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a fresh name: never contended
        return alone

    def _gate(self) -> IO[str] | None:
        """Serializes opening (join + recovery) between processes; closed when that is done."""
        if not self.persistent or fcntl is None:
            return None
        gate = open(self.path.with_name(self.path.name + ".lock"), "a")  # noqa: SIM115
        fcntl.flock(gate, fcntl.LOCK_EX)
        return gate

    def _leave(self) -> None:
        if self._presence is not None:
            Path(self._presence.name).unlink(missing_ok=True)
            self._presence.close()  # closing the file releases the lock
            self._presence = None

    def others_open(self, slots: Path | None = None) -> bool:
        """Whether another process (another `edgeai chat`, `edgeai serve --store`) or another
        connection has this chat.db open now: a slot someone still holds locked."""
        if fcntl is None or not self.persistent:
            return False
        slots = slots or self.path.with_name(self.path.name + ".open")
        mine = self._presence.name if self._presence is not None else None
        live = False
        for slot in slots.glob("*") if slots.is_dir() else ():
            if str(slot) == mine:
                continue
            try:
                with slot.open("a") as handle:
                    fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    slot.unlink(missing_ok=True)  # nobody holds it: left by a dead process
            except OSError:
                live = True  # locked (or just removed by its owner: it was alive a moment ago)
        return live

    def data_version(self) -> int:
        """SQLite's `PRAGMA data_version`: it changes when another connection commits, never for
        our own writes, so a window polls it to learn that someone else wrote."""
        return self._read("PRAGMA data_version")[0][0]

    # -- helpers -------------------------------------------------------------------------
    def _write(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self._lock, self._db:
            return self._db.execute(sql, args)

    def _read(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _touch(self, conversation_id: int) -> None:
        self._write("UPDATE conversations SET updated=? WHERE id=?", (self.clock(), conversation_id))

    # -- conversations -------------------------------------------------------------------
    def create_conversation(self, title: str = "New chat", system: str | None = None,
                            model: str | None = None, backend: str | None = None,
                            params: dict[str, Any] | None = None) -> Conversation:
        now = self.clock()
        cursor = self._write(
            "INSERT INTO conversations(title, created, updated, system, model, backend, params) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)", (title, now, now, system, model, backend,
                                             json.dumps(params or {})))
        return self.conversation(cursor.lastrowid)

    def conversation(self, conversation_id: int) -> Conversation:
        rows = self._read("SELECT * FROM conversations WHERE id=?", (conversation_id,))
        if not rows:
            raise EdgeAIError(f"conversation {conversation_id} does not exist")
        return _conversation(rows[0])

    def conversations(self, search: str | None = None) -> list[Conversation]:
        """Newest first; `search` matches titles and message text, case-insensitively."""
        if not search:
            rows = self._read("SELECT * FROM conversations ORDER BY updated DESC, id DESC")
        else:
            like = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            rows = self._read(
                "SELECT * FROM conversations c WHERE c.title LIKE ?1 ESCAPE '\\' OR EXISTS ("
                "SELECT 1 FROM messages m WHERE m.conversation_id=c.id AND m.content LIKE ?1 "
                "ESCAPE '\\') ORDER BY updated DESC, id DESC", (like,))
        return [_conversation(r) for r in rows]

    def rename(self, conversation_id: int, title: str) -> None:
        self._write("UPDATE conversations SET title=? WHERE id=?", (title.strip() or "Untitled",
                                                                   conversation_id))

    def delete(self, conversation_id: int) -> None:
        self._write("DELETE FROM conversations WHERE id=?", (conversation_id,))

    def clear(self, conversation_id: int) -> int:
        """Delete every message of a conversation (it stays, with its settings); return how many."""
        return self._write("DELETE FROM messages WHERE conversation_id=?", (conversation_id,)).rowcount

    def update_settings(self, conversation_id: int, **changes: Any) -> Conversation:
        """Change system, model, backend, params and/or rag (dicts) of a conversation."""
        allowed = {"system", "model", "backend", "params", "rag"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"unknown conversation settings: {sorted(unknown)}")
        for key, value in changes.items():
            value = json.dumps(value) if key in ("params", "rag") else value
            self._write(f"UPDATE conversations SET {key}=? WHERE id=?", (value, conversation_id))
        return self.conversation(conversation_id)

    # -- messages ------------------------------------------------------------------------
    def messages(self, conversation_id: int) -> list[StoredMessage]:
        rows = self._read("SELECT * FROM messages WHERE conversation_id=? ORDER BY id",
                          (conversation_id,))
        return [_message(r, self.base) for r in rows]

    def add_message(self, conversation_id: int, role: str, content: str, status: str = "done",
                    reasoning: str = "", stats: dict[str, Any] | None = None,
                    attachments: Sequence[Mapping[str, Any]] = ()) -> StoredMessage:
        """Insert a message (with its attachment records, in the same row: both or neither);
        return it as written (built here: the row is not read back)."""
        created = self.clock()
        kept = _stored(attachments)
        cursor = self._write(
            "INSERT INTO messages(conversation_id, role, content, reasoning, status, stats, created, "
            "attachments) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (conversation_id, role, content, reasoning, status, json.dumps(stats or {}), created, kept))
        self._touch(conversation_id)
        return StoredMessage(cursor.lastrowid, conversation_id, role, content, reasoning, status,
                             dict(stats or {}), created, {}, _resolved(json.loads(kept), self.base))

    def add_messages(self, conversation_id: int, rows: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Several (role, content, stats) messages in one transaction: all of them or none."""
        created = self.clock()
        with self._lock, self._db:
            for role, content, stats in rows:
                self._db.execute(
                    "INSERT INTO messages(conversation_id, role, content, reasoning, status, stats, created) "
                    "VALUES (?, ?, ?, '', 'done', ?, ?)",
                    (conversation_id, role, content, json.dumps(stats), created))
            self._db.execute("UPDATE conversations SET updated=? WHERE id=?", (created, conversation_id))

    def message(self, message_id: int) -> StoredMessage:
        rows = self._read("SELECT * FROM messages WHERE id=?", (message_id,))
        if not rows:
            raise EdgeAIError(f"message {message_id} does not exist")
        return _message(rows[0], self.base)

    def start_reply(self, conversation_id: int, stats: dict[str, Any] | None = None) -> StoredMessage:
        """The assistant's row, empty and `streaming` until `finish_reply`. `stats` known at the
        start (the model) stay with it even if the process is killed before the end."""
        return self.add_message(conversation_id, "assistant", "", status="streaming", stats=stats)

    def save_partial(self, message_id: int, content: str, reasoning: str = "") -> None:
        self._write("UPDATE messages SET content=?, reasoning=? WHERE id=?",
                    (content, reasoning, message_id))

    def finish_reply(self, message_id: int, content: str, reasoning: str = "", status: str = "done",
                     stats: dict[str, Any] | None = None, rag: dict[str, Any] | None = None) -> None:
        self._write("UPDATE messages SET content=?, reasoning=?, status=?, stats=? WHERE id=?",
                    (content, reasoning, status, json.dumps(stats or {}), message_id))
        if rag is not None:
            self.save_rag(message_id, rag)

    def save_rag(self, message_id: int, rag: dict[str, Any]) -> None:
        """A reply's retrieval record (strategy, sources): kept with it, shown after a restart."""
        self._write("UPDATE messages SET rag=? WHERE id=?", (json.dumps(rag), message_id))

    def attachment_files(self) -> set[str]:
        """Every stored file any message still names (relative to the data dir): what
        `edgeai.chat.attachments.prune` keeps."""
        rows = self._read("SELECT attachments FROM messages WHERE attachments != '[]'")
        return {r["file"] for row in rows for r in json.loads(row["attachments"])}

    def delete_from(self, message_id: int) -> None:
        """Delete a message and every later one in its conversation (regenerate, edit-resend)."""
        message = self.message(message_id)
        self._write("DELETE FROM messages WHERE conversation_id=? AND id>=?",
                    (message.conversation_id, message_id))
