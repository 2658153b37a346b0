"""Speculative decoding on a scripted batched step: the round (draft, verify, accept, truncate),
the draft length policy, and the distribution claim.

The fake model's logits are a pure function of the text so far (no call-shape rounding), so
here greedy AND seeded sampled output must be token-identical with and without drafting; the
real model's near-ties are tests/runtime/test_speculative_real.py's business.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeai.runtime.decode import PromptPlan, SeqInput, TextDetokenizer
from edgeai.runtime.drafts import NgramDrafter, check_vocab
from edgeai.runtime.speculative import PROBE_EVERY, DraftPolicy, resolve_draft, speculate
from edgeai.types import GenParams

V = 6  # tokens 'a'..'f'; none ends the reply (the budget does)


class FakeSampler:
    """The target's chain: greedy, or one seeded draw per row from softmax(row / T)."""

    def __init__(self, params: GenParams, seed: int | None) -> None:
        self.t = params.temperature
        self.rng = np.random.default_rng(seed)

    def sample_row(self, row):
        if self.t <= 0:
            return int(np.argmax(row))
        p = np.exp((row - row.max()) / self.t)
        return int(self.rng.choice(len(row), p=p / p.sum()))


class FakeModel:
    """A `BatchedStep` over `logits_of(history)`; records every evaluate call's shape."""

    n_seq = 1
    prefill_step = 4
    end_tokens = ()

    def __init__(self, logits_of) -> None:
        self.logits_of = logits_of
        self.held: list[int] = []
        self.calls: list[tuple[int, int]] = []  # (ids evaluated, rows returned)

    def evaluate(self, inputs):
        (item,) = inputs
        rows = []
        wanted = {i % len(item.tokens) for i in item.logits_at}
        for i, token in enumerate(item.tokens):
            self.held.append(int(token))
            if i in wanted:
                rows.append(self.logits_of(self.held))
        self.calls.append((len(item.tokens), len(rows)))
        return [np.stack(rows).astype(np.float32)]

    def seq_length(self, seq):
        return len(self.held)

    def truncate(self, seq, length):
        del self.held[length:]

    def sampler(self, params, seed=None):
        return FakeSampler(params, seed)

    def is_end(self, token):
        return False


def markov(history):
    """Order-2 chain with some noise: repeats itself often (lookup drafts hit), not always."""
    a, b = history[-2:] if len(history) > 1 else (0, history[-1])
    row = np.zeros(V)
    row[(a * 2 + b + 1) % V] = 3.0
    row[(a + b * 3) % V] += 2.0 + 0.5 * ((len(history) * 7) % 3)  # sometimes the other one wins
    return row


class Scripted:
    """A drafter that proposes the ids `guess(history, n)` returns."""

    context = 1

    def __init__(self, guess) -> None:
        self.guess = guess

    def draft(self, history, n):
        return self.guess(list(history), n)[:n]

    def close(self):
        pass


NONE = Scripted(lambda h, n: [])


def decode(model, drafter, params, prompt=(1, 2, 3, 4, 5), policy=None, cost=(1.0, 0.02)):
    """Decode with `drafter`; an evaluate call of n ids takes cost[0] + n * cost[1] seconds on
    the policy's clock (default: a GPU-like flat cost, where drafting pays)."""
    model.held.clear()
    model.calls.clear()
    plan = PromptPlan(list(prompt), params.max_tokens, False)
    policy = policy or DraftPolicy(8, 0)
    policy.clock = fake_clock(model, fixed=cost[0], per_id=cost[1])
    chunks = list(speculate(model, 0, plan, params, drafter, policy=policy, eos=(),
                            detokenizer=TextDetokenizer(lambda ids: "".join(chr(97 + i) for i in ids))))
    return [t for c in chunks for t in c.token_ids], chunks[-1]


def greedy_continuation(logits_of):
    """The drafter that knows the target's greedy answer: every draft is right."""
    def guess(history, n):
        out = list(history)
        for _ in range(n):
            out.append(int(np.argmax(logits_of(out))))
        return out[len(history):]
    return guess


GREEDY = GenParams(max_tokens=60, temperature=0)


def test_greedy_output_is_identical_with_every_drafter():
    model = FakeModel(markov)
    plain, final = decode(model, NONE, GREEDY)
    assert len(plain) == 60 and final.drafted == 0
    assert all(n == 1 for n, _ in model.calls[2:])  # no drafts: one id per call
    for drafter in (NgramDrafter(), Scripted(greedy_continuation(markov)),
                    Scripted(lambda h, n: [(t + 1) % V for t in greedy_continuation(markov)(h, n)])):
        got, final = decode(model, drafter, GREEDY)
        assert got == plain
        assert final.drafted > 0
    assert final.accepted == 0  # the always-wrong drafter: every draft rejected, output unchanged


