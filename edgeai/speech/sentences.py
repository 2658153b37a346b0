"""Sentences out of text that is still being written: the splitter behind read-aloud streaming.

`SentenceSplitter.feed(chunk)` takes a reply token by token and returns each sentence the moment
it is known to be complete; `flush()` returns the tail when the reply ends. Pure stdlib, no
speech engine: the TTS layer (`tts.stream_speech`) decides what to do with a sentence.

A sentence ends at `.`, `!`, `?` or `…` (closing quotes and brackets included) followed by white
space, at a blank line (a reply's paragraphs) or at a line break before a list item. The white
space is what tells "3." in "3.14" from a full stop, so a sentence is released at most one chunk
after its full stop. A full stop after a known abbreviation ("Dr.", "e.g."), an initial
("J. Smith") or a list number ("2. ") is not an end.
"""

from __future__ import annotations

import re

# Lower-cased, without the final dot. Titles and Latin abbreviations an English reply uses
# mid-sentence; anything else followed by a dot and a space ends the sentence.
ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "etc", "e.g", "i.e", "cf",
    "approx", "fig", "figs", "no", "nos", "vol", "inc", "ltd", "co", "corp", "dept", "est", "jan",
    "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "a.m", "p.m",
    "u.s", "u.k", "ph.d", "gen", "gov", "sen", "rep", "rev", "capt", "lt", "col", "sgt",
})

# a full stop + white space; a blank line; a line break before a list item ("- ", "2. ")
_END = re.compile(r"""[.!?…]+["'”’)\]]*(?=\s)|\n[ \t]*\n|\n(?=[ \t]*(?:[-*+]|\d+[.)])[ \t])""")
_WORD_BEFORE = re.compile(r"""([\w.]+)\.$""")
_MARKDOWN = re.compile(r"""(\*\*|__|`+|^#{1,6}\s+|^\s*[-*+]\s+|^\s*>\s*)""", re.MULTILINE)


def speakable(text: str) -> str:
    """A reply's markdown marks removed (a voice would read "asterisk"), white space collapsed."""
    return " ".join(_MARKDOWN.sub("", text).split())


def _is_abbreviation(head: str) -> bool:
    """`head` ends with the dot in question: is that dot part of a word rather than a full stop?"""
    if re.fullmatch(r"\s*\d+\.", head):  # a numbered list item's "2." starts a sentence
        return True
    match = _WORD_BEFORE.search(head)
    if not match:
        return False
    word = match.group(1).lower()
    # "J." (an initial) and "U.S." style dotted capitals
    if len(word) == 1 and word.isalpha():
        return True
    return word in ABBREVIATIONS


class SentenceSplitter:
    """Incremental: feed text as it arrives, get complete sentences back as soon as they end."""

    def __init__(self) -> None:
        self._buffer = ""

    def feed(self, chunk: str) -> list[str]:
        self._buffer += chunk
        sentences: list[str] = []
        start = 0
        for match in _END.finditer(self._buffer):
            end = match.end()
            if "\n" not in match.group() and match.group().startswith(".") \
                    and len(match.group().rstrip("\"'”’)]")) == 1 \
                    and _is_abbreviation(self._buffer[start:match.start() + 1]):
                continue
            sentence = speakable(self._buffer[start:end])
            start = end
            if any(ch.isalnum() for ch in sentence):
                sentences.append(sentence)
        self._buffer = self._buffer[start:]
        return sentences

    def flush(self) -> list[str]:
        """The unfinished tail once the text is over (a reply that ends without a full stop)."""
        tail, self._buffer = speakable(self._buffer), ""
        return [tail] if any(ch.isalnum() for ch in tail) else []


def split_sentences(text: str) -> list[str]:
    """A whole text at once, by the same rules as the streaming splitter."""
    splitter = SentenceSplitter()
    return splitter.feed(text) + splitter.flush()
