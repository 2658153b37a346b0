"""Indexing files into a collection: walk, skip what is unchanged, extract, chunk, embed, store.

Incremental: a file whose size and mtime match its record is skipped without reading it; one
whose content hash matches is skipped after hashing (a `touch`); anything else is re-indexed;
files that were indexed under a given folder and are gone from it are removed. Resumable: each
file is one transaction (store.file_writer), so a killed ingest leaves every file wholly indexed
or not at all, and running the same command again continues with the files still to do.
Per-file problems (a path that does not exist, binary, encrypted, corrupt, no text found, vanished
mid-run, over the size cap) are collected and reported; they never stop the batch. Scanned PDF
pages and images are read by OCR, audio by speech to text (`extract`): slow files, whose progress
within the file reaches the bar as `Progress.detail`; an unchanged one is never read again. Memory stays
bounded: sections stream out of the extractor and are embedded and written `BATCH` passages at a
time.
"""

from __future__ import annotations

import fnmatch
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from edgeai.errors import EdgeAIError
from edgeai.fileio import sha256_file
from edgeai.rag.extract import SUPPORTED_SUFFIXES, ExtractError, checked_size, is_slow, iter_sections

BATCH = 32  # passages per embedding call and insert
DEFAULT_MAX_MB = 256  # per-file cap; larger files are reported, not read (--max-file-mb raises it)
SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", ".tox"}


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, one-line message)
    notices: list[str] = field(default_factory=list)  # e.g. "decoded as cp1252"
    seconds: float = 0.0
    ann: str = "skipped"  # the ANN sidecar after this ingest: "skipped" (small or no faiss), "built", "fresh"

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.seconds if self.seconds else 0.0


@dataclass
class Progress:
    """What a progress bar shows; `on_update(progress)` is called after each file and batch."""

    files_total: int = 0
    files_done: int = 0
    chunks: int = 0
    current: str = ""
    detail: str = ""  # how far into the current file a slow one is: "OCR page 3/12", "speech 1:20/4:05"
    started: float = field(default_factory=time.perf_counter)

    @property
    def chunks_per_s(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.chunks / elapsed if elapsed > 0 else 0.0


def _matches(path: Path, root: Path, patterns: Iterable[str]) -> bool:
    rel = path.relative_to(root).as_posix() if path != root else path.name
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(path.name, p) for p in patterns)


def walk(paths: Iterable[Path], include: tuple[str, ...] = (), exclude: tuple[str, ...] = ()
         ) -> Iterator[tuple[Path, Path | None]]:
    """(file, the folder it was found under, or None for a file named directly). Folders are
    walked recursively for the formats we read (images and audio included);
    hidden and tool folders (.git, node_modules, ...) are skipped. A file named directly is
    always tried, whatever its suffix. Globs match the path relative to the folder or the name."""
    seen: set[Path] = set()
    for given in paths:
        given = Path(given).expanduser()
        if given.is_dir():
            root = given.resolve()
            for folder, dirs, files in os.walk(root):
                dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
                for name in sorted(files):
                    path = Path(folder) / name
                    suffix = path.suffix.lower()
                    if name.startswith(".") or suffix not in SUPPORTED_SUFFIXES:
                        continue
                    if include and not _matches(path, root, include):
                        continue
                    if exclude and _matches(path, root, exclude):
                        continue
                    if path not in seen:
                        seen.add(path)
                        yield path, root
        else:
            path = given.resolve() if given.exists() else given.absolute()
            if path not in seen and not (exclude and _matches(path, path.parent, exclude)):
                seen.add(path)
                yield path, None


