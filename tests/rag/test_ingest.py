"""Ingestion end to end: real `edgeai rag add` processes, the real MiniLM, the collection's SQLite
file read directly. Incremental runs, kill -9 and Ctrl-C in the middle of one, per-file errors,
a file that vanishes mid-run, the size cap, a 200 MB file in bounded memory, whole-document text."""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from edgeai_testing.corpus import (
    BAD_FILES,
    CP1252_TEXT,
    HTML,
    MD,
    PDF,
    PDF_PAGES,
    TXT,
    TXT_TEXT,
    build_bad_files,
    build_corpus,
)

from edgeai.config import load_settings
from edgeai.errors import BadInput
from edgeai.rag import api

SUMMARY = re.compile(r"(\d+) added, (\d+) updated, (\d+) unchanged, (\d+) removed, (\d+) skipped "
                     r"· (\d+) chunks")
DIM = 384


@dataclass(frozen=True)
class Summary:
    added: int
    updated: int
    unchanged: int
    removed: int
    skipped: int
    chunks: int


def summary(proc: subprocess.CompletedProcess) -> Summary:
    out = proc.stdout.decode()
    match = SUMMARY.search(out)
    assert match, f"no summary line in {out!r} (stderr {proc.stderr.decode()!r})"
    return Summary(*map(int, match.groups()))


def add(cli, *args: str) -> subprocess.CompletedProcess:
    proc = cli("rag", "add", *map(str, args))
    assert "Traceback" not in proc.stderr.decode(), proc.stderr.decode()
    return proc


