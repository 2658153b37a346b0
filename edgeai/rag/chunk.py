"""Sections -> passages that fit the embedder: structure-aware packing under a token budget.

The boundary: token budgets and passage shapes; no file formats (that is `extract`), no vectors.

- Sections with the same (page, heading) are packed whole, in order, until the budget is
  reached; a passage never spans two pages or two headings, so a citation names one place.
- A section over the budget is cut at blank lines, then sentence ends, then line ends, then
  spaces, then (a single huge "word") characters; code and tables skip the sentence step. The
  pieces pack like sections, and `overlap_tokens` of trailing pieces are repeated at the start of
  the next passage when a cut falls inside one section (never across sections).
- `embed_text` is what gets embedded: the heading path on its own line, then `text`, so the
  vector knows where the passage sits ("Install > Linux"); `text` stays the verbatim source
  slice for citations. `count_tokens(embed_text) <= max_tokens` holds for every passage
  (measured, not estimated), so a caller whose `count_tokens` counts the special tokens, like
  MiniLM's, can pass the model's own limit.
- A passage of a recording (sections with `t_start`/`t_end`) spans from its first section's
  start to its last one's end, and never crosses a `CLIP_S` mark of the recording, so its
  citation ("at 0:42–0:58") points at something a person can listen to, not at a whole budget's
  worth (~1.5 minutes) of speech.
- `count_tokens` is called about once per piece plus once per passage (linear in the text).
- `units_of(passage)`: the small retrieval units of a long passage (windows of whole sentences,
  each with the heading path), embedded on their own so a short fact is not averaged away by
  the rest of its passage; search matches a unit and answers with its passage (small-to-big).
"""

from __future__ import annotations

import itertools
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from edgeai.rag.extract import Section

DEFAULT_OVERLAP = 32
# a text longer than this many characters per budget token is cut before it is counted (English
# runs 4-5 characters per word piece, so it is most likely over): cut pieces that pack back
# together cost no more tokenizing than a whole count, and a whole count of an over-long text is waste
_CUT_UNCOUNTED = 4
# group 1 is what lies between two pieces (a forward match: a lookbehind tried at every position is slow)
_SEPARATORS = {
    "para": re.compile(r"(\n[ \t\f\v]*\n\s*)"),
    "sentence": re.compile(r"[.!?…。！？][\"'”’)\]]?(\s+)"),
    "line": re.compile(r"(\s*\n\s*)"),
    "word": re.compile(r"(\s+)"),
}
_PROSE = ("para", "sentence", "line", "word", "char")
CLIP_S = 30.0  # seconds: a recording's passages break at every multiple (Whisper's own window)
UNIT_MIN_CHARS = 500  # a passage shorter than this is already small: its own vector is precise
UNIT_CHARS = 260  # about 50 word pieces: two or three sentences
_VERBATIM = ("para", "line", "word", "char")  # code and tables are never cut at a full stop


@dataclass(frozen=True)
class Passage:
    text: str  # the source slice, for citations
    embed_text: str  # heading path + text: what the embedder sees
    n_tokens: int  # count_tokens(embed_text)
    ordinal: int  # 0-based position in the file
    page: int | None = None
    heading: str | None = None
    line_start: int | None = None
    line_end: int | None = None
    t_start: float | None = None  # seconds into a recording (audio files)
    t_end: float | None = None


class _Piece(NamedTuple):
    section: Section
    no: int  # the section's position in its group: pieces of one section join with their own text
    start: int
    end: int
    cost: int  # tokens without the special tokens
    line_start: int | None
    line_end: int | None


