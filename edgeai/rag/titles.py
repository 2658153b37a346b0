"""Section titles that are not in markup: plain-text title lines, bold or styled HTML blocks.

Boundary: a line (or a block's text) in, a title *style* or None out; `Outline` turns the titles
of a document into heading paths. No file reading: the text and HTML extractors call this.

Text exported from word processors, PDFs turned into text, licences and minutes mark their
sections with lines, not markup: "3. OVERTIME", "TERMS AND CONDITIONS", an underlined title, a
short line alone between blank lines ("Warranty — two years from delivery"). Left as body text,
those titles are neither the heading a passage is searched and cited by, nor a boundary the
chunker respects, so whole documents became a few long passages. Levels come from the order in
which styles first appear (as reStructuredText ranks underline styles): the first style seen is
the outermost, a title of a style already seen closes every deeper section.
"""

from __future__ import annotations

import re

MAX_CHARS = 90
MAX_WORDS = 12
# "3.", "2.6.", "Section 4", "Article 12 —", "IV." followed by the title
_NUMBERED = re.compile(r"(?:(?:section|article|chapter|part|clause)\s+)?(\d{1,3}(?:\.\d{1,3})*|[IVX]{1,5})"
                       r"(?:[.)]|\s+[—–-])?\s+(\S.*)", re.IGNORECASE)
_UNDERLINE = re.compile(r"\s*([=\-~^*#])\1{2,}\s*")
_BULLET = tuple("-*•+>|#([{\"'“‘`")


def is_underline(line: str, title: str) -> bool:
    """A run of one punctuation character about as long as the title above it (setext style)."""
    return bool(_UNDERLINE.fullmatch(line)) and len(line.strip()) >= min(len(title.strip()), 8) * 0.6


def underline_style(line: str) -> str:
    return "under" + line.strip()[0]


def numbered_style(line: str) -> str | None:
    """"num2" for a line that starts "2.6." (title or not), else None."""
    numbered = _NUMBERED.fullmatch(line.strip())
    return f"num{numbered.group(1).count('.') + 1}" if numbered and numbered.group(1)[0].isdigit() else None


def title_style(line: str, *, alone: bool, next_line: str | None = None) -> str | None:
    """The style of a title line ("caps", "num1", "num2", "line"), or None for body text.

    `alone`: the line is a paragraph of its own (blank lines around it). A line that opens a
    longer paragraph (`next_line` is its second line) is a title only when it is numbered or in
    capitals, short, and not the first line of a wrapped sentence or of a paragraph in
    capitals; a line alone is one also when it is short and does not end like a sentence or a
    list item."""
    text = line.strip()
    if not text or len(text) > MAX_CHARS or len(text.split()) > MAX_WORDS or text.startswith(_BULLET):
        return None
    if not alone and next_line is not None:
        following = next_line.strip()
        if len(text.split()) > 8 or not following or not following[0].isupper() or \
                all(c.isupper() for c in following if c.isalpha()):
            return None
    letters = [c for c in text if c.isalpha()]
    if len(letters) < 2 or "://" in text or "@" in text:
        return None
    numbered = _NUMBERED.fullmatch(text)
    if numbered and numbered.group(2)[0].isalpha():
        rest = numbered.group(2).rstrip()
        # "1. Definitions." is a title; "2. Grant of Copyright License. Subject to..." is a clause
        if ". " in rest or rest.endswith((",", ";", ":", "?", "!")) or not rest[0].isupper():
            return None
        number = numbered.group(1)
        return f"num{number.count('.') + 1}" if number[0].isdigit() else "roman"
    if text.endswith((".", ",", ";", ":", "?", "!", "…")):
        return None
    if all(c.isupper() for c in letters) and len(letters) >= 4:
        return "caps"
    if alone and text[0].isupper():
        return "line"
    return None


class Outline:
    """The heading path of a document as its titles arrive.

    `push(title, style=...)` (a style ranked by first appearance, below `base`) or
    `push(title, level=...)` (markup: h1 = 1); both return the titles they close that never got
    a body or a subsection, each with the path above it — the caller keeps those as text, so a
    title that is the last line of a file, or a one-line note between two titles, is not lost."""

    def __init__(self, base: int = 0):
        self._base = base
        self._styles: dict[str, int] = {}
        self._stack: list[list] = []  # [level, title, used]

    def push(self, title: str, *, style: str | None = None,
             level: int | None = None) -> list[tuple[str, str | None]]:
        if level is None:
            level = self._styles.setdefault(style or "line", self._base + len(self._styles) + 1)
        closed = []
        while self._stack and self._stack[-1][0] >= level:
            _, old, used = self._stack.pop()
            if not used:
                closed.append((old, self._joined()))
        if self._stack:
            self._stack[-1][2] = True
        self._stack.append([level, title, False])
        return closed

    def end(self, style: str) -> list[tuple[str, str | None]]:
        """Close the open sections of `style` and deeper: a numbered clause that is no title
        ("2. Grant of Licence. Subject to...") still ends the section numbered before it."""
        closed = []
        level = self._styles.get(style)
        while level is not None and self._stack and self._stack[-1][0] >= level:
            _, old, used = self._stack.pop()
            if not used:
                closed.append((old, self._joined()))
        return closed

    def _joined(self) -> str | None:
        return " > ".join(title for _, title, _ in self._stack) or None

    def path(self) -> str | None:
        """The current heading path ("Terms > 8. Termination") for a body, marking its titles used."""
        for entry in self._stack:
            entry[2] = True
        return self._joined()

    def close(self) -> list[tuple[str, str | None]]:
        """The open title that never got a body (only the innermost can be), with its path."""
        if not self._stack or self._stack[-1][2]:
            return []
        _, title, _ = self._stack.pop()
        return [(title, self._joined())]
