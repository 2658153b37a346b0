"""Word error rate: the one scorer for speech tests and `edgeai bench stt`.

Boundary: two strings in, a rate out. Both sides go through openai-whisper's
`EnglishTextNormalizer` (the normalizer Whisper's own evaluations use: case, punctuation,
numbers, British/American spellings, contractions), then a word-level Levenshtein distance:
(substitutions + deletions + insertions) / reference words.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache


@lru_cache(maxsize=1)
def _normalizer() -> Callable[[str], str]:
    from whisper.normalizers import EnglishTextNormalizer  # imports torch: only when scoring

    return EnglishTextNormalizer()


def normalize(text: str) -> str:
    return _normalizer()(text)


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Word-level Levenshtein distance (two rows of the table: memory O(len(hyp)))."""
    previous = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        current = [i] + [0] * len(hyp)
        for j, other in enumerate(hyp, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != other))
        previous = current
    return previous[-1]


def word_errors(reference: str, hypothesis: str, normalized: bool = True) -> tuple[int, int]:
    """(word errors, reference words) after normalizing both sides."""
    if normalized:
        reference, hypothesis = normalize(reference), normalize(hypothesis)
    ref, hyp = reference.split(), hypothesis.split()
    return edit_distance(ref, hyp), len(ref)


def wer(reference: str, hypothesis: str, normalized: bool = True) -> float:
    errors, words = word_errors(reference, hypothesis, normalized)
    if words == 0:
        return 0.0 if errors == 0 else 1.0
    return errors / words
