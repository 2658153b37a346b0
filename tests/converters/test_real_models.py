"""Acceptance on the real embedded models (slow: minutes each): GGUF -> HF import, then every
format back out of it, each checked against the HF source by its own report.

Qwen2.5-Coder-0.5B-Instruct is the default model; Gemma-3-270M comes with the `base-model`
extra. Gemma goes through bf16/fp32, never fp16.
"""

from __future__ import annotations

import json

import pytest

from edgeai.converters import convert

pytestmark = pytest.mark.slow

# (target, 16-bit, fp32) per family
SIXTEEN_BIT = {"qwen2": {"gguf": "F16", "mlx": "fp16"}, "gemma3": {"gguf": "BF16", "mlx": "bf16"}}
FP32 = {"gguf": "F32", "mlx": "fp32", "onnx": "fp32"}


def gemma_gguf(session_models, tmp_path_factory):
    from edgeai.config import Settings
    from edgeai.models import resolve
    from edgeai.models.catalog import find_entry
    from edgeai.models.resolve import package_installed

    if not package_installed(find_entry("gemma-3-270m").artifact()):
        pytest.skip("Gemma-3-270M needs the base-model extra (pip install '.[base-model]')")
    settings = Settings(home=tmp_path_factory.mktemp("home"), models_home=session_models)
    return resolve("gemma-3-270m", settings).artifacts["gguf"]


@pytest.fixture(scope="module", params=["qwen2", "gemma3"])
def imported(request, tmp_path_factory, session_models):
    """(family, the HF folder imported from the embedded GGUF)."""
    if request.param == "qwen2":
        source = request.getfixturevalue("default_gguf")
    else:
        source = gemma_gguf(session_models, tmp_path_factory)
    out = tmp_path_factory.mktemp(request.param) / "hf"
    convert(source, out, to="hf")
    card = json.loads((out / "report.json").read_text())
    assert card["tokenizer_ids_match"] and card["travelled"].get("chat_template", True)
    return request.param, out


def read_report(out):
    return json.loads((out / "report.json").read_text())


@pytest.mark.parametrize("target", ["gguf", "mlx"])
def test_16_bit_exports_agree_with_the_hf_source(imported, target, tmp_path):
    pytest.importorskip({"gguf": "llama_cpp", "mlx": "mlx_lm"}[target])
    family, hf = imported
    convert(hf, tmp_path / target, to=target, quant=SIXTEEN_BIT[family][target])
    card = read_report(tmp_path / target)
    assert card["top1_agreement"] >= 0.99, card["first_divergence"]
    assert card["tokenizer_ids_match"]


@pytest.mark.parametrize("target", ["gguf", "mlx", "onnx"])
def test_fp32_exports_give_exactly_the_source_greedy_tokens(imported, target, tmp_path):
    pytest.importorskip({"gguf": "llama_cpp", "mlx": "mlx_lm", "onnx": "onnxruntime_genai"}[target])
    family, hf = imported
    convert(hf, tmp_path / target, to=target, quant=FP32[target])
    card = read_report(tmp_path / target)
    assert card["greedy_equal"], card
    assert card["top1_agreement"] >= 0.99


def test_gguf_8_bit_and_4_bit_perplexity_against_16_bit(imported, tmp_path):
    family, hf = imported
    sixteen = SIXTEEN_BIT[family]["gguf"]
    ppl = {}
    for quant in (sixteen, "Q8_0", "Q4_K_M"):
        convert(hf, tmp_path / quant, to="gguf", quant=quant)
        ppl[quant] = read_report(tmp_path / quant)["perplexity"]
    assert ppl["Q8_0"] <= 1.02 * ppl[sixteen]
    assert ppl["Q4_K_M"] <= 1.10 * ppl[sixteen]


# Issue #4 is blocked on this: the only Gemma-3-270M weights that install offline are a Q4_K_M
# GGUF whose 640-wide tensors llama.cpp stored as Q5_0 (K-quants need rows of 256), so its own
# "Q4_K_M" is mostly 5-8 bits on this model, while a true 4-bit body loses ~21% here.
GEMMA_4_BIT = "Gemma-3-270M's 4-bit body, requantized from the 5-bit GGUF grid, misses 1.10x"


def test_mlx_8_bit_and_4_bit_perplexity_against_16_bit(imported, tmp_path):
    pytest.importorskip("mlx_lm")
    family, hf = imported
    sixteen = SIXTEEN_BIT[family]["mlx"]
    cards = {}
    for quant in (sixteen, "8bit", "4bit"):
        convert(hf, tmp_path / quant, to="mlx", quant=quant)
        cards[quant] = read_report(tmp_path / quant)
        assert cards[quant]["tokenizer_ids_match"] and not cards[quant]["perplexity_text_shortened"]
    ratio = {quant: card["perplexity"] / cards[sixteen]["perplexity"] for quant, card in cards.items()}
    assert ratio["8bit"] <= 1.02
    if family == "gemma3" and ratio["4bit"] > 1.10:
        pytest.xfail(f"{GEMMA_4_BIT}: x{ratio['4bit']:.3f}")
    assert ratio["4bit"] <= 1.10
