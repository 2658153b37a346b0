"""The rerank stage: a documented lexical/semantic score over the fused candidates.

No cross-encoder installs offline, so the reorder combines what fusion throws away. Reciprocal
rank fusion keeps only ranks: a chunk that is second in both lists beats one that is first by a
wide margin in one. Here each candidate gets

    score = cosine(query, chunk) + 0.35 * coverage + 0.15 * proximity

- cosine: the embedder's similarity (unit vectors: a dot product), the semantic evidence;
- coverage: the share of the query's content terms found in the chunk, each term weighted by
  how rare it is among the candidates (an error code or an identifier that only two chunks
  contain counts for more than a word they all share);
- proximity: how tightly the matched terms sit together (1.0 when they are adjacent, as in a
  quoted phrase; 0 when fewer than two matched).

The weights were set on the test corpus in `tests/rag/test_search.py` so that neither lexical term
alone can outvote a clear semantic gap (cosine differences of ~0.3).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

COVERAGE_WEIGHT = 0.35
PROXIMITY_WEIGHT = 0.15
_WORD = re.compile(r"[^\W_]+")
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just me more most
my myself no nor not now of off on once only or other our ours ourselves out over own same she should
so some such than that the their theirs them themselves then there these they this those through to
too under until up very was we were what when where which while who whom why will with would you
your yours yourself yourselves
""".split())


def words(text: str) -> list[str]:
    """Lowercased letter/digit runs: the same split FTS5's unicode61 tokenizer makes."""
    return _WORD.findall(text.lower())


def content_terms(text: str) -> list[str]:
    """The query's distinct words without stopwords (all of them if only stopwords are left)."""
    seen = list(dict.fromkeys(words(text)))
    kept = [w for w in seen if w not in STOPWORDS]
    return kept or seen


def _proximity(tokens: list[str], terms: set[str]) -> float:
    """n_matched / width of the smallest window holding every matched term, for >= 2 matched."""
    positions = [(i, t) for i, t in enumerate(tokens) if t in terms]
    matched = {t for _, t in positions}
    if len(matched) < 2:
        return 0.0
    best, counts, have, left = len(tokens), {}, 0, 0
    for pos, term in positions:
        counts[term] = counts.get(term, 0) + 1
        have += counts[term] == 1
        while have == len(matched):
            best = min(best, pos - positions[left][0] + 1)
            left_term = positions[left][1]
            counts[left_term] -= 1
            have -= counts[left_term] == 0
            left += 1
    return len(matched) / best


def rerank(query: str, texts: Sequence[str], cosines: Sequence[float]) -> list[float]:
    """One score per candidate (higher is better), in the order given."""
    terms = content_terms(query)
    token_lists = [words(t) for t in texts]
    if not terms or not texts:
        return [float(c) for c in cosines]
    token_sets = [set(t) for t in token_lists]
    n = len(texts)
    # rarity among the candidates, not the corpus: the pool is what the order is decided within
    weight = {t: math.log((n + 1) / (0.5 + sum(t in s for s in token_sets))) + 0.1 for t in terms}
    total = sum(weight.values())
    scores = []
    for tokens, present, cosine in zip(token_lists, token_sets, cosines, strict=True):
        found = {t for t in terms if t in present}
        coverage = sum(weight[t] for t in found) / total
        scores.append(float(cosine) + COVERAGE_WEIGHT * coverage
                      + PROXIMITY_WEIGHT * _proximity(tokens, found))
    return scores
