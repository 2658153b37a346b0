"""The Core ML target and the `coreml` backend, on tiny checkpoints the tests build.

Core ML cannot predict off macOS, so here an export is checked by its spec (inputs, shape
ranges, ops, compression) and the backend's refusal is checked for real; the backend's own
work (template, tokens, sampling, stops, streaming) runs against the torch model the package
was converted from, standing in for the Core ML runtime (the one true edge: a Mac).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from edgeai_testing.tiny_models import build_tiny_hf

from edgeai.converters import convert
from edgeai.errors import BackendUnavailable, BadInput, ContextOverflow, EdgeAIError
from edgeai.runtime import generate, get_backend
from edgeai.runtime.coreml import CoreMLBackend
from edgeai.types import GenParams, LoadOptions, Message, ModelSpec

ON_MAC = sys.platform == "darwin"
LINEARS = 2 * 7  # tiny models: 2 layers x (q, k, v, o, gate, up, down)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {family: build_tiny_hf(root / family, family) for family in ("llama", "qwen2", "gemma3")}


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory):
    """export(family, quant) -> OUT, each converted once per module."""
    root = tmp_path_factory.mktemp("coreml")
    done: dict[tuple[str, str], Path] = {}

    def export(family: str, quant: str) -> Path:
        if (family, quant) not in done:
            out = root / f"{family}-{quant}"
            convert(tiny[family], out, to="coreml", quant=quant)
            done[family, quant] = out
        return done[family, quant]

    return export


def report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def spec_of(out: Path) -> dict:
    """The report's spec section (on macOS the report has numbers instead: check it directly)."""
    from edgeai.converters.coreml_spec import check_spec

    return check_spec(out) if ON_MAC else report(out)["spec"]


def package_size(out: Path) -> int:
    return sum(p.stat().st_size for p in next(out.glob("*.mlpackage")).rglob("*") if p.is_file())


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma3"])
def test_fp16_export_carries_what_an_app_needs_and_passes_the_spec_checks(exported, family):
    out = exported(family, "fp16")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["artifacts"][0] == f"{family}.mlpackage"
    assert {"tokenizer.json", "tokenizer_config.json", "LICENSE", "config.json"} <= set(manifest["artifacts"])
    card = report(out)
    if not ON_MAC:
        assert card["numbers_checked"] is False and "only on macOS" in card["why_not_checked"]
    assert card["travelled"] == {"tokenizer": True, "chat_template": True, "license": True}
    spec = spec_of(out)
    assert spec["passed"], spec["checks"]
    assert spec["deployment_target"] == "macOS14/iOS17" and spec["specification_version"] == 8
    (ids,) = spec["inputs"]
    assert ids["name"] == "input_ids" and ids["dtype"] == "INT32" and ids["ranges"][-1] == [1, 2048]
    assert [o["name"] for o in spec["outputs"]] == ["logits"]
    assert spec["compression_ops"] == {}
    assert spec["ops_total"] > 100 and len(spec["top_ops"]) == 12
    # Gemma overflows in fp16: it is computed in fp32 and the export says so
    assert spec["outputs"][0]["dtype"] == ("FLOAT32" if family == "gemma3" else "FLOAT16")
    assert (family == "gemma3") == any("fp32 compute precision" in n for n in manifest["notes"])
    assert any("no KV cache" in n for n in manifest["notes"])


@pytest.mark.parametrize(("family", "quant", "op", "shrink", "target"), [
    ("llama", "int8", "constexpr_affine_dequantize", 0.6, "macOS14/iOS17"),
    ("qwen2", "int4-block", "constexpr_blockwise_shift_scale", 0.4, "macOS15/iOS18"),  # per-block: iOS 18+
])
def test_compressed_exports_shrink_and_carry_their_compression_ops(exported, family, quant, op, shrink,
                                                                   target):
    out = exported(family, quant)
    spec = spec_of(out)
    assert spec["passed"], spec["checks"]
    assert spec["quant"] == quant and spec["deployment_target"] == target
    assert spec["compression_ops"].get(op, 0) >= LINEARS
    assert package_size(out) < shrink * package_size(exported(family, "fp16"))


def compressed(exported, family: str, quant: str, dest: Path) -> Path:
    from edgeai.converters.coreml import compress
    from edgeai.runtime.coreml import import_coremltools

    fp16 = next(exported(family, "fp16").glob("*.mlpackage"))
    model = import_coremltools().models.MLModel(str(fp16), skip_model_load=True)
    compress(model, quant, fp32_weights=family == "gemma3", notes=[]).save(str(dest))
    return dest


def test_compressing_an_fp16_package_gives_the_exports_own_weights(exported, tmp_path):
    """`compress` and the export's in-conversion pass produce the same bytes, so the remaining
    quants are checked through `compress` on the fp16 packages (conversion is the slow part)."""
    package = compressed(exported, "llama", "int8", tmp_path / "int8.mlpackage")
    weights = "Data/com.apple.CoreML/weights/weight.bin"
    exported_package = next(exported("llama", "int8").glob("*.mlpackage"))
    assert (package / weights).read_bytes() == (exported_package / weights).read_bytes()