def test_a_rejected_draft_emits_the_targets_token_and_leaves_the_cache():
    model = FakeModel(markov)
    right = greedy_continuation(markov)
    # the first draft right, the second wrong: each round emits 2 tokens (1 accepted + the target's)
    half = Scripted(lambda h, n: right(h, 1) + [(right(h, 2)[1] + 1) % V] if n >= 2 else [])
    plain, _ = decode(model, NONE, GREEDY)
    got, final = decode(model, half, GREEDY, policy=DraftPolicy(2, 0))
    assert got == plain
    assert abs(final.drafted - 2 * final.accepted) <= 2  # half of the drafts (a 1-draft round at most)
    verifies = [c for c in model.calls if c[1] > 1]
    assert all(n == rows for n, rows in verifies)  # logits at every verified position
    assert sum(c == (3, 3) for c in verifies) >= 25  # last id + 2 drafts in one call
    # the cache holds the prompt and the reply, minus the last token (never evaluated) — no draft left
    assert model.held == [1, 2, 3, 4, 5] + plain[:len(model.held) - 5]
    assert len(model.held) <= 5 + len(plain)


def test_all_drafts_accepted_gives_the_bonus_token():
    model = FakeModel(markov)
    plain, _ = decode(model, NONE, GREEDY)
    got, final = decode(model, Scripted(greedy_continuation(markov)), GREEDY, policy=DraftPolicy(4, 0))
    assert got == plain
    assert final.accepted == final.drafted >= 35
    decode_calls = len(model.calls) - 2  # minus the prefill's two calls (5 ids, 4 per call)
    assert decode_calls <= 60 // 5 + 4  # k + 1 = 5 tokens per verify once the length grew to 4


def test_the_draft_length_grows_on_acceptance_and_shrinks_on_rejection():
    policy = DraftPolicy(10, 1)
    start = policy.length
    policy.result(1, start, start)
    assert policy.length == start + 2
    policy.result(1, policy.length, policy.length)
    policy.result(1, policy.length, policy.length)
    assert policy.length == 10  # capped at --draft-max
    policy.result(1, 10, 3)
    assert policy.length == 4  # what was accepted, plus one
    policy.result(1, 4, 0)
    assert policy.length == 1  # never under --draft-min (or 1)
    assert (policy.drafted, policy.accepted) == (3 * start + 6 + 14, 3 * start + 6 + 3)


def fake_clock(model, per_id: float, fixed: float = 0.0):
    """A clock where an evaluate call of n ids takes fixed + n * per_id seconds."""
    state = {"t": 0.0, "seen": 0}

    def now():
        while state["seen"] < len(model.calls):
            state["t"] += fixed + per_id * model.calls[state["seen"]][0]
            state["seen"] += 1
        return state["t"]
    return now


def test_drafting_stops_where_a_verify_costs_more_than_acceptance_brings():
    """A verify of n ids costs n steps (a slow CPU) and the drafts are right half the time:
    drafting cannot pay, so after a few rounds only the periodic probes draft."""
    model = FakeModel(markov)
    right = greedy_continuation(markov)
    coin = Scripted(lambda h, n: [t if i % 2 == 0 else (t + 1) % V for i, t in enumerate(right(h, n))])
    params = GenParams(max_tokens=200, temperature=0)
    plain, _ = decode(model, NONE, params)
    got, final = decode(model, coin, params, cost=(0.0, 1.0))
    assert got == plain
    assert 0 < final.drafted < 40  # the first rounds, then a probe every PROBE_EVERY steps
    assert sum(1 for n, rows in model.calls if rows > 1) <= 4 + 200 // PROBE_EVERY
    # the same drafts on a machine where a verify costs about one step (a GPU): it keeps drafting
    got, final = decode(model, coin, params)
    assert got == plain and final.drafted > 100


def test_sampled_output_keeps_the_seeded_draws_of_plain_decoding():
    """Each emitted token is one draw of the target's chain on its own row, so with the same seed
    (and shape-independent logits) drafting changes nothing at all, right or wrong drafts."""
    model = FakeModel(markov)
    params = GenParams(max_tokens=40, temperature=1.0, seed=7)
    plain, _ = decode(model, NONE, params)
    for drafter in (NgramDrafter(), Scripted(lambda h, n: [0] * n), Scripted(greedy_continuation(markov))):
        assert decode(model, drafter, params)[0] == plain


