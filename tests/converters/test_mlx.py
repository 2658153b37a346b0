"""The MLX target (mlx-lm's convert) and the `mlx` runtime backend.

Default run: tiny checkpoints (tests/edgeai_testing/tiny_models.py) through the real mlx-lm
convert, validated against transformers, then loaded and streamed by the real backend (MLX on
the CPU here). Exports are made once per module and shared. The real-model checks are `slow`,
in test_real_models.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("mlx_lm")

from edgeai.converters import convert  # noqa: E402
from edgeai.converters import mlx as mlx_target  # noqa: E402
from edgeai.errors import BadInput, ContextOverflow, EdgeAIError, MissingExtra  # noqa: E402
from edgeai.runtime import generate, get_backend  # noqa: E402
from edgeai.runtime.mlx import MlxBackend, on_cpu  # noqa: E402
from edgeai.types import GenParams, LoadOptions, Message, ModelSpec  # noqa: E402


@pytest.fixture(scope="module")
def exports(tiny_models, tmp_path_factory):
    """(family, quant, check) -> an export folder, built on first use and shared."""
    root = tmp_path_factory.mktemp("mlx")
    made: dict = {}

    def get(family: str, quant: str | None = "fp32", check: bool = True) -> Path:
        key = (family, quant, check)
        if key not in made:
            out = root / f"{family}-{quant}-{int(check)}"
            convert(tiny_models(family), out, to="mlx", quant=quant, check=check)
            made[key] = out
        return made[key]

    return get


def load(folder: Path, n_ctx: int = 1024) -> MlxBackend:
    backend = get_backend("mlx")
    backend.load(ModelSpec(id=folder.name, artifacts={"mlx": folder}), LoadOptions(n_ctx=n_ctx))
    return backend


@pytest.fixture(scope="module")
def qwen(exports):
    backend = load(exports("qwen2"))
    yield backend
    backend.close()


def report(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text())


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def ask(text: str) -> list[Message]:
    return [Message("user", text)]


# -- the export ------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3", "gemma3"])
def test_fp32_export_matches_transformers_and_carries_its_files(exports, family):
    import mlx_lm

    out = exports(family)
    card = report(out)
    assert card["numbers_checked"] and card["runner"].startswith("mlx-lm")
    assert card["top1_agreement"] == 1.0, card["first_divergence"]
    assert card["max_abs_logit_delta"] < 1e-3
    assert card["greedy_equal"] is True
    assert abs(card["perplexity_ratio"] - 1.0) < 1e-4
    assert card["tokenizer_ids_match"] is True
    assert card["travelled"] == {"tokenizer": True, "chat_template": True, "license": True}
    made = manifest(out)
    assert made["format"] == "mlx" and made["quant"] == "fp32"
    assert set(made["toolchain"]) >= {"mlx", "mlx-lm"}
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json",
            "chat_template.jinja", "LICENSE"} <= set(made["artifacts"])
    assert all((out / name).is_file() for name in made["artifacts"])
    assert not (out / mlx_target.STAGING).exists()
    # transformers records the source's absolute tokenizer path; an export must not carry it
    tok_config = json.loads((out / "tokenizer_config.json").read_text())
    assert not any(isinstance(v, str) and v.startswith("/") for v in tok_config.values())
    model, tokenizer = mlx_lm.load(str(out))  # what a user does with the folder
    assert tokenizer.encode("The capital of France is")


def test_gemma_export_carries_its_sentencepiece_model_and_its_attention_layout(exports):
    out = exports("gemma3")
    assert (out / "tokenizer.model").is_file()
    assert json.loads((out / "config.json").read_text())["sliding_window_pattern"] == 6


def test_a_gemma_layout_other_than_mlx_lms_default_is_written_down(tmp_path):
    """transformers names each layer's attention; mlx-lm reads a period and assumes 6."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "gemma3_text", "layer_types": ["sliding_attention",
                                  "full_attention"] * 2}))
    mlx_target.record_sliding_pattern(config)
    assert json.loads(config.read_text())["sliding_window_pattern"] == 2


def test_validation_scores_the_whole_eval_text_on_every_device(exports, tiny_models):
    from transformers import AutoTokenizer

    from edgeai.converters import eval_text

    card = report(exports("qwen2"))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_models("qwen2")))
    whole = tokenizer(eval_text.TEXT)["input_ids"][:eval_text.PPL_TOKENS]
    assert card["perplexity_text_shortened"] is False
    assert card["perplexity_tokens"] == len(whole) > 400


def test_gemma_defaults_to_bf16(exports):
    out = exports("gemma3", None)
    assert manifest(out)["quant"] == "bf16"
    card = report(out)
    assert card["top1_agreement"] >= 0.95 and card["tokenizer_ids_match"]