@pytest.mark.parametrize(("family", "quant", "op", "shrink"), [
    ("llama", "palette4", "constexpr_lut_to_dense", 0.35),
    ("gemma3", "palette4", "constexpr_lut_to_dense", 0.2),  # from fp32 weights, without scikit-learn
])
def test_other_compressions_shrink_the_package_and_add_their_ops(exported, tmp_path, family, quant, op,
                                                                 shrink):
    from edgeai.converters.coreml_spec import summarize

    summary = summarize(compressed(exported, family, quant, tmp_path / "c.mlpackage"))
    assert summary["compression_ops"].get(op, 0) >= LINEARS
    fp16 = next(exported(family, "fp16").glob("*.mlpackage"))
    assert summary["size_bytes"] < shrink * summarize(fp16)["size_bytes"]


def test_palette_of_fp32_weights_fits_them_better_than_a_uniform_grid():
    import numpy as np

    from edgeai.converters.coreml import kmeans_lut

    weight = np.random.default_rng(0).standard_normal((256, 512)).astype(np.float32)
    lut, indices = kmeans_lut(weight)
    assert lut.shape == (16,) and lut.dtype == np.float32 and indices.dtype == np.uint8
    error = np.abs(lut[indices].reshape(weight.shape) - weight).mean()
    grid = np.linspace(weight.min(), weight.max(), 16)
    uniform = np.abs(grid[np.abs(weight[..., None] - grid).argmin(-1)] - weight).mean()
    assert error < 0.7 * uniform


def test_unknown_quant_is_refused_before_any_work(tiny, tmp_path):
    with pytest.raises(BadInput) as caught:
        convert(tiny["llama"], tmp_path / "out", to="coreml", quant="q4_k_m")
    assert "fp16 int8 palette4 int4-block" in caught.value.hint
    assert list(tmp_path.iterdir()) == []


def test_unsupported_architecture_leaves_nothing_at_out(tiny, tmp_path):
    src = shutil.copytree(tiny["llama"], tmp_path / "mistral")
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, "model_type": "mistral"}))
    with pytest.raises(BadInput, match="unsupported architecture 'mistral'"):
        convert(src, tmp_path / "out", to="coreml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mistral"]


