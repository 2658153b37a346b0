"""Bytes a decode step streams (bench/token_bytes.py) and the % of ceiling built on them.

The embedding rule is the point: an untied token-embedding table counts one row (the token's),
a table tied to the output projection counts whole (the LM head reads all of it). Checked on the
real default GGUF, on tiny GGUFs written with the `gguf` package, on tiny ONNX graphs shaped like
onnxruntime-genai's exports, and on safetensors folders.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeai.bench.llm import add_backend_rows
from edgeai.bench.schema import new_result, validate
from edgeai.bench.token_bytes import file_estimate, token_bytes
from edgeai.gguf_info import read_header

VOCAB, WIDTH = 100, 64


# -- GGUF ---------------------------------------------------------------------------------------------
def test_the_default_gguf_counts_one_row_of_its_untied_embedding_table(default_gguf):
    header = read_header(default_gguf)
    embd = next(t for t in header.tensors if t.name == "token_embd.weight")
    assert "output.weight" in {t.name for t in header.tensors}  # Qwen2.5-Coder-0.5B's GGUF is untied
    counted = token_bytes(default_gguf)
    everything = sum(t.nbytes for t in header.tensors)
    assert counted.weights == everything - embd.nbytes + embd.nbytes // embd.rows
    assert embd.rows == 151_936 and embd.nbytes // embd.rows == 616  # one Q5_0 row of 896
    assert counted.file_bytes == header.file_size == 491_400_064
    assert counted.file_bytes / counted.weights == pytest.approx(1.254, abs=0.001)  # was overstated
    assert counted.kv_per_position == 24 * 2 * 64 * 2 * 2  # layers x kv heads x (K+V) x head x f16
    assert counted.method == "gguf tensor table" and counted.embedding.startswith("untied: 1 of 151,936")
    assert counted.at_context(100) == counted.weights + 100 * counted.kv_per_position


def _gguf(path: Path, tensors: dict[str, np.ndarray], **hparams) -> Path:
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_embedding_length(WIDTH)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    for key, value in hparams.items():
        writer.add_uint32(f"llama.{key}", value)
    for name, data in tensors.items():
        writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_tiny_untied_gguf_counts_one_embedding_row_and_a_tied_one_the_whole_table(tmp_path):
    embd, layer = np.ones((VOCAB, WIDTH), np.float32), np.ones((WIDTH, WIDTH), np.float16)
    tensors = {"token_embd.weight": embd, "blk.0.attn_q.weight": layer}
    untied = token_bytes(_gguf(tmp_path / "untied.gguf", {**tensors, "output.weight": embd}))
    assert untied.weights == WIDTH * 4 + layer.nbytes + embd.nbytes
    assert untied.embedding == f"untied: 1 of {VOCAB} rows counted ({WIDTH * 4} bytes)"
    tied = token_bytes(_gguf(tmp_path / "tied.gguf", tensors))
    assert tied.weights == embd.nbytes + layer.nbytes  # the LM head reads the table whole
    assert tied.embedding.startswith("tied to the output (no output.weight)")
    assert untied.kv_per_position == tied.kv_per_position == 1 * 2 * (WIDTH // 4) * 2 * 2


def test_a_mixture_of_experts_counts_the_routed_experts_as_an_estimate(tmp_path):
    experts = np.ones((8, WIDTH, WIDTH), np.float16)
    counted = token_bytes(_gguf(tmp_path / "moe.gguf", {"blk.0.ffn_up_exps.weight": experts},
                                expert_count=8, expert_used_count=2))
    assert counted.weights == experts.nbytes * 2 // 8
    assert "2 of 8 experts: estimate" in counted.method


# -- ONNX ---------------------------------------------------------------------------------------------
def _onnx(folder: Path, nodes: list, initializers: dict[str, np.ndarray], config: bool = True) -> Path:
    """A graph shaped like onnxruntime-genai's: input_ids, one past K/V pair, logits; the
    initializers stored as external data (as the exports are), plus tokenizer files."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir()
    past = ["batch", 2, "past", "dim"]  # the head size symbolic, as onnxruntime-genai writes it
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
              helper.make_tensor_value_info("past_key_values.0.key", TensorProto.FLOAT, past),
              helper.make_tensor_value_info("past_key_values.0.value", TensorProto.FLOAT, past)]
    graph = helper.make_graph(nodes, "tiny", inputs,
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(a, name) for name, a in initializers.items()])
    onnx.save(helper.make_model(graph), str(folder / "model.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=0)
    if config:
        (folder / "genai_config.json").write_text(json.dumps({"model": {"decoder": {
            "num_hidden_layers": 1, "num_key_value_heads": 2, "head_size": 16}}}))
    (folder / "tokenizer.json").write_text("x" * 100_000)  # never counted
    return folder


def test_an_untied_onnx_embedding_counts_one_row_and_the_rope_caches_one_row_each(tmp_path):
    from onnx import helper

    embd, head = np.ones((VOCAB, WIDTH), np.float32), np.ones((WIDTH, VOCAB), np.float32)
    cos = np.ones((2048, 8), np.float32)
    nodes = [helper.make_node("Gather", ["embed.weight", "input_ids"], ["h"]),
             helper.make_node("GroupQueryAttention", ["h", "", "", "", "", "", "", "cos_cache", "sin_cache"],
                              ["a"], domain="com.microsoft"),
             helper.make_node("MatMul", ["a", "lm_head.weight"], ["logits"])]
    folder = _onnx(tmp_path / "untied", nodes, {"embed.weight": embd, "lm_head.weight": head,
                                                "cos_cache": cos, "sin_cache": cos})
    counted = token_bytes(folder)
    assert counted.weights == WIDTH * 4 + head.nbytes + 2 * 8 * 4
    assert counted.embedding == f"untied: 1 of {VOCAB} rows counted"
    assert counted.method == "onnx initializers"
    assert counted.kv_per_position == 2 * 1 * 2 * 16 * 4  # K+V x layers x kv heads x head size x fp32
    assert counted.file_bytes > counted.weights + 100_000  # the tokenizer is on disk, not in the count


def test_a_tied_onnx_embedding_counts_whole_through_a_transpose_or_a_shared_quantized_table(tmp_path):
    from onnx import helper

    head = np.ones((WIDTH, VOCAB), np.float32)
    nodes = [helper.make_node("Transpose", ["lm_head.weight"], ["embed.T"]),
             helper.make_node("Gather", ["embed.T", "input_ids"], ["h"]),
             helper.make_node("MatMul", ["h", "lm_head.weight"], ["logits"])]
    counted = token_bytes(_onnx(tmp_path / "fp32", nodes, {"lm_head.weight": head}))
    assert counted.weights == head.nbytes
    assert counted.embedding == "shared with the LM head (lm_head.weight): counted whole"

    q4, scales = np.ones((VOCAB, 2, 16), np.uint8), np.ones((VOCAB, 2), np.float32)
    nodes = [helper.make_node("Reshape", ["lm_head.weight_Q4", "shape"], ["embed.q"]),
             helper.make_node("GatherBlockQuantized", ["embed.q", "input_ids", "lm_head.weight_scales"],
                              ["h"], domain="com.microsoft"),
             helper.make_node("MatMulNBits", ["h", "lm_head.weight_Q4", "lm_head.weight_scales"],
                              ["logits"], domain="com.microsoft")]
    tables = {"lm_head.weight_Q4": q4, "lm_head.weight_scales": scales,
              "shape": np.array([VOCAB, 32], np.int64)}
    counted = token_bytes(_onnx(tmp_path / "int4", nodes, tables, config=False))
    assert counted.weights == q4.nbytes + scales.nbytes + 16
    assert counted.embedding.startswith("shared with the LM head (lm_head.weight_Q4)")
    assert counted.kv_per_position is None  # no fixed head size and no genai_config.json


# -- safetensors and anything else ------------------------------------------------------------------------
def test_safetensors_folders_follow_the_same_embedding_rule(tmp_path):
    from safetensors.numpy import save_file

    embd, layer = np.ones((VOCAB, WIDTH), np.float32), np.ones((WIDTH, WIDTH), np.float16)
    for name, tensors in (("untied", {"model.embed_tokens.weight": embd, "model.layers.0.q.weight": layer,
                                      "lm_head.weight": embd}),
                          ("tied", {"model.embed_tokens.weight": embd, "model.layers.0.q.weight": layer})):
        (tmp_path / name).mkdir()
        save_file(tensors, str(tmp_path / name / "model.safetensors"))
    assert token_bytes(tmp_path / "untied").weights == WIDTH * 4 + layer.nbytes + embd.nbytes
    (tmp_path / "tied" / "config.json").write_text(json.dumps({
        "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_size": WIDTH, "num_hidden_layers": 3}))
    tied = token_bytes(tmp_path / "tied")
    assert tied.weights == embd.nbytes + layer.nbytes and "estimate" in tied.method
    assert tied.kv_per_position == 2 * 3 * 2 * (WIDTH // 4) * 2  # K+V x layers x kv heads x head x 16-bit


def test_anything_else_counts_its_weight_files_and_says_it_is_an_estimate(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"w" * 1000)
    (tmp_path / "tokenizer.json").write_text("t" * 500)
    (tmp_path / "config.json").write_text("{}")
    counted = file_estimate(tmp_path)
    assert counted.weights == 1000 and counted.file_bytes == 1502 and "(estimate)" in counted.method


# -- the rows -----------------------------------------------------------------------------------------
def _done(token_bytes: dict | None) -> dict:
    sample = {"test": "tg32", "depth": 0, "value": 20.0, "n_prompt": 0, "n_gen": 32, "joules": None}
    return {"model": "m", "quant": "Q4_K_M", "model_bytes": 500_000_000, "threads": 2, "gpu_layers": 0,
            "peak_rss_mb": 600.0, "load_s": 1.0, "samples": [sample] * 3, "token_bytes": token_bytes}


def test_a_decode_row_divides_by_the_streamed_bytes_and_carries_the_probes_spread():
    counted = {"weights": 400_000_000, "kv_per_position": 10_000, "method": "gguf tensor table",
               "file_bytes": 500_000_000, "embedding": "untied"}
    result = new_result("llm", device={}, settings={}, versions={}, label="test")
    add_backend_rows(result, "llamacpp", _done(counted), 25.0, 9.5)
    tg = next(r for r in result["results"] if r["test"] == "tg32")
    per_token = 400_000_000 + 10_000 * (8 + 16)  # the average context while decoding 32 tokens
    assert tg["bytes_per_token"] == per_token and tg["bw_gbps"] == 25.0 and tg["bw_spread_pct"] == 9.5
    assert tg["bw_ceiling_pct"] == round(100 * 20.0 * per_token / 25e9, 1)
    assert tg["model_bytes"] == 500_000_000  # the file's size stays llama-bench's model_size
    assert validate(result) == []


def test_no_counted_bytes_means_no_share_rather_than_the_file_size():
    result = new_result("llm", device={}, settings={}, versions={}, label="test")
    add_backend_rows(result, "echo", _done(None), 25.0, None)
    tg = next(r for r in result["results"] if r["test"] == "tg32")
    assert tg["bw_ceiling_pct"] is None and "bytes_per_token" not in tg


def test_compare_prints_the_share_next_to_the_bandwidth_and_its_spread():
    from edgeai.bench.compare import fmt_ceiling

    assert fmt_ceiling({"bw_ceiling_pct": 38.24, "bw_gbps": 26.1, "bw_spread_pct": 9.0}) == \
        "38.2% (26.1 GB/s, spread 9%)"
    spec = {"bw_ceiling_pct": 83.8, "bw_gbps": 100.0, "bw_spread_pct": None}  # a spec has no spread
    assert fmt_ceiling(spec) == "83.8% (100 GB/s)"
    assert fmt_ceiling({"bw_ceiling_pct": 57.6}) == "57.6%"  # an older result, an import
    assert fmt_ceiling({}) == "—"
