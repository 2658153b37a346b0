"""Does the passage a citation names hold what its sentence says? Markers checked, moved, narrowed.

Boundary: pure functions over a written answer and the `Source`s placed in its prompt (plus an
optional `similarity(a, b) -> float`, the embedder's cosine); no store, no model, no UI. The
numbers stay the placed ones: `context.renumber_citations` numbers the result for the user.

Each marker belongs to a claim: the sentence (or line) it sits in, or the one before when it
trails the sentence ("... 52 minutes. [2]"); the 0.5B model also writes "[2] quoted text", where
the claim follows the marker. A claim is compared with every placed passage by its key terms:
numbers weigh most and must match, names (capitalised, or with digits) next, other words least,
and the words it shares with the question count half (they name the topic, not the fact). Then:

- a cited passage that supports the claim keeps its marker, untouched;
- else the marker moves to the passage that supports it best;
- else it becomes UNSUPPORTED ("[?]"): the model cited this sentence and no passage placed
  holds it. Sentences the model did not cite are not judged (a plain "I could not find it").

A supporting passage with a line span is narrowed to the lines that hold the claim's numbers and
names (`span`), its own span kept in `passage_span`. Where the words alone are unsure (some
overlap, under the bar) the embedder decides; it never overrules a number.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from edgeai.rag.context import _CITATION, _CODE, Source
from edgeai.rag.rerank import STOPWORDS

UNSUPPORTED = "[?]"
SUPPORTED = 0.5  # share of the claim's key-term weight a passage must hold
UNSURE = 0.3  # from here up to SUPPORTED, the embedder is asked
SIMILAR = 0.55  # MiniLM cosine of claim and passage that counts as support in the unsure band

_NUMBER = re.compile(r"(?<![\w.,:])\d+(?:[.,:]\d+)*(?![\w])")
_WORD = re.compile(r"[^\W\d_][\w]*")
_PIECE_END = re.compile(r"\n|(?<=[.!?])\s+")


@dataclass(frozen=True)
class Term:
    key: str
    weight: float
    number: bool


def _stem(word: str) -> str:
    word = word.lower()
    if len(word) > 4 and word.endswith("s"):
        word = word[:-1]
    return word[:5]  # "hovering"/"hover", "kilograms"/"kilogram": a crude stem is enough here


def _number(text: str) -> str:
    return re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 3,400 = 3400


def keys(text: str) -> set[str]:
    """The comparable forms of a text's numbers and words."""
    found = {"#" + _number(n) for n in _NUMBER.findall(text)}
    return found | {_stem(w) for w in _WORD.findall(text)}


def key_terms(claim: str, question: str = "") -> list[Term]:
    """What must be in a passage for it to hold the claim, with how much each matters."""
    asked = keys(question)
    terms: dict[str, Term] = {}
    for raw in _NUMBER.findall(claim):
        key = "#" + _number(raw)
        terms[key] = Term(key, 1.5 if key in asked else 3.0, True)
    for m in _WORD.finditer(claim):
        word = m.group(0)
        if word.lower() in STOPWORDS or len(word) < 3:
            continue
        key = _stem(word)
        name = (word[0].isupper() and m.start() > 0) or any(c.isdigit() or c == "_" for c in word)
        weight = (2.0 if name else 1.0) * (0.5 if key in asked else 1.0)
        if key not in terms or terms[key].weight < weight:
            terms[key] = Term(key, weight, False)
    return list(terms.values())


@dataclass(frozen=True)
class Support:
    coverage: float  # matched weight / total weight
    numbers_ok: bool  # the claim states no number, or at least one of them is in the passage

    @property
    def holds(self) -> bool:
        return self.numbers_ok and self.coverage >= SUPPORTED


def support(terms: Sequence[Term], text: str) -> Support:
    have = keys(text)
    total = sum(t.weight for t in terms)
    matched = sum(t.weight for t in terms if t.key in have)
    numbers = [t for t in terms if t.number]
    return Support(matched / total if total else 0.0,
                   not numbers or any(t.key in have for t in numbers))


# -- claims ------------------------------------------------------------------------------------
@dataclass
class Claim:
    text: str  # the sentence without its markers
    markers: list[re.Match[str]]


