"""The ANN sidecar: a faiss HNSW index at `<name>.ann`, described by `<name>.ann.json`.

The JSON records what the index was built from (the collection's uid and generation, the vector
count, the HNSW settings) and which file it describes (inode, size and mtime of the `.ann` it
renamed into place), so an index that another process replaced, or one older than the
collection, reads as stale. Both files are written atomically, index first.

Policy (the issue asks for "rebuilt when stale"): `ensure_ann` rebuilds a missing or stale index;
the ingest calls it after a batch. At query time `ann="on"` rebuilds a stale index before using
it, while `ann="auto"` never makes a query wait for a build (30 s at 100k chunks): it uses the
index when fresh and exact search otherwise. Without faiss everything is exact search.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any

from edgeai.fileio import atomic_write, atomic_writer

ANN_THRESHOLD = 20_000  # below this exact numpy search is ~1 ms: an index buys nothing
HNSW_M, EF_CONSTRUCTION, EF_SEARCH = 32, 64, 64


def faiss_available() -> bool:
    try:
        return importlib.util.find_spec("faiss") is not None
    except (ImportError, ValueError):  # a broken install, or one a test has blocked
        return False


def ann_paths(coll: Any) -> tuple[Path, Path]:
    return coll.path.with_suffix(".ann"), coll.path.with_suffix(".ann.json")


def _file_identity(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def _built_from(coll: Any) -> tuple | None:
    """What the sidecar on disk says it was built from, or None when it cannot be read."""
    index_path, meta_path = ann_paths(coll)
    try:
        meta = json.loads(meta_path.read_text())
        return meta["uid"], meta["generation"], meta["dim"], meta["file"], _file_identity(index_path)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def ann_state(coll: Any) -> str:
    """"fresh", "stale" (built from another generation, or torn) or "missing"."""
    index_path, meta_path = ann_paths(coll)
    if not meta_path.exists() and not index_path.exists():
        return "missing"
    return "fresh" if _fresh(coll, _built_from(coll)) else "stale"


def _fresh(coll: Any, built: tuple | None) -> bool:
    if built is None:
        return False
    uid, generation, dim, recorded, actual = built
    return (uid, generation, dim, recorded) == (coll.uid, coll.generation, coll.dim, actual)


def build_ann(coll: Any, *, m: int = HNSW_M, ef_construction: int = EF_CONSTRUCTION,
              threads: int | None = None) -> dict[str, Any]:
    """Build the index from the collection's vectors and write it atomically; returns its JSON."""
    import faiss
    import numpy as np

    if threads:
        faiss.omp_set_num_threads(threads)
    started = time.perf_counter()
    with coll.snapshot():  # ids, vectors and generation from one read transaction
        generation = coll.generation
        ids, matrix = coll.matrix()
    hnsw = faiss.IndexHNSWFlat(coll.dim, m, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = ef_construction
    index = faiss.IndexIDMap(hnsw)  # faiss ids are our chunk ids
    if len(ids):
        index.add_with_ids(np.ascontiguousarray(matrix, dtype=np.float32), np.asarray(ids, dtype=np.int64))
    index_path, meta_path = ann_paths(coll)
    with atomic_writer(index_path) as handle:
        handle.write(faiss.serialize_index(index).tobytes())
    meta = {"uid": coll.uid, "generation": generation, "count": int(len(ids)), "dim": coll.dim,
            "kind": "faiss-hnsw-flat-ip", "m": m, "ef_construction": ef_construction,
            "build_s": round(time.perf_counter() - started, 3), "file": _file_identity(index_path)}
    atomic_write(meta_path, json.dumps(meta, indent=1))
    return meta


def ensure_ann(coll: Any, min_count: int = ANN_THRESHOLD, threads: int | None = None) -> str:
    """Bring the sidecar up to date when it is worth having: "fresh", "built" or "skipped"."""
    if not faiss_available() or coll.count() < min_count:
        return "skipped"
    if ann_state(coll) == "fresh":
        return "fresh"
    build_ann(coll, threads=threads)
    return "built"


def load_ann(coll: Any) -> Any | None:
    """The fresh index, memory-mapped (a new `rag query` process pays milliseconds, not a read of
    every vector) and kept on the collection for its next query; None when missing or stale."""
    built = _built_from(coll)
    if not _fresh(coll, built):
        coll.sidecars.pop("ann", None)
        return None
    cached = coll.sidecars.get("ann")
    if cached is not None and cached[0] == built:
        return cached[1]
    import faiss

    index_path, _ = ann_paths(coll)
    try:
        index = faiss.read_index(str(index_path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
    except RuntimeError:  # torn or foreign despite a matching identity: treat as stale
        return None
    coll.sidecars["ann"] = (built, index)
    return index


def ann_search(index: Any, q: Any, n: int, ef_search: int = EF_SEARCH) -> list[tuple[int, float]]:
    """(chunk id, inner product) best first."""
    import faiss
    import numpy as np

    faiss.omp_set_num_threads(1)  # one query: OpenMP threads would only spin on a busy machine
    params = faiss.SearchParametersHNSW(efSearch=max(ef_search, n))
    scores, ids = index.search(np.asarray(q, dtype=np.float32).reshape(1, -1), n, params=params)
    return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
