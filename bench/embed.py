"""The `embed` suite: `edgeai bench embed`. How fast this machine turns text into vectors, and how
fast it indexes a real corpus end to end.

- encode: passages of ~200 word pieces (public-domain English, the llm suite's text) embedded in
  batches of 32 -> chunks/s; one short query at a time -> query latency (ms), the cost every
  `rag query` and every RAG chat turn pays.
- ingest (with `--corpus PATH`): `edgeai rag add` of that folder into a throwaway collection under
  the data dir (extract, chunk, embed, store, each file one transaction) -> chunks/s and files/s.
Rows land in the schema-v1 result with suite "embed" (backend = the embedder's id).
"""

from __future__ import annotations

import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

QUERIES = ("how do I stream a response", "which option sets the timeout", "what does the error mean",
           "where are the files kept", "how much memory does it need")


def _passages(embedder, n: int, tokens: int = 200) -> list[str]:
    from edgeai.bench.texts import TEXT

    words = (TEXT * 40).split()
    out, start = [], 0
    while len(out) < n:
        size = tokens * 3 // 4  # English: ~1.3 word pieces per word
        piece = " ".join(words[start % 500: start % 500 + size])
        while embedder.count_tokens(piece) > tokens and " " in piece:
            piece = piece.rsplit(" ", 8)[0]
        out.append(piece)
        start += 37
    return out


def run_embed(settings, *, passages: int = 128, repeats: int = 3, corpus: Path | None = None,
              on_tick: Callable[[str], None] = lambda label: None) -> dict:
    import statistics

    from edgeai import __version__
    from edgeai.bench.device import detect, label
    from edgeai.bench.schema import add_row, new_result
    from edgeai.memory import peak_rss_mb
    from edgeai.rag.api import embedder as load_embedder

    start = time.perf_counter()
    encoder = load_embedder()
    load_s = time.perf_counter() - start
    device = detect()
    result = new_result("embed", device=device, label=label(device, accelerator=False),
                        settings={"passages": passages, "passage_tokens": 200, "batch": 32,
                                  "repeats": repeats, "corpus": str(corpus) if corpus else None},
                        versions={"edgeai": __version__, "python": platform.python_version()},
                        source={"tool": "edgeai", "version": __version__})
    common = {"backend": encoder.id, "model": "all-MiniLM-L6-v2", "quant": "F32", "threads": encoder.threads}
    add_row(result, **common, test="load", unit="s", samples=[load_s])
    texts = _passages(encoder, passages)
    encoder.embed(texts[:32])  # warm-up: BLAS buffers, tokenizer caches
    speeds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(0, len(texts), 32):
            encoder.embed(texts[i:i + 32])
        speeds.append(len(texts) / (time.perf_counter() - t0))
        on_tick("encode")
    add_row(result, **common, test="encode200", unit="chunks/s", samples=speeds)
    latencies = []
    for _ in range(repeats):
        for query in QUERIES:
            t0 = time.perf_counter()
            encoder.embed([query])
            latencies.append((time.perf_counter() - t0) * 1000)
        on_tick("query")
    add_row(result, **common, test="query", unit="ms", samples=latencies,
            p95_ms=round(statistics.quantiles(latencies, n=20)[-1], 3))
    if corpus is not None:
        report = _ingest(settings, corpus, on_tick)
        add_row(result, **common, test="ingest", unit="chunks/s", samples=[report.chunks_per_s],
                chunks=report.chunks, files=report.added, seconds=round(report.seconds, 2))
    peak = peak_rss_mb()
    for row in result["results"]:
        row["peak_rss_mb"] = peak
    return result


def _ingest(settings, corpus: Path, on_tick):
    """The report of a whole `rag add` into a throwaway collection (removed afterwards)."""
    from dataclasses import replace

    from edgeai.errors import BadInput
    from edgeai.rag import api

    if not corpus.is_dir():
        raise BadInput(f"--corpus must be a folder: {corpus}")
    settings.home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.home, prefix="bench-embed-") as home:
        report = api.ingest(replace(settings, home=Path(home)), "bench", [corpus])
    on_tick("ingest")
    if not report.chunks:
        raise BadInput(f"nothing indexable in {corpus}")
    return report
