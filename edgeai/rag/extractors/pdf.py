"""PDF via pypdf: one section per page that has text, with its 1-based page number.

An encrypted PDF is tried with the empty password (permission-only protection opens that way);
otherwise it is refused. Pages without a text layer are reported once in a notice; a PDF with
none at all ends as "no text layer" in `iter_sections`. pypdf holds the whole file in memory,
so PDFs are bounded by the caller's size cap, not streamed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from edgeai.rag.extract import ExtractError, Notice, Section


def extract(path: Path, notice: Notice) -> Iterator[Section]:
    reader = _open(path)
    blank: list[int] = []
    failed: list[int] = []
    n_pages = len(reader.pages)
    for number in range(1, n_pages + 1):
        try:
            text = reader.pages[number - 1].extract_text() or ""
        except Exception:  # pypdf raises many types on a damaged page: keep the others
            failed.append(number)
            continue
        text = "\n".join(line.rstrip() for line in text.replace("\x00", "").splitlines()).strip()
        if text:
            yield Section(text, "page", page=number)
        else:
            blank.append(number)
    if failed:
        notice(f"{_pages(failed)} could not be read (damaged?), skipped")
    if blank and len(blank) < n_pages:
        notice(f"{_pages(blank)} without a text layer (scanned?): not indexed, OCR not available yet")


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