def chunk_sections(sections: Iterable[Section], *, count_tokens: Callable[[str], int], max_tokens: int,
                   overlap_tokens: int = DEFAULT_OVERLAP, heading_prefix: bool = True) -> Iterator[Passage]:
    """Passages of at most `max_tokens` (by `count_tokens`, on `embed_text`), in file order."""
    base = count_tokens("")  # special tokens the counter adds to every text ([CLS], [SEP])
    room = max_tokens - base
    if room < 16:
        raise ValueError(f"max_tokens={max_tokens} leaves {room} tokens for text; use at least {base + 16}")
    if overlap_tokens < 0:
        raise ValueError(f"overlap_tokens must be 0 or more, not {overlap_tokens}")
    overlap = min(overlap_tokens, room // 2)  # the default stays valid for small budgets

    def cost(text: str) -> int:
        return count_tokens(text) - base

    ordinal = 0
    kept = (s for s in sections if s.text.strip())
    for (page, heading, _clip), group in itertools.groupby(kept, key=_place):
        prefix, prefix_cost = _prefix(heading, cost, room // 4) if heading_prefix else ("", 0)
        budget = room - prefix_cost

        def measure(window: list[_Piece], prefix: str = prefix) -> tuple[str, str, int] | None:
            text = _join(window)
            n = count_tokens(prefix + text)
            if n <= max_tokens:
                return text, prefix + text, n
            if len(window) == 1:  # a lone piece always fits without the prefix (it was measured)
                return text, text, count_tokens(text)
            return None

        pieces = _pieces(group, budget, cost)
        for window, (text, embed_text, n) in _pack(pieces, budget, overlap, measure):
            starts = [p.line_start for p in window if p.line_start is not None]
            ends = [p.line_end for p in window if p.line_end is not None]
            t_starts = [p.section.t_start for p in window if p.section.t_start is not None]
            t_ends = [p.section.t_end for p in window if p.section.t_end is not None]
            yield Passage(text, embed_text, n, ordinal, page, heading,
                          min(starts) if starts else None, max(ends) if ends else None,
                          min(t_starts) if t_starts else None, max(t_ends) if t_ends else None)
            ordinal += 1


def _place(section: Section) -> tuple[int | None, str | None, int | None]:
    """What a passage must not cross: a page, a heading, a `CLIP_S` mark of a recording."""
    clip = int(section.t_start // CLIP_S) if section.t_start is not None else None
    return section.page, section.heading, clip


def _prefix(heading: str | None, cost: Callable[[str], int], limit: int) -> tuple[str, int]:
    """The heading path line and its cost, outer levels dropped while it costs more than `limit`."""
    parts = heading.split(" > ") if heading else []
    while parts:
        prefix = " > ".join(parts) + "\n"
        if (c := cost(prefix)) <= limit:
            return prefix, c
        parts = parts[1:]
    return "", 0


def _pieces(sections: Iterable[Section], budget: int, cost: Callable[[str], int]) -> Iterator[_Piece]:
    for no, section in enumerate(sections):
        text = section.text
        levels = _VERBATIM if section.kind in ("code", "table") else _PROSE
        s, e = _strip(text, 0, len(text))
        # pieces get their own lines only where the text keeps the source's line breaks 1:1
        exact = (section.line_start is not None and section.line_end is not None
                 and text.count("\n") == section.line_end - section.line_start)
        line, pos = section.line_start, 0
        for a, b, c in _spans(text, s, e, levels, budget, cost):
            if not exact:
                yield _Piece(section, no, a, b, c, section.line_start, section.line_end)
                continue
            # pieces come in order, so counting newlines from the last one keeps this linear
            line += text.count("\n", pos, a)
            first = line
            line += text.count("\n", a, b)
            pos = b
            yield _Piece(section, no, a, b, c, first, line)


def _spans(text: str, s: int, e: int, levels: tuple[str, ...], budget: int,
           cost: Callable[[str], int], known: int | None = None) -> Iterator[tuple[int, int, int]]:
    """(start, end, cost) of consecutive slices of text[s:e], each within `budget`."""
    c = known if known is not None else None if e - s > _CUT_UNCOUNTED * budget else cost(text[s:e])
    if c is not None and c <= budget:
        yield s, e, c
        return
    level, rest = levels[0], levels[1:]
    if level == "char":
        yield from _char_spans(text, s, e, budget, cost)
        return
    parts = _split(text, s, e, _SEPARATORS[level])
    if len(parts) == 1:  # nothing to cut at this level: the next one, without counting again
        yield from _spans(text, *parts[0], rest, budget, cost, c if parts[0] == (s, e) else None)
        return
    for a, b in parts:
        yield from _spans(text, a, b, rest, budget, cost)


def _split(text: str, s: int, e: int, separator: re.Pattern) -> list[tuple[int, int]]:
    parts, prev = [], s
    for m in separator.finditer(text, s, e):
        if m.start(1) > prev:
            parts.append(_strip(text, prev, m.start(1)))
        prev = m.end(1)
    if prev < e:
        parts.append(_strip(text, prev, e))
    return [(a, b) for a, b in parts if b > a] or [(s, e)]


def _strip(text: str, s: int, e: int) -> tuple[int, int]:
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return s, e


def _char_spans(text: str, s: int, e: int, budget: int,
                cost: Callable[[str], int]) -> Iterator[tuple[int, int, int]]:
    """A run with no space in it, cut at the longest prefix that fits (found by doubling, then
    bisection: O(log n) counts per cut)."""
    while s < e:
        lo, hi, guess = 1, e - s, max(1, budget * 2)
        while guess < hi and cost(text[s:s + guess]) <= budget:
            lo, guess = guess, guess * 2
        hi = min(hi, guess)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if cost(text[s:s + mid]) <= budget:
                lo = mid
            else:
                hi = mid - 1
        yield s, s + lo, cost(text[s:s + lo])
        s += lo


def _join(window: list[_Piece]) -> str:
    """Pieces of one section keep the source text between them; sections are joined by a blank line."""
    parts = []
    for _, run in itertools.groupby(window, key=lambda p: p.no):
        run = list(run)
        parts.append(run[0].section.text[run[0].start:run[-1].end])
    return "\n\n".join(parts)


def _pack(pieces: Iterable[_Piece], budget: int, overlap: int,
          measure: Callable[[list[_Piece]], tuple[str, str, int] | None]):
    """Greedy windows of consecutive pieces within `budget`, each confirmed by `measure`."""
    buf: deque[_Piece] = deque()
    total = 0

    def window() -> tuple[list[_Piece], tuple[str, str, int]]:
        win, used = [], 0
        for piece in buf:
            if win and used + piece.cost > budget:
                break
            win.append(piece)
            used += piece.cost
        # the sum of the pieces' counts is an estimate (tokenizers are not always additive)
        while (measured := measure(win)) is None:
            win.pop()
        return win, measured

    def advance(n: int) -> None:
        """Drop the first n pieces, keeping a tail of them as overlap when the cut split a section."""
        nonlocal total
        keep = used = 0
        if n < len(buf):
            nxt = buf[n]
            while keep < n - 1:
                tail = buf[n - 1 - keep]
                if tail.no != nxt.no or used + tail.cost > overlap or used + tail.cost + nxt.cost > budget:
                    break
                used += tail.cost
                keep += 1
        for _ in range(n - keep):
            total -= buf.popleft().cost

    for piece in pieces:
        buf.append(piece)
        total += piece.cost
        while total > budget and len(buf) > 1:
            win, measured = window()
            yield win, measured
            advance(len(win))
    while buf:
        win, measured = window()
        yield win, measured
        if len(win) == len(buf):
            break
        advance(len(win))


def units_of(passage: Passage) -> list[str]:
    """Windows of consecutive sentences (lines where there are no sentences), about `UNIT_CHARS`
    each, prefixed with the heading path; none for a passage under `UNIT_MIN_CHARS`."""
    text = passage.text
    if len(text) < UNIT_MIN_CHARS:
        return []
    cuts = [m.end() for m in _SEPARATORS["sentence"].finditer(text)] + \
        [m.end() for m in _SEPARATORS["line"].finditer(text)]
    bounds = sorted({0, *cuts, len(text)})
    prefix = f"{passage.heading}\n" if passage.heading else ""
    units, start = [], 0
    for end in bounds[1:]:
        if end - start >= UNIT_CHARS or end == len(text):
            if text[start:end].strip():
                units.append(prefix + " ".join(text[start:end].split()))
            start = end
    return units
