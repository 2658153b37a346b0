"""The ONNX target (onnxruntime-genai's model builder) and the `onnx` runtime backend.

Default run: tiny checkpoints (tests/edgeai_testing/tiny_models.py) through the real builder
and the real runtime. Each build is a subprocess that imports torch and transformers (~10 s),
so exports are made once per module and shared. The real-model round trips are `slow`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime_genai")

from edgeai.converters import convert  # noqa: E402
from edgeai.errors import BadInput, ContextOverflow, EdgeAIError  # noqa: E402
from edgeai.runtime import generate  # noqa: E402
from edgeai.runtime.onnx import OnnxBackend  # noqa: E402
from edgeai.types import GenParams, LoadOptions, Message, ModelSpec  # noqa: E402


@pytest.fixture(scope="module")
def exports(tiny_models, tmp_path_factory):
    """(family, quant, check) -> an export folder, built on first use and shared."""
    root = tmp_path_factory.mktemp("onnx")
    made: dict = {}

    def get(family: str, quant: str = "fp32", check: bool = True) -> Path:
        key = (family, quant, check)
        if key not in made:
            out = root / f"{family}-{quant}-{int(check)}"
            convert(tiny_models(family), out, to="onnx", quant=quant, check=check)
            made[key] = out
        return made[key]

    return get


def load(folder: Path, **opts) -> OnnxBackend:
    backend = OnnxBackend()
    backend.load(ModelSpec(id=folder.name, artifacts={"onnx": folder}),
                 LoadOptions(**{"n_ctx": 1024, "n_threads": 1, **opts}))
    return backend


@pytest.fixture(scope="module")
def llama(exports):
    backend = load(exports("llama"))
    yield backend
    backend.close()


def report(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text())


# -- the export ------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3", "gemma3"])
def test_fp32_export_matches_transformers_and_carries_its_files(exports, family):
    out = exports(family)
    card = report(out)
    assert card["numbers_checked"] and card["runner"].startswith("onnxruntime-genai")
    assert card["top1_agreement"] == 1.0
    assert card["max_abs_logit_delta"] < 1e-3
    assert card["greedy_equal"] is True
    assert abs(card["perplexity_ratio"] - 1.0) < 1e-4
    assert card["tokenizer_ids_match"] is True
    assert card["travelled"] == {"tokenizer": True, "chat_template": True, "license": True}
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"model.onnx", "model.onnx.data", "genai_config.json", "tokenizer.json", "LICENSE",
            "chat_template.jinja"} <= set(manifest["artifacts"])
    assert all((out / name).is_file() for name in manifest["artifacts"])
    assert not (out / "_builder_cache").exists()
    # the builder's tokenizer save records the source's absolute paths; an export must not
    tok_config = json.loads((out / "tokenizer_config.json").read_text())
    assert not any(isinstance(v, str) and v.startswith("/") for v in tok_config.values())


def test_gemma_export_keeps_its_sentencepiece_model_and_adds_bos(exports, tiny_models):
    from transformers import AutoTokenizer

    out = exports("gemma3")
    assert (out / "tokenizer.model").read_bytes() == (tiny_models("gemma3") / "tokenizer.model").read_bytes()
    backend = load(out)
    try:
        text = "To Sherlock Holmes she is always the woman."
        assert backend.prompt_tokens(text) == AutoTokenizer.from_pretrained(str(out))(text)["input_ids"]
        assert backend.prompt_tokens(text)[0] == 2  # Gemma's <bos>
        # the window (16 in the tiny model) is shorter than the prompt: the windowed cache copes
        result = generate(backend, "word " * 40, GenParams(max_tokens=4, temperature=0, ignore_eos=True))
        assert result.final.completion_tokens == 4
    finally:
        backend.close()


@pytest.mark.parametrize("family,quant", [("qwen2", "int4"), ("llama", "int8")])
def test_quantized_exports_are_smaller_and_generate(exports, family, quant):
    full = json.loads((exports(family) / "manifest.json").read_text())
    out = exports(family, quant, check=False)
    small = json.loads((out / "manifest.json").read_text())
    assert small["quant"] == quant and small["notes"]
    assert small["size_bytes"] < 0.6 * full["size_bytes"]
    backend = load(out)
    try:
        result = generate(backend, [Message("user", "Say hello.")],
                          GenParams(max_tokens=6, temperature=0, ignore_eos=True))
        assert result.final.completion_tokens == 6 and result.final.finish_reason == "length"
    finally:
        backend.close()


def test_unknown_quant_and_gemma_fp16_are_refused_before_any_work(tiny_models, tmp_path):
    with pytest.raises(BadInput, match="q4_k_m") as info:
        convert(tiny_models("llama"), tmp_path / "out", to="onnx", quant="q4_k_m")
    assert info.value.hint == "onnx takes: fp32 fp16 int8 int4 int4-kquant int4-klast int4-kquant-h4"
    with pytest.raises(BadInput, match="Gemma"):
        convert(tiny_models("gemma3"), tmp_path / "out", to="onnx", quant="fp16")
    assert list(tmp_path.iterdir()) == []


def test_an_architecture_the_target_was_not_validated_on_is_named(tiny_models, tmp_path):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(tiny_models("llama"), src)
    config = json.loads((src / "config.json").read_text())
    config["architectures"] = ["LlamaForSequenceClassification"]
    (src / "config.json").write_text(json.dumps(config))
    with pytest.raises(BadInput, match="unsupported architecture.*LlamaForSequenceClassification") as info:
        convert(src, tmp_path / "out", to="onnx")
    assert "Gemma 3" in info.value.hint
    assert not (tmp_path / "out").exists()


def test_a_failing_builder_becomes_one_line_naming_its_error():
    from edgeai.converters.onnx import run_builder
    from edgeai.converters.progress import Progress

    script = "print('Reading layer 0'); import sys; sys.stdout.flush(); raise KeyError('rope_type')"
    with pytest.raises(EdgeAIError, match=r"builder failed: KeyError: 'rope_type'") as info:
        run_builder([sys.executable, "-c", script], Progress())
    assert "\n" not in info.value.message


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_a_killed_conversion_leaves_no_builder_running(tmp_path):
    import os
    import signal
    import subprocess
    import time

    pid_file = tmp_path / "builder.pid"
    builder = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    parent = ("import sys; from edgeai.converters.onnx import run_builder; "
              "from edgeai.converters.progress import Progress; "
              f"run_builder([sys.executable, '-c', {builder!r}], Progress())")
    proc = subprocess.Popen([sys.executable, "-c", parent])
    deadline = time.monotonic() + 30
    while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    child = int(pid_file.read_text())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    pytest.fail("the builder outlived the killed conversion")


def test_gemma3_rope_fix_flattens_per_layer_type_settings():
    from transformers import Gemma3TextConfig

    from edgeai.converters.onnx_builder import flatten_rope

    config = flatten_rope(Gemma3TextConfig(rope_parameters={
        "full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
        "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0}}))
    assert config.rope_theta == 1_000_000.0 and config.rope_local_base_freq == 10_000.0
    assert config.rope_parameters["rope_type"] == "default"


# -- the runtime backend ---------------------------------------------------------------------
def test_backend_streams_with_stats_and_respects_max_tokens(llama):
    chunks = list(llama.stream([Message("user", "Say hello.")], GenParams(max_tokens=5, temperature=0)))
    last = chunks[-1]
    assert last.finish_reason in ("stop", "length") and all(c.finish_reason is None for c in chunks[:-1])
    assert 0 < last.completion_tokens <= 5 and last.prompt_tokens > 0 and last.ttft_s > 0
    assert last.peak_mem_mb > 0


def test_stop_sequence_cuts_the_reply_and_is_not_shown(llama):
    prompt, params = "Once upon a time", GenParams(max_tokens=30, temperature=0, ignore_eos=True)
    full = generate(llama, prompt, params).text
    stop = full[len(full) // 2: len(full) // 2 + 2]
    cut = generate(llama, prompt, GenParams(max_tokens=30, temperature=0, ignore_eos=True, stop=(stop,)))
    assert cut.final.finish_reason == "stop" and stop not in cut.text and full.startswith(cut.text)


def test_same_seed_same_text_other_seed_other_text(llama):
    def sample(seed):
        return generate(llama, "Once upon a time", GenParams(max_tokens=16, temperature=1.0, seed=seed,
                                                              ignore_eos=True)).text

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)


def test_closing_the_stream_mid_prefill_and_mid_reply_leaves_the_backend_usable(llama):
    stream = llama.stream("word " * 400, GenParams(max_tokens=50, temperature=0))
    assert next(stream).text == ""  # the first prefill step
    stream.close()
    stream = llama.stream("Once upon a time", GenParams(max_tokens=50, temperature=0, ignore_eos=True))
    texts = []
    for chunk in stream:
        texts.append(chunk.text)
        if len(texts) == 5:
            break
    stream.close()
    with pytest.raises(StopIteration):
        next(stream)
    assert texts
    again = generate(llama, "Once upon a time", GenParams(max_tokens=4, temperature=0, ignore_eos=True))
    assert again.final.completion_tokens == 4


def test_a_second_turn_evaluates_only_its_new_tokens_and_answers_as_a_fresh_one(exports):
    """Prefix reuse: the kept generator is rewound to the prompt both turns share; the reply is
    the one a fresh backend gives. A seeded sampled request starts clean (its seed repeats)."""
    backend, fresh = load(exports("qwen2"), n_ctx=512), load(exports("qwen2"), n_ctx=512)
    evaluated = []
    opened = backend._generator

    def spy(tokens, *rest):
        generator, done = opened(tokens, *rest)
        evaluated.append((len(tokens), done))
        return generator, done

    backend._generator = spy  # counts what each prefill had to evaluate
    greedy = GenParams(max_tokens=8, temperature=0, ignore_eos=True)
    turn1 = [Message("user", "Once upon a time there was a lighthouse")]
    first = generate(backend, turn1, greedy).text
    turn2 = [*turn1, Message("assistant", first), Message("user", "and then?")]
    second = generate(backend, turn2, greedy)
    (n1, done1), (n2, done2) = evaluated
    assert done1 == 0 and done2 >= n1  # all of turn 1's prompt came from the cache
    assert second.text == generate(fresh, turn2, greedy).text
    seeded = GenParams(max_tokens=8, temperature=1.0, seed=3, ignore_eos=True)
    assert generate(backend, turn2, seeded).text == generate(fresh, turn2, seeded).text
    assert evaluated[-1][1] == 0
    backend.close()
    fresh.close()


def test_eos_ends_the_reply_unless_ignored(exports, tmp_path):
    import shutil

    folder = tmp_path / "eos"
    shutil.copytree(exports("llama"), folder)
    backend = load(folder)
    first = int(backend.logits(backend.prompt_tokens("Once upon a time"))[-1].argmax())
    backend.close()
    config = json.loads((folder / "genai_config.json").read_text())
    config["model"]["eos_token_id"] = first  # the greedy reply now ends at once
    (folder / "genai_config.json").write_text(json.dumps(config))
    backend = load(folder)
    try:
        params = GenParams(max_tokens=8, temperature=0)
        ended = generate(backend, "Once upon a time", params)
        assert ended.final.finish_reason == "stop" and ended.final.completion_tokens == 0
        forced = generate(backend, "Once upon a time", replace(params, ignore_eos=True))
        assert forced.final.finish_reason == "length" and forced.final.completion_tokens == 8
    finally:
        backend.close()


def test_json_schema_guides_even_a_random_model(llama):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}, "color": {"enum": ["red", "blue"]}},
              "required": ["ok", "color"], "additionalProperties": False}
    result = generate(llama, [Message("user", "Answer as JSON.")],
                      GenParams(max_tokens=40, temperature=0.8, seed=3, response_format=schema))
    data = json.loads(result.text)
    assert isinstance(data["ok"], bool) and data["color"] in ("red", "blue")
    assert result.final.finish_reason == "stop"


def test_raw_text_never_becomes_control_tokens_but_templates_do(llama):
    im_start = llama._tok.token_to_id("<|im_start|>")
    assert im_start not in llama.tokenize("<|im_start|>user")
    assert llama.detokenize(llama.tokenize("Grüße, 世界 — ça va? 🚀")) == "Grüße, 世界 — ça va? 🚀"
    assert im_start in llama.prompt_tokens([Message("user", "hi")])


def test_logits_are_per_position_and_match_generation(llama):
    import numpy as np

    ids = llama.prompt_tokens("I went to the woods because I wished to live deliberately")
    logits = llama.logits(ids)
    assert logits.shape == (len(ids), 1024) and logits.dtype == np.float32
    greedy = generate(llama, "I went to the woods because I wished to live deliberately",
                      GenParams(max_tokens=1, temperature=0, ignore_eos=True))
    assert greedy.final.token_ids == (int(logits[-1].argmax()),)


def test_context_overflow_and_empty_prompt_fail_before_streaming(exports):
    backend = load(exports("llama"), n_ctx=64)
    try:
        with pytest.raises(ContextOverflow):
            backend.stream("word " * 100, GenParams(max_tokens=4))
        with pytest.raises(BadInput, match="empty"):
            backend.stream("   ", GenParams(max_tokens=4))
    finally:
        backend.close()


def test_a_folder_that_is_not_an_export_is_refused(tmp_path):
    with pytest.raises(BadInput, match="genai_config.json"):
        OnnxBackend().load(ModelSpec(id="x", artifacts={"onnx": tmp_path}), LoadOptions())
    (tmp_path / "genai_config.json").write_text("{}")
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(BadInput, match="could not load"):
        OnnxBackend().load(ModelSpec(id="x", artifacts={"onnx": tmp_path}), LoadOptions())


# -- real models (slow; run by hand, one at a time: int4-kquant needs ~11 GB) -------------------
@pytest.fixture(scope="module")
def real_settings(tmp_path_factory, session_models):
    """One home for the module, so each GGUF is imported to HF once for all its exports."""
    from edgeai.config import Settings

    return Settings(home=tmp_path_factory.mktemp("real-home"), models_home=session_models)


@pytest.mark.slow
@pytest.mark.parametrize("model,quant,ratio", [
    ("qwen2.5-coder-0.5b-instruct", "fp32", 1.001), ("qwen2.5-coder-0.5b-instruct", "int8", 1.02),
    ("qwen2.5-coder-0.5b-instruct", "int4", 1.25), ("qwen2.5-coder-0.5b-instruct", "int4-kquant", 1.10),
    ("gemma-3-270m", "fp32", 1.01)])
def test_real_model_round_trip(model, quant, ratio, real_settings, tmp_path):
    pytest.importorskip("edgeai.converters.hf")
    from edgeai.models import resolve

    try:
        gguf = resolve(model, real_settings).artifacts["gguf"]
    except EdgeAIError as exc:
        pytest.skip(f"{model} is not installed here: {exc.message}")
    out = tmp_path / "out"
    convert(gguf, out, to="onnx", quant=quant, settings=real_settings)
    card = report(out)
    print(json.dumps({k: card[k] for k in ("quant", "top1_agreement", "max_abs_logit_delta", "perplexity",
                                             "perplexity_reference", "perplexity_ratio", "greedy_equal",
                                             "size_bytes", "convert_seconds", "peak_rss_mb")}))
    assert card["perplexity_ratio"] <= ratio  # against llama.cpp on the GGUF itself
    if quant == "fp32":  # against transformers on the HF import: the same weights, exactly
        from edgeai.converters.source import hf_folder, open_source
        from edgeai.converters.validate import validate

        exact = validate(open_source(hf_folder(open_source(gguf), real_settings)), out)
        assert exact.top1_agreement >= 0.99 and exact.greedy_equal
    backend = load(out)
    try:
        if "qwen" in model:
            reply = generate(backend, [Message("user", "What is the capital of France?")],
                             GenParams(max_tokens=16, temperature=0))
            assert "Paris" in reply.text
        else:  # the base model: " the capital of the country of France. It is the largest city..."
            reply = generate(backend, "The capital of France is", GenParams(max_tokens=16, temperature=0))
            assert "France" in reply.text and "largest city" in reply.text
    finally:
        backend.close()