@pytest.mark.parametrize("quant, bits", [("8bit", 8), ("4bit", 4)])
def test_quantized_exports_record_their_recipe_and_stay_close(exports, quant, bits):
    out = exports("llama", quant)
    config = json.loads((out / "config.json").read_text())
    assert config["quantization"]["bits"] == bits
    layer_bits = {v["bits"] for v in config["quantization"].values() if isinstance(v, dict)}
    # the 4-bit recipe is mlx-lm's mixed_4_6 (the LM head and sensitive layers in 6 bits, listed
    # per layer); 8-bit is uniform (one setting for every layer)
    assert layer_bits == ({4, 6} if quant == "4bit" else set())
    fp32_size = manifest(exports("llama"))["size_bytes"]
    assert manifest(out)["size_bytes"] < fp32_size * (0.45 if quant == "4bit" else 0.6)
    assert any(quant in note for note in manifest(out)["notes"])
    card = report(out)
    assert card["numbers_checked"] and card["tokenizer_ids_match"]
    assert card["perplexity_ratio"] < (1.02 if quant == "8bit" else 1.2)
    if on_cpu():  # MLX's quantized CPU kernels crawl: the card says it checked dense weights
        assert card["runner"].endswith("computed in fp32; quantized layers dequantized)")
    backend = load(out)
    try:
        assert generate(backend, "Once upon a time", GenParams(max_tokens=4, temperature=0,
                                                               ignore_eos=True)).final.completion_tokens == 4
    finally:
        backend.close()


def test_4bit_gives_a_tied_embedding_the_lm_heads_6_bits(exports):
    """A tied embedding is the LM head too: llama.cpp gives it Q6_K; mlx-lm's recipe would
    leave it at 4 bits (it raises only a module named lm_head)."""
    tied = exports("qwen2", "4bit")
    tied_bits = json.loads((tied / "config.json").read_text())["quantization"]
    untied_bits = json.loads((exports("llama", "4bit") / "config.json").read_text())["quantization"]
    assert "lm_head" not in tied_bits and tied_bits["model.embed_tokens"]["bits"] == 6
    assert untied_bits["lm_head"]["bits"] == 6 and untied_bits["model.embed_tokens"]["bits"] == 4
    assert mlx_target.NOTES["tied"] in manifest(tied)["notes"]


@pytest.mark.parametrize("family, quant", [("gemma3", "fp32"), ("llama", "4bit")])
def test_converting_twice_gives_byte_identical_files(exports, family, quant):
    first = exports(family, quant)
    second = exports(family, quant, check=False)
    names = manifest(first)["artifacts"]
    assert names == manifest(second)["artifacts"]
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_fp16_is_refused_for_gemma_and_nothing_is_written(tiny_models, tmp_path):
    with pytest.raises(BadInput, match="Gemma models overflow in fp16"):
        convert(tiny_models("gemma3"), tmp_path / "out", to="mlx", quant="fp16")
    assert not list(tmp_path.iterdir())


def test_an_unknown_quant_names_the_mlx_ones(tiny_models, tmp_path):
    with pytest.raises(BadInput) as err:
        convert(tiny_models("llama"), tmp_path / "out", to="mlx", quant="Q4_K_M")
    assert "fp32 bf16 fp16 8bit 4bit" in err.value.hint


