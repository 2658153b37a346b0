"""The RAG facade the CLI and the chat call: named collections under `<home>/rag/`, opened with
the embedder that built them; ingest, search, whole-document text, evaluation.

Boundary: names and settings in, reports and `Hit`s out. How text is extracted, chunked, embedded,
stored and ranked lives in the modules this one wires together.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from edgeai.errors import BadInput
from edgeai.rag.embed import DEFAULT_EMBEDDER, embedder_meta, get_embedder
from edgeai.rag.ingest import DEFAULT_MAX_MB, IngestReport, Progress
from edgeai.rag.ingest import ingest as ingest_into
from edgeai.rag.store import Collection, collection_path, delete_collection
from edgeai.rag.store import list_collections as _list
from edgeai.types import Hit

DEFAULT_COLLECTION = "default"
_EMBEDDERS: dict[str, object] = {}  # one loaded encoder per process (the chat asks many times)


def embedder(name: str = DEFAULT_EMBEDDER):
    if name not in _EMBEDDERS:
        _EMBEDDERS[name] = get_embedder(name)
    return _EMBEDDERS[name]


def list_collections(settings) -> list[str]:
    return _list(settings)


def _unknown(settings, name: str) -> BadInput:
    known = list_collections(settings)
    return BadInput(f"no collection named {name!r}",
                    f"known: {', '.join(known)}" if known else "create one: edgeai rag add PATH...")


def open_collection(settings, name: str, *, create: bool = False,
                    progress: Callable[[Progress], None] | None = None) -> Collection:
    """An existing collection (or a new one with `create`), opened for writing with its embedder.
    A collection indexed by an older schema is indexed again first (`progress` hears it)."""
    path = collection_path(settings, name)
    if not create and not path.exists():
        raise _unknown(settings, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    coll = Collection.open(path, embedder_meta(embedder()), create=create)
    if coll.needs_reindex:
        from edgeai.rag.ann import ensure_ann
        from edgeai.rag.ingest import reindex

        try:
            reindex(coll, embedder(), on_update=progress or (lambda p: None), screen=ingest_screen(settings))
            ensure_ann(coll)
        except BaseException:
            coll.close()
            raise
    return coll


def _open_reader(settings, name: str) -> Collection:
    """An existing collection opened without its embedder: listing, stats and stored text need no
    model (so `rag ls` stays fast and still lists a collection built by another embedder)."""
    path = collection_path(settings, name)
    if not path.exists():
        raise _unknown(settings, name)
    return Collection.open(path, None, create=False)


def ingest_screen(settings):
    """The guard's PII check of each passage before indexing (None when the layer is off)."""
    from edgeai.guard import ingest_screen as screen

    return screen(settings)


def ingest(settings, name: str, paths: Iterable[Path], *, include: tuple[str, ...] = (),
           exclude: tuple[str, ...] = (), max_mb: float = DEFAULT_MAX_MB,
           progress: Callable[[Progress], None] | None = None) -> IngestReport:
    paths = [Path(p) for p in paths]
    missing = [str(p) for p in paths if not p.expanduser().exists()]
    existed = collection_path(settings, name).exists()
    if missing and len(missing) == len(paths) and not existed:  # (else: forget those files)
        raise BadInput(f"no such file or folder: {', '.join(missing)}")
    if max_mb <= 0:
        raise BadInput(f"the file size cap must be above 0 MB, not {max_mb:g}")
    empty = False
    try:
        with open_collection(settings, name, create=True) as coll:
            try:
                report = ingest_into(coll, embedder(), paths, include=include, exclude=exclude,
                                     max_bytes=int(max_mb * (1 << 20)),
                                     on_update=progress or (lambda p: None),
                                     screen=ingest_screen(settings))
            finally:  # also on Ctrl-C: files already committed are kept for the next run
                empty = not coll.files()
            if not (report.added or report.updated or report.unchanged or report.removed or report.errors):
                # an empty folder or filters that match nothing: said, not "0 added" and exit 0
                raise BadInput(f"no files found under {', '.join(str(p) for p in paths)}",
                               "edgeai indexes .txt .md .pdf .html .docx files"
                               + ("; check --include/--exclude" if include or exclude else ""))
            if report.added or report.updated or report.removed:
                from edgeai.rag.ann import ensure_ann

                report.ann = ensure_ann(coll)  # big collections: the HNSW sidecar, rebuilt now it is stale
    finally:
        if empty and not existed:  # nothing was indexed: leave no empty collection behind to list
            delete_collection(settings, name)
    return report


def search(settings, name: str, query: str, k: int = 5, *, rerank: bool = True,
           ann: str = "auto", progress: Callable[[Progress], None] | None = None) -> list[Hit]:
    from edgeai.rag.search import retrieve

    if not query or not query.strip():  # before the model loads: a typo fails at once
        raise BadInput("the question is empty")
    if k < 1:
        raise BadInput(f"k must be at least 1, got {k}")
    with open_collection(settings, name, progress=progress) as coll:
        return retrieve(coll, embedder(), query, k, rerank=rerank, ann=ann)


def remove_collection(settings, name: str) -> None:
    if not delete_collection(settings, name):
        raise BadInput(f"no collection named {name!r}")


def stats(settings, name: str) -> dict:
    with _open_reader(settings, name) as coll:
        return {"name": name, "path": str(coll.path), **coll.stats()}