def _encodable(path: Path) -> bool:
    """SQLite stores paths as UTF-8: a name with undecodable bytes (surrogate escapes) cannot be."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# the guard's check of each passage before it is embedded (edgeai.guard.ingest_screen):
# (file, text) -> (the text to store, the PII kinds found)
Screen = Callable[[str, str], tuple[str, list[str]]]


def _screened(passages: Iterable, path: Path, screen: Screen | None, found: dict[str, bool]) -> Iterator:
    """Passages with what the guard redacts taken out of both the cited and the embedded text;
    `found` collects kind -> whether it was redacted."""
    from dataclasses import replace

    for passage in passages:
        if screen is not None:
            text, kinds = screen(str(path), passage.text)
            redacted = text != passage.text
            found.update({kind: redacted for kind in kinds})
            if redacted:
                if passage.text in passage.embed_text:
                    embed = passage.embed_text.replace(passage.text, text)
                else:
                    embed = screen(str(path), passage.embed_text)[0]
                passage = replace(passage, text=text, embed_text=embed)
        yield passage


def index_file(coll, embedder, path: Path, *, max_bytes: int | None, notices: list[str],
               on_chunks: Callable[[int], None] = lambda n: None, screen: Screen | None = None,
               force: bool = False, on_progress: Callable[[str], None] | None = None) -> tuple[str, int]:
    """Index one file if it changed (or `force`): ("unchanged" | "added" | "updated", chunks written).
    Raises ExtractError (or OSError) for a file that cannot be indexed; nothing of it is kept.
    `screen` (the guard's PII layer) sees every passage first: it may redact it; a notice says
    which kinds of PII the file held. `on_progress(detail)`: how far a slow file (OCR, speech) is."""
    from edgeai.rag.chunk import chunk_sections, units_of

    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ExtractError(path, "missing", "vanished before it could be read (moved or deleted?)") from None
    record = coll.file_record(str(path))
    if record and record[1] == stat.st_size and record[2] == stat.st_mtime and not force:
        return "unchanged", 0
    checked_size(path, max_bytes)  # the cap, before hashing a huge file
    digest = sha256_file(path)
    if record and record[0] == digest and not force:
        coll.touch_file(str(path), stat.st_size, stat.st_mtime)
        return "unchanged", 0
    sections = iter_sections(path, max_bytes=max_bytes, on_notice=notices.append, on_progress=on_progress)
    if is_slow(path):
        # OCR and speech take minutes on a long file: read it all (text only, small) before the
        # write transaction, which holds the collection's lock (a chat searching it would wait)
        sections = iter(list(sections))
    found: dict[str, bool] = {}
    passages = _screened(chunk_sections(sections, count_tokens=embedder.count_tokens,
                                        max_tokens=embedder.max_tokens), path, screen, found)
    written = 0
    with coll.file_writer(str(path), digest, stat.st_size, stat.st_mtime) as writer:
        while batch := list(islice(passages, BATCH)):
            units = [(n, unit) for n, p in enumerate(batch) for unit in units_of(p)]
            vectors = embedder.embed([p.embed_text for p in batch] + [u for _, u in units])
            writer.add(batch, vectors[:len(batch)],
                       [(n, vector) for (n, _), vector in zip(units, vectors[len(batch):], strict=True)])
            written += len(batch)
            on_chunks(len(batch))
    if found:
        notices.append(f"{path.name}: PII found ({', '.join(sorted(found))}), "
                       + ("redacted before indexing" if any(found.values())
                          else "indexed as is (flagged in the guard log)"))
    return ("updated" if record else "added"), written


def ingest(coll, embedder, paths: Iterable[Path], *, include: tuple[str, ...] = (),
           exclude: tuple[str, ...] = (), max_bytes: int | None = DEFAULT_MAX_MB << 20,
           on_update: Callable[[Progress], None] = lambda p: None, screen: Screen | None = None
           ) -> IngestReport:
    """Bring the collection in line with `paths` (see the module docstring); `screen` as in
    `index_file`."""
    report = IngestReport()
    start = time.perf_counter()
    paths = [Path(p) for p in paths]
    missing = [p for p in paths if not p.expanduser().exists()]
    report.errors += [(str(p), f"{p}: no such file or folder") for p in missing]
    found = list(walk([p for p in paths if p not in missing], include, exclude))
    progress = Progress(files_total=len(found))
    on_update(progress)
    roots = {root for _, root in found if root is not None}
    for given in paths:  # a folder with nothing left in it still has deletions to notice
        if Path(given).expanduser().is_dir():
            roots.add(Path(given).expanduser().resolve())
    for path, _ in found:
        progress.current = str(path)

        def on_chunks(n: int) -> None:
            progress.chunks += n
            on_update(progress)

        def on_progress(detail: str) -> None:
            progress.detail = detail
            on_update(progress)

        try:
            if not _encodable(path):
                raise ExtractError(path, "unsupported", "the file name is not valid UTF-8; rename the file")
            outcome, written = index_file(coll, embedder, path, max_bytes=max_bytes, notices=report.notices,
                                          on_chunks=on_chunks, screen=screen, on_progress=on_progress)
        except (ExtractError, OSError) as exc:
            message = exc.message if isinstance(exc, EdgeAIError) else f"{path}: {exc.strerror or exc}"
            report.errors.append((str(path), message))
            # what the file says now cannot be read: its old passages must not answer questions
            # (a permission problem may pass, so those rows stay)
            if getattr(exc, "reason", "unreadable") != "unreadable" and _encodable(path):
                report.removed += coll.remove_file(str(path))
        else:
            setattr(report, outcome, getattr(report, outcome) + 1)
            report.chunks += written
        progress.detail = ""
        progress.files_done += 1
        on_update(progress)
    named = {os.path.abspath(p.expanduser()) for p in missing}
    for record in coll.files():
        # gone from a folder we walked, a file named again that no longer exists, or one that
        # vanished while this run was busy
        gone = not Path(record.path).exists()
        if gone and (record.path in named or any(Path(record.path).is_relative_to(r) for r in roots)):
            report.removed += coll.remove_file(record.path)
    report.seconds = time.perf_counter() - start
    return report


def reindex(coll, embedder, *, on_update: Callable[[Progress], None] = lambda p: None,
            screen: Screen | None = None, max_bytes: int | None = DEFAULT_MAX_MB << 20) -> IngestReport:
    """Index every file of a collection again (after a schema change: `Collection.needs_reindex`).
    A file that is gone or cannot be read now keeps its old passages: they still answer, only
    without what the new schema adds; the next `rag add` of its folder settles it."""
    report = IngestReport()
    start = time.perf_counter()
    records = coll.files()
    progress = Progress(files_total=len(records))
    on_update(progress)
    for record in records:
        progress.current = record.path

        def on_chunks(n: int) -> None:
            progress.chunks += n
            on_update(progress)

        def on_progress(detail: str) -> None:
            progress.detail = detail
            on_update(progress)

        try:
            _, written = index_file(coll, embedder, Path(record.path), max_bytes=max_bytes,
                                    notices=report.notices, on_chunks=on_chunks, screen=screen, force=True,
                                    on_progress=on_progress)
        except (ExtractError, OSError) as exc:
            report.errors.append((record.path, exc.message if isinstance(exc, EdgeAIError) else str(exc)))
        else:
            report.updated += 1
            report.chunks += written
        progress.detail = ""
        progress.files_done += 1
        on_update(progress)
    coll.reindexed()
    report.seconds = time.perf_counter() - start
    return report
