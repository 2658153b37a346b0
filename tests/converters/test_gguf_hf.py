"""HF -> GGUF and GGUF -> HF on tiny checkpoints of every family: the fp32 forms agree with
transformers exactly, quantized files are smaller and still run, and a round trip gives the
same weights and the same token ids back."""

from __future__ import annotations

import json

import pytest

from edgeai.converters import convert

pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")


def report(out):
    return json.loads((out / "report.json").read_text())


def test_gguf_f32_matches_transformers_for_every_family(tiny_models, family, tmp_path):
    out = tmp_path / "gguf"
    manifest = convert(tiny_models(family), out, to="gguf", quant="F32")
    card = report(out)
    assert manifest.artifacts[0].endswith("-f32.gguf") and (out / manifest.artifacts[0]).is_file()
    assert card["max_abs_logit_delta"] < 0.02
    assert card["top1_agreement"] >= 0.99 and card["greedy_equal"]
    assert card["tokenizer_ids_match"]
    assert card["travelled"] == {"tokenizer": True, "chat_template": True, "license": True}
    assert abs(card["perplexity_ratio"] - 1) < 1e-3


@pytest.mark.parametrize("quant", ["Q8_0", "Q4_K_M"])
def test_quantized_gguf_is_smaller_and_close(tiny_models, tmp_path, quant):
    f16 = convert(tiny_models("llama"), tmp_path / "f16", to="gguf", quant="F16", check=False)
    small = convert(tiny_models("llama"), tmp_path / quant, to="gguf", quant=quant)
    assert small.size_bytes < 0.7 * f16.size_bytes
    card = report(tmp_path / quant)
    assert card["tokenizer_ids_match"]
    # random weights have razor-thin margins, so top-1 says little; the distribution must hold
    assert abs(card["perplexity_ratio"] - 1) < 0.05


def test_gemma_defaults_to_bf16_and_refuses_f16(tiny_models, tmp_path):
    from edgeai.errors import BadInput

    assert convert(tiny_models("gemma3"), tmp_path / "g", to="gguf", check=False).quant == "BF16"
    with pytest.raises(BadInput, match="Gemma"):
        convert(tiny_models("gemma3"), tmp_path / "g16", to="gguf", quant="F16")
    assert not (tmp_path / "g16").exists()


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_gguf_to_hf_import_gives_back_the_same_weights_and_tokens(tiny_models, tmp_path, family):
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer

    src = tiny_models(family)
    gguf_out = tmp_path / "gguf"
    convert(src, gguf_out, to="gguf", quant="F32", check=False)
    gguf_file = next(gguf_out.glob("*.gguf"))
    hf = tmp_path / "hf"
    convert(gguf_file, hf, to="hf")
    card = report(hf)
    assert card["reference"] == "llama.cpp" and card["greedy_equal"] and card["tokenizer_ids_match"]
    original = {**load_file(src / "model.safetensors")}
    imported = load_file(hf / "model.safetensors")
    assert set(imported) - {"lm_head.weight"} == set(original) - {"lm_head.weight"}
    for name, value in original.items():
        if family == "gemma3" and name.endswith("norm.weight"):  # stored as w + 1, then - 1
            assert abs(imported[name] - value).max() < 1e-6, name
        else:
            assert (imported[name] == value).all(), name  # F32 both ways: bit for bit
    text = "It was the best of times,\n    def f(x): return x  # ok"
    assert (AutoTokenizer.from_pretrained(str(hf))(text)["input_ids"]
            == AutoTokenizer.from_pretrained(str(src))(text)["input_ids"])
    config = json.loads((hf / "config.json").read_text())
    assert config["tie_word_embeddings"] is False  # the tiny models carry their own output head
    if family == "gemma3":
        assert (hf / "tokenizer.model").is_file()  # SentencePiece, as Gemma's repository ships
    assert report(hf)["travelled"]["chat_template"]


def test_tied_heads_stay_tied_through_a_round_trip(tiny_models, tmp_path):
    src = tiny_models("qwen2")  # tie_word_embeddings: true
    convert(src, tmp_path / "gguf", to="gguf", quant="F32", check=False)
    convert(next((tmp_path / "gguf").glob("*.gguf")), tmp_path / "hf", to="hf", check=False)
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["tie_word_embeddings"] is True


def test_same_source_twice_gives_byte_identical_gguf(tiny_models, tmp_path):
    for quant in ("F16", "Q4_K_M"):
        a = convert(tiny_models("qwen3"), tmp_path / f"a{quant}", to="gguf", quant=quant, check=False)
        convert(tiny_models("qwen3"), tmp_path / f"b{quant}", to="gguf", quant=quant, check=False)
        name = a.artifacts[0]
        assert (tmp_path / f"a{quant}" / name).read_bytes() == (tmp_path / f"b{quant}" / name).read_bytes()


def test_requantizing_a_4bit_gguf_warns_that_quality_does_not_come_back(tiny_models, tmp_path):
    convert(tiny_models("llama"), tmp_path / "q4", to="gguf", quant="Q4_K_M", check=False)
    q4 = next((tmp_path / "q4").glob("*.gguf"))
    manifest = convert(q4, tmp_path / "q8", to="gguf", quant="Q8_0")
    assert any("restores no quality" in note for note in manifest.notes)
    assert report(tmp_path / "q8")["reference"] == "llama.cpp"


def test_hf_resave_in_bf16_halves_the_weights(tiny_models, tmp_path):
    src = tiny_models("qwen2")
    manifest = convert(src, tmp_path / "bf16", to="hf", quant="bf16")
    assert manifest.size_bytes < 0.6 * (src / "model.safetensors").stat().st_size
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["dtype"] == "bfloat16"
    card = report(tmp_path / "bf16")
    assert card["tokenizer_ids_match"] and card["top1_agreement"] > 0.9