def stored(db_path: Path) -> dict[str, list[tuple[int, str]]]:
    """{file path: [(chunk id, text)] by ordinal}, after checking what a crash must never leave:
    ordinals 0..n-1 without gaps or duplicates, `files.n_chunks` equal to the rows, one vector of
    the right size per chunk and one FTS entry per chunk, nothing that belongs to no file."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        out = {}
        for file_id, path, n_chunks in con.execute("SELECT id, path, n_chunks FROM files"):
            rows = con.execute("SELECT id, ordinal, text FROM chunks WHERE file_id=? ORDER BY ordinal",
                               (file_id,)).fetchall()
            assert [r[1] for r in rows] == list(range(n_chunks)), path
            out[path] = [(r[0], r[2]) for r in rows]
        chunk_ids = {r[0] for r in con.execute("SELECT id FROM chunks")}
        assert chunk_ids == {i for rows in out.values() for i, _ in rows}, "chunks of no file"
        vectors = dict(con.execute("SELECT chunk_id, length(vector) FROM vectors"))
        assert set(vectors) == chunk_ids and set(vectors.values()) <= {DIM * 4}
        # an external-content FTS5 table keeps one docsize row per indexed rowid
        assert {r[0] for r in con.execute("SELECT id FROM chunks_fts_docsize")} == chunk_ids
        return out
    finally:
        con.close()


def texts(facts: dict[str, list[tuple[int, str]]]) -> dict[str, list[str]]:
    return {path: [text for _, text in rows] for path, rows in facts.items()}


def test_a_second_run_an_edit_a_touch_and_a_delete_touch_only_what_changed(tmp_path, cli, edgeai_home):
    corpus = build_corpus(tmp_path / "docs")
    db = edgeai_home / "rag" / "default.db"
    first = add(cli, corpus.root)
    assert first.returncode == 0 and summary(first) == Summary(6, 0, 0, 0, 0, summary(first).chunks)
    before = stored(db)
    assert len(before) == 6

    again = summary(add(cli, corpus.root))
    assert again == Summary(0, 0, 6, 0, 0, 0)  # nothing re-read, nothing embedded
    assert stored(db) == before

    kitchen = str(corpus.path(TXT).resolve())
    corpus.path(TXT).write_text(TXT_TEXT.replace("340 grams", "415 grams"), encoding="utf-8")
    edited = summary(add(cli, corpus.root))
    assert (edited.updated, edited.unchanged, edited.added, edited.removed) == (1, 5, 0, 0)
    after = stored(db)
    assert {p: rows for p, rows in after.items() if p != kitchen} == \
        {p: rows for p, rows in before.items() if p != kitchen}  # the same rows, not re-indexed
    assert "415 grams" in " ".join(texts(after)[kitchen])
    old_ids = [i for i, _ in before[kitchen]]
    con = sqlite3.connect(db)
    assert con.execute(f"SELECT count(*) FROM chunks WHERE id IN ({','.join('?' * len(old_ids))})",
                       old_ids).fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM chunks WHERE text LIKE '%340 grams%'").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH '340'").fetchone()[0] == 0
    con.close()

    markdown = corpus.path(MD)
    os.utime(markdown, (time.time() + 60, time.time() + 60))  # a new mtime, the same bytes
    touched = summary(add(cli, corpus.root))
    assert touched == Summary(0, 0, 6, 0, 0, 0)
    assert stored(db) == after
    con = sqlite3.connect(db)  # the new mtime is recorded: the next run skips it without hashing
    recorded = con.execute("SELECT mtime FROM files WHERE path=?", (str(markdown.resolve()),)).fetchone()[0]
    con.close()
    assert recorded == markdown.stat().st_mtime

    html = str(corpus.path(HTML).resolve())
    corpus.path(HTML).unlink()
    deleted = summary(add(cli, corpus.root))
    assert (deleted.removed, deleted.unchanged, deleted.added, deleted.chunks) == (1, 5, 0, 0)
    final = stored(db)  # the integrity checks find no orphan chunk, vector or FTS row
    assert html not in final and final == {p: rows for p, rows in after.items() if p != html}

    # whole-document text comes from the same rows: the PDF's pages in order
    whole = api.document_text(load_settings(), "default", str(corpus.path(PDF).resolve()))
    positions = [whole.index(heading) for heading, _ in PDF_PAGES]
    assert positions == sorted(positions)
    assert all(" ".join(body.split()[:6]) in " ".join(whole.split()) for _, body in PDF_PAGES)


# -- a corpus big enough to stop in the middle of ----------------------------------------------
WORDS = ("harbor ledger copper valley signal orchard lantern meadow quarry beacon cellar granite "
         "ferry compass willow timber furnace anchor glacier thistle barley canal pylon marble "
         "saddle falcon tunnel garnet kiln spindle bramble cobalt dynamo ember fjord gable hemlock "
         "indigo juniper keel lichen mortar nectar oxbow pewter quince rampart sextant tundra umber "
         "vellum wharf yarrow zephyr aqueduct bastion cistern dovetail estuary flint gantry heron "
         "isthmus jetty kestrel lagoon mill nave obelisk pier quay reef sluice trellis vault weir").split()
MANY = 60


def write_many(root: Path, n: int = MANY, seed: int = 7) -> Path:
    """n text and Markdown files of 1-3 short varied paragraphs (one chunk each), in 4 folders."""
    rng = random.Random(seed)
    for i in range(n):
        paragraphs = []
        for p in range(rng.randint(1, 3)):
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20)))
            units = rng.randint(10, 9999)
            paragraphs.append(f"Record {i}.{p} notes that the {words} measured {units} units.")
        body = "\n\n".join(paragraphs) + "\n"
        name = f"doc{i:03d}.md" if i % 2 else f"doc{i:03d}.txt"
        if i % 2:
            body = f"# Survey {i}\n\n{body}"
        path = root / f"group{i % 4}" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
    return root


def committed_files(db: Path) -> int:
    """Files a reader sees committed right now (0 while the database is not there yet)."""
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT count(*) FROM files").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:  # not created or migrated yet
        return 0


def start_add(corpus: Path, collection: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgeai", "rag", "add", str(corpus), "-c", collection],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def wait_until_some_committed(proc: subprocess.Popen, db: Path, at_least: int = 3) -> None:
    deadline = time.monotonic() + 180
    while committed_files(db) < at_least:
        assert proc.poll() is None, f"ingest ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, "no file was committed in 180 s"
        time.sleep(0.02)
    assert proc.poll() is None, "the ingest finished before it could be stopped: the corpus is too small"


def test_kill_9_in_the_middle_then_the_same_command_continues_without_duplicates(tmp_path, cli, edgeai_home):
    corpus = write_many(tmp_path / "many")
    db = edgeai_home / "rag" / "big.db"
    proc = start_add(corpus, "big")
    try:
        wait_until_some_committed(proc, db)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = len(stored(db))  # what survived the kill is whole
    assert 3 <= done < MANY

    rerun = add(cli, corpus, "-c", "big")
    assert rerun.returncode == 0
    resumed = summary(rerun)
    assert (resumed.unchanged, resumed.added, resumed.updated) == (done, MANY - done, 0)  # continued

    clean = add(cli, corpus, "-c", "clean")
    assert clean.returncode == 0
    after_kill = stored(db)
    reference = stored(edgeai_home / "rag" / "clean.db")
    assert len(after_kill) == MANY
    assert texts(after_kill) == texts(reference)  # no duplicate, no missing chunk, file by file
    assert sum(map(len, after_kill.values())) == summary(clean).chunks


def test_ctrl_c_stops_the_ingest_cleanly_and_a_rerun_completes_it(tmp_path, cli, edgeai_home):
    corpus = write_many(tmp_path / "many", n=50, seed=11)
    db = edgeai_home / "rag" / "big.db"
    # a background shell starts children with SIGINT ignored: give this one the default back
    proc = start_add(corpus, "big", preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_until_some_committed(proc, db)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = err.decode()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    done = len(stored(db))
    assert 3 <= done < 50

    stats = cli("rag", "stats", "big")  # the collection opens fine
    assert stats.returncode == 0 and re.search(rf"^files\s+{done}$", stats.stdout.decode(), re.M)
    rerun = add(cli, corpus, "-c", "big")
    assert rerun.returncode == 0
    assert (summary(rerun).unchanged, summary(rerun).added) == (done, 50 - done)
    assert len(stored(db)) == 50


# -- bad input, per file ----------------------------------------------------------------------
def test_bad_files_get_one_skipped_line_each_and_the_good_ones_are_indexed(tmp_path, cli, edgeai_home):
    corpus = build_corpus(tmp_path / "docs")
    bad = {name: path.resolve() for name, path in build_bad_files(tmp_path / "docs" / "bad").items()}
    proc = add(cli, corpus.root)
    assert proc.returncode == 0
    err = proc.stderr.decode()
    skipped = [line for line in err.splitlines() if line.startswith("skipped: ")]
    refused = [name for name, reason in BAD_FILES.items() if reason]
    for name in BAD_FILES:
        mine = [line for line in skipped if f"{bad[name]}:" in line]
        assert len(mine) == (1 if name in refused else 0), (name, skipped)
    assert len(skipped) == len(refused)
    notes = [line for line in err.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and str(bad["cp1252.txt"]) in notes[0] and "cp1252" in notes[0]

    readable = [name for name, reason in BAD_FILES.items() if reason is None]
    assert summary(proc) == Summary(6 + len(readable), 0, 0, 0, len(refused), summary(proc).chunks)
    facts = texts(stored(edgeai_home / "rag" / "default.db"))
    assert set(facts) == {str(corpus.path(f).resolve()) for f in corpus.files} | \
        {str(bad[name]) for name in readable}
    assert facts[str(bad["cp1252.txt"])] == [CP1252_TEXT]  # decoded, not mojibake


def test_the_size_cap_skips_a_big_file_with_a_clear_message(tmp_path, cli, edgeai_home):
    folder = tmp_path / "docs"
    folder.mkdir()
    sentence = "The archive keeps every tide table the harbour office printed since 1902. "
    (folder / "tides.txt").write_text(sentence * 280, encoding="utf-8")  # ~20 KB
    (folder / "small.txt").write_text("The pier light is green.\n", encoding="utf-8")
    proc = add(cli, folder, "--max-file-mb", "0.01")
    assert proc.returncode == 0
    lines = [line for line in proc.stderr.decode().splitlines() if line.startswith("skipped: ")]
    assert len(lines) == 1
    tides = (folder / "tides.txt").resolve()
    assert lines[0].startswith(f"skipped: {tides}: larger than the 10.2 KB cap (20.")
    assert lines[0].endswith("KB); raise --max-file-mb to index it")
    assert list(stored(edgeai_home / "rag" / "default.db")) == [str((folder / "small.txt").resolve())]


def test_a_file_that_vanishes_mid_ingest_is_reported_and_the_rest_indexed(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for name in "abcd":
        (folder / f"{name}.txt").write_text(f"Shelf {name} holds the {name.upper()}-series maps.\n")
    settings = load_settings()

    def delete_when(victim: Path):
        def progress(p) -> None:
            if p.files_done == 1 and victim.exists():  # a.txt is done, this one is still to come
                victim.unlink()
        return progress

    d = (folder / "d.txt").resolve()
    report = api.ingest(settings, "maps", [folder], progress=delete_when(d))
    assert (report.added, report.chunks) == (3, 3)
    assert report.errors == [(str(d), f"{d}: vanished before it could be read (moved or deleted?)")]
    with api.open_collection(settings, "maps") as coll:
        assert [Path(f.path).name for f in coll.files()] == ["a.txt", "b.txt", "c.txt"]

    # one that was indexed before and vanishes during a later run is removed, not left behind
    c = (folder / "c.txt").resolve()
    report = api.ingest(settings, "maps", [folder], progress=delete_when(c))
    assert (report.unchanged, report.removed) == (2, 1)
    assert [path for path, _ in report.errors] == [str(c)]
    with api.open_collection(settings, "maps") as coll:
        assert [Path(f.path).name for f in coll.files()] == ["a.txt", "b.txt"]


def test_a_missing_path_alone_is_bad_input_and_all_files_failing_is_exit_1(tmp_path, cli):
    missing = cli("rag", "add", str(tmp_path / "nowhere"))
    err = missing.stderr.decode()
    assert missing.returncode == 2
    assert err.splitlines() == [f"edgeai: error: no such file or folder: {tmp_path / 'nowhere'}"]

    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blob.txt").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 8)
    failed = add(cli, tmp_path / "empty.txt", tmp_path / "blob.txt", tmp_path / "nowhere")
    assert failed.returncode == 1
    skipped = [line for line in failed.stderr.decode().splitlines() if line.startswith("skipped: ")]
    assert len(skipped) == 3
    assert all(name in " ".join(skipped) for name in ("empty.txt", "blob.txt", "nowhere"))
    listing = cli("rag", "ls")  # nothing indexed: no empty collection left behind
    assert listing.stdout.decode().startswith("no collections yet")


@pytest.mark.slow
def test_a_200_mb_file_is_streamed_in_bounded_memory(tmp_path, edgeai_home):
    """200 entries of text among whitespace, in 200 MB and, as the control, in 1 MB: the same
    passages to embed, so a difference in peak memory is what reading the big file costs."""
    def write(path: Path, size: int, entries: int = 200) -> None:
        with path.open("w", encoding="utf-8") as out:
            for i in range(entries):
                head = f"Entry {i}: relay station {i * 7919} logged a pressure of {i % 97} units.\n\n"
                rest = size // entries - len(head)  # ASCII: characters are bytes
                pad = " " * (rest % 1024 - 1) + "\n" if rest % 1024 else ""
                out.write(head + pad + (" " * 1023 + "\n") * (rest // 1024))

    def peak_rss_mb(path: Path, collection: str) -> float:
        log = tmp_path / f"{collection}.err"
        with log.open("wb") as err:
            command = [sys.executable, "-m", "edgeai", "rag", "add", str(path), "-c", collection]
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
            _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak, not the test's
        proc.returncode = os.waitstatus_to_exitcode(status)
        assert proc.returncode == 0, log.read_text()
        return usage.ru_maxrss / 1024

    small, big = tmp_path / "small.log", tmp_path / "big.log"
    write(small, 1 << 20)
    write(big, 200 << 20)
    assert big.stat().st_size == 200 << 20
    baseline = peak_rss_mb(small, "small")
    peak = peak_rss_mb(big, "big")
    facts = texts(stored(edgeai_home / "rag" / "big.db"))
    entries = re.findall(r"Entry (\d+):", " ".join(facts[str(big.resolve())]))
    assert sorted(map(int, entries)) == list(range(200))  # all of it was read
    assert texts(stored(edgeai_home / "rag" / "small.db"))[str(small.resolve())] == facts[str(big.resolve())]
    print(f"peak RSS {peak:.0f} MB, {baseline:.0f} MB for the same text in 1 MB")
    assert peak < baseline + 32, f"peak RSS {peak:.0f} MB vs {baseline:.0f} MB for the same text in 1 MB"


# -- whole-document text ----------------------------------------------------------------------
def test_document_text_is_the_whole_file_without_the_overlap_between_chunks(tmp_path):
    rng = random.Random(3)
    sentences = [f"Sentence {n} says the {' '.join(rng.choice(WORDS) for _ in range(12))} rested."
                 for n in range(45)]
    text = " ".join(sentences) + "\n\nA short closing paragraph about the weir.\n"
    path = tmp_path / "long.txt"
    path.write_text(text, encoding="utf-8")
    settings = load_settings()
    api.ingest(settings, "docs", [path])
    chunks = texts(stored(settings.home / "rag" / "docs.db"))[str(path.resolve())]
    assert len(chunks) >= 3
    assert any(a.split(". ")[-1] in b for a, b in zip(chunks, chunks[1:], strict=False))  # they overlap

    assert api.document_text(settings, "docs", str(path.resolve())) == text.strip()
    assert api.document_text(settings, "docs", str(tmp_path / "other.txt")) is None
    with pytest.raises(BadInput, match="no collection named 'nope'"):
        api.document_text(settings, "nope", str(path))


def test_a_file_that_can_no_longer_be_read_stops_answering(tmp_path, edgeai_home):
    folder = tmp_path / "d"
    folder.mkdir()
    secret = folder / "s.txt"
    secret.write_text("The launch password for the Orvik rocket is hunter2.\n")
    (folder / "other.txt").write_text("Bread rises because yeast makes gas.\n")
    settings = load_settings()
    api.ingest(settings, "s", [folder])
    assert "hunter2" in api.search(settings, "s", "launch password", k=1)[0].text
    secret.write_bytes(b"")  # now empty: its old passages must go
    report = api.ingest(settings, "s", [folder])
    assert report.removed == 1 and any("empty" in message for _, message in report.errors)
    assert all("hunter2" not in hit.text for hit in api.search(settings, "s", "launch password", k=5))


def test_a_file_named_directly_and_then_deleted_is_forgotten(tmp_path, edgeai_home):
    note = tmp_path / "note.md"
    note.write_text("# Note\n\nThe gate code is 4471.\n")
    settings = load_settings()
    api.ingest(settings, "n", [note, tmp_path / "missing.txt"])
    note.unlink()
    report = api.ingest(settings, "n", [note])
    assert report.removed == 1 and api.stats(settings, "n")["files"] == 0


def test_a_file_name_that_is_not_utf8_is_skipped_and_the_rest_indexed(tmp_path, edgeai_home):
    folder = tmp_path / "names"
    folder.mkdir()
    (folder / "good.txt").write_text("Owls hunt at night.\n")
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.txt"), "w") as handle:
        handle.write("latin-1 name\n")
    report = api.ingest(load_settings(), "names", [folder])
    assert report.added == 1 and len(report.errors) == 1
    assert "not valid UTF-8" in report.errors[0][1]