def test_without_mlx_installed_the_error_says_how_to_install_it(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlx_lm", None)  # what an environment without the extra sees
    with pytest.raises(MissingExtra) as err:
        convert(tiny_models("llama"), tmp_path / "out", to="mlx", check=False)
    assert "pip install 'edgeai[mlx]'" in err.value.hint
    assert not list(tmp_path.iterdir())


def test_an_attention_layout_mlx_lm_cannot_hold_is_refused():
    assert mlx_target.sliding_pattern(["sliding_attention"] * 5 + ["full_attention"]) == 6
    with pytest.raises(EdgeAIError, match="cannot represent"):
        mlx_target.sliding_pattern(["full_attention", "sliding_attention"])


# -- the backend -----------------------------------------------------------------------------
def test_backend_streams_text_and_the_last_chunk_has_the_stats(qwen):
    chunks = list(qwen.stream(ask("Say hello."), GenParams(max_tokens=12, temperature=0)))
    last = chunks[-1]
    assert last.finish_reason in ("stop", "length") and all(c.finish_reason is None for c in chunks[:-1])
    assert last.prompt_tokens == len(qwen.prompt_tokens(ask("Say hello.")))
    assert 0 < last.completion_tokens <= 12 and last.ttft_s > 0 and last.peak_mem_mb > 0
    assert "".join(c.text for c in chunks).strip()
    assert qwen.capabilities.chat_template and qwen.capabilities.logits and not qwen.capabilities.grammar


def test_max_tokens_holds(qwen):
    result = generate(qwen, ask("Write a long story."), GenParams(max_tokens=5, temperature=0,
                                                                  ignore_eos=True))
    assert result.final.completion_tokens == 5 and result.final.finish_reason == "length"


def test_a_stop_sequence_ends_the_reply_and_is_not_shown(qwen):
    params = GenParams(max_tokens=30, temperature=0)
    full = generate(qwen, ask("Write the word banana three times."), params).text
    stop = full[len(full) // 2: len(full) // 2 + 2]
    cut = generate(qwen, ask("Write the word banana three times."),
                   GenParams(max_tokens=30, temperature=0, stop=(stop,)))
    assert cut.final.finish_reason == "stop"
    assert stop not in cut.text and full.startswith(cut.text)


def test_the_same_seed_gives_the_same_text_and_another_seed_another(qwen):
    def sample(seed: int) -> str:
        return generate(qwen, ask("Invent a name for a cat."),
                        GenParams(max_tokens=16, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0,
                                  seed=seed)).text

    assert sample(1234) == sample(1234)
    assert sample(1234) != sample(99)


def test_a_reused_cache_gives_what_a_fresh_backend_gives(qwen, exports):
    params = GenParams(max_tokens=10, temperature=0)
    history = [Message("user", "Hi."), Message("assistant", "Hello there."), Message("user", "And then?")]
    generate(qwen, history[:1], params)  # the cache now holds the first turn
    warm = generate(qwen, history, params)
    fresh_backend = load(exports("qwen2"))
    try:
        fresh = generate(fresh_backend, history, params)
    finally:
        fresh_backend.close()
    assert warm.text == fresh.text and warm.final.completion_tokens == fresh.final.completion_tokens


def test_closing_the_stream_stops_generation_and_the_backend_stays_usable(qwen):
    stream = qwen.stream(ask("Write a long story about the sea."),
                         GenParams(max_tokens=200, temperature=0, ignore_eos=True))
    texts = []
    for chunk in stream:
        if chunk.text:
            texts.append(chunk.text)
        if len(texts) == 3:
            break
    stream.close()
    with pytest.raises(StopIteration):
        next(stream)
    assert len(qwen._cached) < len(qwen.prompt_tokens(ask("Write a long story about the sea."))) + 10
    again = generate(qwen, ask("Say yes."), GenParams(max_tokens=8, temperature=0))
    assert again.final.finish_reason in ("stop", "length") and again.text


def test_a_long_prompt_prefills_in_steps_and_closing_abandons_it(qwen):
    prompt = "the sea and the sky " * 120  # several PREFILL_STEPs
    stream = qwen.stream(prompt, GenParams(max_tokens=4, temperature=0))
    first = next(stream)
    assert first.text == "" and first.finish_reason is None  # a prefill step, not a token
    stream.close()
    assert 0 < len(qwen._cached) < len(qwen.prompt_tokens(prompt))


@pytest.mark.parametrize("text", ["Hello, world! 123", "Grüße, 世界 — ça va? 🚀"])
def test_detokenize_inverts_tokenize(qwen, text):
    ids = qwen.tokenize(text)
    assert ids and qwen.detokenize(ids) == text


def test_raw_text_keeps_control_tokens_literal(qwen):
    ids = qwen.tokenize("<|im_end|>")
    assert len(ids) > 1  # spelled out, not the end-of-turn token


def test_logits_extend_the_previous_call_exactly(qwen, exports):
    import numpy as np

    ids = qwen.prompt_tokens("The capital of France is Paris, and")
    qwen.logits(ids[:-3])
    extended = qwen.logits(ids)  # evaluates only the last 3 tokens, on the kept cache
    fresh_backend = load(exports("qwen2"))
    try:
        fresh = fresh_backend.logits(ids)
    finally:
        fresh_backend.close()
    assert extended.shape == fresh.shape == (len(ids), 1024) and extended.dtype == np.float32
    assert np.abs(extended - fresh).max() < 1e-4


def test_bad_requests_are_refused_clearly(qwen):
    with pytest.raises(BadInput, match="JSON schema"):
        qwen.stream(ask("Describe a person."), GenParams(response_format={"type": "object"}))
    with pytest.raises(BadInput, match="empty"):
        qwen.stream("   ", GenParams())
    with pytest.raises(ContextOverflow):
        qwen.stream("word " * 2000, GenParams())


def test_a_folder_that_is_not_an_mlx_model_is_refused(tmp_path):
    with pytest.raises(BadInput, match="not an MLX model folder"):
        load(tmp_path)
