"""A RAG collection on disk: one SQLite file, `<home>/rag/<name>.db`, and its sidecars.

Stdlib `sqlite3` only (one SQLite binding per process), WAL, a busy timeout, numbered
migrations like `chat.db`. Tables: files, chunks, vectors (float32 BLOBs) and an external-content
FTS5 index over chunk text that triggers keep in step inside the same transaction. Every file
is written in one transaction (old rows out, new rows in), so a killed ingest leaves each file
either wholly old or wholly new, never duplicated or half there. Each write bumps `generation`;
the vector matrix cache (`<name>.vec`, end of this module) and the ANN index (`ann.py`) record
the generation and the collection's `uid` they were built from, so a stale one is never used.
"""

from __future__ import annotations

import re
import sqlite3
import struct
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeai.errors import BadInput, EdgeAIError
from edgeai.fileio import atomic_writer

APPLICATION_ID = 0x45444752  # "EDGR": marks a collection file as ours
NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
SIDECAR_SUFFIXES = (".db-wal", ".db-shm", ".vec", ".ann", ".ann.json")

MIGRATIONS: list[tuple[str, str]] = [
    ("m001_collection", """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value);
        CREATE TABLE files (
            id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL UNIQUE, sha256 TEXT NOT NULL,
            size INTEGER NOT NULL, mtime REAL NOT NULL, n_chunks INTEGER NOT NULL DEFAULT 0,
            indexed_at REAL NOT NULL);
        CREATE TABLE chunks (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
            ordinal INTEGER NOT NULL, text TEXT NOT NULL, page INTEGER, heading TEXT,
            line_start INTEGER, line_end INTEGER);
        CREATE INDEX chunks_by_file ON chunks(file_id, ordinal);
        CREATE TABLE vectors (
            chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
            vector BLOB NOT NULL);
        CREATE VIRTUAL TABLE chunks_fts USING fts5(
            text, content='chunks', content_rowid='id', tokenize='unicode61 remove_diacritics 2');
        CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
            INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
        END;
        CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
            INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
        END;
    """),
    # the heading path becomes keyword-searchable (a fact stated only in a title is found by its
    # words), and `units` holds the small retrieval units of long passages: sentence windows,
    # matched on their own vectors, answered with the passage that holds them. Passages indexed
    # before this were cut without titles in plain text and have no units: `reindex` asks
    # `api.open_collection` to index the collection's files again, once, on first open.
    ("m002_headings_and_units", """
        DROP TRIGGER chunks_fts_insert;
        DROP TRIGGER chunks_fts_delete;
        DROP TABLE chunks_fts;
        CREATE VIRTUAL TABLE chunks_fts USING fts5(
            text, heading, content='chunks', content_rowid='id',
            tokenize='unicode61 remove_diacritics 2');
        CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
            INSERT INTO chunks_fts(rowid, text, heading) VALUES (new.id, new.text, new.heading);
        END;
        CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
            INSERT INTO chunks_fts(chunks_fts, rowid, text, heading)
                VALUES ('delete', old.id, old.text, old.heading);
        END;
        INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild');
        CREATE TABLE units (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            chunk_id INTEGER NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,
            vector BLOB NOT NULL);
        CREATE INDEX units_by_chunk ON units(chunk_id);
        INSERT INTO meta(key, value) SELECT 'reindex', 2 WHERE EXISTS (SELECT 1 FROM files);
    """),
    # where a passage of a recording is: seconds from the start of an audio file (indexed through
    # speech to text), so its citation says "at 0:42–0:51". Nothing to re-index: collections
    # before this held no audio, and NULL is what every other passage has.
    ("m003_time_spans", """
        ALTER TABLE chunks ADD COLUMN t_start REAL;
        ALTER TABLE chunks ADD COLUMN t_end REAL;
    """),
]
# keyword weights of chunks_fts's columns (text, heading): a title names what its section is about
BM25_WEIGHTS = (1.0, 2.0)


class CollectionError(EdgeAIError):
    pass


class EmbedderMismatch(BadInput):
    """The collection's vectors came from another embedder (or another version of it)."""


@dataclass(frozen=True)
class FileRecord:
    path: str
    sha256: str
    size: int
    mtime: float
    n_chunks: int
    indexed_at: float