def claims(answer: str) -> list[Claim]:
    """The answer's marked claims, in order (markers inside code are not citations)."""
    code = [m.span() for m in _CODE.finditer(answer)]
    bounds, at = [], 0
    for m in _PIECE_END.finditer(answer):
        bounds.append((at, m.start(), "\n" in m.group(0)))
        at = m.end()
    bounds.append((at, len(answer), True))
    found: list[Claim] = []
    last: Claim | None = None
    for start, end, line_ends in bounds:
        piece = answer[start:end]
        markers = [m for m in _CITATION.finditer(answer, start, end)
                   if not any(a <= m.start() < b for a, b in code)]
        text = _CITATION.sub("", piece).strip(" \t.,;:")
        if not text and markers and last is not None:  # "... fact. [1]": the marker trails it
            if not last.markers:
                found.append(last)
            last.markers.extend(markers)
        elif text:
            last = Claim(text, markers)
            if markers:
                found.append(last)
        if line_ends:  # a marker alone on the next line ("[1] [2]") claims nothing checkable
            last = None
    return found


# -- the check ---------------------------------------------------------------------------------
def _numbers_in(marker: re.Match[str]) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", marker.group(2))]


def _line_range(source: Source) -> tuple[int, int] | None:
    """The passage's first and last line, when its text holds exactly those lines."""
    lines = source.lines
    if lines is None:
        return None
    first, _, last = lines.partition("-")
    start, end = int(first), int(last or first)
    return (start, end) if source.text.count("\n") == end - start else None


def supporting_lines(terms: Sequence[Term], text: str) -> tuple[int, int] | None:
    """The 0-based first and last line of `text` that hold the claim: every line with one of its
    matched numbers or names, else the line holding most of its weight."""
    rows = [keys(row) for row in text.split("\n")]
    strong = [t for t in terms if t.weight >= 2.0]
    hit = [i for i, row in enumerate(rows) if any(t.key in row for t in strong)]
    if not hit:
        weights = [sum(t.weight for t in terms if t.key in row) for row in rows]
        if not any(weights):
            return None
        hit = [max(range(len(rows)), key=lambda i: weights[i])]
    return min(hit), max(hit)


def attribute(answer: str, sources: Sequence[Source], question: str = "",
              similarity: Callable[[str, str], float] | None = None) -> tuple[str, list[Source]]:
    """The answer with every marked claim checked against the passages placed (markers kept,
    moved, or turned into UNSUPPORTED), and the sources with the cited lines narrowed."""
    placed = {s.number: s for s in sources}
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement) in the answer
    narrowed: dict[int, tuple[int, int]] = {}  # number -> 0-based lines of its text cited
    for claim in claims(answer):
        terms = key_terms(claim.text, question)
        if not terms:
            continue  # nothing to compare ("Yes [1]."): the marker stays as written
        scores = {n: support(terms, s.text) for n, s in placed.items()}
        holds = {n for n, sc in scores.items() if sc.holds}
        if not holds and similarity is not None:
            unsure = [n for n, sc in scores.items() if sc.numbers_ok and sc.coverage >= UNSURE]
            holds = {n for n in unsure if similarity(claim.text, placed[n].text) >= SIMILAR}
        cited = [n for m in claim.markers for n in _numbers_in(m)]
        kept = list(dict.fromkeys(n for n in cited if n in holds))
        if not kept and holds:
            kept = [max(sorted(holds), key=lambda n: scores[n].coverage)]
        for n in kept:
            lines = supporting_lines(terms, placed[n].text)
            if lines is not None:
                old = narrowed.get(n, lines)
                narrowed[n] = (min(old[0], lines[0]), max(old[1], lines[1]))
        if kept == list(dict.fromkeys(cited)) and len(kept) == len(cited):
            continue  # every number names a passage that holds the claim: untouched
        first = claim.markers[0]
        mark = f"[{', '.join(map(str, kept))}]" if kept else UNSUPPORTED
        edits.append((first.start() + len(first.group(1)), first.end(), mark))
        edits += [(m.start(), m.end(), "") for m in claim.markers[1:]]
    for start, end, text in sorted(edits, reverse=True):
        answer = answer[:start] + text + answer[end:]
    return answer, [_narrow(s, narrowed.get(s.number)) for s in sources]


def _narrow(source: Source, lines: tuple[int, int] | None) -> Source:
    whole = _line_range(source)
    if lines is None or whole is None:
        return source
    start, end = whole[0] + lines[0], whole[0] + lines[1]
    if (start, end) == whole:
        return source
    span = f"line {start}" if start == end else f"lines {start}-{end}"
    return replace(source, span=span, passage_span=source.span)


def with_consulted(shown: Sequence[Source], placed: Sequence[Source]) -> list[Source]:
    """The cited sources (renumbered) followed by every other passage placed, numbered after
    them, as consulted: the user can open each passage the model was given, cited or not."""
    if not any(s.cited for s in shown):
        return list(shown)
    cited = {(s.file, s.chunk_id, s.page, s.text) for s in shown}
    rest = [s for s in placed if (s.file, s.chunk_id, s.page, s.text) not in cited]
    return [*shown, *(replace(s, number=len(shown) + i, cited=False) for i, s in enumerate(rest, 1))]
