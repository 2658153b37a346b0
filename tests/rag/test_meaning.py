"""Retrieval keeps what a passage means (issue 17, item 5): headings searched, shown, cited and
read by the model; titles that are not markup; small units of long passages; old collections
re-indexed on first open. The questions were committed before the code (meaning_questions.tsv)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from edgeai_testing.meaning_corpus import (
    LICENSES_MISSING,
    build_meaning_corpus,
    licenses_available,
    load_questions,
    measure,
    recall_by_kind,
)

from edgeai.rag import api

RESULTS = json.loads((Path(__file__).parent / "data" / "meaning_recall.json").read_text())


def check_against_baseline(ranks: dict) -> None:
    baseline, after = RESULTS["baseline"]["found"], RESULTS["after"]["found"]
    found = {q: r is not None for q, r in ranks.items()}
    lost = [q for q in found if baseline[q] and not found[q]]
    assert not lost, f"found before, lost now: {lost}"
    assert found == {q: after[q] for q in found}, "the pinned per-question results changed"
    questions = [q for q in load_questions() if q.question in ranks]
    before = sum(baseline[q.question] for q in questions) / len(questions)
    assert recall_by_kind(ranks, questions)["all"] - before >= 0.10


def test_recall_on_the_synthetic_documents_rises_and_loses_nothing(tmp_path):
    check_against_baseline(measure(tmp_path, with_licenses=False))


@pytest.mark.slow  # ~25 s: the licence texts are a few hundred passages and their units
@pytest.mark.skipif(not licenses_available(), reason=LICENSES_MISSING)
def test_recall_with_the_public_licence_corpus_rises_and_loses_nothing(tmp_path):
    ranks = measure(tmp_path)
    assert len(ranks) == len(load_questions())
    check_against_baseline(ranks)


def test_a_fact_only_in_a_heading_is_found_by_keyword_and_carries_its_heading(settings, tmp_path):
    api.ingest(settings, "m", [build_meaning_corpus(tmp_path, with_licenses=False)])
    with api.open_collection(settings, "m") as coll:
        from edgeai.rag.search import fts_query

        ids = [i for i, _ in coll.fts(fts_query("1,850 florins deposit"), 5)]
        assert any("Deposit: 1,850 florins" in (c.heading or "") for c in coll.chunks(ids[:1]))
    [hit, *_] = api.search(settings, "m", "How large is the deposit on the Orrin lease?")
    assert hit.heading == "Lease of 14 Quay Street, Orrin > Deposit: 1,850 florins"
    assert "1,850" not in hit.text  # the fact is in the heading only


def test_the_fenced_passage_and_the_citation_show_the_heading():
    from edgeai.rag.context import build_rag_messages
    from edgeai.types import Hit

    hit = Hit(1, "Register the machine and keep the receipt.", "/d/k7.md", None, "lines 5-6", 1.0,
              heading="Aurelis K7 > Warranty — two years from delivery")
    messages, [source] = build_rag_messages("warranty?", [hit], budget_tokens=2000, count_tokens=len)
    assert "Aurelis K7 > Warranty — two years from delivery:\nRegister the machine" in messages[-1].content
    assert source.label == "[1] k7.md lines 5–6 · Aurelis K7 > Warranty — two years from delivery"


def test_titles_written_as_lines_and_bold_html_blocks_become_headings(tmp_path):
    from edgeai.rag.extract import iter_sections

    root = build_meaning_corpus(tmp_path, with_licenses=False)
    handbook = list(iter_sections(root / "exports/staff-handbook.txt"))
    assert [s.heading for s in handbook][2:4] == [
        "BRANNOCK LOGISTICS STAFF HANDBOOK > 2. PROBATION: SIX MONTHS",
        "BRANNOCK LOGISTICS STAFF HANDBOOK > 3. OVERTIME"]
    assert not any("OVERTIME" in s.text for s in handbook)
    minutes = list(iter_sections(root / "exports/harbour-minutes.txt"))
    assert minutes[1].heading.endswith("> Dredging budget approved at 240,000 florins")
    shop = list(iter_sections(root / "web/velden-help.html"))
    assert [s.heading for s in shop] == ["Returns within 30 days", "Shipping — free over 60 florins",
                                         "Gift cards never expire"]


def test_a_long_passage_gets_small_units_that_answer_for_it(settings, tmp_path):
    from edgeai.rag.chunk import UNIT_MIN_CHARS

    api.ingest(settings, "m", [build_meaning_corpus(tmp_path, with_licenses=False)])
    with api.open_collection(settings, "m") as coll:
        ids, _ = coll.unit_matrix()
        long_ones = {c.id for c in coll.chunks(list(set(ids.tolist())))}
        assert long_ones and all(len(c.text) >= UNIT_MIN_CHARS for c in coll.chunks(list(long_ones)))


def test_an_old_schema_collection_is_reindexed_on_first_open_with_progress(settings, tmp_path, cli,
                                                                           monkeypatch):
    from edgeai.rag import chunk, store

    root = build_meaning_corpus(tmp_path / "docs", with_licenses=False)
    with monkeypatch.context() as old:  # what the previous version wrote: schema 1, no units
        old.setattr(store, "MIGRATIONS", store.MIGRATIONS[:1])
        old.setattr(chunk, "units_of", lambda passage: [])
        api.ingest(settings, "old", [root])
    path = store.collection_path(settings, "old")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    done = cli("rag", "query", "How large is the deposit on the Orrin lease?", "-c", "old", "--json")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.decode().splitlines() if line.startswith("re-indexing old")]
    assert lines and lines[-1].startswith("re-indexing old for the new index format: 7/7 files")
    hit = json.loads(done.stdout)["hits"][0]
    assert hit["heading"].endswith("Deposit: 1,850 florins")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(store.MIGRATIONS)
        assert db.execute("SELECT count(*) FROM units").fetchone()[0] > 0
        assert not db.execute("SELECT 1 FROM meta WHERE key='reindex'").fetchall()
    again = cli("rag", "query", "deposit", "-c", "old")
    assert again.returncode == 0 and b"re-indexing" not in again.stderr  # once only