@dataclass(frozen=True)
class StoredChunk:
    id: int
    file: str
    ordinal: int
    text: str
    page: int | None
    heading: str | None
    line_start: int | None
    line_end: int | None
    t_start: float | None = None  # seconds into a recording (audio files)
    t_end: float | None = None


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name or "") or name in (".", ".."):
        raise BadInput(f"bad collection name {name!r}",
                       "use 1-64 letters, digits, '_', '.' or '-', e.g. notes or work-docs")
    return name


def collection_path(settings: Any, name: str) -> Path:
    """`<home>/rag/<name>.db` for a checked name."""
    return Path(settings.home) / "rag" / f"{check_name(name)}.db"


def list_collections(settings: Any) -> list[str]:
    folder = Path(settings.home) / "rag"
    return sorted(p.stem for p in folder.glob("*.db")) if folder.is_dir() else []


def delete_collection(settings: Any, name: str) -> bool:
    """Remove a collection and all its sidecars; False when there was none."""
    path = collection_path(settings, name)
    existed = path.exists()
    path.unlink(missing_ok=True)
    for suffix in SIDECAR_SUFFIXES:
        path.with_suffix(suffix).unlink(missing_ok=True)
    return existed


def describe_embedder(meta: dict[str, Any]) -> str:
    scale = "" if meta["normalized"] else ", unnormalized"
    return f"{meta['id']} v{meta['version']} ({meta['dim']}-d{scale})"


def _chunk(row: sqlite3.Row) -> StoredChunk:
    return StoredChunk(row["id"], row["path"], row["ordinal"], row["text"], row["page"],
                       row["heading"], row["line_start"], row["line_end"], row["t_start"], row["t_end"])


