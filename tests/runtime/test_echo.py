"""The echo backend's own promises: scripts, reasoning split, prefill progress, timing fields."""

from edgeai.runtime import generate, get_backend
from edgeai.types import GenParams, LoadOptions, Message, ModelSpec


def loaded(delay: float = 0.0):
    echo = get_backend("echo")
    echo.load(ModelSpec(id="echo", defaults={"token_delay": delay}), LoadOptions(n_ctx=4096))
    return echo


def test_scripted_reply_with_a_think_block_splits_into_reasoning_and_text():
    echo = loaded()
    echo.enqueue("<think>The user greets me.</think>\n\nHello there!")
    result = generate(echo, [Message("user", "hi")], GenParams(temperature=0))
    assert result.reasoning == "The user greets me."
    assert result.text == "Hello there!"


def test_timing_fields_are_realistic_with_a_token_delay():
    result = generate(loaded(delay=0.002), [Message("user", "timing")], GenParams(temperature=0))
    final = result.final
    assert final.completion_tokens == len("Echo: timing")
    assert 0 < final.ttft_s and 100 < final.gen_tps < 1000
    assert final.prompt_tps == final.prompt_tokens / final.ttft_s


def test_long_prompts_yield_progress_chunks_before_any_text():
    stream = loaded().stream("x" * 200, GenParams(temperature=0))
    first = next(stream)
    assert first.text == "" and first.finish_reason is None
    stream.close()
