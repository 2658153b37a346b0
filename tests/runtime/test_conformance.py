"""The backend contract, checked against every backend that loads on this machine."""

from __future__ import annotations

import json
import sys

import pytest
from edgeai_testing.serve import serving

from edgeai.config import Settings
from edgeai.runtime import generate, get_backend
from edgeai.runtime.base import KVState
from edgeai.runtime.remote import remote_spec
from edgeai.types import Chunk, GenParams, LoadOptions, Message, ModelSpec

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}


def loaded_echo():
    echo = get_backend("echo")
    echo.load(ModelSpec(id="echo", family="echo"), LoadOptions(n_ctx=4096))
    return echo


@pytest.fixture(scope="session")
def tiny_export_backend(tmp_path_factory):
    """`load(fmt)`: a backend over a tiny llama checkpoint exported to `fmt` (built once each).
    Random weights: the text is noise, but every contract below holds for noise too."""
    loaded: dict = {}

    def load(fmt: str):
        if fmt not in loaded:
            pytest.importorskip("transformers")
            if fmt == "coreml" and sys.platform != "darwin":
                pytest.skip("Core ML predicts only on macOS (coremltools has no runtime elsewhere)")
            pytest.importorskip({"onnx": "onnxruntime_genai", "mlx": "mlx_lm", "coreml": "coremltools"}[fmt])
            from edgeai_testing.tiny_models import build_tiny_hf

            from edgeai.converters import convert

            root = tmp_path_factory.mktemp(f"conformance-{fmt}")
            convert(build_tiny_hf(root / "hf", "llama"), root / fmt, to=fmt, check=False)
            backend = get_backend(fmt)
            backend.load(ModelSpec(id=f"tiny-{fmt}", artifacts={fmt: root / fmt}),
                         LoadOptions(n_ctx=2048, n_threads=2))
            loaded[fmt] = backend
        return loaded[fmt]

    yield load
    for backend in loaded.values():
        backend.close()


@pytest.fixture(params=["echo", "llamacpp", "remote", "remote-llamacpp", "onnx", "mlx", "coreml"])
def backend(request):
    if request.param == "echo":
        yield loaded_echo()
    elif request.param == "llamacpp":
        yield request.getfixturevalue("llama_backend")
    elif request.param in ("onnx", "mlx", "coreml"):
        yield request.getfixturevalue("tiny_export_backend")(request.param)
    else:  # the remote client against a live `edgeai serve` on loopback, over echo or the real model
        served = loaded_echo() if request.param == "remote" else request.getfixturevalue("llama_backend")
        settings = Settings(home=request.getfixturevalue("edgeai_home"))
        with serving(served, settings, model_id="served") as endpoint:
            remote = get_backend("remote")
            remote.load(remote_spec(f"{endpoint.url}#served"), LoadOptions())
            yield remote
            remote.close()


def ask(text: str) -> list[Message]:
    return [Message("user", text)]


def test_stream_yields_chunks_and_the_last_has_finish_reason_and_stats(backend):
    chunks = list(backend.stream(ask("Say hello."), GenParams(max_tokens=16, temperature=0)))
    assert chunks and all(isinstance(c, Chunk) for c in chunks)
    last = chunks[-1]
    assert last.finish_reason in ("stop", "length")
    assert all(c.finish_reason is None for c in chunks[:-1])
    assert last.prompt_tokens > 0 and last.completion_tokens > 0 and last.ttft_s > 0
    assert "".join(c.text for c in chunks).strip()


def test_max_tokens_holds(backend):
    result = generate(backend, ask("Write a long story about a lighthouse keeper."),
                      GenParams(max_tokens=5, temperature=0))
    assert result.final.completion_tokens <= 5
    assert result.final.finish_reason == "length"


def test_stop_sequence_ends_the_reply_and_is_not_shown(backend):
    full = generate(backend, ask("Write the word banana three times."),
                    GenParams(max_tokens=40, temperature=0)).text
    assert len(full) > 4
    stop = full[len(full) // 2: len(full) // 2 + 2]
    cut = generate(backend, ask("Write the word banana three times."),
                   GenParams(max_tokens=40, temperature=0, stop=(stop,)))
    assert cut.final.finish_reason == "stop"
    assert stop not in cut.text
    assert full.startswith(cut.text)


def test_same_seed_gives_the_same_text_from_a_fresh_context(backend):
    params = GenParams(max_tokens=24, temperature=1.0, seed=1234)
    first = generate(backend, ask("Invent a name for a cat."), params).text
    if isinstance(backend, KVState):
        backend.clear_state()  # a fresh context: nothing cached from the first run
    second = generate(backend, ask("Invent a name for a cat."), params).text
    assert first == second


@pytest.mark.parametrize("text", ["Hello, world! 123", "Grüße, 世界 — ça va? 🚀"])
def test_detokenize_inverts_tokenize(backend, text):
    ids = backend.tokenize(text)
    assert ids and all(isinstance(i, int) for i in ids)
    assert backend.detokenize(ids) == text


def test_closing_the_stream_stops_generation_and_the_backend_stays_usable(backend):
    stream = backend.stream(ask("Write a long story about the sea."),
                            GenParams(max_tokens=200, temperature=0))
    texts = []
    for chunk in stream:
        if chunk.text:
            texts.append(chunk.text)
        if len(texts) == 3:
            break
    stream.close()
    with pytest.raises(StopIteration):
        next(stream)
    again = generate(backend, ask("Say yes."), GenParams(max_tokens=8, temperature=0))
    assert again.final.finish_reason in ("stop", "length") and again.text


def test_json_schema_yields_valid_json(backend):
    if not backend.capabilities.grammar:
        pytest.skip(f"the {backend.name} backend has no constrained decoding")
    if backend.name in ("onnx", "mlx", "coreml"):
        pytest.skip("a random-weight tiny model never closes a free-text JSON string "
                    "(onnx guidance is tested in tests/converters/test_onnx.py)")
    result = generate(backend, ask("Describe a person as JSON."),
                      GenParams(max_tokens=80, temperature=0, response_format=SCHEMA))
    data = json.loads(result.text)
    assert isinstance(data["name"], str) and isinstance(data["age"], int)
