"""The input layer and the text forms the detectors read.

Boundary: strings in, strings out (stdlib only). `validate` checks what a user (or a document)
sends before anything else looks at it: length, encoding (lone surrogates from undecodable bytes),
control characters and invisible Unicode (zero-width, bidi overrides, the tag block that smuggles
ASCII past a reader); it strips them or refuses, by policy. `variants` gives the detectors the
forms an attacker uses to hide words: NFKC-folded and lowercased, digits-for-letters undone
("ign0re"), letters spaced or hyphenated apart ("i-g-n-o-r-e") joined, tag characters decoded.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# C0 and C1 controls but tab, newline and carriage return; DEL
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# zero-width and formatting characters a reader cannot see; bidi embeddings/overrides/isolates;
# the soft hyphen; the Unicode tag block (U+E0000-U+E007F) that can spell hidden ASCII
_INVISIBLE = re.compile("[\u00ad\u180e\u200b\u200c\u200e\u200f\u202a-\u202e\u2060-\u2064"
                        "\u2066-\u2069\ufeff\U000e0000-\U000e007f]")
_ZWJ = "\u200d"  # joins emoji sequences (a family, a flag): kept between two symbols
_TAGS = re.compile("[\U000e0020-\U000e007e]+")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s",
                       "!": "i", "|": "i"})
# single letters kept apart: "i-g-n-o-r-e", "i.g.n.o.r.e" (one word each), "i g n o r e"
_HYPHENED = re.compile(r"\b(?:\w[\-_.*·]){2,}\w\b")
_SPACED = re.compile(r"\b(?:\w ){3,}\w\b")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Checked:
    """What the input layer made of a text: the text to use and what it found."""

    text: str
    problems: tuple[str, ...] = ()  # "too long", "invalid encoding", "control characters", ...
    stripped: int = 0  # characters removed


def _emoji_zwj(text: str, at: int) -> bool:
    """A zero-width joiner between emoji (a family, a profession) is part of the picture."""
    near = text[max(at - 1, 0):at] + text[at + 1:at + 2]
    return any(unicodedata.category(c) in ("So", "Sk") for c in near)


def validate(text: str, max_chars: int) -> Checked:
    """Find what the input layer objects to and the text with the unseen characters stripped.
    The caller decides (by policy) whether a problem refuses the input."""
    problems = []
    if len(text) > max_chars:
        problems.append(f"too long ({len(text):,} characters, the limit is {max_chars:,})")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        problems.append("invalid encoding (undecodable bytes)")
        text = text.encode("utf-8", "replace").decode("utf-8")
    cleaned = _CONTROL.sub("", text)
    if len(cleaned) != len(text):
        problems.append("control characters")
    unseen = _INVISIBLE.sub("", cleaned)
    if _ZWJ in unseen:
        unseen = "".join(c for i, c in enumerate(unseen) if c != _ZWJ or _emoji_zwj(unseen, i))
    if len(unseen) != len(cleaned):
        problems.append("invisible characters")
    return Checked(unseen, tuple(problems), len(text) - len(unseen))


def hidden_tags(text: str) -> str:
    """ASCII spelled in Unicode tag characters (invisible on screen, read by a model)."""
    return " ".join("".join(chr(ord(c) - 0xE0000) for c in m.group(0)) for m in _TAGS.finditer(text))


def fold(text: str) -> str:
    """NFKC (full-width and styled letters to plain), invisible characters out, lowercase,
    curly quotes straightened, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text).replace(_ZWJ, "")
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    return _SPACES.sub(" ", text.lower())


def variants(text: str) -> list[str]:
    """The forms a detector should read: the folded text, then (only where they differ) the
    text with digits-for-letters undone, with spaced-apart letters joined, and hidden tag text."""
    base = fold(text)
    out = [base]
    joined = _HYPHENED.sub(lambda m: re.sub(r"[\-_.*·]", "", m.group(0)), base)
    joined = _SPACED.sub(lambda m: m.group(0).replace(" ", ""), joined)
    for extra in (joined, _leet(base), _leet(joined), fold(hidden_tags(text))):
        if extra and extra not in out:
            out.append(extra)
    return out


def _leet(text: str) -> str:
    """Digits inside words read as letters ("prev1ous" -> "previous"); numbers stay numbers."""
    return re.sub(r"\b\w*[a-z]\w*\b", lambda m: m.group(0).translate(_LEET), text) \
        if any(c in text for c in "0134579@$!|") else text
