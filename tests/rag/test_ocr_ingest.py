"""Scanned PDFs and images indexed through OCR, as a user runs `edgeai rag add` and `rag query`.

The documents are made here: pages of text drawn with Pillow and saved as an image-only PDF (no
text layer: checked with pypdf and pdfium), a PNG of text, a PDF with one text page and one
scanned page; and the bad ones a folder really holds (a truncated PNG, a damaged PDF, an image
with no text). Real RapidOCR, real MiniLM, a fresh EDGEAI_HOME per test (conftest).
"""

from __future__ import annotations

import io
import json
import re
import sqlite3
import time
from pathlib import Path

import pytest

pytest.importorskip("rapidocr", reason="needs the vision extra (rapidocr): scripts/setup")
pytest.importorskip("pypdfium2", reason="needs pypdfium2: scripts/setup")

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
PAGE_1 = ["Minutes of the harbour committee, spring session.",
          "The committee met in the old customs house on Quay Street.",
          "Attendance was good despite the storm warnings."]
PAGE_2 = ["Repairs to the eastern breakwater will cost 48,000 florins.",
          "Work starts after the herring season ends in October.",
          "The ferry timetable stays unchanged for the winter."]
NOTE = ["The greenhouse tomatoes ripened in late July.",
        "Each plant gave about four kilograms of fruit."]
TEXT_PAGE = "Kestrel pumps must be descaled every ninety days with citric acid."
SCANNED_LINE = "The spare impeller is stored in locker nine of the engine room."


def font(size: int):
    from PIL import ImageFont

    return ImageFont.truetype(str(DEJAVU), size) if DEJAVU.is_file() else ImageFont.load_default(size=size)


def scanned_page(lines: list[str], dpi: int = 150):
    """An A4 page of 12 pt text at `dpi`, as a scanner would hand it over: pixels only."""
    from PIL import Image, ImageDraw

    page = Image.new("L", (round(8.27 * dpi), round(11.69 * dpi)), 255)
    draw, size = ImageDraw.Draw(page), round(dpi * 12 / 72)
    for n, line in enumerate(lines):
        draw.text((dpi, dpi + n * round(size * 1.6)), line, font=font(size), fill=0)
    return page


def image_only_pdf(path: Path, pages: list[list[str]], dpi: int = 150) -> Path:
    first, *rest = [scanned_page(lines, dpi) for lines in pages]
    first.save(path, "PDF", save_all=True, append_images=rest, resolution=dpi)
    return path