def file_sizes(settings, name: str) -> dict[str, int]:
    """Each file of a collection (in path order) -> the characters of its stored chunks, in one
    query and without the embedder: what a whole-document question is checked against before any
    text is read. Chunks repeat the chunker's short overlap, so this overstates a file a little."""
    with _open_reader(settings, name) as coll, coll.snapshot() as db:
        rows = db.execute("SELECT f.path, COALESCE(SUM(LENGTH(c.text)), 0) FROM files f "
                          "LEFT JOIN chunks c ON c.file_id = f.id GROUP BY f.id ORDER BY f.path").fetchall()
    return {path: int(size) for path, size in rows}


def document_text(settings, name: str, file: str) -> str | None:
    """A whole indexed file's text (its chunks in order, the overlap between consecutive chunks
    removed, each section's heading path on a line before it), for whole-document questions;
    None when the collection does not hold `file`."""
    with _open_reader(settings, name) as coll, coll.snapshot() as db:
        row = db.execute("SELECT id FROM files WHERE path=?", (str(file),)).fetchone()
        if row is None:
            return None
        rows = db.execute("SELECT text, page, heading, line_start, line_end FROM chunks "
                          "WHERE file_id=? ORDER BY ordinal", (row[0],)).fetchall()
    text, previous = "", None
    for chunk in rows:
        overlap = _overlap(previous, chunk) if previous is not None else 0
        # each section's heading path where it changes: a fact may be stated only there
        heading = chunk["heading"] if chunk["heading"] and (
            previous is None or chunk["heading"] != previous["heading"]) else None
        body = f"{heading}:\n{chunk['text']}" if heading else chunk["text"]
        # an overlap is followed by the source's own separator, so the join restores the source
        text = text + chunk["text"][overlap:] if overlap else \
            (text + "\n\n" if text else "") + body
        previous = chunk
    return text


MIN_OVERLAP = 16  # characters: shorter shared edges are more likely chance than the chunker's overlap
MAX_OVERLAP = 4000


def _overlap(a, b) -> int:
    """How many leading characters of chunk b repeat the end of chunk a. The chunker repeats
    whole trailing pieces (sentences, lines, words) of a passage at the start of the next one,
    only inside one section: same page and heading, and overlapping lines where there are lines."""
    if (a["page"], a["heading"]) != (b["page"], b["heading"]):
        return 0
    if None not in (a["line_end"], b["line_start"]) and b["line_start"] > a["line_end"]:
        return 0
    first, second = a["text"], b["text"]
    start = max(0, len(first) - min(MAX_OVERLAP, len(second)))
    for i in range(start, len(first) - MIN_OVERLAP + 1):  # the longest overlap first
        at_piece_start = i == 0 or first[i - 1].isspace()
        rest = second[len(first) - i:]
        if at_piece_start and second.startswith(first[i:]) and (not rest or rest[0].isspace()):
            return len(first) - i
    return 0


@dataclass
class EvalReport:
    k: int
    misses: list[tuple[str, str]] = field(default_factory=list)  # (question, expected)
    reciprocal_ranks: list[float] = field(default_factory=list)  # one per question, 0 when missed

    @property
    def total(self) -> int:
        return len(self.reciprocal_ranks)

    @property
    def found(self) -> int:
        return sum(1 for rr in self.reciprocal_ranks if rr)

    @property
    def recall(self) -> float:
        return self.found / self.total if self.total else 0.0

    @property
    def mrr(self) -> float:
        return sum(self.reciprocal_ranks) / self.total if self.total else 0.0


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def read_questions(path: Path) -> list[tuple[str, str]]:
    """question <TAB> expected snippet, one pair per line; blank lines and #comments skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"no such file: {path}") from None
    except UnicodeDecodeError:
        raise BadInput(f"{path} is not UTF-8 text", "save the TSV as UTF-8") from None
    pairs = []
    for number, row in enumerate(csv.reader(text.splitlines(), delimiter="\t"), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise BadInput(f"{path} line {number}: expected 'question<TAB>expected snippet'")
        pairs.append((row[0].strip(), row[1].strip()))
    if not pairs:
        raise BadInput(f"{path} holds no questions")
    return pairs


def evaluate(settings, name: str, questions: list[tuple[str, str]], k: int = 5, *,
             progress: Callable[[Progress], None] | None = None) -> EvalReport:
    """Recall@k: a question counts as found when one of its top-k chunks contains the expected
    snippet in its heading path or its text (case and whitespace ignored): the heading is shown
    and cited with the passage, so a fact stated only in a title is found there."""
    from edgeai.rag.search import retrieve

    report = EvalReport(k=k)
    if k < 1:
        raise BadInput(f"k must be at least 1, got {k}")
    with open_collection(settings, name, progress=progress) as coll:
        if coll.count() == 0:  # every question would be a miss: say why instead
            raise BadInput(f"collection {name!r} holds no passages",
                           f"index files first: edgeai rag add PATH... --collection {name}")
        for question, expected in questions:
            hits = retrieve(coll, embedder(), question, k)
            rank = next((i for i, h in enumerate(hits, 1)
                         if _normal(expected) in _normal(f"{h.heading or ''} {h.text}")), None)
            report.reciprocal_ranks.append(1 / rank if rank else 0.0)
            if rank is None:
                report.misses.append((question, expected))
    return report
