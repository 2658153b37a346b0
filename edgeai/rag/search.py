"""Hybrid retrieval over one collection: vectors + BM25, fused, reranked, cited.

1. the query is embedded (one text: one BLAS thread);
2. vector candidates: exact cosine over the collection's matrix (`X @ q` + argpartition), or the
   faiss HNSW sidecar when `ann` allows and it is fresh (see `ann.py` for the stale policy);
   and the small units of long passages (sentence windows, `chunk.units_of`): a passage ranks
   by its own cosine or its best unit's, whichever is higher (small-to-big: a short fact is not
   averaged away by the rest of its passage);
3. BM25 candidates from FTS5 (the text and the heading path, the heading weighted higher), the
   user's text turned into quoted terms so quotes, `*`, `NEAR(`,
   `-` or `AND` are words to find, never syntax; terms so common that ranking them would cost
   more than ~15 ms are left to the vectors (`lexical_candidates`);
4. reciprocal rank fusion (k = 60) of the semantic and the keyword list;
5. the rerank stage (`rerank.py`) over the best fused candidates, unless switched off: the
   cosine is the passage's or its best unit's, whichever is higher, and the lexical terms read
   the heading path with the text;
6. the top k as `Hit`s: score is the rerank score (cosine plus lexical bonuses), or the fused
   score with rerank off; span is "lines a-b" where the chunk has lines, "at 0:42–0:51" where it
   is a passage of a recording, else its heading path;
   `heading` is the heading path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgeai.errors import BadInput
from edgeai.rag.rerank import STOPWORDS, words
from edgeai.rag.rerank import rerank as rerank_scores
from edgeai.types import Hit

RRF_K = 60
MAX_FTS_TERMS = 32
FTS_DOC_BUDGET = 5000  # matches ranked per query: ~15 ms of BM25 at most


def fts_phrases(text: str) -> list[str]:
    """Safe FTS5 phrases for any user text: each whitespace-separated word becomes a quoted phrase
    of its letter/digit runs ("ERR_CONN-42" -> "err conn 42", found as adjacent tokens), so quotes,
    `*`, `NEAR(` or `AND` are words to find, never syntax. Stopwords are dropped unless nothing
    else is left."""
    phrases = [parts for parts in (words(w) for w in text.split()) if parts]
    content = [p for p in phrases if len(p) > 1 or p[0] not in STOPWORDS] or phrases
    return [f'"{p}"' for p in dict.fromkeys(" ".join(p) for p in content)][:MAX_FTS_TERMS]


def fts_query(text: str) -> str:
    """The phrases joined with OR ("" when no word remains)."""
    return " OR ".join(fts_phrases(text))


def lexical_candidates(coll: Any, query: str, n: int,
                       budget: int = FTS_DOC_BUDGET) -> list[tuple[int, float]]:
    """BM25 (chunk id, bm25) best first. FTS5 ranks every chunk a term matches (~3 us each), so a
    word in thousands of chunks costs tens of ms and, being so common, says little: phrases are
    taken rarest first up to `budget` matches, and the vectors cover what is left out."""
    counted = sorted((coll.fts_count(p, budget + 1), p) for p in fts_phrases(query))
    kept, total = [], 0
    for count, phrase in counted:
        if count == 0 or total + count > budget:
            continue
        kept.append(phrase)
        total += count
    return coll.fts(" OR ".join(kept), n)


def exact_search(ids: Any, matrix: Any, q: Any, n: int) -> list[tuple[int, float]]:
    """(chunk id, dot product) best first, over all rows."""
    import numpy as np

    if len(ids) == 0 or n <= 0:
        return []
    scores = matrix @ np.asarray(q, dtype=np.float32)
    n = min(n, len(scores))
    top = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
    top = top[np.argsort(-scores[top], kind="stable")]
    return [(int(ids[i]), float(scores[i])) for i in top]


def vector_candidates(coll: Any, q: Any, n: int, ann: str = "auto") -> tuple[list[tuple[int, float]], str]:
    """The n nearest chunks and which path found them: "ann" or "exact"."""
    from edgeai.rag.ann import ann_search, ann_state, build_ann, faiss_available, load_ann

    if ann not in ("auto", "on", "off"):
        raise BadInput(f"ann must be auto, on or off, not {ann!r}")
    if ann != "off" and faiss_available():
        # auto: a fresh sidecar exists only where ensure_ann found the collection big enough
        if ann == "on" and ann_state(coll) != "fresh":
            build_ann(coll)
        index = load_ann(coll)
        if index is not None:
            return ann_search(index, q, n), "ann"
    from edgeai.rag.embed import blas_threads

    ids, matrix = coll.matrix()
    with blas_threads(1):
        return exact_search(ids, matrix, q, n), "exact"


def unit_candidates(coll: Any, q: Any, n: int) -> dict[int, float]:
    """chunk id -> its best unit's cosine, for the n chunks whose units match best (exact: units
    exist only for long passages, a fraction of the collection)."""
    import numpy as np

    from edgeai.rag.embed import blas_threads

    ids, matrix = coll.unit_matrix()
    if len(ids) == 0:
        return {}
    with blas_threads(1):
        scores = matrix @ np.asarray(q, dtype=np.float32)
    best: dict[int, float] = {}
    for i in np.argsort(-scores, kind="stable"):
        chunk_id = int(ids[i])
        if chunk_id not in best:
            best[chunk_id] = float(scores[i])
            if len(best) >= n:
                break
    return best


def rrf(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> dict[int, float]:
    """Reciprocal rank fusion: sum over lists of 1 / (k + rank), rank 1-based."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, chunk_id in enumerate(ranking, start=1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (k + rank)
    return fused


