"""Plain text: encoding detection, streamed decoding into numbered lines, paragraphs.

Files are read in 1 MiB blocks and never held whole: a 200 MB log costs about one block plus
one paragraph. The encoding is decided from the first block: a BOM (UTF-8/16/32), UTF-16
without a BOM (NULs in every other byte), else UTF-8; bytes that are not UTF-8 switch the rest
of the file to cp1252 with a notice rather than losing the file. NULs or a high share of
control bytes in the first block mean binary. `iter_lines` and `decode_bytes` are shared with
the Markdown and HTML extractors.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from pathlib import Path

from edgeai.rag.extract import ExtractError, Notice, Section

BLOCK = 1 << 20
MAX_LINE = 16_000  # longer lines are cut (at a space where one is near) so memory stays bounded
MAX_SECTION = 16_000  # a paragraph longer than this is yielded in parts, at line ends
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# control bytes that do not occur in text (tab, newlines, form feed, escape and backspace do)
_CONTROL = re.compile(rb"[\x00-\x07\x0e-\x1a\x1c-\x1f\x7f]")


def _mostly_text(text: str) -> bool:
    printable = sum(c.isprintable() or c in "\t\n\r\f" for c in text)
    return bool(text) and printable >= 0.95 * len(text) and "\ufffd" not in text[:-1]


def sniff_encoding(head: bytes) -> str | None:
    """The codec to read a file starting with `head`, or None when it looks binary."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    sample = head[:4096]
    if b"\x00" in sample:
        even, odd = sample[0::2].count(0), sample[1::2].count(0)
        half = max(1, len(sample) // 2)
        guess = ("utf-16-le" if odd > 0.3 * half and even < 0.02 * half else
                 "utf-16-be" if even > 0.3 * half and odd < 0.02 * half else None)
        # a zero in every other byte is also common in binary formats: the text must read as text
        even_length = sample[: len(sample) // 2 * 2]
        return guess if guess and _mostly_text(even_length.decode(guess, "replace")) else None
    if sample and len(_CONTROL.findall(sample)) > 0.05 * len(sample):
        return None
    return "utf-8"


def decoded_blocks(path: Path, notice: Notice) -> Iterator[str]:
    """The file's text in blocks of about 1 MiB, decoded as `sniff_encoding` decides."""
    with path.open("rb") as handle:
        block = handle.read(BLOCK)
        encoding = sniff_encoding(block)
        if encoding is None:
            raise ExtractError(path, "binary", "looks binary, skipped")
        errors = "strict" if encoding == "utf-8" else "replace"
        decoder = codecs.getincrementaldecoder(encoding)(errors=errors)
        offset = 0
        while True:
            final = not block  # the last call flushes a sequence cut off at the end of the file
            pending = decoder.getstate()[0] if encoding == "utf-8" else b""
            try:
                yield decoder.decode(block, final=final)
            except UnicodeDecodeError as exc:
                # the valid part stays UTF-8; from the first bad byte on, the file is cp1252
                data = pending + block
                notice(f"not valid UTF-8 (byte {offset - len(pending) + exc.start}); "
                       "read as cp1252 from there on")
                yield data[:exc.start].decode("utf-8", errors="replace")
                encoding = "cp1252"
                decoder = codecs.getincrementaldecoder("cp1252")(errors="replace")
                yield decoder.decode(data[exc.start:])
            if final:
                return
            offset += len(block)
            block = handle.read(BLOCK)


def decode_bytes(path: Path, data: bytes, notice: Notice) -> str:
    """A whole small file (HTML) decoded with the same rules as `decoded_blocks`."""
    encoding = sniff_encoding(data[:BLOCK])
    if encoding is None:
        raise ExtractError(path, "binary", "looks binary, skipped")
    try:
        return data.decode(encoding, errors="strict" if encoding == "utf-8" else "replace")
    except UnicodeDecodeError as exc:
        notice(f"not valid UTF-8 (byte {exc.start}); read as cp1252 from there on")
        return data[:exc.start].decode("utf-8") + data[exc.start:].decode("cp1252", errors="replace")


def iter_lines(path: Path, notice: Notice) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its ending); a line over MAX_LINE comes in parts that
    share its number. "\\r\\n", "\\r" and "\\n" all end a line, as editors count them."""
    lineno, pending, carry = 1, "", ""
    for chunk in decoded_blocks(path, notice):
        text = carry + chunk
        carry = "\r" if text.endswith("\r") else ""  # its "\n" may start the next block
        if carry:
            text = text[:-1]
        pending += text.replace("\r\n", "\n").replace("\r", "\n")
        *lines, pending = pending.split("\n")
        for line in lines:
            yield lineno, line
            lineno += 1
        while len(pending) > MAX_LINE:
            cut = pending.rfind(" ", MAX_LINE // 2, MAX_LINE)
            cut = cut if cut > 0 else MAX_LINE
            yield lineno, pending[:cut]
            pending = pending[cut:].lstrip(" ")
    if pending or carry:
        yield lineno, pending


def extract(path: Path, notice: Notice) -> Iterator[Section]:
    """Paragraphs: runs of non-blank lines, with their line numbers, under the section titles
    the text writes as ordinary lines (`titles.py`); a title line becomes the heading of what
    follows it, not body text."""
    from edgeai.rag.titles import Outline

    outline = Outline()
    lines: list[str] = []
    start = end = size = 0
    continued = False  # the paragraph so far is the rest of one cut at MAX_SECTION
    for lineno, line in iter_lines(path, notice):
        if not line.strip():
            if lines:
                yield from _paragraph(lines, start, outline, continued)
                lines, size, continued = [], 0, False
            continue
        if lines and size + len(line) > MAX_SECTION:
            yield from _paragraph(lines, start, outline, continued)
            lines, size, continued = [], 0, True
        if not lines:
            start = lineno
        lines.append(line.rstrip())
        end = lineno
        size += len(line) + 1
    if lines:
        yield from _paragraph(lines, start, outline, continued)
    for title, heading in outline.close():
        yield Section(title.strip(), heading=heading, line_start=end, line_end=end)


def _paragraph(lines: list[str], start: int, outline, continued: bool) -> Iterator[Section]:
    """One paragraph: a title it opens with goes into the outline, the rest is a section."""
    from edgeai.rag.titles import is_underline, numbered_style, title_style, underline_style

    title, style, skip, closed = None, None, 0, []
    if not continued:
        if len(lines) >= 2 and is_underline(lines[1], lines[0]) and title_style(lines[0], alone=True):
            title, style, skip = lines[0], underline_style(lines[1]), 2
        elif (style := title_style(lines[0], alone=len(lines) == 1,
                                   next_line=lines[1] if len(lines) > 1 else None)) is not None:
            title, skip = lines[0], 1
        elif number := numbered_style(lines[0]):
            closed = outline.end(number)
    if title is not None:
        closed = outline.push(title.strip(), style=style)
    for text, heading in closed:
        yield Section(text, heading=heading, line_start=start, line_end=start)
    body = lines[skip:]
    if body:
        first = start + skip
        yield Section("\n".join(body), heading=outline.path(), line_start=first,
                      line_end=first + len(body) - 1)
