"""`serve --draft` on the real default model: the batcher drafts for a job that decodes alone
(its step = last token + drafts, accepted with the job's own sampler), the replies are the
greedy tokens of plain serving (up to a near-tie, see tests/runtime/test_speculative_real.py),
and several jobs at once do not draft."""

from __future__ import annotations

import threading

import pytest

from edgeai.bench.texts import PASSAGES
from edgeai.serve.batcher import Batcher, Job
from edgeai.types import GenParams, Message

pytestmark = pytest.mark.model

QUOTE = [Message("user", "Repeat this paragraph exactly, but change the word 'times' to 'days':\n\n"
                 + PASSAGES[0])]
GREEDY = GenParams(max_tokens=64, temperature=0)


@pytest.fixture(scope="module")
def backend(default_gguf):
    from edgeai.runtime.llamacpp import LlamaCppBackend
    from edgeai.types import LoadOptions, ModelSpec

    loaded = LlamaCppBackend()
    loaded.load(ModelSpec(id="default", artifacts={"gguf": default_gguf}),
                LoadOptions(n_ctx=2 * 1024, n_seq=2, n_threads=2))
    yield loaded
    loaded.close()


def serve(backend, prompts, draft: str):
    """Each prompt's (token ids, final chunk), submitted together to a batcher over `backend`."""
    backend.set_draft(draft)
    batcher = Batcher(backend, window=1024)
    results, done = {}, threading.Event()
    try:
        for i, prompt in enumerate(prompts):
            events = results.setdefault(i, [])

            def deliver(event, events=events):
                events.append(event)
                if len(results) == len(prompts) and all(
                        e and (e[-1].error or e[-1].chunk.finish_reason) for e in results.values()):
                    done.set()
            batcher.submit(batcher.prepare(Job(prompt, GREEDY, deliver)))
        assert done.wait(300)
    finally:
        batcher.close()
        backend.set_draft("off")
    out = []
    for i in range(len(prompts)):
        assert not any(e.error for e in results[i]), results[i]
        out.append(([t for e in results[i] for t in e.chunk.token_ids], results[i][-1].chunk))
    return out


def test_a_job_alone_drafts_and_keeps_the_greedy_tokens(backend, monkeypatch):
    """Drafting is made to pay whatever this machine's timings say (the policy measures verify
    costs as it goes and may rightly back off on a loaded CI runner: 8 drafts there once):
    the test is about the batcher drafting for a lone job and keeping its tokens."""
    from edgeai.runtime import speculative

    monkeypatch.setattr(speculative, "MARGIN", 0.0)
    [(plain, final)] = serve(backend, [QUOTE], "off")
    assert final.drafted is None  # not drafting: no draft statistics
    [(drafted, final)] = serve(backend, [QUOTE], "ngram")
    assert final.drafted > 10 and final.accepted / final.drafted > 0.5
    same = next((i for i, (a, b) in enumerate(zip(plain, drafted, strict=False)) if a != b), len(plain))
    assert same >= 40, f"the replies part at token {same}"  # a near-tie can part them; not before 40 here
    print(f"serve --draft ngram: {final.accepted}/{final.drafted} accepted, {same} tokens identical")


def test_two_jobs_at_once_decode_together_without_drafting_while_both_run(backend, monkeypatch):
    from edgeai.runtime import speculative

    monkeypatch.setattr(speculative, "MARGIN", 0.0)  # drafting pays once alone, whatever the timings
    calls = []
    evaluate = backend.evaluate

    def spy(inputs):
        calls.append([len(item.logits_at) for item in inputs])
        return evaluate(inputs)

    monkeypatch.setattr(backend, "evaluate", spy)
    story = [Message("user", "Write a haiku about the sea.")]
    (a, fa), (b, fb) = serve(backend, [QUOTE, story], "ngram")
    assert a and b and fa.finish_reason and fb.finish_reason
    together = [c for c in calls if len(c) > 1]
    assert together and all(rows <= 1 for c in together for rows in c)  # no drafts in a shared step
    assert any(c[0] > 1 for c in calls if len(c) == 1)  # drafts once a job is alone