def text_png(path: Path, lines: list[str]) -> Path:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (900, 60 + 60 * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    for n, line in enumerate(lines):
        draw.text((20, 30 + 60 * n), line, font=font(28), fill="black")
    image.save(path)
    return path


def mixed_pdf(path: Path, tmp: Path) -> Path:
    """Page 1 with a text layer (fpdf2), page 2 scanned (Pillow): one file, both kinds."""
    from fpdf import FPDF
    from pypdf import PdfReader, PdfWriter

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.multi_cell(0, 8, TEXT_PAGE)
    writer = PdfWriter()
    writer.add_page(PdfReader(io.BytesIO(bytes(pdf.output()))).pages[0])
    writer.add_page(PdfReader(image_only_pdf(tmp / "scan-part.pdf", [[SCANNED_LINE]])).pages[0])
    with path.open("wb") as handle:
        writer.write(handle)
    return path


def text_layer(path: Path) -> list[str]:
    """Each page's text layer, as pypdf and as pdfium read it (both must be empty for a scan)."""
    import pypdfium2 as pdfium
    from pypdf import PdfReader

    layers = [(page.extract_text() or "").strip() for page in PdfReader(path).pages]
    doc = pdfium.PdfDocument(str(path))
    try:
        for n in range(len(doc)):
            layers[n] += doc[n].get_textpage().get_text_range().strip()
    finally:
        doc.close()
    return layers


def query(cli, question: str) -> list[dict]:
    proc = cli("rag", "query", question, "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)["hits"]


def rank_of(hits: list[dict], file: Path, needle: str) -> int | None:
    for hit in hits:
        if hit["file"] == str(file.resolve()) and needle in " ".join(hit["text"].split()):
            return hit["rank"]
    return None


def summary(proc) -> tuple[int, int, int, int, int]:
    m = re.search(r"(\d+) added, (\d+) updated, (\d+) unchanged, (\d+) removed, (\d+) skipped",
                  proc.stdout.decode())
    assert m, proc.stdout.decode()
    return tuple(map(int, m.groups()))


def test_a_scanned_pdf_and_a_png_are_found_with_the_right_page(tmp_path, cli, edgeai_home):
    """Acceptance 5: `rag add` OCRs a 2-page scan and a PNG; `rag query` cites page 2 and page 1;
    the bad files of the same folder are one line each, and nothing of them is stored."""
    docs = tmp_path / "docs"
    docs.mkdir()
    scan = image_only_pdf(docs / "committee-scan.pdf", [PAGE_1, PAGE_2])
    assert text_layer(scan) == ["", ""]  # no text layer at all: only OCR can read it
    note = text_png(docs / "greenhouse-note.png", NOTE)
    (docs / "truncated.png").write_bytes(note.read_bytes()[:400])
    (docs / "damaged.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage")
    from PIL import Image

    Image.new("RGB", (640, 480), (250, 250, 250)).save(docs / "blank-photo.jpg")

    started = time.perf_counter()
    proc = cli("rag", "add", str(docs))
    seconds = time.perf_counter() - started
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert summary(proc) == (2, 0, 0, 0, 3)
    skipped = sorted(line for line in err.splitlines() if line.startswith("skipped: "))
    expected = [f"{(docs / 'blank-photo.jpg').resolve()}: no text found in the image, nothing to index",
                f"{(docs / 'damaged.pdf').resolve()}: corrupt PDF, skipped (",
                f"{(docs / 'truncated.png').resolve()}: corrupt or truncated: image file is truncated"]
    assert len(skipped) == 3 and all(line.startswith("skipped: " + want)
                                     for line, want in zip(skipped, expected, strict=True)), skipped
    con = sqlite3.connect(f"file:{edgeai_home / 'rag' / 'default.db'}?mode=ro", uri=True)
    try:
        stored = sorted(r[0] for r in con.execute("SELECT path FROM files"))
        pages = {r[0]: r[1] for r in con.execute(
            "SELECT c.page, c.text FROM chunks c JOIN files f ON f.id = c.file_id WHERE f.path = ?",
            (str(scan.resolve()),))}
    finally:
        con.close()
    assert stored == sorted([str(scan.resolve()), str(note.resolve())])  # nothing of the bad ones
    assert sorted(pages) == [1, 2] and "48,000 florins" in pages[2]

    hits = query(cli, "How much will the repairs to the eastern breakwater cost?")
    rank = rank_of(hits, scan, "Repairs to the eastern breakwater will cost 48,000 florins.")
    assert rank == 1 and hits[0]["page"] == 2, hits
    hits_png = query(cli, "How much fruit did each tomato plant give?")
    rank_png = rank_of(hits_png, note, "Each plant gave about four kilograms of fruit.")
    assert rank_png == 1 and hits_png[0]["page"] == 1, hits_png
    print(f"\nOCR ingest: 3 pages (2 scanned + 1 image) in {seconds:.1f} s (process, model loads "
          f"included); ranks: scan p.2 {rank}, png {rank_png}")

    # unchanged files are not read again (size and mtime, then the content hash after a touch)
    again = cli("rag", "add", str(docs))
    assert summary(again)[:3] == (0, 0, 2), again.stdout.decode()
    scan.touch()
    touched = cli("rag", "add", str(docs))
    assert summary(touched)[:3] == (0, 0, 2), touched.stdout.decode()


def test_a_mixed_pdf_reads_both_kinds_of_page_with_progress(tmp_path, edgeai_home):
    """Page 1 from its text layer, page 2 by OCR; the slow page shows in the ingest progress."""
    from edgeai.config import load_settings
    from edgeai.rag import api

    path = mixed_pdf(tmp_path / "pump-manual.pdf", tmp_path)
    layers = text_layer(path)
    assert "descaled" in layers[0] and layers[1] == ""
    details: list[str] = []
    report = api.ingest(load_settings(), "default", [path],
                        progress=lambda p: details.append(p.detail) if p.detail else None)
    assert (report.added, report.errors, report.notices) == (1, [], [])
    assert "OCR page 2/2" in details and not any("page 1/" in d for d in details)
    hits = api.search(load_settings(), "default", "Where is the spare impeller kept?", 3)
    assert hits[0].page == 2 and "locker nine" in hits[0].text, hits
    hits = api.search(load_settings(), "default", "How often are the pumps descaled?", 3)
    assert hits[0].page == 1 and "ninety days" in hits[0].text, hits


def test_text_files_and_text_pdfs_import_no_ocr_or_speech_stack(tmp_path):
    """pypdfium2, rapidocr, OpenCV, faster-whisper and PyAV load only when a scan, an image or a
    recording is read: indexing and querying text costs what it did."""
    import subprocess
    import sys

    from fpdf import FPDF

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "pier.txt").write_text("The pier is 300 metres long.\n")
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.multi_cell(0, 8, TEXT_PAGE)
    pdf.output(str(docs / "pumps.pdf"))
    # (not PIL: pypdf itself imports it)
    heavy = ("pypdfium2", "rapidocr", "cv2", "onnxruntime", "faster_whisper", "ctranslate2", "av")
    probe = ("import sys\nfrom edgeai.cli import run_cli\n"
             f"assert run_cli(['rag', 'add', {str(docs)!r}]) == 0\n"
             "assert run_cli(['rag', 'query', 'how long is the pier']) == 0\n"
             f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r})))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout


def test_without_ocr_scans_and_images_are_one_line_each_and_text_still_indexes(tmp_path):
    """rapidocr missing (blocked here as an uninstalled package reads): each scan and image says
    so in one line with what to install, the text file is indexed, the exit code is 0."""
    import subprocess
    import sys

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "pier.txt").write_text("The pier is 300 metres long.\n")
    image_only_pdf(docs / "scan.pdf", [[SCANNED_LINE]])
    text_png(docs / "note.png", NOTE)
    probe = ("import sys\nsys.modules['rapidocr'] = None\nfrom edgeai.cli import run_cli\n"
             f"sys.exit(run_cli(['rag', 'add', {str(docs)!r}]))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "1 added, 0 updated, 0 unchanged, 0 removed, 2 skipped" in result.stdout
    skipped = sorted(line for line in result.stderr.splitlines() if line.startswith("skipped: "))
    why = ("OCR is not available (OCR (rapidocr and onnxruntime) [import of rapidocr halted; None in "
           "sys.modules] is not installed; install it with: pip install 'edgeai[vision]')")
    assert [line.split(": ", 2)[2] for line in skipped] == [
        f"image: {why}", f"no text layer (scanned): {why}"], skipped
