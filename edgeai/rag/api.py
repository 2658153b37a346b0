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


def open_collection(settings, name: str, *, create: bool = False) -> Collection:
    """An existing collection (or a new one with `create`), opened for writing with its embedder."""
    path = collection_path(settings, name)
    if not create and not path.exists():
        known = list_collections(settings)
        raise BadInput(f"no collection named {name!r}",
                       f"known: {', '.join(known)}" if known else "create one: edgeai rag add PATH...")
    path.parent.mkdir(parents=True, exist_ok=True)
    return Collection.open(path, embedder_meta(embedder()), create=create)


def ingest(settings, name: str, paths: Iterable[Path], *, include: tuple[str, ...] = (),
           exclude: tuple[str, ...] = (), max_mb: float = DEFAULT_MAX_MB,
           progress: Callable[[Progress], None] | None = None) -> IngestReport:
    paths = [Path(p) for p in paths]
    missing = [str(p) for p in paths if not p.expanduser().exists()]
    if missing and len(missing) == len(paths):
        raise BadInput(f"no such file or folder: {', '.join(missing)}")
    with open_collection(settings, name, create=True) as coll:
        report = ingest_into(coll, embedder(), paths, include=include, exclude=exclude,
                             max_bytes=int(max_mb * (1 << 20)), on_update=progress or (lambda p: None))
    report.errors[:0] = [(p, f"{p}: no such file or folder") for p in missing]
    return report


def search(settings, name: str, query: str, k: int = 5, *, rerank: bool = True,
           ann: str = "auto") -> list[Hit]:
    from edgeai.rag.search import retrieve

    with open_collection(settings, name) as coll:
        return retrieve(coll, embedder(), query, k, rerank=rerank, ann=ann)


def remove_collection(settings, name: str) -> None:
    if not delete_collection(settings, name):
        raise BadInput(f"no collection named {name!r}")


def stats(settings, name: str) -> dict:
    with open_collection(settings, name) as coll:
        return {"name": name, "path": str(coll.path), **coll.stats()}


def document_text(settings, name: str, file: str) -> str | None:
    """A whole indexed file's text (its chunks in order), for whole-document questions."""
    with open_collection(settings, name) as coll:
        return coll.document_text(file)


@dataclass
class EvalReport:
    k: int
    total: int = 0
    found: int = 0
    misses: list[tuple[str, str]] = field(default_factory=list)  # (question, expected)
    reciprocal_ranks: list[float] = field(default_factory=list)

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


def evaluate(settings, name: str, questions: list[tuple[str, str]], k: int = 5) -> EvalReport:
    """Recall@k: a question counts as found when one of its top-k chunks contains the expected
    snippet (case and whitespace ignored)."""
    from edgeai.rag.search import retrieve

    report = EvalReport(k=k)
    with open_collection(settings, name) as coll:
        for question, expected in questions:
            hits = retrieve(coll, embedder(), question, k)
            rank = next((i for i, h in enumerate(hits, 1) if _normal(expected) in _normal(h.text)), None)
            report.total += 1
            report.found += rank is not None
            report.reciprocal_ranks.append(1 / rank if rank else 0.0)
            if rank is None:
                report.misses.append((question, expected))
    return report
