"""Hybrid retrieval with the real MiniLM on real SQLite: fusion, rerank, citations, the ANN sidecar."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from edgeai.errors import BadInput, MissingExtra
from edgeai.rag.ann import ann_paths, ann_state, build_ann, ensure_ann, faiss_available
from edgeai.rag.embed import embedder_meta, get_embedder
from edgeai.rag.search import exact_search, fts_query, lexical_candidates, retrieve, vector_candidates
from edgeai.rag.store import Collection

REPO = Path(__file__).resolve().parents[2]
needs_faiss = pytest.mark.skipif(not faiss_available(), reason="needs faiss-cpu (the ANN sidecar)")


@dataclass(frozen=True)
class Passage:
    text: str
    ordinal: int
    page: int | None = None
    heading: str | None = None
    line_start: int | None = None
    line_end: int | None = None


CORPUS = {
    "errors.md": [
        "Error E7311: the license file is signed for another machine. Request a new license for this host.",
        "Error E4012: the license server did not answer within 30 seconds. Check the network path to it.",
        "Error E2290: the license has expired. Renew it from the customer portal.",
        "License errors are shown at startup when the product cannot validate its license.",
    ],
    "install.md": [
        "Install the package with the system package manager, then run the setup wizard.",
        "The setup wizard asks for the license key and the installation folder.",
        "Uninstalling removes the program files but keeps your settings folder.",
    ],
    "backup.txt": [
        "Backups run every night at 02:00 and keep the last fourteen copies.",
        "To restore a backup, stop the service, copy the archive back and start the service again.",
        "Backup archives are compressed with gzip and encrypted with the key in settings.",
    ],
    "trash.md": [
        "Deleted items stay in the Trash for 30 days: open the Trash, select them and choose Restore.",
        "Files are synchronised with the server every five minutes while the app is open.",
        "Shared files show the owner's name and the date they were last changed.",
    ],
    "kitchen.txt": [
        "Bake the bread at 220 degrees for thirty minutes until the crust is golden.",
        "Knead the dough for ten minutes; it should be smooth and elastic.",
    ],
}
MANUAL_PAGES = [(3, "Setup > Network", "Open port 8443 on the firewall so clients reach the gateway."),
                (4, "Setup > Storage", "Mount the shared volume at /srv/data before the first start.")]


@pytest.fixture(scope="module")
def minilm():
    try:
        return get_embedder("minilm")
    except MissingExtra as exc:
        pytest.skip(f"needs the MiniLM weights ({exc.hint})")


@pytest.fixture(scope="module")
def corpus(minilm, tmp_path_factory):
    coll = Collection.open(tmp_path_factory.mktemp("rag") / "corpus.db", embedder_meta(minilm))
    for name, texts in CORPUS.items():
        passages = [Passage(t, i, line_start=2 * i + 1, line_end=2 * i + (2 if i % 2 else 1))
                    for i, t in enumerate(texts)]
        coll.replace_file(f"/docs/{name}", "sha", 1, 0.0, passages, minilm.embed(texts))
    pages = [Passage(text, i, page=page, heading=heading)
             for i, (page, heading, text) in enumerate(MANUAL_PAGES)]
    coll.replace_file("/docs/manual.pdf", "sha", 1, 0.0, pages, minilm.embed([p.text for p in pages]))
    yield coll
    coll.close()


def vector_only(coll, embedder, query: str, n: int = 3) -> list[str]:
    hits, path = vector_candidates(coll, embedder.embed([query])[0], n, ann="off")
    assert path == "exact"
    return [c.text for c in coll.chunks([i for i, _ in hits])]


def test_hybrid_finds_an_error_code_that_vectors_alone_rank_below_another(corpus, minilm):
    answer = CORPUS["errors.md"][1]
    assert vector_only(corpus, minilm, "E4012")[0] != answer  # MiniLM sees "some license error"
    for rerank in (True, False):
        assert retrieve(corpus, minilm, "E4012", k=3, rerank=rerank)[0].text == answer


def test_rerank_puts_the_answer_above_a_distractor_fusion_prefers(corpus, minilm):
    """The answer shares no word with the question, so BM25 misses it; a chunk that shares one
    common word ("files") sits in both lists and wins on ranks alone. The rerank's cosine term,
    which fusion throws away, restores the clear semantic winner."""
    query = "recover accidentally removed files"
    answer = CORPUS["trash.md"][0]
    fused = retrieve(corpus, minilm, query, k=3, rerank=False)
    assert fused[0].text == CORPUS["install.md"][2]  # "Uninstalling removes the program files ..."
    assert answer not in [h.text for h in fused[:1]]
    reranked = retrieve(corpus, minilm, query, k=3)
    assert reranked[0].text == answer
    assert reranked[0].score > reranked[1].score


def test_semantic_questions_find_their_chunk(corpus, minilm):
    cases = {"how long should the bread bake": CORPUS["kitchen.txt"][0],
             "how do I get my data back from last night's backup": CORPUS["backup.txt"][1],
             "which port must the firewall allow": MANUAL_PAGES[0][2]}
    for question, answer in cases.items():
        assert retrieve(corpus, minilm, question, k=1)[0].text == answer, question


def test_hits_cite_file_page_and_span(corpus, minilm):
    pdf = retrieve(corpus, minilm, "mount the shared volume", k=1)[0]
    assert (pdf.file, pdf.page, pdf.span) == ("/docs/manual.pdf", 4, "Setup > Storage")
    md = retrieve(corpus, minilm, "renew an expired license", k=1)[0]
    assert (md.file, md.page, md.span) == ("/docs/errors.md", None, "line 5")
    other = retrieve(corpus, minilm, "What does E7311 mean?", k=1)[0]
    assert other.span == "line 1" and other.text.startswith("Error E7311")
    two_lines = retrieve(corpus, minilm, "E4012", k=1)[0]
    assert two_lines.span == "lines 3-4" and two_lines.chunk_id > 0


def test_k_scores_and_order(corpus, minilm):
    hits = retrieve(corpus, minilm, "license", k=4)
    assert len(hits) == 4 and len({h.chunk_id for h in hits}) == 4
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len(retrieve(corpus, minilm, "license", k=100)) == sum(map(len, CORPUS.values())) + 2
    with pytest.raises(BadInput):
        retrieve(corpus, minilm, "   ")
    with pytest.raises(BadInput):
        retrieve(corpus, minilm, "x", k=0)


@pytest.mark.parametrize("query", ['"', '"unbalanced quote', "foo*", "NEAR(", "NEAR(a b, 2)", "-x", "a - b",
                                   "AND OR NOT", "title:license", "^start", "(a OR", "{col}: x", "*", "''",
                                   "E4012 AND", "+++", "a\x00b", "ünïcödé 東京"])
def test_user_text_with_fts5_syntax_never_raises(corpus, minilm, query):
    assert isinstance(corpus.fts(fts_query(query), 10), list)
    assert len(retrieve(corpus, minilm, query, k=2)) == 2


def test_fts_query_quotes_every_word():
    assert fts_query('ERR_CONN-42 "license" NEAR(') == '"err conn 42" OR "license" OR "near"'
    assert fts_query("what is the E4012 error") == '"e4012" OR "error"'
    assert fts_query("what is it") == '"what" OR "is" OR "it"'  # only stopwords: keep them
    assert fts_query('" * -') == ""


def test_words_too_common_to_rank_cheaply_are_left_to_the_vectors(corpus):
    """"license" is in 5 chunks, E7311 in one: with a budget of 4 ranked matches only E7311 is kept."""
    everything = lexical_candidates(corpus, "license E7311", 50, budget=100)
    assert len(everything) == 5
    pruned = lexical_candidates(corpus, "license E7311", 50, budget=4)
    assert [c.text[:11] for c in corpus.chunks([i for i, _ in pruned])] == ["Error E7311"]
    assert lexical_candidates(corpus, "license", 50, budget=4) == []


def test_an_empty_collection_answers_nothing(minilm, tmp_path):
    with Collection.open(tmp_path / "empty.db", embedder_meta(minilm)) as coll:
        assert retrieve(coll, minilm, "anything") == []


# -- the ANN sidecar ---------------------------------------------------------------------------------------
META = {"id": "synthetic", "dim": 16, "normalized": True, "version": "1"}


def unit(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, 16)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def add(coll, name: str, n: int, seed: int) -> None:
    coll.replace_file(name, "s", 1, 0.0, [Passage(f"{name} {i}", i) for i in range(n)], unit(n, seed))


@needs_faiss
def test_a_stale_ann_sidecar_is_detected_and_rebuilt(tmp_path):
    coll = Collection.open(tmp_path / "big.db", META)
    add(coll, "a", 300, 1)
    assert ensure_ann(coll) == "skipped"  # below the threshold exact search is as fast
    assert ensure_ann(coll, min_count=100) == "built" and ann_state(coll) == "fresh"
    q = unit(1, 99)[0]
    found, path = vector_candidates(coll, q, 10)
    assert path == "ann"
    ids, matrix = coll.matrix()
    assert [i for i, _ in found] == [i for i, _ in exact_search(ids, matrix, q, 10)]

    add(coll, "b", 50, 2)  # a new generation: the index no longer describes the collection
    assert ann_state(coll) == "stale"
    found, path = vector_candidates(coll, q, 10)  # auto never waits for a build: exact meanwhile
    assert path == "exact"
    ids, matrix = coll.matrix()
    assert [i for i, _ in found] == [i for i, _ in exact_search(ids, matrix, q, 10)]
    found, path = vector_candidates(coll, q, 10, ann="on")  # "on" rebuilds first
    assert path == "ann" and ann_state(coll) == "fresh"
    assert ensure_ann(coll, min_count=100) == "fresh"
    assert {i for i, _ in found} <= set(ids.tolist())
    coll.close()


@needs_faiss
def test_an_index_file_swapped_under_its_json_reads_as_stale(tmp_path):
    coll = Collection.open(tmp_path / "big.db", META)
    add(coll, "a", 200, 1)
    build_ann(coll)
    index_path, meta_path = ann_paths(coll)
    other = Collection.open(tmp_path / "other.db", META)
    add(other, "x", 120, 3)
    build_ann(other)
    os.replace(ann_paths(other)[0], index_path)  # a torn or raced write: the JSON no longer matches
    assert ann_state(coll) == "stale"
    meta_path.write_text("{not json")
    assert ann_state(coll) == "stale"
    coll.close()
    other.close()


def test_without_faiss_search_is_exact_and_raises_nothing(tmp_path):
    """A Python with numpy but no faiss on its path (-S, a folder of links), as without the extra."""
    import numpy
    import threadpoolctl

    site = tmp_path / "site"
    site.mkdir()
    numpy_dir = Path(numpy.__file__).parent
    for src in (numpy_dir, numpy_dir.with_name("numpy.libs"), Path(threadpoolctl.__file__)):
        if src.exists():
            (site / src.name).symlink_to(src)
    probe = (
        "import numpy as np\nfrom edgeai.rag.store import Collection\nfrom edgeai.rag.search import "
        "vector_candidates\nfrom edgeai.rag.ann import faiss_available, ensure_ann\nfrom types import "
        "SimpleNamespace as P\n"
        f"c = Collection.open({str(tmp_path / 'c.db')!r}, {META!r})\n"
        "v = np.eye(16, dtype=np.float32)\n"
        "c.replace_file('a', 's', 1, 0.0, [P(text=str(i), ordinal=i) for i in range(16)], v)\n"
        "hits, path = vector_candidates(c, v[3], 2, ann='on')\n"
        "print(faiss_available(), ensure_ann(c, min_count=0), path, hits[0][0])\n")
    result = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{site}"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "skipped", "exact", "4"]