def test_a_conversion_that_fails_midway_leaves_nothing_at_out(tiny, tmp_path):
    src = shutil.copytree(tiny["llama"], tmp_path / "broken")
    config = json.loads((src / "config.json").read_text())  # weights no longer fit the config
    (src / "config.json").write_text(json.dumps({**config, "intermediate_size": 384}))
    with pytest.raises(EdgeAIError, match="Core ML conversion failed while loading broken"):
        convert(src, tmp_path / "out", to="coreml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]


# -- the backend ---------------------------------------------------------------------------

@pytest.mark.skipif(ON_MAC, reason="the refusal happens only where Core ML cannot predict")
def test_backend_refuses_to_load_off_macos(exported):
    backend = get_backend("coreml")
    with pytest.raises(BackendUnavailable, match="only on macOS"):
        backend.load(ModelSpec(id="tiny", artifacts={"coreml": exported("qwen2", "fp16")}), LoadOptions())


def test_backend_says_when_a_folder_is_not_a_core_ml_export(tmp_path):
    with pytest.raises(BadInput, match="expected one .mlpackage"):
        get_backend("coreml").load(ModelSpec(id="x", artifacts={"coreml": tmp_path}), LoadOptions())


@pytest.mark.skipif(not ON_MAC, reason="Core ML prediction exists only on macOS (coremltools has no "
                                       "runtime on other platforms)")
def test_backend_generates_from_the_real_package_on_macos(exported):
    backend = get_backend("coreml")
    backend.load(ModelSpec(id="tiny", artifacts={"coreml": exported("qwen2", "fp16")}), LoadOptions())
    result = generate(backend, [Message("user", "Say hello.")], GenParams(max_tokens=8, temperature=0))
    assert result.final.completion_tokens > 0 and result.final.finish_reason in ("stop", "length")


def torch_standin(hf_dir: Path, shortest: int = 1):
    """An opener that answers for the Core ML runtime with the torch model the package came from."""

    def open_model(package: Path):
        import torch
        from transformers import AutoModelForCausalLM

        assert package.suffix == ".mlpackage"
        model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()

        def predict(ids):
            assert len(ids) >= shortest, "the package's lower bound was not respected"
            with torch.inference_mode():
                tensor = torch.tensor([list(ids)])
                return model(input_ids=tensor, attention_mask=torch.ones_like(tensor)).logits[0].numpy()

        return predict, shortest, 2048

    return open_model


@pytest.fixture(scope="module")
def standin(tiny, exported):
    backend = CoreMLBackend(open_model=torch_standin(tiny["qwen2"]))
    backend.load(ModelSpec(id="tiny", artifacts={"coreml": exported("qwen2", "fp16")}),
                 LoadOptions(n_ctx=512))
    yield backend
    backend.close()


def ask(text: str) -> list[Message]:
    return [Message("user", text)]


def test_standin_streams_chunks_through_the_exports_tokenizer_and_template(standin):
    assert standin.capabilities.chat_template and not standin.capabilities.grammar
    assert standin.capabilities.context_length == 512
    chunks = list(standin.stream(ask("Say hello."), GenParams(max_tokens=12, temperature=0)))
    last = chunks[-1]
    assert last.finish_reason in ("stop", "length") and all(c.finish_reason is None for c in chunks[:-1])
    assert last.prompt_tokens == len(standin.prompt_tokens(ask("Say hello.")))
    assert 0 < last.completion_tokens <= 12 and last.ttft_s > 0
    assert "".join(c.text for c in chunks).strip()


def test_standin_greedy_tokens_are_the_models_argmax(standin):
    ids = standin.prompt_tokens("The capital of France is")
    chunks = list(standin.stream("The capital of France is",
                                 GenParams(max_tokens=6, temperature=0, ignore_eos=True)))
    seq = list(ids)
    for _ in range(6):
        seq.append(int(standin.logits(seq)[-1].argmax()))
    assert [t for c in chunks for t in c.token_ids] == seq[len(ids):]


def test_standin_max_tokens_seed_and_stop_hold(standin):
    five = generate(standin, ask("Write a story."), GenParams(max_tokens=5, temperature=0, ignore_eos=True))
    assert five.final.completion_tokens == 5 and five.final.finish_reason == "length"
    params = GenParams(max_tokens=16, temperature=1.0, seed=1234)
    first, second = (generate(standin, ask("Name a cat."), params).text for _ in range(2))
    assert first == second
    greedy = GenParams(max_tokens=30, temperature=0, ignore_eos=True)
    full = generate(standin, ask("Say banana."), greedy).text
    stop = full[len(full) // 2: len(full) // 2 + 2]
    cut = generate(standin, ask("Say banana."), GenParams(max_tokens=30, temperature=0, stop=(stop,),
                                                          ignore_eos=True))
    assert cut.final.finish_reason == "stop" and stop not in cut.text and full.startswith(cut.text)


@pytest.mark.parametrize("text", ["Hello, world! 123", "Grüße, 世界 — ça va? 🚀"])
def test_standin_detokenize_inverts_tokenize(standin, text):
    assert standin.detokenize(standin.tokenize(text)) == text


def test_standin_refuses_a_prompt_longer_than_the_context(tiny, exported):
    backend = CoreMLBackend(open_model=torch_standin(tiny["qwen2"]))
    backend.load(ModelSpec(id="tiny", artifacts={"coreml": exported("qwen2", "fp16")}), LoadOptions(n_ctx=16))
    with pytest.raises(ContextOverflow):
        backend.stream("word " * 40, GenParams(max_tokens=4))


def test_a_package_that_needs_two_tokens_still_answers_one(tiny, exported):
    """Where torch.export would not take a 1-token input the package starts at 2; the padded
    token comes after the real one, so the real token's logits are unchanged."""
    two = CoreMLBackend(open_model=torch_standin(tiny["qwen2"], shortest=2))
    one = CoreMLBackend(open_model=torch_standin(tiny["qwen2"], shortest=1))
    for backend in (two, one):
        backend.load(ModelSpec(id="tiny", artifacts={"coreml": exported("qwen2", "fp16")}), LoadOptions())
    assert abs(two.logits([17]) - one.logits([17])).max() < 1e-4
    assert two.logits([17]).shape == (1, 1024)


def test_gemma_chat_prompt_gets_exactly_one_bos(tiny, exported):
    backend = CoreMLBackend(open_model=torch_standin(tiny["gemma3"]))
    backend.load(ModelSpec(id="tiny", artifacts={"coreml": exported("gemma3", "fp16")}), LoadOptions())
    ids = backend.prompt_tokens(ask("Hello there"))
    bos = backend._tok.token_to_id("<s>")
    assert ids[0] == bos and bos not in ids[1:]
    assert backend.prompt_tokens("Hello there")[0] == bos  # raw text: the tokenizer's own BOS


@pytest.mark.slow
@pytest.mark.model
def test_real_qwen_gguf_to_core_ml_fp16_and_int8(default_gguf, tmp_path):
    fp16 = convert(default_gguf, tmp_path / "fp16", to="coreml", quant="fp16")
    int8 = convert(default_gguf, tmp_path / "int8", to="coreml", quant="int8")
    for out in ("fp16", "int8"):
        spec = spec_of(tmp_path / out)
        assert spec["passed"], spec["checks"]
    assert int8.size_bytes < 0.6 * fp16.size_bytes
    assert spec_of(tmp_path / "int8")["compression_ops"]["constexpr_affine_dequantize"] >= 24 * 7
