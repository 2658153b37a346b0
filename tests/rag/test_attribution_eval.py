"""The attribution evaluation on the real default model (see `edgeai_testing.attribution`): every
corpus question through the chat engine's RAG turn, greedy; prints the shares (`-s` shows them)."""

from __future__ import annotations

import pytest
from edgeai_testing.attribution import run

pytestmark = [pytest.mark.slow, pytest.mark.model]


def test_citation_markers_point_at_the_passage_holding_the_fact(default_gguf, tmp_path):
    before, after = run(tmp_path, progress=lambda line: None)
    print(f"\nbefore: {before.summary()}\nafter:  {after.summary()}")
    assert after.answers == 28 and after.fact_markers >= 20
    # the target, on markers whose sentence states a known fact of the corpus
    assert after.fact_share >= 0.9 and after.fact_share > before.fact_share
