"""Markdown: markdown-it-py blocks -> sections with heading paths and source line numbers.

Streamed like plain text: lines are gathered into segments that end at a blank line outside a
fenced block (about 32k characters each) and each segment is parsed on its own, with the heading
path carried across. A fenced block longer than the hard cap is cut and reopened in the next
segment. Inline markup is dropped (link text stays, URLs go); code blocks are kept whole as one
section; each top-level list item is one section, tables one row per line; YAML front matter
is skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from edgeai.rag.extract import Notice, Section
from edgeai.rag.extractors.text import iter_lines

SEGMENT = 32_000
HARD_CAP = 1_000_000  # a segment is cut here even inside a fence, so memory stays bounded
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_TAG = re.compile(r"<[^>]*>")


def extract(path: Path, notice: Notice) -> Iterator[Section]:
    import markdown_it

    md = markdown_it.MarkdownIt("commonmark").enable("table")
    headings: list[tuple[int, str]] = []
    for lines, numbers in _segments(_without_front_matter(iter_lines(path, notice))):
        yield from _sections(md.parse("\n".join(lines) + "\n"), lines, numbers, headings)


def _segments(lines: Iterator[tuple[int, str]]) -> Iterator[tuple[list[str], list[int]]]:
    """Runs of lines that parse on their own, each with the source line number of every line."""
    seg: list[str] = []
    numbers: list[int] = []
    size = 0
    fence = ""  # the opening fence while inside a fenced block
    for lineno, line in lines:
        if fence:
            m = _FENCE.match(line)
            closes = m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence)
            if closes and not line[m.end():].strip():
                fence = ""
        elif m := _FENCE.match(line):
            fence = m.group(1)
        seg.append(line)
        numbers.append(lineno)
        size += len(line) + 1
        if (size >= SEGMENT and not fence and not line.strip()) or size >= HARD_CAP:
            yield seg, numbers
            seg, numbers, size = [], [], 0
            if fence:  # cut inside a fence: reopen it, numbered as the next real line
                seg, numbers, size = [fence], [lineno + 1], len(fence) + 1
    if seg:
        yield seg, numbers


def _without_front_matter(lines: Iterator[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    """Drops a YAML block that opens the file ("---" ... "---"); an unclosed one is kept as text."""
    first = next(lines, None)
    if first is None:
        return
    if first[1].strip() != "---":
        yield first
        yield from lines
        return
    held = [first]
    for lineno, line in lines:
        held.append((lineno, line))
        if line.strip() in ("---", "..."):
            break
        if len(held) > 200:
            yield from held
            break
    else:  # the file ended inside it: it was not front matter
        yield from held
    yield from lines


def _sections(tokens, lines: list[str], numbers: list[int],
              headings: list[tuple[int, str]]) -> Iterator[Section]:
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        end = _close(tokens, i)
        if tok.type == "heading_open":
            level = int(tok.tag[1:])
            while headings and headings[-1][0] >= level:
                headings.pop()
            text = " ".join(_inline(tokens[i + 1]).split())
            if text:
                headings.append((level, text))
        elif tok.map:
            kind, text = _block(tok, tokens[i:end + 1])
            if text.strip():
                yield from _with_lines(kind, text, tok.map, tokens[i:end + 1], lines, numbers, headings)
        i = end + 1


def _with_lines(kind, text, span, block, lines, numbers, headings) -> Iterator[Section]:
    heading = " > ".join(h for _, h in headings) or None
    if kind == "code" and block[0].type == "fence" and text:
        # the text starts after the opening fence line and ends before the closing one
        first = span[0] + 1
        last = min(first + text.count("\n"), len(numbers) - 1)
        yield Section(text, kind, heading=heading, line_start=numbers[first], line_end=numbers[last])
        return
    if kind != "list":
        yield Section(text, kind, heading=heading, **_lines(span, lines, numbers))
        return
    # a list: one section per top-level item, so long lists pack and cite item by item
    for tok, item in _items(block):
        item_text = _block_text(block[:1] + item)  # the list's opening token sets the nesting
        if item_text.strip():
            yield Section(item_text, "list", heading=heading, **_lines(tok.map, lines, numbers))


def _lines(span: list[int], lines: list[str], numbers: list[int]) -> dict[str, int]:
    start, end = span[0], min(span[1], len(lines))
    while end - 1 > start and not lines[end - 1].strip():  # a loose list's map takes the blank line
        end -= 1
    return {"line_start": numbers[start], "line_end": numbers[max(start, end - 1)]}


def _close(tokens, i: int) -> int:
    """Index of the token that closes the block opened at `i` (itself for a leaf like a fence)."""
    if tokens[i].nesting != 1:
        return i
    depth = 0
    for j in range(i, len(tokens)):
        depth += tokens[j].nesting
        if depth == 0:
            return j
    return len(tokens) - 1


def _items(block) -> Iterator[tuple[object, list]]:
    level = block[0].level + 1
    start = None
    for j, tok in enumerate(block):
        if tok.type == "list_item_open" and tok.level == level:
            start = j
        elif tok.type == "list_item_close" and tok.level == level and start is not None:
            yield block[start], block[start:j + 1]


def _block(tok, block) -> tuple[str, str]:
    if tok.type in ("fence", "code_block"):
        return "code", tok.content.rstrip("\n")
    if tok.type == "html_block":
        return "paragraph", " ".join(_TAG.sub(" ", tok.content).split())
    if tok.type == "table_open":
        rows = []
        for j, t in enumerate(block):
            if t.type == "tr_open":
                cells = [_inline(c) for c in block[j:_close(block, j)] if c.type == "inline"]
                rows.append(" | ".join(cells))
        return "table", "\n".join(rows)
    kind = {"bullet_list_open": "list", "ordered_list_open": "list", "blockquote_open": "quote"}
    return kind.get(tok.type, "paragraph"), _block_text(block)


def _block_text(block) -> str:
    """The inline texts of a block, one per line; list items get a marker and nest by indent."""
    out: list[str] = []
    depth, marker = 0, ""
    for tok in block:
        if tok.type in ("bullet_list_open", "ordered_list_open"):
            depth += 1
        elif tok.type in ("bullet_list_close", "ordered_list_close"):
            depth -= 1
        elif tok.type == "list_item_open":
            marker = f"{tok.info}{tok.markup} " if tok.info else f"{tok.markup} "
        elif tok.type in ("fence", "code_block"):
            out.append(tok.content.rstrip("\n"))
        elif tok.type == "inline":
            indent = "  " * max(0, depth - 1)
            out.append(indent + marker + _inline(tok).replace("\n", "\n" + indent))
            marker = ""
    return "\n".join(out)


def _inline(tok) -> str:
    parts = []
    for child in tok.children or ():
        if child.type in ("text", "code_inline", "text_special"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif child.type == "image":
            parts.append(child.content)  # the alt text
    return "".join(parts)
