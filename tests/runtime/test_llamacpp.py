"""llamacpp-specific behaviour on the real default model: template, prefix reuse, logits, guard."""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest

from edgeai.errors import ContextOverflow
from edgeai.runtime import generate
from edgeai.runtime.llamacpp_build import amx_guard, needs_amx_guard
from edgeai.types import GenParams, Message

HISTORY = [Message("system", "You are a helpful assistant."),
           Message("user", "Here is some text. " * 60 + "Summarize it in five words."),
           ]


def test_the_gguf_own_chat_template_is_used(llama_backend):
    text = llama_backend.render([Message("user", "Hi")])
    # Qwen2.5's template inserts its default system prompt when none is given
    assert text.startswith("<|im_start|>system\nYou are Qwen")
    assert text.endswith("<|im_start|>assistant\n")


@contextmanager
def counting_evaluated(backend):
    """Record how many tokens each evaluation call of the chat sequence takes."""
    seqs = backend._seqs
    evaluated = []
    original = seqs.append
    seqs.append = lambda seq, tokens: (evaluated.append(len(tokens)), original(seq, tokens))[1]
    try:
        yield evaluated
    finally:
        del seqs.append


def test_a_follow_up_turn_evaluates_only_the_new_tokens(llama_backend):
    with counting_evaluated(llama_backend) as evaluated:
        first = generate(llama_backend, HISTORY, GenParams(max_tokens=12, temperature=0))
        history_tokens = first.final.prompt_tokens
        evaluated.clear()
        follow_up = HISTORY + [Message("assistant", first.text), Message("user", "Shorter?")]
        second = generate(llama_backend, follow_up, GenParams(max_tokens=4, temperature=0))
    assert history_tokens > 300
    prompt_evals = sum(evaluated) - second.final.completion_tokens
    assert prompt_evals < 40, f"re-evaluated {prompt_evals} of {second.final.prompt_tokens} tokens"


def test_a_prompt_longer_than_the_window_is_refused_with_counts(llama_backend):
    with pytest.raises(ContextOverflow) as err:
        llama_backend.stream("word " * 3000, GenParams(max_tokens=4))
    assert err.value.n_ctx == 2048 and err.value.prompt_tokens > 2048


def test_logits_agree_with_greedy_generation(llama_backend):
    prompt = "The capital of France is Paris. The capital of Italy is"
    ids = llama_backend.prompt_tokens(prompt)
    logits = llama_backend.logits(ids)
    assert logits.shape == (len(ids), llama_backend._seqs.n_vocab)
    greedy = generate(llama_backend, prompt, GenParams(max_tokens=1, temperature=0))
    assert greedy.final.completion_tokens == 1
    assert llama_backend.detokenize([int(np.argmax(logits[-1]))]) == greedy.text


def _fake_llama_cpp(info: str):
    params = SimpleNamespace(use_extra_bufts=True)
    low = SimpleNamespace(llama_model_default_params=lambda: SimpleNamespace(**vars(params)))
    return SimpleNamespace(llama_print_system_info=lambda: info.encode(), llama_cpp=low)


def test_amx_guard_disables_extra_buffers_only_during_the_load_of_an_amx_build():
    fake = _fake_llama_cpp("CPU : AVX512 = 1 | AMX_INT8 = 1 | REPACK = 1 |")
    original = fake.llama_cpp.llama_model_default_params
    with amx_guard(fake) as active:
        assert active
        assert fake.llama_cpp.llama_model_default_params().use_extra_bufts is False
    assert fake.llama_cpp.llama_model_default_params is original
    assert original().use_extra_bufts is True


def test_amx_guard_leaves_builds_without_amx_alone():
    fake = _fake_llama_cpp("CPU : AVX2 = 1 | REPACK = 1 |")
    with amx_guard(fake) as active:
        assert not active
        assert fake.llama_cpp.llama_model_default_params().use_extra_bufts is True
    assert not needs_amx_guard("AMX_INT8 = 0")


def test_closing_the_stream_during_a_long_prefill_abandons_it(llama_backend):
    prompt = [Message("user", "Summarize this. " + "The tide comes in and goes out. " * 180)]
    total = len(llama_backend.prompt_tokens(prompt))
    stream = llama_backend.stream(prompt, GenParams(max_tokens=8, temperature=0))
    progress = next(stream)  # one prefill step evaluated
    assert progress.text == "" and progress.finish_reason is None
    stream.close()
    assert total > 1000
    assert llama_backend.seq_length(0) < total / 2  # the rest of the prompt was never evaluated
    # and the next turn reuses what was evaluated and completes normally
    assert generate(llama_backend, prompt, GenParams(max_tokens=4, temperature=0)).final.finish_reason


def test_a_saved_kv_state_restores_so_the_history_is_not_reprocessed(llama_backend, tmp_path):
    first = generate(llama_backend, HISTORY, GenParams(max_tokens=8, temperature=0))
    state = tmp_path / "conversation.kv"
    assert llama_backend.save_state(state) > 100_000
    llama_backend.clear_state()  # as after a restart or a switch to another conversation
    restored = llama_backend.restore_state(state)
    assert restored >= first.final.prompt_tokens
    with counting_evaluated(llama_backend) as evaluated:
        follow_up = HISTORY + [Message("assistant", first.text), Message("user", "Shorter?")]
        second = generate(llama_backend, follow_up, GenParams(max_tokens=4, temperature=0))
    assert sum(evaluated) - second.final.completion_tokens < 40
    # the same answer as without the saved state: the restored cache is the real one
    llama_backend.clear_state()
    cold = generate(llama_backend, follow_up, GenParams(max_tokens=4, temperature=0))
    assert cold.text == second.text


def test_a_state_file_from_elsewhere_is_ignored(llama_backend, tmp_path):
    junk = tmp_path / "junk.kv"
    junk.write_bytes(b"not a state file")
    assert llama_backend.restore_state(junk) == 0
    assert llama_backend.restore_state(tmp_path / "missing.kv") == 0