class FileWriter:
    """Adds one file's chunks inside the transaction `Collection.file_writer` holds open."""

    def __init__(self, db: sqlite3.Connection, file_id: int, dim: int):
        self._db, self.file_id, self._dim = db, file_id, dim
        self.n_chunks = 0

    def add(self, passages: Sequence[Any], vectors: Any,
            units: Sequence[tuple[int, Any]] = ()) -> list[int]:
        """Insert passages (duck-typed: text, page, heading, line_start, line_end, t_start, t_end,
        ordinal) and their
        vectors (float32, one row each), and the small units of them (`(index into passages,
        vector)`); returns the new chunk ids."""
        import numpy as np

        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape != (len(passages), self._dim):
            raise CollectionError(f"expected {len(passages)} vectors of {self._dim} floats, "
                                  f"got shape {vectors.shape}")
        ids = []
        for passage, vector in zip(passages, vectors, strict=True):
            row = (self.file_id, getattr(passage, "ordinal", self.n_chunks), passage.text,
                   getattr(passage, "page", None), getattr(passage, "heading", None) or None,
                   getattr(passage, "line_start", None), getattr(passage, "line_end", None))
            times = (getattr(passage, "t_start", None), getattr(passage, "t_end", None))
            # only a recording's passages name the m003 columns: a text passage is written with
            # the statement every schema since m001 takes (tests write old-schema collections so)
            if times != (None, None):
                cursor = self._db.execute(
                    "INSERT INTO chunks(file_id, ordinal, text, page, heading, line_start, line_end, "
                    "t_start, t_end) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row + times)
            else:
                cursor = self._db.execute(
                    "INSERT INTO chunks(file_id, ordinal, text, page, heading, line_start, line_end) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", row)
            self._db.execute("INSERT INTO vectors(chunk_id, vector) VALUES (?, ?)",
                             (cursor.lastrowid, vector.tobytes()))
            ids.append(cursor.lastrowid)
            self.n_chunks += 1
        for index, vector in units:
            self._db.execute("INSERT INTO units(chunk_id, vector) VALUES (?, ?)",
                             (ids[index], np.asarray(vector, dtype=np.float32).tobytes()))
        return ids


class Collection:
    """One open collection: a connection guarded by a lock (the chat reads from a worker thread)."""

    def __init__(self, path: Path, db: sqlite3.Connection, meta: dict[str, Any], writable: bool):
        self.path, self._db, self.meta, self.writable = path, db, meta, writable
        self.name = path.stem
        self._lock = threading.RLock()
        self._matrix: tuple[int, Any, Any] | None = None  # (generation, ids, matrix)
        self._units: tuple[int, Any, Any] | None = None  # (generation, chunk ids, matrix)
        self.sidecars: dict[str, Any] = {}  # loaded sidecars (the ANN index), with what they were built from

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path, embedder_meta: dict[str, Any] | None, create: bool = True) -> Collection:
        """Open (or create) the collection at `path`. `embedder_meta` (see `embed.embedder_meta`) must
        match what the collection was built with; None opens it for listing and removal only."""
        path = Path(path)
        if not path.exists():
            if not create:
                raise BadInput(f"no collection named {path.stem!r}", "list them with: edgeai rag ls")
            if embedder_meta is None:
                raise CollectionError(f"cannot create collection {path.stem!r} without an embedder")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise CollectionError(f"cannot open collection {path}: {exc}") from None
        db.row_factory = sqlite3.Row
        try:
            meta = _prepare(db, path, embedder_meta)
        except sqlite3.OperationalError as exc:
            db.close()
            raise CollectionError(f"cannot use collection {path}: {exc}",
                                  "is another edgeai writing to it? check the disk and permissions") from None
        except sqlite3.DatabaseError as exc:
            db.close()
            raise CollectionError(f"collection {path} is damaged or not a database ({exc})",
                                  f"remove it and index again: edgeai rag rm {path.stem}") from None
        except BaseException:
            db.close()
            raise
        return cls(path, db, meta, writable=embedder_meta is not None)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------
    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, tuple(args)).fetchall()

    @property
    def generation(self) -> int:
        return int(self._read("SELECT value FROM meta WHERE key='generation'")[0][0])

    @property
    def uid(self) -> str:
        return str(self.meta["uid"])

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    def file_record(self, path: str) -> tuple[str, int, float] | None:
        rows = self._read("SELECT sha256, size, mtime FROM files WHERE path=?", (str(path),))
        return (rows[0]["sha256"], rows[0]["size"], rows[0]["mtime"]) if rows else None

    def files(self) -> list[FileRecord]:
        rows = self._read("SELECT path, sha256, size, mtime, n_chunks, indexed_at FROM files ORDER BY path")
        return [FileRecord(*tuple(r)) for r in rows]

    def count(self) -> int:
        return int(self._read("SELECT count(*) FROM chunks")[0][0])

    def stats(self) -> dict[str, Any]:
        files, chunks = self._read("SELECT (SELECT count(*) FROM files), (SELECT count(*) FROM chunks)")[0]
        size = sum(p.stat().st_size for p in (self.path, self.path.with_suffix(".db-wal")) if p.exists())
        return {"name": self.name, "path": str(self.path), "files": files, "chunks": chunks,
                "embedder": describe_embedder(self.meta), "generation": self.generation,
                "created": float(self.meta["created"]), "bytes": size}

    def chunks(self, ids: Sequence[int]) -> list[StoredChunk]:
        """The chunks with these ids, in the order asked (missing ids are left out)."""
        ids = [int(i) for i in ids]
        found: dict[int, StoredChunk] = {}
        for start in range(0, len(ids), 500):  # SQLite caps bound parameters
            part = ids[start:start + 500]
            rows = self._read(
                "SELECT c.id, f.path, c.ordinal, c.text, c.page, c.heading, c.line_start, c.line_end, "
                "c.t_start, c.t_end "
                f"FROM chunks c JOIN files f ON f.id = c.file_id WHERE c.id IN ({','.join('?' * len(part))})",
                part)
            found.update((r["id"], _chunk(r)) for r in rows)
        return [found[i] for i in ids if i in found]

    def vectors_for(self, ids: Sequence[int]) -> Any:
        """float32 (len(ids), dim) for chunk ids (zeros where an id is gone)."""
        import numpy as np

        ids = [int(i) for i in ids]
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        where = {chunk_id: n for n, chunk_id in enumerate(ids)}
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            for row in self._read(f"SELECT chunk_id, vector FROM vectors WHERE chunk_id IN "
                                  f"({','.join('?' * len(part))})", part):
                out[where[row[0]]] = np.frombuffer(row[1], dtype=np.float32)
        return out

    def fts(self, match: str, limit: int) -> list[tuple[int, float]]:
        """(chunk id, bm25) best first for an FTS5 MATCH expression (build it with search.fts_query)."""
        if not match:
            return []
        weights = ", ".join(map(str, BM25_WEIGHTS))
        rows = self._read(f"SELECT rowid, bm25(chunks_fts, {weights}) AS score FROM chunks_fts "
                          "WHERE chunks_fts MATCH ? ORDER BY score LIMIT ?", (match, int(limit)))
        return [(int(r[0]), float(r[1])) for r in rows]

    def fts_count(self, match: str, cap: int) -> int:
        """How many chunks match, counting no further than `cap` (cheap: no ranking)."""
        rows = self._read("SELECT count(*) FROM (SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ? "
                          "LIMIT ?)", (match, int(cap)))
        return int(rows[0][0])

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: everything read inside sees one generation."""
        with self._lock:
            if self._db.in_transaction:  # nested: the outer block's snapshot holds
                yield self._db
                return
            self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    # -- writing -------------------------------------------------------------------------
    @contextmanager
    def file_writer(self, path: str, sha256: str, size: int, mtime: float) -> Iterator[FileWriter]:
        """One file's transaction: its old rows go, `w.add(...)` adds new ones (call it as often as
        memory needs), and all of it commits at the end of the block — or none of it on an error.
        Other threads using this object wait for the block; other processes read the old version."""
        if not self.writable:
            raise CollectionError(f"collection {self.name!r} was opened without an embedder: read-only")
        with self._lock, self._write_transaction():
            self._delete_file(str(path))
            cursor = self._db.execute(
                "INSERT INTO files(path, sha256, size, mtime, n_chunks, indexed_at) "
                "VALUES (?, ?, ?, ?, 0, ?)",
                (str(path), sha256, int(size), float(mtime), time.time()))
            writer = FileWriter(self._db, cursor.lastrowid, self.dim)
            yield writer
            self._db.execute("UPDATE files SET n_chunks=? WHERE id=?", (writer.n_chunks, writer.file_id))
            self._bump()

    def replace_file(self, path: str, sha256: str, size: int, mtime: float, passages: Sequence[Any],
                     vectors: Any) -> list[int]:
        """Replace everything stored for `path` in one transaction; returns the new chunk ids."""
        with self.file_writer(path, sha256, size, mtime) as writer:
            return writer.add(passages, vectors)

    def touch_file(self, path: str, size: int, mtime: float) -> None:
        """Record a new mtime for a file whose content hash did not change (a `touch`, a copy), so
        the next ingest skips it on size + mtime without hashing it again. Not a content change:
        the generation stays."""
        with self._lock:
            self._db.execute("UPDATE files SET size=?, mtime=? WHERE path=?",
                             (int(size), float(mtime), str(path)))

    def remove_file(self, path: str) -> bool:
        """Delete a file with its chunks, vectors and FTS rows; False when it was not indexed."""
        with self._lock, self._write_transaction():
            removed = self._delete_file(str(path))
            if removed:
                self._bump()
        return removed

    @contextmanager
    def _write_transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error; SQLite's own errors (disk full,
        locked past the busy timeout) become one-line CollectionErrors."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # a failed COMMIT may have rolled back already
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise CollectionError(f"cannot write to collection {self.name!r}: {exc}",
                                  "is another edgeai writing to it? check the disk space") from None

    def _delete_file(self, path: str) -> bool:
        row = self._db.execute("SELECT id FROM files WHERE path=?", (path,)).fetchone()
        if row is None:
            return False
        # explicit, not left to ON DELETE CASCADE: it must not depend on PRAGMA foreign_keys
        for table in ("vectors", "units"):
            self._db.execute(f"DELETE FROM {table} WHERE chunk_id IN (SELECT id FROM chunks WHERE file_id=?)",
                             (row[0],))
        self._db.execute("DELETE FROM chunks WHERE file_id=?", (row[0],))  # the trigger clears FTS rows
        self._db.execute("DELETE FROM files WHERE id=?", (row[0],))
        return True

    def _bump(self) -> None:
        self._db.execute("UPDATE meta SET value = value + 1 WHERE key='generation'")

    # -- re-indexing after a schema change -----------------------------------------------
    @property
    def needs_reindex(self) -> bool:
        """True while files indexed by an older schema (no titles in plain text, no units) remain."""
        return bool(self._read("SELECT 1 FROM meta WHERE key='reindex'"))

    def reindexed(self) -> None:
        with self._lock, self._write_transaction():
            self._db.execute("DELETE FROM meta WHERE key='reindex'")

    def unit_matrix(self) -> tuple[Any, Any]:
        """(chunk id of each unit int64 (U,), unit vectors float32 (U, dim)), cached per generation."""
        import numpy as np

        generation = self.generation
        if self._units is None or self._units[0] != generation:
            with self.snapshot() as db:
                generation = int(db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])
                rows = db.execute("SELECT chunk_id, vector FROM units ORDER BY id").fetchall()
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
            matrix = matrix.reshape(len(rows), self.dim)
            self._units = (generation, ids, matrix)
        return self._units[1], self._units[2]

    # -- the vector matrix ---------------------------------------------------------------
    def matrix(self) -> tuple[Any, Any]:
        """(chunk ids int64 (N,), vectors float32 (N, dim)) for exact search, cached per generation:
        in memory, and in the `.vec` sidecar so the next `rag query` process maps it instead of
        reading N BLOBs."""
        generation = self.generation
        if self._matrix is None or self._matrix[0] != generation:
            ids, matrix, generation = _load_matrix(self)
            self._matrix = (generation, ids, matrix)
        return self._matrix[1], self._matrix[2]


def _prepare(db: sqlite3.Connection, path: Path, embedder_meta: dict[str, Any] | None) -> dict[str, Any]:
    """Mark, migrate and check a freshly connected collection; returns its meta."""
    app_id = db.execute("PRAGMA application_id").fetchone()[0]
    tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if tables and app_id != APPLICATION_ID:
        raise CollectionError(f"{path} belongs to another program (its tables lack the edgeai mark)")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA busy_timeout=5000")
    db.execute("PRAGMA foreign_keys=ON")
    _migrate(db, path)
    meta = {r[0]: r[1] for r in db.execute("SELECT key, value FROM meta")}
    if "id" not in meta:
        if embedder_meta is None:
            raise CollectionError(f"collection {path.stem!r} has no embedder recorded",
                                  f"remove it and index again: edgeai rag rm {path.stem}")
        meta = {**embedder_meta, "normalized": int(bool(embedder_meta["normalized"])),
                "created": time.time(), "generation": 0, "uid": uuid.uuid4().hex}
        with db:
            db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", meta.items())
    meta["normalized"] = bool(meta["normalized"])
    if embedder_meta is not None:
        def identity(m: dict[str, Any]) -> tuple:
            return str(m["id"]), int(m["dim"]), bool(m["normalized"]), str(m["version"])

        if identity(meta) != identity(embedder_meta):
            raise EmbedderMismatch(
                f"collection {path.stem!r} was built with {describe_embedder(meta)}, "
                f"not {describe_embedder(embedder_meta)}",
                f"re-index it (edgeai rag rm {path.stem}, then rag add) or use the {meta['id']} embedder")
    return meta


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    from edgeai.migrate import NewerSchema, apply_migrations

    try:
        apply_migrations(db, MIGRATIONS, APPLICATION_ID)
    except NewerSchema as exc:
        raise CollectionError(f"collection {path} {exc}") from None


# -- the `.vec` sidecar: a 64-byte header, then int64 chunk ids, then float32 rows ---------------
VEC_MAGIC = b"EDGEVEC1"
VEC_HEADER = struct.Struct("<8s32sqqq")  # magic, collection uid, generation, count, dim


def _load_matrix(coll: Collection) -> tuple[Any, Any, int]:
    """The sidecar when it matches the collection's uid and generation, else rebuilt from the BLOBs."""
    import numpy as np

    path = coll.path.with_suffix(".vec")
    generation = coll.generation
    try:
        with path.open("rb") as handle:
            magic, uid, gen, count, dim = VEC_HEADER.unpack(handle.read(VEC_HEADER.size))
        if (magic, uid.decode(), gen, dim) == (VEC_MAGIC, coll.uid, generation, coll.dim):
            ids = np.memmap(path, dtype="<i8", mode="r", offset=VEC_HEADER.size, shape=(count,))
            matrix = np.memmap(path, dtype="<f4", mode="r", offset=VEC_HEADER.size + 8 * count,
                               shape=(count, dim))
            return ids, matrix, generation
    except (OSError, struct.error, UnicodeDecodeError, ValueError):
        pass  # missing, foreign or torn: rebuild below
    with coll.snapshot() as db:  # the generation and the rows from one read transaction
        generation = int(db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])
        rows = db.execute("SELECT chunk_id, vector FROM vectors ORDER BY chunk_id").fetchall()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), coll.dim)
    del rows
    try:
        with atomic_writer(path) as handle:
            handle.write(VEC_HEADER.pack(VEC_MAGIC, coll.uid.encode(), generation, len(ids), coll.dim))
            handle.write(ids.astype("<i8").tobytes())
            handle.write(matrix.astype("<f4").tobytes())
    except OSError:
        pass  # a read-only folder: exact search still works, from the BLOBs each time
    return ids, matrix, generation
