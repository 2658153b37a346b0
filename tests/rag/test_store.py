"""Collections on real SQLite: one transaction per file, generations, sidecars, refusals."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np
import pytest

from edgeai.config import Settings
from edgeai.errors import BadInput
from edgeai.rag.store import (
    Collection,
    CollectionError,
    EmbedderMismatch,
    collection_path,
    delete_collection,
    list_collections,
)

META = {"id": "minilm-l6-v2", "dim": 8, "normalized": True, "version": "1"}


@dataclass(frozen=True)
class Passage:  # the chunker's Passage, duck-typed
    text: str
    ordinal: int
    page: int | None = None
    heading: str | None = None
    line_start: int | None = None
    line_end: int | None = None


def passages(name: str, n: int) -> list[Passage]:
    return [Passage(f"{name} chunk {i} about topic{i}", i, line_start=2 * i + 1, line_end=2 * i + 2)
            for i in range(n)]


def unit(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, 8)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def settings(edgeai_home):
    return Settings(home=edgeai_home)


@pytest.fixture
def coll(settings):
    c = Collection.open(collection_path(settings, "notes"), META)
    yield c
    c.close()


def raw_counts(path, check_fts: bool = True) -> dict[str, int]:
    """Row counts, after FTS5's own check that its index matches the chunk texts (raises if not)."""
    db = sqlite3.connect(path)
    try:
        if check_fts:  # a write statement: not while another connection holds the write lock
            db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')")
        return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("files", "chunks", "vectors")}
    finally:
        db.close()


def texts_of(path, file: str) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return sorted(r[0] for r in db.execute(
            "SELECT c.text FROM chunks c JOIN files f ON f.id = c.file_id WHERE f.path=?", (file,)))
    finally:
        db.close()


def test_names_are_checked(settings):
    assert collection_path(settings, "work-docs_2.0").name == "work-docs_2.0.db"
    for bad in ("", "../etc", "a/b", "x" * 65, "naïve", "two words", ".."):
        with pytest.raises(BadInput):
            collection_path(settings, bad)


def test_files_are_stored_replaced_and_listed(coll):
    coll.replace_file("/docs/a.md", "sha-a", 100, 1.5, passages("a", 3), unit(3))
    coll.replace_file("/docs/b.md", "sha-b", 200, 2.5, passages("b", 2), unit(2, 1))
    assert coll.file_record("/docs/a.md") == ("sha-a", 100, 1.5)
    assert coll.file_record("/docs/missing.md") is None
    new_ids = coll.replace_file("/docs/a.md", "sha-a2", 120, 3.0, passages("a2", 4), unit(4, 2))
    assert [(f.path, f.n_chunks) for f in coll.files()] == [("/docs/a.md", 4), ("/docs/b.md", 2)]
    assert coll.count() == 6  # the old three chunks of a.md are gone, not duplicated
    chunks = coll.chunks(list(reversed(new_ids)))
    assert [c.text for c in chunks] == [f"a2 chunk {i} about topic{i}" for i in (3, 2, 1, 0)]
    first = chunks[0]
    assert (first.file, first.line_start, first.line_end, first.ordinal) == ("/docs/a.md", 7, 8, 3)
    assert np.allclose(coll.vectors_for(new_ids), unit(4, 2))
    stats = coll.stats()
    assert (stats["files"], stats["chunks"], stats["embedder"]) == (2, 6, "minilm-l6-v2 v1 (8-d)")


def test_every_change_bumps_the_generation_and_reads_do_not(coll):
    assert coll.generation == 0
    coll.replace_file("a", "s", 1, 0.0, passages("a", 2), unit(2))
    assert coll.generation == 1
    coll.files(), coll.stats(), coll.matrix(), coll.fts('"chunk"', 5)
    assert coll.generation == 1
    coll.replace_file("a", "s2", 1, 0.0, passages("a", 1), unit(1))
    assert coll.generation == 2
    assert coll.remove_file("a") is True
    assert coll.generation == 3
    assert coll.remove_file("a") is False  # nothing changed: no bump
    assert coll.generation == 3


def test_removing_a_file_leaves_no_orphan_rows(coll):
    coll.replace_file("keep", "s", 1, 0.0, passages("keep", 2), unit(2))
    coll.replace_file("drop", "s", 1, 0.0, [Passage("zebra crossing manual", 0)], unit(1, 1))
    assert coll.fts('"zebra"', 5)
    coll.remove_file("drop")
    assert raw_counts(coll.path) == {"files": 1, "chunks": 2, "vectors": 2}
    assert coll.fts('"zebra"', 5) == []


def test_a_file_streamed_in_parts_commits_once_and_a_failure_keeps_the_old_version(coll):
    coll.replace_file("big", "old", 1, 0.0, passages("old", 2), unit(2))
    with coll.file_writer("big", "new", 2, 1.0) as w:
        for part in range(3):
            w.add(passages(f"part{part}", 5), unit(5, part))
        assert raw_counts(coll.path, check_fts=False)["chunks"] == 2  # other readers see the old one
    assert coll.count() == 15 and coll.files()[0].n_chunks == 15
    with pytest.raises(RuntimeError), coll.file_writer("big", "newer", 3, 2.0) as w:
        w.add(passages("half", 5), unit(5))
        raise RuntimeError("the extractor failed half way")
    assert coll.file_record("big") == ("new", 2, 1.0) and coll.count() == 15