def test_sampled_tokens_keep_the_target_distribution_where_drafts_are_wrong_or_right():
    """Rejection sampling with a one-hot proposal: the drafted positions' tokens follow p, not
    the draft. Chi-square over 3,000 seeded replies (fixed seeds: the result never changes);
    accepting drafts without checking puts every drafted position on the draft and fails."""
    p = np.array([0.4, 0.25, 0.15, 0.1, 0.06, 0.04])
    model = FakeModel(lambda history: np.log(p))
    drafter = Scripted(lambda h, n: [1] * n)  # always drafts token 1 (p = 0.25)
    counts = np.zeros((2, V))
    for seed in range(3000):
        got, final = decode(model, drafter, GenParams(max_tokens=5, temperature=1.0, seed=seed),
                            policy=DraftPolicy(2, 0))
        assert final.drafted >= 2  # tokens 3 and 4: a verify of two drafts (after a plain step)
        counts[0, got[2]] += 1
        counts[1, got[3]] += 1
    for row in counts:
        expected = p * row.sum()
        chi2 = float(((row - expected) ** 2 / expected).sum())
        assert chi2 < 20.5, (row, expected)  # 5 degrees of freedom: p < 0.001
    assert abs(counts[0, 1] / 3000 - 0.25) < 0.03


def test_ngram_lookup_proposes_what_followed_the_latest_match():
    d = NgramDrafter(n_max=3, n_min=2)
    text = [5, 1, 2, 3, 9, 9, 1, 2, 3, 4, 7, 1, 2]
    assert d.draft(text, 3) == [3, 4, 7] and d.context == 2  # [1, 2] last followed by 3, 4, 7
    assert d.draft(text + [3], 2) == [4, 7] and d.context == 3
    assert d.draft([8, 8, 8], 4) == [8, 8, 8, 8]  # a cycle continues from the guess itself
    assert d.draft([1, 2, 3], 4) == []  # nothing repeats: no draft, no verify cost


def test_a_draft_model_of_another_vocabulary_is_refused_with_both_names():
    from edgeai.errors import BadInput

    def vocab(n, texts=None, bos=1):
        return {"type": 2, "n": n, "bos": bos, "eos": 2, "text": (texts or (lambda i: f"t{i}"))}

    check_vocab(vocab(100), vocab(120), "big", "small")  # padding rows only: fine
    for other, why in ((vocab(400), "100 vs 400 tokens"), (vocab(100, bos=0), "BOS/EOS"),
                       (vocab(100, lambda i: "x" if i == 50 else f"t{i}"), "token 50 differs")):
        with pytest.raises(BadInput, match=why) as info:
            check_vocab(vocab(100), other, "qwen-1.5b", "gemma-270m")
        assert "gemma-270m cannot draft for qwen-1.5b" in info.value.message


def test_auto_drafts_only_where_the_saved_tune_measured_a_win(tmp_path):
    from edgeai.tuned import ModelTuning, save_model_tuning

    model = "qwen2.5-coder-0.5b-instruct"
    assert resolve_draft("auto", tmp_path, model) == "off"  # nothing tuned
    save_model_tuning(tmp_path, model, ModelTuning(draft="ngram", draft_speedup=1.4))
    assert resolve_draft(None, tmp_path, model) == "ngram"
    assert resolve_draft("auto", tmp_path, model + ":q4_k_m") == "ngram"  # any quant of the model
    assert resolve_draft("off", tmp_path, model) == "off"  # a flag overrides
    save_model_tuning(tmp_path, model, ModelTuning(draft="ngram", draft_speedup=0.8))
    assert resolve_draft("auto", tmp_path, model) == "off"
    save_model_tuning(tmp_path, model, ModelTuning(draft="off", draft_speedup=None))
    assert resolve_draft("auto", tmp_path, model) == "off"


def test_seq_input_logits_only_at_the_verified_positions():
    model = FakeModel(markov)
    decode(model, Scripted(greedy_continuation(markov)), GenParams(max_tokens=12, temperature=0),
           policy=DraftPolicy(3, 0))
    for n, rows in model.calls[2:]:
        assert rows == n  # a verify asks for logits at its k + 1 positions, nothing in between
    assert SeqInput(0, [1]).logits_at == (-1,)


def test_the_draft_note_of_a_reply():
    from edgeai.runtime.speculative import draft_note
    from edgeai.tui.widgets.message import format_stats

    assert draft_note({"drafted": 57, "accepted": 42}) == "drafts 42/57 accepted (74%)"
    assert draft_note({"drafted": 0, "accepted": 0}) is None and draft_note({}) is None
    assert "drafts 42/57 accepted" in format_stats({"completion_tokens": 80, "drafted": 57, "accepted": 42})
    assert "drafts" not in format_stats({"completion_tokens": 80})  # not drafting: the line is as before