def span_of(chunk: Any) -> str:
    if getattr(chunk, "t_start", None) is not None:  # a passage of a recording
        from edgeai.rag.extract import time_span

        return time_span(chunk.t_start, chunk.t_end)
    if chunk.line_start is not None:
        end = chunk.line_end if chunk.line_end is not None else chunk.line_start
        return f"line {chunk.line_start}" if end == chunk.line_start else f"lines {chunk.line_start}-{end}"
    return chunk.heading or ""


def retrieve(coll: Any, embedder: Any, query: str, k: int = 5, *, rerank: bool = True, ann: str = "auto",
             candidates: int | None = None) -> list[Hit]:
    """The k best chunks for `query`, best first (fewer when the collection has fewer)."""
    import numpy as np

    if not query or not query.strip():
        raise BadInput("the question is empty")
    if k < 1:
        raise BadInput(f"k must be at least 1, got {k}")
    pool = candidates or max(50, 4 * k)
    q = np.asarray(embedder.embed([query])[0], dtype=np.float32)
    vector_hits, _path = vector_candidates(coll, q, pool, ann)
    lexical = lexical_candidates(coll, query, pool)
    units = unit_candidates(coll, q, pool)
    # one semantic list: a passage ranks by its own cosine or its best unit's (two lists of the
    # same evidence would count it twice in the fusion)
    semantic = dict(vector_hits)
    for chunk_id, cosine in units.items():
        semantic[chunk_id] = max(cosine, semantic.get(chunk_id, -1.0))
    fused = rrf([sorted(semantic, key=lambda i: -semantic[i])[:pool], [i for i, _ in lexical]])
    order = sorted(fused, key=lambda i: -fused[i])
    if not rerank:
        top = order[:k]
        return [_hit(c, fused[c.id]) for c in coll.chunks(top)]
    shortlist = coll.chunks(order[: max(3 * k, 20)])
    cosines = coll.vectors_for([c.id for c in shortlist]) @ q
    cosines = [max(float(cos), units.get(c.id, -1.0)) for c, cos in zip(shortlist, cosines, strict=True)]
    texts = [f"{c.heading}\n{c.text}" if c.heading else c.text for c in shortlist]
    scores = rerank_scores(query, texts, cosines)
    best = sorted(range(len(shortlist)), key=lambda n: -scores[n])[:k]
    return [_hit(shortlist[n], scores[n]) for n in best]


def _hit(chunk: Any, score: float) -> Hit:
    return Hit(chunk_id=chunk.id, text=chunk.text, file=chunk.file, page=chunk.page, span=span_of(chunk),
               score=round(float(score), 6), heading=chunk.heading)