def test_vectors_of_the_wrong_shape_are_refused_and_nothing_is_written(coll):
    with pytest.raises(CollectionError, match="expected 2 vectors of 8 floats"):
        coll.replace_file("a", "s", 1, 0.0, passages("a", 2), np.zeros((2, 384), np.float32))
    assert coll.files() == [] and coll.generation == 0


def test_a_different_embedder_is_refused(settings, coll):
    coll.replace_file("a", "s", 1, 0.0, passages("a", 1), unit(1))
    for other in ({**META, "version": "2"}, {**META, "dim": 384}, {**META, "id": "bge-small"},
                  {**META, "normalized": False}):
        with pytest.raises(EmbedderMismatch) as info:
            Collection.open(coll.path, other)
        assert info.value.message.startswith("collection 'notes' was built with minilm-l6-v2 v1 (8-d)")
        assert "re-index" in info.value.hint
    Collection.open(coll.path, dict(META)).close()  # the same embedder opens fine


def test_without_an_embedder_a_collection_opens_read_only(settings, coll):
    coll.replace_file("a", "s", 1, 0.0, passages("a", 1), unit(1))
    with Collection.open(coll.path, None, create=False) as ro:
        assert ro.stats()["chunks"] == 1
        with pytest.raises(CollectionError, match="read-only"):
            ro.replace_file("b", "s", 1, 0.0, passages("b", 1), unit(1))
    with pytest.raises(BadInput, match="no collection named 'other'"):
        Collection.open(collection_path(settings, "other"), META, create=False)


def test_foreign_and_broken_files_are_refused_untouched(settings):
    foreign = collection_path(settings, "foreign")
    foreign.parent.mkdir(parents=True)
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE t(x)")
    db.commit()
    db.close()
    with pytest.raises(CollectionError, match="belongs to another program"):
        Collection.open(foreign, META)
    broken = collection_path(settings, "broken")
    broken.write_bytes(b"PK\x03\x04 this is a zip file, not SQLite" * 100)
    with pytest.raises(CollectionError, match="damaged or not a database"):
        Collection.open(broken, META)
    assert broken.read_bytes().startswith(b"PK\x03\x04")


def test_the_vector_matrix_is_cached_per_generation(settings, coll):
    ids_a = coll.replace_file("a", "s", 1, 0.0, passages("a", 3), unit(3))
    ids, matrix = coll.matrix()
    assert list(ids) == ids_a and np.allclose(matrix, unit(3))
    sidecar = coll.path.with_suffix(".vec")
    assert sidecar.exists()
    with Collection.open(coll.path, META) as again:  # a new process maps the sidecar
        ids2, matrix2 = again.matrix()
        assert isinstance(matrix2, np.memmap) and np.array_equal(matrix2, matrix)
    ids_b = coll.replace_file("b", "s", 1, 0.0, passages("b", 2), unit(2, 5))
    ids, matrix = coll.matrix()
    assert list(ids) == ids_a + ids_b and np.allclose(matrix[3:], unit(2, 5))
    # a collection removed and made again restarts its generation: its uid keeps old sidecars out
    coll.close()
    stale = sidecar.read_bytes()
    delete_collection(settings, "notes")
    assert not sidecar.exists()
    fresh = Collection.open(collection_path(settings, "notes"), META)
    fresh.replace_file("c", "s", 1, 0.0, passages("c", 1), unit(1, 9))
    fresh.replace_file("d", "s", 1, 0.0, passages("d", 1), unit(1, 10))
    sidecar.write_bytes(stale)  # same generation (2) as the old file's
    assert np.allclose(fresh.matrix()[1], np.concatenate([unit(1, 9), unit(1, 10)]))
    fresh.close()


def test_collections_are_listed_and_deleted_with_their_sidecars(settings, coll):
    coll.replace_file("a", "s", 1, 0.0, passages("a", 1), unit(1))
    coll.matrix()
    Collection.open(collection_path(settings, "second"), META).close()
    assert list_collections(settings) == ["notes", "second"]
    coll.close()
    assert delete_collection(settings, "notes") is True
    assert sorted(p.name for p in (settings.home / "rag").iterdir()) == ["second.db"]
    assert delete_collection(settings, "notes") is False


WRITER = """
import sys, numpy as np
from edgeai.rag.store import Collection
from types import SimpleNamespace as P
meta = {"id": "minilm-l6-v2", "dim": 8, "normalized": True, "version": "1"}
coll = Collection.open(sys.argv[1], meta)
print("ready", flush=True)
for i in range(100000):
    n = 1 + i % 7
    coll.replace_file(f"file{i % 50}", str(i), n, 0.0,
                      [P(text=f"f{i} c{j}", ordinal=j) for j in range(n)], np.ones((n, 8), np.float32))
"""


def test_a_killed_writer_leaves_every_file_whole(coll):
    """kill -9 in the middle of writes: each file keeps exactly the chunks of one version."""
    path = coll.path
    coll.close()
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    time.sleep(1.5)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    with Collection.open(path, META) as reopened:
        files = reopened.files()
        assert len(files) == 50
        versions = [int(record.sha256) for record in files]
        for record, version in zip(files, versions, strict=True):
            assert record.n_chunks == 1 + version % 7
            assert texts_of(path, record.path) == sorted(f"f{version} c{j}" for j in range(record.n_chunks))
    assert max(versions) >= 100  # the kill came in the middle of a long run of writes
    counts = raw_counts(path)
    assert counts["chunks"] == counts["vectors"] == sum(f.n_chunks for f in files)
