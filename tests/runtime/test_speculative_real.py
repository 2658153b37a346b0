"""Speculative decoding on the real default model: greedy output identical with and without
drafting, except at near-ties of the batched-vs-single logit rounding (counted and printed, see
test_batched_step.py for the tolerance), and the draft model path (the 0.5B drafting for the 1.5B
when that is installed; for itself otherwise, which exercises the same code)."""

from __future__ import annotations

import numpy as np
import pytest

from edgeai.bench.texts import PASSAGES
from edgeai.runtime.decode import SeqInput
from edgeai.types import GenParams, Message

NEAR_TIE = 1.5  # test_batched_step.NEAR_TIE: a top-2 margin under it may flip between call shapes
QUOTE = [Message("user", "Repeat this paragraph exactly, but change the word 'times' to 'days':\n\n"
                 + PASSAGES[0])]
GREEDY = GenParams(max_tokens=96, temperature=0)


def tokens(backend, prompt, draft, path=None):
    backend.set_draft(draft, path)
    backend.clear_state()
    try:
        chunks = list(backend.stream(prompt, GREEDY))
    finally:
        backend.set_draft("off")
    return [t for c in chunks for t in c.token_ids], chunks[-1]


def first_difference(backend, prompt, plain, other) -> tuple[int | None, float | None]:
    """Where two greedy replies part, and the plain path's top-2 margin there."""
    at = next((i for i, (a, b) in enumerate(zip(plain, other, strict=False)) if a != b), None)
    if at is None:
        return None, None
    backend.clear_state()
    rows = backend.evaluate([SeqInput(0, backend.prompt_tokens(prompt) + plain[:at])])[0]
    top = np.sort(rows[0])[-2:]
    backend.clear_state()
    return at, float(top[1] - top[0])


def check_identical(backend, prompt, plain, other, label) -> int:
    """Tokens compared before a near-tie (all of them where none occurs); a difference anywhere
    else fails."""
    at, margin = first_difference(backend, prompt, plain, other)
    if at is None:
        assert len(other) == len(plain)
        return len(plain)
    assert margin < NEAR_TIE, f"{label}: greedy output differs at token {at}, top-2 margin {margin:.3f}"
    print(f"{label}: a near-tie at token {at} (top-2 margin {margin:.3f}): the replies part there")
    return at


@pytest.mark.model
def test_greedy_ngram_drafting_gives_the_plain_tokens(llama_backend, monkeypatch):
    """Drafting is made to pay whatever this machine's timings say (the policy measures verify
    costs as it goes and may rightly back off under load): the test is about the tokens."""
    from edgeai.runtime import speculative

    monkeypatch.setattr(speculative, "MARGIN", 0.0)
    plain, _ = tokens(llama_backend, QUOTE, "off")
    drafted, final = tokens(llama_backend, QUOTE, "ngram")
    compared = check_identical(llama_backend, QUOTE, plain, drafted, "ngram")
    assert compared >= 40, "too few tokens compared before a near-tie: pick another prompt"
    assert final.drafted > 20 and final.accepted / final.drafted > 0.5  # a quote: lookup drafts hit
    print(f"ngram: {final.accepted}/{final.drafted} drafts accepted, {compared} tokens compared")


@pytest.mark.model
@pytest.mark.slow
def test_a_draft_model_gives_the_plain_tokens(llama_backend, default_gguf, session_models, tmp_path,
                                              monkeypatch):
    """The 0.5B drafting for the 1.5B where the 1.5B is installed; else the 0.5B for itself (the
    same load, vocabulary check, cache truncation and greedy drafts). Drafting is made to pay
    always (a self-draft never does: the policy would rightly stop it)."""
    from edgeai.runtime import speculative

    monkeypatch.setattr(speculative, "MARGIN", 0.0)
    from edgeai.config import Settings
    from edgeai.errors import EdgeAIError
    from edgeai.models import resolve
    from edgeai.runtime.llamacpp import LlamaCppBackend
    from edgeai.types import LoadOptions, ModelSpec

    target = llama_backend
    try:
        big = resolve("qwen2.5-coder-1.5b-instruct", Settings(home=tmp_path, models_home=session_models))
        target = LlamaCppBackend()
        target.load(ModelSpec(id="1.5b", artifacts=big.artifacts), LoadOptions(n_ctx=2048, n_threads=2))
    except EdgeAIError as exc:
        print(f"the 1.5B is not installed here ({exc.message}): the 0.5B drafts for itself")
    try:
        prompt = QUOTE  # a confident answer: the draft model's p_min lets it draft
        plain, _ = tokens(target, prompt, "off")
        drafted, final = tokens(target, prompt, "draft", str(default_gguf))
        compared = check_identical(target, prompt, plain, drafted, "draft model")
        assert final.drafted > 20 and final.accepted > 0
        print(f"draft model: {final.accepted}/{final.drafted} accepted, {compared} tokens compared")
    finally:
        if target is not llama_backend:
            target.close()
