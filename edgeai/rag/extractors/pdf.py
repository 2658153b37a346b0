"""PDF via pypdf: one section per page that has text, with its 1-based page number; pages without
a text layer (scanned) are rendered with pypdfium2 and read by OCR, keeping their page number.

The text layer is read with pypdf; only a page where it is empty is rendered (pypdfium2: Apache/BSD,
not PyMuPDF, which is AGPL) at `ocr.OCR_DPI`, capped in pixels, and OCR'd; pypdfium2 and the OCR
stack are imported at the first such page, so a PDF with text everywhere costs what it did. A
mixed PDF gets both, in page order. OCR is seconds per page: each one is reported through
`progress` ("OCR page 3/12"). When OCR is not installed, the scanned pages are reported once in a
notice (a PDF with no text layer at all is refused with the reason). A page that pypdf cannot
read or pdfium cannot render is skipped with a notice; a page with nothing on it is skipped
quietly. An encrypted PDF is tried with the empty password (permission-only protection opens that
way); otherwise it is refused. pypdf holds the whole file in memory, so PDFs are bounded by the
caller's size cap, not streamed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from edgeai.rag.extract import ExtractError, Notice, ProgressNote, Section
from edgeai.rag.extractors.ocr import OcrUnavailable, page_text, render_scale, unavailable


def extract(path: Path, notice: Notice, progress: ProgressNote = lambda detail: None) -> Iterator[Section]:
    reader = _open(path)
    failed: list[int] = []
    no_ocr: list[int] = []  # scanned pages left unread because OCR is not available
    why: OcrUnavailable | None = None
    scans = _Scans(path)
    yielded = 0
    n_pages = len(reader.pages)
    try:
        for number in range(1, n_pages + 1):
            try:
                text = reader.pages[number - 1].extract_text() or ""
            except Exception:  # pypdf raises many types on a damaged page: keep the others
                failed.append(number)
                continue
            text = "\n".join(line.rstrip() for line in text.replace("\x00", "").splitlines()).strip()
            if not text and why is None:
                progress(f"OCR page {number}/{n_pages}")
                try:
                    text = scans.text(number)
                except OcrUnavailable as exc:
                    why = exc
                except _RenderError:
                    failed.append(number)
                    continue
            if text:
                yielded += 1
                yield Section(text, "page", page=number)
            elif why is not None:
                no_ocr.append(number)
    finally:
        scans.close()
    if why is not None and not yielded:
        raise unavailable(path, why, "no text layer (scanned)")
    if failed:
        notice(f"{_pages(failed)} could not be read (damaged?), skipped")
    if no_ocr and yielded:
        notice(f"{_pages(no_ocr)} without a text layer (scanned?): not indexed, OCR is not available "
               f"({why.message})")


class _RenderError(Exception):
    pass


class _Scans:
    """The same file in pdfium, opened at the first page that needs rendering."""

    def __init__(self, path: Path):
        self.path = path
        self.doc = None

    def text(self, number: int) -> str:
        try:
            import pypdfium2 as pdfium
        except ImportError as exc:
            raise OcrUnavailable(f"pypdfium2, which renders scanned pages, is not installed [{exc}]",
                                 "install it with: pip install 'edgeai[vision]'") from None
        try:
            if self.doc is None:
                self.doc = pdfium.PdfDocument(str(self.path))
            page = self.doc[number - 1]
            try:
                bitmap = page.render(scale=render_scale(*page.get_size()))
                image = bitmap.to_pil().convert("RGB")
                bitmap.close()
            finally:
                page.close()
        except (pdfium.PdfiumError, IndexError) as exc:  # a damaged page, or a page tree pdfium reads shorter
            raise _RenderError(str(exc)) from None
        except ImportError as exc:  # to_pil without Pillow
            raise OcrUnavailable(f"Pillow is not installed [{exc}]",
                                 "install it with: pip install 'edgeai[vision]'") from None
        return page_text(image)

    def close(self) -> None:
        if self.doc is not None:
            self.doc.close()


def _open(path: Path):
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError

    # pypdf logs every repaired cross-reference table; a damaged file is our notice, not log noise
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise ExtractError(path, "encrypted", "encrypted PDF, skipped: decrypt it first",
                               "for example: qpdf --decrypt --password=PASSWORD in.pdf out.pdf")
        len(reader.pages)  # reads the page tree: a broken one fails here, not mid-file
    except ExtractError:
        raise
    except (DependencyError, FileNotDecryptedError) as exc:
        raise ExtractError(path, "encrypted", f"encrypted PDF, skipped: {exc}") from exc
    except OSError:
        raise
    except Exception as exc:  # corrupt input fails in many ways inside pypdf (PdfReadError, ValueError, ...)
        raise ExtractError(path, "corrupt", f"corrupt PDF, skipped ({_short(exc)})") from exc
    return reader


def _pages(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:10]))
    if len(numbers) > 10:
        shown += f" and {len(numbers) - 10} more"
    return f"page {shown}" if len(numbers) == 1 else f"pages {shown}"


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 80 else text[:77] + "..."
