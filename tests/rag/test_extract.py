"""Extraction on real files of every format: the text, where it came from, and the refusals."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tracemalloc

import pytest
from edgeai_testing.corpus import (
    BAD_FILES,
    CP1252_TEXT,
    DOCX,
    HTML,
    MD,
    MD_TEXT,
    PDF,
    PDF_PAGES,
    TXT,
    UTF16_TEXT,
    build_bad_files,
    build_corpus,
)

from edgeai.errors import BadInput
from edgeai.rag.extract import MB, SUPPORTED_SUFFIXES, ExtractError, Section, iter_sections


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    return build_bad_files(tmp_path_factory.mktemp("bad"))


def sections(path, **kwargs) -> list[Section]:
    return list(iter_sections(path, **kwargs))


def test_pdf_gives_one_section_per_page_with_its_number(corpus):
    got = sections(corpus.path(PDF))
    assert [s.page for s in got] == [1, 2, 3, 4]
    for section, (heading, body) in zip(got, PDF_PAGES, strict=True):
        assert flat(section.text).startswith(heading)
        for paragraph in body.split("\n"):
            assert flat(paragraph) in flat(section.text)


def test_html_keeps_the_article_and_drops_the_site_around_it(corpus):
    got = sections(corpus.path(HTML))
    text = "\n".join(s.text for s in got)
    for chrome in ("Subscribe", "Search the Gazette", "daily port news", "All rights reserved", "Privacy",
                   "Lighthouse festival", "3 florins", "Advertisement", "trackingId", "font-family",
                   "enable JavaScript", "Travel"):
        assert chrome not in text
    # short lines of the article itself stay, each its own section
    assert "Bicycles: 7 florins return." in [s.text for s in got]
    assert "Harbourmaster: Ines Quarreby" in [s.text for s in got]
    assert "By Oona Farrel" in text  # the article's own header is content, not chrome
    by_text = {flat(s.text): s for s in got}
    weather = next(s for t, s in by_text.items() if "2.8 metres" in t)
    assert weather.heading == "Harbor ferries of Port Cessaly > The fleet > Weather rules"
    assert weather.text == ("Crossings are cancelled when the wave height at the Tollan buoy exceeds 2.8 "
                            "metres.\nCheck the board at the terminal.")  # <br> breaks, source newlines don't
    assert next(s for t, s in by_text.items() if "06:40" in t).heading == "Harbor ferries of Port Cessaly"


def test_html_without_main_deeply_nested_and_declared_charset(tmp_path):
    nested = "<div>" * 3000 + "<p>deep text</p>" + "</div>" * 3000  # deeper than Python's recursion limit
    page = ("<html><head><meta charset='windows-1252'></head><body>"
            "<header><nav><a>Home</a></nav><h1>Site</h1></header>" + nested + "<article><header><h1>Post"
            "</h1></header><ul><li>one <b>bold</b></li></ul><pre>  x = 1\n  y = 2</pre><p>Caf\xe9 \x80</p>"
            "</article><footer>foot</footer></body></html>")
    path = tmp_path / "page.htm"
    path.write_bytes(page.encode("latin-1"))
    got = [(s.kind, s.text, s.heading) for s in sections(path)]
    assert got == [("paragraph", "deep text", None), ("list", "one bold", "Post"),
                   ("code", "  x = 1\n  y = 2", "Post"), ("paragraph", "Café €", "Post")]


def test_docx_heading_paths_paragraphs_and_table_rows(corpus):
    got = sections(corpus.path(DOCX))
    lighting = next(s for s in got if "05:15" in s.text)
    assert lighting.heading == "Greenhouse Trial Report 2031 > Method > Lighting"
    results = next(s for s in got if "27 percent" in s.text)
    assert results.heading == "Greenhouse Trial Report 2031 > Results"  # Lighting (level 2) was closed
    table = next(s for s in got if s.kind == "table")
    assert table.text.splitlines() == ["Crop | Variety | Yield (kg per m²)", "Tomato | Redwick Gem | 18.4",
                                       "Pepper | Sollan Flame | 9.7", "Cucumber | Ardent Long | 22.1"]
    assert table.heading.endswith("Results > Yield table")
    assert [s.kind for s in got if s.text.startswith("Yields were weighed")] == ["list"]
    assert not any(s.text in ("Method", "Lighting") for s in got)  # headings are paths, not sections


def line_of(source: str, needle: str) -> int:
    return next(i for i, line in enumerate(source.splitlines(), 1) if needle in line)


def test_markdown_headings_code_lists_and_source_lines(corpus):
    got = sections(corpus.path(MD))
    code = next(s for s in got if "qsyncctl enroll" in s.text)
    assert code.kind == "code"
    assert code.text == "qsyncctl enroll --realm=heron\nsystemctl enable --now qsyncd"  # whole
    assert code.heading == "Quorrin sync daemon > Install > Linux"
    assert (code.line_start, code.line_end) == (line_of(MD_TEXT, "qsyncctl"), line_of(MD_TEXT, "systemctl"))
    windows = next(s for s in got if "QSYNC_SVC" in s.text)
    assert windows.heading == "Quorrin sync daemon > Install > Windows"
    assert "C:\\Quorrin\\logs" in windows.text and "`" not in windows.text  # inline markup dropped
    assert (windows.line_start, windows.line_end) == (line_of(MD_TEXT, "QSYNC_SVC"),
                                                      line_of(MD_TEXT, "Quorrin\\logs"))
    port = next(s for s in got if "7719" in s.text)
    assert (port.kind, port.text, port.line_start) == ("list", "- Port 7719 must be open for peer discovery.",
                                                       line_of(MD_TEXT, "7719"))
    assert not any("author: ops" in s.text for s in got)  # front matter is not content


def test_text_paragraphs_with_line_numbers(corpus):
    got = sections(corpus.path(TXT))
    # the first line, alone and title-like, is the heading of what follows (titles.py), not text
    assert [(s.line_start, s.line_end) for s in got] == [(3, 4), (6, 6)]
    assert got[0].text.startswith("Grandmother Elsbeth") and got[0].text.endswith("before cutting.")
    assert all(s.page is None and s.heading == "Kitchen log, winter 2030" for s in got)


def test_line_endings_crlf_and_cr_count_like_an_editor(tmp_path):
    path = tmp_path / "mixed.txt"
    path.write_bytes(b"one\r\ntwo\r\n\r\nthree\rfour\r\rfive")
    got = sections(path)
    assert [(s.text, s.line_start, s.line_end) for s in got] == [
        ("one\ntwo", 1, 2), ("three\nfour", 4, 5), ("five", 7, 7)]


BAD_MESSAGES = {
    "binary.txt": "looks binary, skipped",
    "empty.txt": "empty, nothing to index",
    "encrypted.pdf": "encrypted PDF, skipped: decrypt it first",
    "corrupt.docx": "corrupt DOCX",
    "corrupt.pdf": "corrupt PDF",
}


@pytest.mark.parametrize("name", sorted(n for n, reason in BAD_FILES.items() if reason))
def test_each_bad_file_is_refused_with_a_one_line_reason(bad, name):
    with pytest.raises(ExtractError) as caught:
        sections(bad[name])
    error = caught.value
    assert isinstance(error, BadInput) and error.exit_code == 2
    assert error.reason == BAD_FILES[name]
    assert error.message.startswith(str(bad[name]) + ": ")
    assert BAD_MESSAGES[name] in error.message
    assert "\n" not in error.message


def test_cp1252_is_read_with_a_notice_and_utf16_without(bad):
    notices: list[str] = []
    assert [s.text for s in sections(bad["cp1252.txt"], on_notice=notices.append)] == [CP1252_TEXT]
    assert len(notices) == 1 and "read as cp1252" in notices[0] and "cp1252.txt" in notices[0]
    notices.clear()
    assert [s.text for s in sections(bad["utf16.txt"], on_notice=notices.append)] == [UTF16_TEXT]
    assert notices == []


def test_a_notice_without_a_callback_goes_to_the_log(bad, caplog):
    with caplog.at_level("WARNING", logger="edgeai.rag"):
        sections(bad["cp1252.txt"])
    assert "read as cp1252" in caplog.text


def test_non_utf8_after_the_first_block_switches_there_and_keeps_the_rest(tmp_path):
    # the first MiB is ASCII lines, then an "é" cut across the block boundary; then a cp1252 byte
    lines = (b"a" * 99 + b"\n") * (MB // 100)
    head = lines + b"a" * (MB - 1 - len(lines)) + "é".encode() + b"\n\n"
    path = tmp_path / "late.txt"
    path.write_bytes(head + "Preis: 4 €\n".encode("cp1252"))
    notices: list[str] = []
    got = sections(path, on_notice=notices.append)
    text = "\n".join(s.text for s in got)
    assert text.endswith("aé\nPreis: 4 €") and "\ufffd" not in text
    assert got[-1].line_start == MB // 100 + 3
    assert len(notices) == 1 and f"byte {len(head) + 9}" in notices[0]


def test_restricted_pdf_opens_with_the_empty_password(bad):
    assert "code word PELICAN" in sections(bad["restricted.pdf"])[0].text


def test_pdf_pages_without_text_are_read_by_ocr_with_their_page(tmp_path, corpus, bad):
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for source in (corpus.path(PDF), bad["scanned.pdf"]):
        for page in PdfReader(source).pages[:1]:
            writer.add_page(page)
    path = tmp_path / "half-scanned.pdf"
    with path.open("wb") as handle:
        writer.write(handle)
    notices: list[str] = []
    got = sections(path, on_notice=notices.append)
    assert [s.page for s in got] == [1, 2] and "18 florins" in got[1].text
    assert notices == []


def test_size_cap(tmp_path):
    path = tmp_path / "big.txt"
    path.write_bytes(b"word " * (3 * MB // 10))  # 1.5 MiB
    with pytest.raises(ExtractError) as caught:
        sections(path, max_bytes=MB)
    assert caught.value.reason == "too_large"
    assert "larger than the 1 MB cap (1.5 MB); raise --max-file-mb to index it" in caught.value.message
    assert sections(path, max_bytes=2 * MB)


def test_missing_and_vanished_files(tmp_path):
    with pytest.raises(ExtractError, match="vanished") as caught:
        sections(tmp_path / "nope.txt")
    assert caught.value.reason == "missing"
    path = tmp_path / "soon-gone.md"
    path.write_text("# Title\n\ntext\n")
    pending = iter_sections(path)  # listed by a folder walk, deleted before it is read
    path.unlink()
    with pytest.raises(ExtractError, match="vanished"):
        next(pending)
    with pytest.raises(ExtractError, match="is a folder"):
        sections(tmp_path)


def test_unknown_suffix_is_sniffed(tmp_path, corpus, bad):
    (tmp_path / "settings.cfg").write_text("[main]\nkey = value\n")
    assert [s.text for s in sections(tmp_path / "settings.cfg")] == ["[main]\nkey = value"]
    shutil.copy(bad["binary.txt"], tmp_path / "blob.bin")
    with pytest.raises(ExtractError, match="looks binary"):
        sections(tmp_path / "blob.bin")
    shutil.copy(corpus.path(PDF), tmp_path / "manual.dat")  # a PDF by its magic bytes
    assert [s.page for s in sections(tmp_path / "manual.dat")] == [1, 2, 3, 4]
    shutil.copy(bad["photo.png"], tmp_path / "photo.unknown")  # an image by its magic bytes: OCR
    [read] = sections(tmp_path / "photo.unknown")
    assert read.page == 1 and "18 florins" in read.text
    (tmp_path / "old.doc").write_bytes(b"\xd0\xcf\x11\xe0")
    with pytest.raises(ExtractError, match=r"save it as \.docx"):
        sections(tmp_path / "old.doc")


def test_whitespace_only_file_is_empty_not_silent(tmp_path):
    (tmp_path / "blank.md").write_text("\n   \n\t\n")
    with pytest.raises(ExtractError, match="no text in it") as caught:
        sections(tmp_path / "blank.md")
    assert caught.value.reason == "empty"


def test_markdown_segments_keep_fences_and_headings_across_parts(tmp_path):
    """Past the 32k-character segment size: a fenced block with blank lines stays one code
    section, and a heading from the top still heads the sections at the end."""
    code = "\n\n".join(f"print({i})" for i in range(6000))  # ~70k characters, blank lines inside
    body = "\n\n".join(f"Paragraph {i} of filler text." for i in range(3000))
    path = tmp_path / "long.md"
    path.write_text(f"# Top\n\n## Code\n\n```python\n{code}\n```\n\n## Prose\n\n{body}\n\nThe end.\n")
    got = sections(path)
    codes = [s for s in got if s.kind == "code"]
    assert len(codes) == 1 and codes[0].text == code and codes[0].heading == "Top > Code"
    assert codes[0].line_start == 6
    last = got[-1]
    assert last.text == "The end." and last.heading == "Top > Prose"
    assert last.line_start == 6 + code.count("\n") + 5 + 2 * 3000


def test_a_huge_text_file_streams_in_bounded_memory(tmp_path):
    """50 MB of text, and 8 MB on one line with no newline: memory stays near one block."""
    sentence = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor. "
    paragraph = (sentence * 6 + "\n") * 3
    path = tmp_path / "huge.txt"
    with path.open("w") as handle:
        for i in range(50 * MB // (len(paragraph) + 20)):
            handle.write(f"Paragraph {i}.\n{paragraph}\n")
    line = tmp_path / "one-line.txt"
    line.write_text("word " * (8 * MB // 5))
    for file in (path, line):
        tracemalloc.start()
        count = chars = 0
        for section in iter_sections(file):
            count += 1
            chars += len(section.text)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert chars > 0.9 * file.stat().st_size
        assert peak < 12 * MB, f"{file.name}: peak {peak / MB:.1f} MiB for {file.stat().st_size / MB:.0f} MiB"


def test_supported_suffixes_cover_the_corpus(corpus):
    assert {f".{name.rsplit('.', 1)[1]}" for name in corpus.files} <= SUPPORTED_SUFFIXES


def test_importing_extract_and_chunk_pulls_no_parser():
    probe = ("import sys, edgeai.rag, edgeai.rag.extract, edgeai.rag.chunk\n"
             "heavy = {'pypdf', 'docx', 'selectolax', 'markdown_it', 'tokenizers', 'numpy', 'lxml'}\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_binary_with_a_zero_in_every_other_byte_is_not_taken_for_utf16(tmp_path):
    path = tmp_path / "data.txt"
    path.write_bytes(b"\x00\x01\x02\xff" * 500)
    with pytest.raises(ExtractError) as caught:
        sections(path)
    assert caught.value.reason == "binary"
    utf16 = tmp_path / "notes.txt"
    utf16.write_bytes("Grüße aus dem Norden\n".encode("utf-16-be") * 20)  # no BOM: still text
    assert "Grüße" in " ".join(s.text for s in sections(utf16))
