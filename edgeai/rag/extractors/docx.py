"""Word .docx via python-docx: body paragraphs and tables in document order.

Paragraphs styled "Title" or "Heading N" (by name or style id, so most localized templates
work) build the heading path and are not sections themselves; "List ..." styles are kind
"list"; each table is one section with one row per line ("cell | cell"), a merged cell counted
once. Page headers and footers, text boxes and comments are not read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from edgeai.rag.extract import ExtractError, Notice, Section

_HEADING = re.compile(r"heading\s*(\d)", re.IGNORECASE)


def extract(path: Path, notice: Notice) -> Iterator[Section]:
    from docx.table import Table

    document = _open(path)
    headings: list[tuple[int, str]] = []
    for block in document.iter_inner_content():
        heading = " > ".join(h for _, h in headings) or None
        if isinstance(block, Table):
            text = _table(block)
            if text:
                yield Section(text, "table", heading=heading)
            continue
        text = block.text.strip()
        if not text:
            continue
        level, kind = _style(block)
        if level is not None:
            while headings and headings[-1][0] >= level:
                headings.pop()
            headings.append((level, " ".join(text.split())))
        else:
            yield Section(text, kind, heading=heading)


def _open(path: Path):
    import zipfile

    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        return docx.Document(str(path))
    except OSError:
        raise
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ExtractError(path, "corrupt", "corrupt DOCX (not a readable Word file), skipped") from exc
    except Exception as exc:  # lxml and the OPC reader fail in many ways on damaged parts
        raise ExtractError(path, "corrupt", f"corrupt DOCX, skipped ({type(exc).__name__})") from exc


def _style(paragraph) -> tuple[int | None, str]:
    """(heading level or None, section kind) from the paragraph's style."""
    style = paragraph.style
    names = f"{getattr(style, 'name', '') or ''} {getattr(style, 'style_id', '') or ''}"
    if "Title" in names.split():
        return 0, "heading"
    match = _HEADING.search(names)
    if match:
        return int(match.group(1)), "heading"
    return None, "list" if names.lower().startswith("list") else "paragraph"


def _table(table) -> str:
    rows = []
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:
            if id(cell._tc) in seen:  # a merged cell appears once per grid column it spans
                continue
            seen.add(id(cell._tc))
            cells.append(" ".join(cell.text.split()))
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)
