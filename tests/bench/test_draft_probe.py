"""The drafting probe's decision (bench/draft.py): `auto` drafts only where it wins overall and
loses nowhere beyond noise."""

from __future__ import annotations

import pytest

from edgeai.bench.draft import decide, summarize


def runs(task, draft, speeds, drafted=10, accepted=8, same=True):
    return [{"task": task, "draft": draft, "gen_tps": s, "drafted": None if draft == "off" else drafted,
             "accepted": None if draft == "off" else accepted, "n": 96, "same": same} for s in speeds]


def rows_for(quote_on, story_on, candidate="ngram"):
    found = (runs("quote", "off", [20, 21, 19]) + runs("quote", candidate, quote_on)
             + runs("story", "off", [20, 20, 20]) + runs("story", candidate, story_on))
    return summarize(found, candidate, threads=2)


def test_summarize_gives_medians_the_speedup_and_the_accept_rate():
    rows = rows_for([30, 31, 29], [20, 19, 21])
    quote = next(r for r in rows if r["task"] == "quote" and r["draft"] == "ngram")
    assert quote["gen_tps"] == 30 and quote["speedup"] == pytest.approx(30 / 20, abs=1e-3)
    assert (quote["drafted"], quote["accepted"], quote["accept_rate"]) == (30, 24, 0.8)
    assert quote["same_tokens"] is True and quote["threads"] == 2


@pytest.mark.parametrize("quote_on, story_on, want", [
    ([30, 31, 29], [20, 19, 21], "ngram"),  # wins on quotes, even on stories
    ([30, 31, 29], [17, 17, 17], "off"),  # a story 15% slower: auto would lose there
    ([21, 21, 21], [20, 20, 20], "off"),  # no loss, but no win worth the name
])
def test_decide_turns_drafting_on_only_where_it_wins_and_loses_nowhere(quote_on, story_on, want):
    choice, speedup = decide(rows_for(quote_on, story_on))
    assert choice == want and speedup is not None


def test_nothing_measured_keeps_drafting_off():
    assert decide([{"draft": "ngram", "threads": 1, "error": "cannot draft"}]) == ("off", None)
