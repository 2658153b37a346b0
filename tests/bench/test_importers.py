"""llama-bench and mlx_lm output in, llama-bench JSON out: on outputs captured from real runs."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from edgeai.bench.compare import load_references
from edgeai.bench.importers import (
    detect_format,
    export_llama_bench,
    import_llama_bench,
    import_mlx_benchmark,
    quant_of,
    result_from_llama_bench,
)
from edgeai.bench.schema import save_result, validate
from edgeai.errors import BadInput

FIXTURES = Path(__file__).parent / "fixtures" / "results"
ROW_KEYS = ("backend", "model", "quant", "model_bytes", "n_params", "test", "n_prompt", "n_gen", "depth",
            "unit", "samples", "median", "min", "max", "threads", "gpu_layers", "peak_rss_mb",
            "bw_ceiling_pct", "tokens_per_joule")


def rows(result: dict) -> list[tuple]:
    return [(r["test"], r["depth"], r["median"]) for r in result["results"]]


def test_llama_bench_json_becomes_one_row_per_test():
    result = import_llama_bench(FIXTURES / "llama-bench-rtx4080.json")
    assert validate(result) == []
    assert result["source"] == {"tool": "llama-bench", "version": "b5163", "citation": None, "url": None}
    assert result["label"] == "NVIDIA GeForce RTX 4080 · CUDA"
    assert result["device"]["nvidia"][0]["name"] == "NVIDIA GeForce RTX 4080"
    assert result["created_utc"] == "2025-04-24T11:58:50Z"
    pp, tg = result["results"]
    assert pp["samples"] == [6863.1, 7147.55, 7136.37, 7115.79, 7237.21]  # samples_ts, as printed
    assert (pp["test"], pp["n_prompt"], pp["n_gen"], pp["median"]) == ("pp512", 512, 0, 7136.37)
    assert (tg["test"], tg["n_prompt"], tg["n_gen"], tg["median"]) == ("tg128", 0, 128, 119.03)
    assert (tg["model"], tg["quant"], tg["model_bytes"], tg["n_params"]) == (
        "Qwen2.5-7B-Instruct", "Q4_K_M", 4677120000, 7615616512)
    assert (tg["threads"], tg["gpu_layers"], tg["backend"]) == (8, -1, "llamacpp")
    # 119.03 tok/s × 4.68 GB per token against the RTX 4080's 717 GB/s spec
    assert result["device"]["nvidia"][0]["bandwidth_gbps_spec"] == 717
    assert tg["bw_ceiling_pct"] == 77.6 and pp["bw_ceiling_pct"] is None
    assert result["settings"]["repetitions"] == 5 and result["settings"]["n_ubatch"] == 512


def test_a_2023_jsonl_without_depth_or_backends_still_imports():
    result = import_llama_bench(FIXTURES / "llama-bench-3090ti-legacy.jsonl")
    assert validate(result) == []
    assert result["label"] == "NVIDIA GeForce RTX 3090 Ti · CUDA"  # from the old `cuda: true` flag
    assert rows(result) == [("pp512", 0, 2411.36), ("tg128", 0, 131.295)]
    assert {(r["model"], r["quant"]) for r in result["results"]} == {("llama 7B", "Q4_0")}


def test_a_cpu_only_jsonl_with_a_forks_extra_fields_imports():
    result = import_llama_bench(FIXTURES / "llama-bench-granite-blas.jsonl")
    assert validate(result) == []
    assert result["label"] == "OpenBLAS, CPU · BLAS"
    assert rows(result) == [("pp512", 0, 81.5211), ("tg128", 0, 23.6579)]
    assert result["results"][0]["quant"] == "IQ4_XS"


def test_backend_banner_lines_before_the_json_are_skipped(tmp_path):
    """`llama-bench -o json 2>&1` captures the Vulkan banner first (ggml-org/llama.cpp#15554)."""
    text = (FIXTURES / "llama-bench-b580-qwen05b.json").read_text()
    noisy = tmp_path / "noisy.json"
    noisy.write_text("ggml_vulkan: Found 1 Vulkan devices:\n"
                     "ggml_vulkan: 0 = Intel(R) Arc(tm) B580 Graphics (BMG G21) (Intel open-source Mesa "
                     "driver) | uma: 0 | fp16: 1\n" + text)
    clean = import_llama_bench(FIXTURES / "llama-bench-b580-qwen05b.json")
    assert rows(import_llama_bench(noisy)) == rows(clean) == [("pp512", 0, 13512.1), ("tg128", 0, 372.543)]
    assert (clean["results"][0]["model"], clean["results"][0]["quant"]) == ("Qwen2.5-Coder-0.5B", "Q4_K_M")


@pytest.mark.parametrize("model_type, quant", [
    ("qwen2 7B Q4_K - Medium", "Q4_K_M"), ("llama 7B mostly Q4_0", "Q4_0"),
    ("granite 3B IQ4_XS - 4.25 bpw", "IQ4_XS"), ("llama 8B Q2_K - Medium", "Q2_K"),
    ("qwen2 1B Q5_K - Small", "Q5_K_S"), ("llama 8B Q3_K - Large", "Q3_K_L"), ("gemma3 1B F16", "F16"),
    ("llama 8B BF16", "BF16"), ("qwen2 1B Q8_0", "Q8_0"), ("something odd", None),
])
def test_quantization_from_llama_cpps_model_description(model_type, quant):
    assert quant_of("models/model.gguf", model_type) == quant


def test_a_plain_llama_bench_file_from_a_mac_gets_its_ceiling_from_apples_spec():
    m2 = next(r for r in load_references() if (r["device"]["apple"] or {}).get("chip") == "Apple M2")
    records = [{k: v for k, v in rec.items() if not k.startswith("edgeai_")}
               for rec in export_llama_bench(m2)]
    for rec in records:
        rec.update(cpu_info="Apple M2", gpu_info="Apple M2", backends="Metal,BLAS")
    result = result_from_llama_bench(records)
    assert result["device"]["apple"]["bandwidth_gbps_spec"] == 100
    tg = next(r for r in result["results"] if r["test"] == "tg128")
    assert tg["bw_ceiling_pct"] == pytest.approx(83.8, abs=0.05)
    assert result["label"] == "Apple M2 · Metal,BLAS"


def test_mlx_benchmark_trials_become_samples():
    result = import_mlx_benchmark(FIXTURES / "mlx-benchmark-m4-air-qwen7b.txt", label="MacBook Air M4 24GB")
    assert validate(result) == []
    assert result["source"]["tool"] == "mlx_lm.benchmark" and result["label"] == "MacBook Air M4 24GB"
    pp, tg = result["results"]
    assert (pp["test"], pp["samples"]) == ("pp2048", [204.832, 137.867, 153.996, 162.618, 149.155])
    assert (tg["test"], tg["median"], tg["min"], tg["max"]) == ("tg2048", 18.775, 17.456, 21.086)
    assert (tg["backend"], tg["model"], tg["quant"]) == (
        "mlx", "mlx-community/Qwen2.5-7b-Instruct-4bit", "4bit")
    assert tg["peak_rss_mb"] == pytest.approx(5.115e9 / 2**20, abs=0.1)  # GB of 1e9 bytes → MiB
    assert result["settings"]["batch_size"] == 1 and result["settings"]["repetitions"] == 5


def test_the_first_mlx_benchmark_format_and_a_model_given_by_hand():
    result = import_mlx_benchmark(FIXTURES / "mlx-benchmark-pr396.txt",
                                  model="mlx-community/Llama-3.2-3B-Instruct-4bit")
    assert rows(result) == [("pp2048", 0, 2902.212), ("tg128", 0, 205.243)]
    assert len(result["results"][1]["samples"]) == 5  # the trials, not the averages line


def test_mlx_generate_verbose_stats_lines():
    result = import_mlx_benchmark(FIXTURES / "mlx-generate-verbose.txt")
    assert validate(result) == []
    assert rows(result) == [("pp1929", 0, 775.695), ("tg256", 0, 72.733)]
    assert result["results"][0]["model"] == "mlx-community/Meta-Llama-3.1-8B-Instruct-4bit"


def test_an_averages_only_paste_is_one_sample_and_a_headless_one_is_refused(tmp_path):
    """PR comments often paste just the averages (ml-explore/mlx-lm#478)."""
    only = tmp_path / "avg.txt"
    only.write_text("Timing with prompt_tokens=128, generation_tokens=128, batch_size=1.\n"
                    "Averages: prompt_tps=469.910, generation_tps=65.284, peak_memory=45.090\n")
    assert rows(import_mlx_benchmark(only)) == [("pp128", 0, 469.91), ("tg128", 0, 65.284)]
    headless = tmp_path / "headless.txt"
    headless.write_text("Pre: Averages: prompt_tps=439.847, generation_tps=86.450, peak_memory=61.323\n")
    with pytest.raises(BadInput, match="without its 'Timing with"):
        import_mlx_benchmark(headless)


@pytest.mark.parametrize("name, fmt", [
    ("llama-bench-rtx4080.json", "llama-bench"), ("llama-bench-3090ti-legacy.jsonl", "llama-bench"),
    ("llama-bench-granite-blas.jsonl", "llama-bench"), ("mlx-benchmark-pr396.txt", "mlx_lm.benchmark"),
    ("mlx-generate-verbose.txt", "mlx_lm.generate"), ("edgeai-cuda-depth-readme.json", "edgeai"),
    ("README.md", None),
])
def test_detect_format(name, fmt):
    assert detect_format((FIXTURES / name).read_text()) == fmt


def test_export_writes_the_fields_llama_bench_tools_read(quick_result):
    records = export_llama_bench(quick_result)
    assert [(r["n_prompt"], r["n_gen"]) for r in records] == [(128, 0), (0, 32)]  # no ttft row
    rec = records[1]
    for key in ("build_commit", "build_number", "cpu_info", "gpu_info", "backends", "model_filename",
                "model_type", "model_size", "model_n_params", "n_threads", "n_gpu_layers", "n_prompt",
                "n_gen", "n_depth", "test_time", "avg_ns", "stddev_ns", "avg_ts", "stddev_ts",
                "samples_ns", "samples_ts"):
        assert key in rec, key
    assert rec["build_commit"] == "edgeai-0.1.0" and rec["backends"] == "CPU"
    assert rec["samples_ts"] == [19.0, 19.4, 18.7]
    assert rec["samples_ns"] == [round(1e9 * 32 / ts) for ts in rec["samples_ts"]]
    assert rec["avg_ts"] == pytest.approx(statistics.mean([19.0, 19.4, 18.7]))
    assert rec["model_filename"] == "qwen2.5-coder-0.5b-instruct-Q4_K_M.gguf"
    assert rec["cpu_info"] == "Intel(R) Xeon(R) Platinum 8480+"


@pytest.mark.parametrize("source", ["edgeai run", "llama-bench import"])
def test_export_then_import_gives_back_the_same_rows(tmp_path, source, quick_result):
    original = (quick_result if source == "edgeai run"
                else import_llama_bench(FIXTURES / "llama-bench-rtx4080.json"))
    path = tmp_path / "exported.json"
    path.write_text(json.dumps(export_llama_bench(original), indent=2))
    back = import_llama_bench(path)
    assert validate(back) == []
    assert back["label"] == original["label"]
    wanted = [r for r in original["results"] if r["unit"] == "tok/s"]
    assert [{k: r[k] for k in ROW_KEYS} for r in back["results"]] == [
        {k: r[k] for k in ROW_KEYS} for r in wanted]


def test_files_with_no_results_are_refused_in_one_line(tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    with pytest.raises(BadInput, match=f"no llama-bench results in {empty}"):
        import_llama_bench(empty)
    with pytest.raises(BadInput, match="no mlx_lm results"):
        import_mlx_benchmark(FIXTURES / "README.md")
    with pytest.raises(BadInput, match="no such file"):
        import_llama_bench(tmp_path / "missing.json")


GOOD_RECORD = {"n_prompt": 0, "n_gen": 128, "samples_ts": [50.0, 52.0]}


@pytest.mark.parametrize("change, problem", [
    ({"samples_ts": []}, "no samples"),
    ({"samples_ts": [None]}, "samples_ts[0]: None is not a number"),
    ({"samples_ts": [50.0, float("nan")]}, "samples_ts[1]: nan is not a finite number"),
    ({"samples_ts": [True]}, "samples_ts[0]: True is not a number"),
    ({"samples_ts": [50.0, 0.0]}, "samples_ts[1]: 0.0 tok/s, a speed must be > 0"),
    ({"samples_ts": [-3.5]}, "samples_ts[0]: -3.5 tok/s, a speed must be > 0"),
    ({"samples_ts": None, "avg_ts": 0}, "avg_ts: 0 tok/s, a speed must be > 0"),
    ({"n_gen": 0}, "n_prompt and n_gen are both 0"),
    ({"n_prompt": -1}, "n_prompt: -1 is not an integer >= 0"),
    ({"n_depth": -4}, "n_depth: -4 is not an integer >= 0"),
    ({"n_depth": "deep"}, "n_depth: 'deep' is not an integer >= 0"),
    ({"model_size": "4 GB"}, "model_size: '4 GB' is not an integer >= 0"),
    ({"edgeai_quant": 4}, "edgeai_quant: 4 is not a string"),
    ({"n_threads": "eight"}, "threads: must be an integer or null"),  # caught by schema.validate
    ({"edgeai_peak_rss_mb": -5}, "peak_rss_mb: must be a number >= 0 or null"),
])
def test_a_bad_llama_bench_record_is_one_line_naming_the_file(tmp_path, change, problem):
    from edgeai.bench.importers import import_any

    path = tmp_path / "bad.json"
    path.write_text(json.dumps([GOOD_RECORD, GOOD_RECORD | change]))
    for load in (import_any, import_llama_bench):
        with pytest.raises(BadInput) as caught:
            load(path)
        message = caught.value.message
        assert message.startswith(f"{path}: ") and problem in message and "\n" not in message
        assert caught.value.hint is None


def test_a_good_record_next_to_the_bad_ones_imports(tmp_path):
    path = tmp_path / "good.json"
    deeper = GOOD_RECORD | {"n_depth": 512, "avg_ts": 40.0, "samples_ts": []}  # avg_ts stands in
    path.write_text(json.dumps([GOOD_RECORD, deeper]))
    assert rows(import_llama_bench(path)) == [("tg128", 0, 51.0), ("tg128", 512, 40.0)]


@pytest.mark.parametrize("text, problem", [
    ("Prompt: 0 tokens, 50.0 tokens-per-sec\nGeneration: 64 tokens, 20.0 tokens-per-sec\n",
     "n_prompt and n_gen are both 0"),
    ("Prompt: 32 tokens, 50.0 tokens-per-sec\nGeneration: 64 tokens, 0.000 tokens-per-sec\n",
     "0.0 tok/s, a speed must be > 0"),
    ("Timing with prompt_tokens=128, generation_tokens=128, batch_size=1.\n"
     "Trial 1:  prompt_tps=1.2.3, generation_tps=65.284, peak_memory=45.090\n", "'1.2.3' is not a number"),
], ids=["zero-tokens", "zero-speed", "not-a-number"])
def test_bad_mlx_output_is_one_line_naming_the_file(tmp_path, text, problem):
    from edgeai.bench.importers import import_any

    path = tmp_path / "mlx.txt"
    path.write_text(text)
    for load in (import_any, import_mlx_benchmark):
        with pytest.raises(BadInput) as caught:
            load(path)
        assert caught.value.message.startswith(f"{path}: ") and problem in caught.value.message


def test_bench_import_of_a_bad_record_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "BAD.json"
    bad.write_text(json.dumps([{"n_prompt": 0, "n_gen": 0, "samples_ts": [5.0]}]))
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, "-m", "edgeai", "bench", "import", str(bad), "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "n_prompt and n_gen are both 0" in proc.stderr
    assert str(bad) in proc.stderr and "Traceback" not in proc.stderr and not out.exists()


def test_export_refuses_a_zero_speed_sample_in_one_line(tmp_path, quick_result):
    tg = quick_result["results"][1]
    tg.update(samples=[0.0, 19.0, 19.4], median=19.0, min=0.0, max=19.4)
    assert validate(quick_result) == []  # the schema itself allows it
    with pytest.raises(BadInput, match=r"^cannot export tg32 .*: a 0\.0 tok/s sample has no llama-bench "
                                       r"time per run$"):
        export_llama_bench(quick_result)
    saved = save_result(quick_result, tmp_path / "zero.json")
    proc = subprocess.run([sys.executable, "-m", "edgeai", "bench", "export", str(saved), "-o",
                           str(tmp_path / "lb.json")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "0.0 tok/s" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "lb.json").exists()
