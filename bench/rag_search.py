"""RAG retrieval latency at 10k and 100k chunks: exact numpy vs the faiss HNSW sidecar vs faiss flat.

Data: clustered unit vectors, 384-d (200 unit centres, each vector a centre plus Gaussian noise
of norm ~0.6, normalized; fixed seed), generated once and cached under `<data dir>/bench/rag/`.
The collection is built through the real store API (`Collection.replace_file`, 100 chunks per
file, synthetic chunk text drawn from a 5,000-word vocabulary so FTS5 has work to do) and kept
there too, with its `.vec` and `.ann` sidecars. Queries: 200 more vectors drawn the same way.

Per size, in one process and one run, each query alone (k = 10); exact, ann and faiss-flat
take turns query by query (interleaved, so load from other processes hits all three alike):
- exact: `search.vector_candidates(..., ann="off")`, what `retrieve()` runs (1 BLAS thread);
- ann: the same call with `ann="auto"` on a fresh HNSW sidecar (M 32, efConstruction 64,
  efSearch 64); recall@10 = mean overlap with exact's top 10;
- faiss-flat: `IndexFlatIP.search` on the same matrix (1 thread) — the reference the exact path
  is compared with (ratio = edgeai exact p50 / faiss-flat p50).
Then:
- new process: a fresh interpreter opens the collection and answers one query (imports,
  mapping the `.vec`/`.ann` sidecars, the search), median of 3 — what every `rag query` pays
  on top of the query embedding;
- retrieve: the full `retrieve()` (MiniLM query embedding, vectors, BM25, fusion, rerank) on
  50 word queries, when the MiniLM weights are installed.
`--embed` adds the embedder's own numbers: single-query p50 on 1 and 2 threads, and chunks/s
for 200-word-piece passages.

  python -m edgeai.bench.rag_search [--sizes 10000 100000] [--queries 200] [--embed] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from edgeai.fileio import atomic_write, atomic_writer

DIM, CENTRES, NOISE, SEED = 384, 200, 0.6, 1234
K = 10
CHUNKS_PER_FILE = 100
META = {"id": "synthetic-clustered", "dim": DIM, "normalized": True, "version": "1"}


def cache_dir() -> Path:
    from edgeai.config import data_home

    return data_home() / "bench" / "rag"


def clustered(n: int, seed: int) -> Any:
    """n unit vectors around CENTRES fixed centres (the centres depend on SEED only)."""
    import numpy as np

    centres = np.random.default_rng(SEED).standard_normal((CENTRES, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, CENTRES, n)]
    x += rng.standard_normal((n, DIM), dtype=np.float32) * np.float32(NOISE / np.sqrt(DIM))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def cached_vectors(n: int) -> Any:
    import numpy as np

    path = cache_dir() / f"vectors-{n}-{DIM}-{SEED}.npy"
    if path.exists():
        return np.load(path)
    vectors = clustered(n, SEED + n)
    with atomic_writer(path) as handle:
        np.save(handle, vectors)
    return vectors


def synthetic_text(rng: Any, words: int = 60) -> str:
    return " ".join(f"w{i}" for i in rng.zipf(1.3, words) % 5000)


def build_collection(n: int) -> tuple[Any, float | None]:
    """The cached collection of n chunks (built now if missing); build seconds when built."""
    import numpy as np

    from edgeai.rag.store import SIDECAR_SUFFIXES, Collection

    path = cache_dir() / f"synthetic-{n}.db"
    if path.exists():
        coll = Collection.open(path, META)
        if coll.count() == n:
            return coll, None
        coll.close()
        for suffix in (".db", *SIDECAR_SUFFIXES):
            path.with_suffix(suffix).unlink(missing_ok=True)
    vectors = cached_vectors(n)
    rng = np.random.default_rng(7)
    started = time.perf_counter()
    coll = Collection.open(path, META)
    for start in range(0, n, CHUNKS_PER_FILE):
        rows = range(start, min(n, start + CHUNKS_PER_FILE))
        passages = [SimpleNamespace(text=synthetic_text(rng), ordinal=i - start, line_start=i, line_end=i)
                    for i in rows]
        coll.replace_file(f"/synthetic/file{start // CHUNKS_PER_FILE:05d}.txt", "0" * 64, 1, 0.0, passages,
                          vectors[start:start + len(rows)])
    return coll, time.perf_counter() - started


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {"p50_ms": statistics.median(ordered), "p95_ms": ordered[min(len(ordered) - 1,
                                                                        round(0.95 * (len(ordered) - 1)))]}


def timed(fns: dict[str, Any], inputs) -> dict[str, tuple[list[float], list[Any]]]:
    """Each input through every fn in turn (interleaved: load from other processes hits all alike),
    after one untimed call each (first-touch page faults belong to the new-process column)."""
    out: dict[str, tuple[list[float], list[Any]]] = {name: ([], []) for name in fns}
    for fn in fns.values():
        fn(inputs[0])
    for item in inputs:
        for name, fn in fns.items():
            t0 = time.perf_counter()
            result = fn(item)
            out[name][0].append((time.perf_counter() - t0) * 1000)
            out[name][1].append(result)
    return out


CHILD = """
import sys, time, json
t0 = time.perf_counter()
import numpy as np
from edgeai.rag.store import Collection
from edgeai.rag.search import vector_candidates
coll = Collection.open(sys.argv[1], {meta!r})
q = np.load(sys.argv[2])[0]
hits, path = vector_candidates(coll, q, {k}, ann=sys.argv[3])
print(json.dumps({{"ms": (time.perf_counter() - t0) * 1000, "path": path}}))
"""


def new_process_ms(coll: Any, queries_path: Path, ann: str, runs: int = 3) -> tuple[float, str]:
    samples, path = [], ""
    for _ in range(runs):
        cmd = [sys.executable, "-c", CHILD.format(meta=META, k=K), str(coll.path), str(queries_path), ann]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
        sample = json.loads(proc.stdout.strip().splitlines()[-1])
        samples.append(sample["ms"])
        path = sample["path"]
    return statistics.median(samples), path


def measure_size(n: int, n_queries: int, minilm: Any) -> dict[str, Any]:
    import faiss
    import numpy as np

    from edgeai.rag.ann import ann_paths, ensure_ann
    from edgeai.rag.search import retrieve, vector_candidates
    from edgeai.rag.store import _load_matrix

    log = lambda msg: print(f"[{n}] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    coll, build_s = build_collection(n)
    log(f"collection ready ({f'built in {build_s:.1f} s' if build_s else 'cached'})")
    queries = clustered(n_queries, SEED - 1)
    queries_path = cache_dir() / f"queries-{n_queries}.npy"
    with atomic_writer(queries_path) as handle:
        np.save(handle, queries)
    coll.path.with_suffix(".vec").unlink(missing_ok=True)
    t0 = time.perf_counter()
    _load_matrix(coll)  # from the BLOBs, writing the sidecar
    blob_load_s = time.perf_counter() - t0
    ann_state = ensure_ann(coll, min_count=0)
    ann_meta = json.loads(ann_paths(coll)[1].read_text())
    log(f"ANN {ann_state} (build {ann_meta.get('build_s', float('nan')):.1f} s)")

    ids, matrix = coll.matrix()
    faiss.omp_set_num_threads(1)
    flat = faiss.IndexFlatIP(DIM)
    flat.add(np.ascontiguousarray(matrix))
    runs = timed({"exact": lambda q: vector_candidates(coll, q, K, ann="off"),
                  "ann": lambda q: vector_candidates(coll, q, K, ann="auto"),
                  "flat": lambda q: flat.search(q.reshape(1, -1), K)}, queries)
    (exact_ms, exact), (ann_ms, approx), (flat_ms, flat_res) = runs["exact"], runs["ann"], runs["flat"]
    assert all(path == "exact" for _, path in exact) and all(path == "ann" for _, path in approx)
    recall = statistics.mean(len({i for i, _ in a} & {i for i, _ in e}) / K
                             for (a, _), (e, _) in zip(approx, exact, strict=True))
    flat_agree = statistics.mean(len(set(ids[r[1][0]].tolist()) & {i for i, _ in e}) / K
                                 for r, (e, _) in zip(flat_res, exact, strict=True))
    log("in-process queries done")
    cold_exact, _ = new_process_ms(coll, queries_path, "off")
    cold_ann, _ = new_process_ms(coll, queries_path, "auto")
    row = {"n": n, "build_collection_s": build_s, "matrix_from_blobs_s": blob_load_s,
           "ann_build_s": ann_meta.get("build_s"), "ann_recall_at_10": recall, "flat_agreement": flat_agree,
           "exact": percentiles(exact_ms), "ann": percentiles(ann_ms), "faiss_flat": percentiles(flat_ms),
           "new_process_ms": {"exact": cold_exact, "ann": cold_ann},
           "db_bytes": coll.path.stat().st_size,
           "samples_ms": {"exact": exact_ms, "ann": ann_ms, "faiss-flat": flat_ms}}
    row["exact_over_flat"] = row["exact"]["p50_ms"] / row["faiss_flat"]["p50_ms"]
    if minilm is not None:
        rng = np.random.default_rng(5)
        texts = [synthetic_text(rng, 4) for _ in range(50)]
        runs = timed({"exact": lambda t: retrieve(coll, minilm, t, k=5, ann="off"),
                      "ann": lambda t: retrieve(coll, minilm, t, k=5, ann="auto")}, texts)
        for mode, (ms, _) in runs.items():
            row[f"retrieve_{mode}"] = percentiles(ms)
            row["samples_ms"][f"retrieve-{mode}"] = ms
    coll.close()
    return row


def measure_embedder(minilm: Any) -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(3)
    vocab = ("the of and to in is for that with data file system query index vector search model token "
             "chunk page line error server client network memory thread process cache disk compress").split()
    queries = [" ".join(rng.choice(vocab, int(rng.integers(5, 13)))) for _ in range(60)]
    out: dict[str, Any] = {}
    runs = timed({threads: lambda q, t=threads: minilm.embed([q], threads=t) for threads in (1, 2)}, queries)
    for threads, (ms, _) in runs.items():
        out[f"query_{threads}t"] = percentiles(ms)
    tok = minilm.tokenizer
    passages = [tok.decode(tok.encode(" ".join(rng.choice(vocab, 400))).ids[1:199]) for _ in range(64)]
    out["passage_tokens"] = statistics.mean(minilm.count_tokens(p) for p in passages)
    for threads in (1, 2):
        t0 = time.perf_counter()
        minilm.embed(passages, threads=threads)
        out[f"chunks_per_s_{threads}t"] = len(passages) / (time.perf_counter() - t0)
    return out


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| chunks | exact p50 (p95) | ANN p50 (p95) | ANN recall@10 | faiss-flat p50 | exact ÷ flat "
             "| new process: exact / ANN | ANN build | retrieve() p50 exact / ANN |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        full = (f"{r['retrieve_exact']['p50_ms']:.1f} / {r['retrieve_ann']['p50_ms']:.1f} ms"
                if "retrieve_exact" in r else "–")
        build = f"{r['ann_build_s']:.1f} s" if r.get("ann_build_s") else "–"
        lines.append(
            f"| {r['n']:,} | {r['exact']['p50_ms']:.2f} ms ({r['exact']['p95_ms']:.2f}) "
            f"| {r['ann']['p50_ms']:.3f} ms ({r['ann']['p95_ms']:.3f}) | {r['ann_recall_at_10']:.3f} "
            f"| {r['faiss_flat']['p50_ms']:.2f} ms | {r['exact_over_flat']:.2f} "
            f"| {r['new_process_ms']['exact']:.0f} / {r['new_process_ms']['ann']:.0f} ms "
            f"| {build} | {full} |")
    return "\n".join(lines)


def embed_table(e: dict[str, Any]) -> str:
    return ("| MiniLM (numpy) | 1 thread | 2 threads |\n|---|---|---|\n"
            f"| single query p50 (p95) | {e['query_1t']['p50_ms']:.1f} ms ({e['query_1t']['p95_ms']:.1f}) "
            f"| {e['query_2t']['p50_ms']:.1f} ms ({e['query_2t']['p95_ms']:.1f}) |\n"
            f"| {e['passage_tokens']:.0f}-token passages | {e['chunks_per_s_1t']:.1f} chunks/s "
            f"| {e['chunks_per_s_2t']:.1f} chunks/s |")


def as_result(rows: list[dict[str, Any]], n_queries: int) -> dict:
    """The sizes' numbers as a schema-v1 `rag` result (`edgeai bench rag`): one row per path and
    size, test `<path>@<size>` (exact@100k, ann@100k, faiss-flat@100k, retrieve-exact@100k, ...), unit
    ms, every single-query latency kept as a sample; recall and the new-process cost as extras."""
    import platform

    from edgeai import __version__
    from edgeai.bench.device import detect, label
    from edgeai.bench.schema import add_row, new_result

    device = detect()
    result = new_result("rag", device=device, label=label(device, accelerator=False),
                        settings={"dim": DIM, "centres": CENTRES, "noise": NOISE, "seed": SEED, "k": K,
                                  "queries": n_queries, "hnsw": {"m": 32, "ef_construction": 64,
                                                                 "ef_search": 64}},
                        versions={"edgeai": __version__, "python": platform.python_version()},
                        source={"tool": "edgeai", "version": __version__})
    for row in rows:
        size = f"{row['n'] // 1000}k" if row["n"] % 1000 == 0 else str(row["n"])
        for path, samples in row["samples_ms"].items():
            extra = {"recall_at_10": round(row["ann_recall_at_10"], 4)} if path == "ann" else {}
            if path in ("exact", "ann"):
                extra["new_process_ms"] = round(row["new_process_ms"][path], 1)
            add_row(result, backend="sqlite+numpy" if "flat" not in path else "faiss", model="clustered-384d",
                    test=f"{path}@{size}", unit="ms", samples=samples, chunks=row["n"], **extra)
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m edgeai.bench.rag_search",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--embed", action="store_true", help="also measure the MiniLM embedder")
    ap.add_argument("--json", type=Path, help="also write the numbers and machine facts here")
    args = ap.parse_args(argv)
    from edgeai.errors import MissingExtra
    from edgeai.rag.embed import get_embedder

    try:
        minilm = get_embedder("minilm")
    except MissingExtra:
        minilm = None
    rows = [measure_size(n, args.queries, minilm) for n in args.sizes]
    print(table(rows), flush=True)
    result: dict[str, Any] = {"sizes": rows}
    if args.embed and minilm is not None:
        result["embedder"] = measure_embedder(minilm)
        print("\n" + embed_table(result["embedder"]), flush=True)
    if args.json:
        import faiss
        import numpy as np

        from edgeai.system import cpu_info

        atomic_write(args.json, json.dumps({
            "settings": {"dim": DIM, "centres": CENTRES, "noise": NOISE, "seed": SEED, "k": K,
                         "queries": args.queries, "hnsw": {"m": 32, "ef_construction": 64, "ef_search": 64}},
            "versions": {"faiss": faiss.__version__, "numpy": np.__version__,
                         "python": sys.version.split()[0]},
            "cpu": cpu_info(), **result}, indent=2))


if __name__ == "__main__":
    main()
