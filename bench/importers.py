"""Other tools' benchmark output in and out of the schema-v1 result (bench/schema.py).

In: llama-bench `-o json` / `-o jsonl` (tools/llama-bench/llama-bench.cpp: one object per test
with n_prompt, n_gen, n_depth, samples_ts...; older builds lack n_depth and `backends` and flag
cuda/metal instead) and mlx_lm.benchmark's printed trials ("Trial 1:  prompt_tps=...,
generation_tps=..., peak_memory=..." then "Averages: ..."), plus mlx_lm.generate --verbose's
"Prompt: N tokens, X tokens-per-sec" lines. Out: llama-bench-compatible JSON records, so a
result sits beside the community's. Parsing only; no benchmark runs here.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path

from edgeai.bench.bandwidth import apple_spec_gbps, nvidia_spec_gbps
from edgeai.bench.schema import (
    add_row,
    bandwidth_gbps,
    ceiling_pct,
    new_result,
    parse_test,
    test_name,
    utc_now,
    validate,
)
from edgeai.errors import BadInput

APPLE_CHIP = re.compile(r"Apple (M\d+(?: (?:Pro|Max|Ultra))?)")
LEGACY_GPU_FLAGS = (("cuda", "CUDA"), ("metal", "Metal"), ("vulkan", "Vulkan"), ("sycl", "SYCL"),
                    ("kompute", "Kompute"), ("opencl", "OpenCL"))
QUANT_IN_NAME = re.compile(r"(?i)(?:^|[-_. ])((?:I?Q\d+(?:_[A-Z0-9]+)*)|BF16|F16|F32)(?=$|[-_. ])")
K_QUANT_SIZE = {"Small": "S", "Medium": "M", "Large": "L"}
MLX_TRIAL = re.compile(r"(Trial \d+|Averages):\s+prompt_tps=([\d.]+),\s*generation_tps=([\d.]+),"
                       r"\s*peak_memory=([\d.]+)")
MLX_SHAPE = re.compile(r"prompt_tokens=(\d+)(?:,| and) generation_tokens=(\d+)(?:, batch_size=(\d+))?")
MLX_MODEL = re.compile(r"--model[= ]+(\S+)")
MLX_GENERATE = re.compile(r"^\s*(Prompt|Generation):\s+(\d+) tokens,\s+([\d.]+) tokens-per-sec", re.M)
MLX_PEAK = re.compile(r"Peak memory:\s+([\d.]+) GB")
GB_TO_MIB = 1e9 / 2**20  # mlx prints peak memory in GB (1e9 bytes); rows hold MiB like ru_maxrss


# -- checking what comes in -----------------------------------------------------------------------
def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _speed_problem(value: object, where: str) -> str | None:
    """Why `value` is not a usable tok/s sample (a finite number > 0), or None."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return f"{where}: {value!r} is not a number"
    if not math.isfinite(value):
        return f"{where}: {value!r} is not a finite number"
    if value <= 0:
        return f"{where}: {value!r} tok/s, a speed must be > 0"
    return None


def _shape_problem(n_prompt: int, n_gen: int) -> str | None:
    if n_prompt == 0 and n_gen == 0:
        return "n_prompt and n_gen are both 0: the test measured nothing"
    return None


def _checked(result: dict, source_name: str) -> dict:
    """The imported result, or a one-line BadInput naming the source and the first problem."""
    problems = validate(result)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BadInput(f"{source_name}: the imported result is not valid: {problems[0]}{more}")
    return result


# -- llama-bench in -------------------------------------------------------------------------------
def _is_record(obj: object) -> bool:
    """Whether `obj` is shaped like a llama-bench test object. Lenient on purpose, so that a
    damaged record is reported as such (record_problem) rather than as an unknown file."""
    return (isinstance(obj, dict) and _is_int(obj.get("n_prompt")) and _is_int(obj.get("n_gen"))
            and (isinstance(obj.get("samples_ts"), list) or "avg_ts" in obj))


def _record_samples(rec: dict) -> list:
    """A record's tok/s samples: samples_ts, or its avg_ts where samples_ts is missing or empty."""
    samples = rec.get("samples_ts")
    if samples:
        return samples
    return [rec["avg_ts"]] if "avg_ts" in rec else []


def record_problem(rec: dict) -> str | None:
    """The first thing wrong with one llama-bench test object, or None when it can be imported."""
    for key in ("n_prompt", "n_gen"):
        if not (_is_int(rec.get(key)) and rec[key] >= 0):
            return f"{key}: {rec.get(key)!r} is not an integer >= 0"
    shape = _shape_problem(rec["n_prompt"], rec["n_gen"])
    if shape:
        return shape
    for key in ("n_depth", "model_size", "model_n_params"):
        if rec.get(key) is not None and not (_is_int(rec[key]) and rec[key] >= 0):
            return f"{key}: {rec[key]!r} is not an integer >= 0"
    for key in ("edgeai_label", "edgeai_backend", "edgeai_model", "edgeai_quant"):
        if rec.get(key) is not None and not isinstance(rec[key], str):
            return f"{key}: {rec[key]!r} is not a string"
    if rec.get("samples_ts") is not None and not isinstance(rec["samples_ts"], list):
        return f"samples_ts: {rec['samples_ts']!r} is not a list"
    samples = _record_samples(rec)
    if not samples:
        return "no samples (samples_ts is empty and there is no avg_ts)"
    where = "samples_ts" if rec.get("samples_ts") else "avg_ts"
    for i, value in enumerate(samples):
        problem = _speed_problem(value, f"{where}[{i}]" if where == "samples_ts" else where)
        if problem:
            return problem
    return None


def llama_bench_records(text: str) -> list[dict] | None:
    """The test objects of llama-bench JSON or JSONL output, tolerating the backend banner lines
    ("ggml_vulkan: Found 1 Vulkan devices", "load_backend: ...") a `2>&1` capture puts first."""
    lines = text.splitlines()
    for start, line in enumerate(lines):
        if line.lstrip().startswith("["):
            try:
                obj, _ = json.JSONDecoder().raw_decode("\n".join(lines[start:]).lstrip())
            except (json.JSONDecodeError, RecursionError):  # RecursionError: nested too deeply
                break
            records = obj if isinstance(obj, list) else []
            return records if records and all(_is_record(r) for r in records) else None
        if line.lstrip().startswith("{"):
            break
    records = []
    for line in lines:  # JSONL: one complete object per line
        if line.lstrip().startswith("{"):
            try:
                obj = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                return None
            if not _is_record(obj):
                return None
            records.append(obj)
    return records or None


def detect_format(text: str) -> str | None:
    """"edgeai", "llama-bench", "mlx_lm.benchmark", "mlx_lm.generate", or None."""
    try:
        obj = json.loads(text)
        if isinstance(obj, dict) and obj.get("kind") == "edgeai-bench-result":
            return "edgeai"
    except (json.JSONDecodeError, RecursionError):
        pass
    if llama_bench_records(text):
        return "llama-bench"
    if MLX_TRIAL.search(text):
        return "mlx_lm.benchmark"
    if MLX_GENERATE.search(text):
        return "mlx_lm.generate"
    return None


def quant_of(model_filename: str, model_type: str = "") -> str | None:
    """The GGUF quantization, from the file name (Q4_K_M) or llama.cpp's model description
    ("qwen2 7B Q4_K - Medium", "llama 7B mostly Q4_0", "granite 3B IQ4_XS - 4.25 bpw")."""
    m = QUANT_IN_NAME.search(Path(model_filename).stem)
    if m:
        return m[1].upper()
    m = re.search(r"\b(I?Q\d+(?:_[A-Z0-9]+)*|BF16|F16|F32)\b(?:\s*-\s*(Small|Medium|Large))?", model_type)
    if not m:
        return None
    name, size = m[1], m[2]
    if size and re.fullmatch(r"Q[3-5]_K", name):  # Q2_K is named "Q2_K - Medium" but has no _M
        return f"{name}_{K_QUANT_SIZE[size]}"
    return name


def _model_name(rec: dict, quant: str | None) -> str:
    stem = Path(str(rec.get("model_filename", "")).replace("\\", "/")).stem
    if quant:
        stem = re.sub(rf"(?i)[-_. ]?{re.escape(quant)}(?=$|[-_. ])", "", stem).strip("-_. ")
    if stem and not stem.startswith("ggml-model"):
        return stem
    desc = str(rec.get("model_type", "")).replace("mostly ", "")
    return (desc.split(quant)[0] if quant and quant in desc else desc).strip() or "unknown model"


def _backends(rec: dict) -> str:
    if rec.get("backends"):
        return str(rec["backends"])
    flags = [name for key, name in LEGACY_GPU_FLAGS if rec.get(key) is True]
    return ",".join(flags) or ("BLAS" if rec.get("blas") is True else "CPU")


def _uses_gpu(rec: dict) -> bool:
    gpu = " ".join(str(rec.get("gpu_info", "")).split())
    on_cpu_only = set(_backends(rec).upper().split(",")) <= {"CPU", "BLAS"}
    return bool(gpu) and not on_cpu_only and rec.get("n_gpu_layers") != 0


def _device_of(rec: dict) -> dict:
    cpu = " ".join(str(rec.get("cpu_info", "")).split())
    gpu = " ".join(str(rec.get("gpu_info", "")).split())
    device = {"os": None, "hostname_hash": None,
              "cpu": {"model": cpu or None, "arch": None, "cores": None, "physical_cores": None,
                      "features": []},
              "memory_gb": None, "apple": None, "nvidia": None, "jetson": None, "bandwidth": None}
    chip = APPLE_CHIP.search(f"{gpu} {cpu}")
    if chip:  # the GPU core count is not in llama-bench's output: a binned Max gets the full figure
        device["apple"] = {"chip": chip[0], "gpu_cores": None, "performance_cores": None,
                           "efficiency_cores": None, "bandwidth_gbps_spec": apple_spec_gbps(chip[0], None)}
    elif "NVIDIA" in gpu.upper():
        device["nvidia"] = [{"name": name.strip(), "memory_gb": None, "driver": None, "cuda": None,
                             "power_limit_w": None, "bandwidth_gbps_spec": nvidia_spec_gbps(name)}
                            for name in gpu.split(",") if name.strip()]
    return device


def _one_or_all(records: list[dict], key: str):
    values = sorted({json.dumps(r.get(key)) for r in records if key in r})
    decoded = [json.loads(v) for v in values]
    return decoded[0] if len(decoded) == 1 else (decoded or None)


def result_from_llama_bench(records: list[dict], *, label: str | None = None,
                            device: dict | None = None, source_name: str = "llama-bench output") -> dict:
    """A schema-v1 result from llama-bench test objects (one row per object). A record that
    cannot be imported, or a result that does not validate, is a one-line BadInput naming
    `source_name` and the first problem."""
    if not records:
        raise BadInput(f"no llama-bench results in {source_name}")
    for i, rec in enumerate(records):
        problem = record_problem(rec) if isinstance(rec, dict) else "not a JSON object"
        if problem:
            raise BadInput(f"{source_name}: llama-bench record {i + 1}: {problem}")
    first = records[0]
    gpu = _uses_gpu(first)
    device = device or _device_of(first)
    if not label:
        ours = first.get("edgeai_label")
        cpu = " ".join(str(first.get("cpu_info", "")).split()) or "unknown CPU"
        gpu_name = " ".join(str(first.get("gpu_info", "")).split())
        label = ours or (f"{gpu_name} · {_backends(first)}" if gpu else f"{cpu} · {_backends(first)}")
    build = f"b{first['build_number']}" if first.get("build_number") else None
    commit = first.get("build_commit")
    settings = {key: _one_or_all(records, key) for key in
                ("n_batch", "n_ubatch", "type_k", "type_v", "flash_attn", "n_cpu_moe", "split_mode")
                if any(key in r for r in records)}
    settings["llama_cpp_backends"] = _backends(first)
    settings["repetitions"] = _one_or_all([{"r": len(_record_samples(r))} for r in records], "r")
    result = new_result("llm", device, settings,
                        {"llama_cpp": f"{build or '?'} ({commit})" if commit else build},
                        label, {"tool": "llama-bench", "version": build})
    times = sorted(str(r["test_time"]) for r in records if re.match(r"^\d{4}-.*Z$", str(r.get("test_time"))))
    result["created_utc"] = times[0] if times else utc_now()
    bandwidth, _ = bandwidth_gbps(device, on_gpu=gpu)
    for rec in records:
        quant = rec.get("edgeai_quant", quant_of(str(rec.get("model_filename", "")),
                                                 str(rec.get("model_type", ""))))
        samples = _record_samples(rec)
        model_bytes = rec.get("model_size") or None
        median = statistics.median(samples)
        is_tg = rec["n_prompt"] == 0 and rec["n_gen"] > 0
        add_row(result, backend=rec.get("edgeai_backend", "llamacpp"),
                model=rec.get("edgeai_model") or _model_name(rec, quant), quant=quant,
                model_bytes=model_bytes, n_params=rec.get("model_n_params") or None,
                test=test_name(rec["n_prompt"], rec["n_gen"]), n_prompt=rec["n_prompt"],
                n_gen=rec["n_gen"], depth=rec.get("n_depth") or 0, samples=samples,
                threads=rec.get("n_threads") or None, gpu_layers=rec.get("n_gpu_layers"),
                peak_rss_mb=rec.get("edgeai_peak_rss_mb"),
                bw_ceiling_pct=rec.get("edgeai_bw_ceiling_pct",
                                       ceiling_pct(median, model_bytes, bandwidth) if is_tg else None),
                tokens_per_joule=rec.get("edgeai_tokens_per_joule"))
    return _checked(result, source_name)


def _read(path: Path | str) -> tuple[Path, str]:
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"no such file: {path}")
    try:
        return path, path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"not a text file: {path}") from None


def import_llama_bench(path: Path | str, *, label: str | None = None, device: dict | None = None) -> dict:
    """A schema-v1 result (source tool "llama-bench") from `llama-bench -o json|jsonl` output."""
    path, text = _read(path)
    records = llama_bench_records(text)
    if not records:
        raise BadInput(f"no llama-bench results in {path}",
                       "run llama-bench with -o json (or -o jsonl) and pass what it printed")
    return result_from_llama_bench(records, label=label, device=device, source_name=str(path))


# -- llama-bench out ------------------------------------------------------------------------------
def _gpu_info(device: dict) -> str:
    if device.get("jetson"):
        return str(device["jetson"].get("model") or "")
    if device.get("nvidia"):
        return ", ".join(str(g.get("name") or "") for g in device["nvidia"])
    return str((device.get("apple") or {}).get("chip") or "")


def export_llama_bench(result: dict) -> list[dict]:
    """llama-bench JSON records (`-o json` field names) for every tok/s row of a result; the
    edgeai_* fields keep what llama-bench has no field for, so the records re-import exactly."""
    from edgeai import __version__

    device = result.get("device") or {}
    settings = result.get("settings") or {}
    records = []
    for row in result["results"]:
        if parse_test(row["test"]) is None or row["unit"] != "tok/s":
            continue  # ttft/load rows have no llama-bench equivalent
        n_tokens = row["n_prompt"] + row["n_gen"]
        samples_ts = list(row["samples"])
        slow = next((ts for ts in samples_ts if not ts > 0), None)
        if slow is not None:  # llama-bench stores each run's time (samples_ns) too: 1e9 * n / ts
            name = " · ".join(str(x) for x in (result.get("label"), row["backend"], row["model"]) if x)
            raise BadInput(f"cannot export {row['test']} ({name}): a {slow!r} tok/s sample has no "
                           "llama-bench time per run")
        samples_ns = [round(1e9 * n_tokens / ts) for ts in samples_ts]
        on_gpu = bool(row.get("gpu_layers"))
        backends = settings.get("llama_cpp_backends") or (
            "CPU" if not on_gpu else "Metal" if device.get("apple") else "CUDA")
        quant = row.get("quant")
        records.append({
            "build_commit": f"edgeai-{__version__}", "build_number": 0,
            "cpu_info": str((device.get("cpu") or {}).get("model") or ""), "gpu_info": _gpu_info(device),
            "backends": backends,
            "model_filename": f"{row['model']}-{quant}.gguf" if quant else f"{row['model']}.gguf",
            "model_type": f"{row['model']} {quant or ''}".strip(),
            "model_size": row.get("model_bytes") or 0, "model_n_params": row.get("n_params") or 0,
            "n_batch": settings.get("n_batch", 2048), "n_ubatch": settings.get("n_ubatch", 512),
            "n_threads": row.get("threads") or 0, "n_gpu_layers": row.get("gpu_layers") or 0,
            "n_prompt": row["n_prompt"], "n_gen": row["n_gen"], "n_depth": row.get("depth", 0),
            "test_time": result.get("created_utc") or utc_now(),
            "avg_ns": round(statistics.mean(samples_ns)),
            "stddev_ns": round(statistics.stdev(samples_ns)) if len(samples_ns) > 1 else 0,
            "avg_ts": statistics.mean(samples_ts),
            "stddev_ts": statistics.stdev(samples_ts) if len(samples_ts) > 1 else 0.0,
            "samples_ns": samples_ns, "samples_ts": samples_ts,
            "edgeai_label": result.get("label"), "edgeai_backend": row["backend"],
            "edgeai_model": row["model"], "edgeai_quant": quant,
            "edgeai_peak_rss_mb": row.get("peak_rss_mb"), "edgeai_bw_ceiling_pct": row.get("bw_ceiling_pct"),
            "edgeai_tokens_per_joule": row.get("tokens_per_joule"),
        })
    return records


# -- mlx_lm in --------------------------------------------------------------------------------------
def _mlx_number(text: str, source_name: str) -> float:
    try:
        return float(text)
    except ValueError:  # the patterns take any run of digits and dots ("1.2.3")
        raise BadInput(f"{source_name}: {text!r} is not a number") from None


def _mlx_quant(model: str) -> str | None:
    m = re.search(r"(?i)(\d+)-?bit", model)
    return f"{m[1]}bit" if m else None


def result_from_mlx(text: str, *, model: str | None = None, label: str | None = None,
                    device: dict | None = None, source_name: str = "<text>") -> dict:
    """A schema-v1 result from mlx_lm.benchmark's printout (or mlx_lm.generate --verbose stats)."""
    found = MLX_MODEL.search(text)
    model = model or (found[1] if found else "unknown mlx model")
    quant = _mlx_quant(model)
    rows: dict[tuple[int, int], list[float]] = {}
    peaks: list[float] = []
    settings: dict = {"peak_memory": "mlx peak_memory (GB of 1e9 bytes) converted to MiB"}
    trials = MLX_TRIAL.findall(text)
    if trials:
        shape = MLX_SHAPE.search(text)
        if not shape:
            raise BadInput(f"{source_name}: mlx_lm.benchmark output without its "
                           "'Timing with prompt_tokens=..., generation_tokens=...' line",
                           "pass the whole printout, from 'Running warmup..' on")
        n_prompt, n_gen = int(shape[1]), int(shape[2])
        settings["batch_size"] = int(shape[3] or 1)
        picked = [t for t in trials if t[0] != "Averages"] or trials  # the averages only if no trial
        settings["repetitions"] = len(picked)
        for _, prompt_tps, gen_tps, peak in picked:
            rows.setdefault((n_prompt, 0), []).append(_mlx_number(prompt_tps, source_name))
            rows.setdefault((0, n_gen), []).append(_mlx_number(gen_tps, source_name))
            peaks.append(_mlx_number(peak, source_name))
    else:
        for kind, tokens, tps in MLX_GENERATE.findall(text):
            key = (int(tokens), 0) if kind == "Prompt" else (0, int(tokens))
            rows.setdefault(key, []).append(_mlx_number(tps, source_name))
        peaks = [_mlx_number(p, source_name) for p in MLX_PEAK.findall(text)]
    if not rows:
        raise BadInput(f"no mlx_lm results in {source_name}",
                       "pass the printout of mlx_lm.benchmark (or mlx_lm.generate --verbose)")
    for (n_prompt, n_gen), samples in rows.items():
        problem = _shape_problem(n_prompt, n_gen) or next(
            (p for p in (_speed_problem(s, f"{test_name(n_prompt, n_gen)} sample {i + 1}")
                         for i, s in enumerate(samples)) if p), None)
        if problem:
            raise BadInput(f"{source_name}: {problem}")
    device = device or {"os": None, "hostname_hash": None, "cpu": None, "memory_gb": None, "apple": None,
                        "nvidia": None, "jetson": None, "bandwidth": None}
    tool = "mlx_lm.benchmark"
    result = new_result("llm", device, settings, {"mlx_lm": None},
                        label or "unknown device (mlx_lm output)", {"tool": tool})
    peak_mib = round(max(peaks) * GB_TO_MIB, 1) if peaks else None
    for (n_prompt, n_gen), samples in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        add_row(result, backend="mlx", model=model, quant=quant, test=test_name(n_prompt, n_gen),
                n_prompt=n_prompt, n_gen=n_gen, samples=samples, peak_rss_mb=peak_mib)
    return _checked(result, source_name)


def import_mlx_benchmark(path: Path | str, *, model: str | None = None, label: str | None = None,
                         device: dict | None = None) -> dict:
    """A schema-v1 result (source tool "mlx_lm.benchmark") from mlx_lm.benchmark's printout
    saved to a file; mlx_lm.generate --verbose stats lines are read too. The printout names no
    model: it is taken from a `--model X` on a pasted command line, or pass `model=`."""
    path, text = _read(path)
    return result_from_mlx(text, model=model, label=label, device=device, source_name=str(path))


def import_any(path: Path | str) -> dict:
    """A result from any file compare understands: an edgeai result, llama-bench or mlx_lm output."""
    from edgeai.bench.schema import load_result, parse_result

    path = Path(path)
    if not path.is_file():
        return load_result(path)  # the one-line "no such bench result" / "is a folder" errors
    _, text = _read(path)
    fmt = detect_format(text)
    if fmt == "llama-bench":
        return result_from_llama_bench(llama_bench_records(text) or [], source_name=str(path))
    if fmt in ("mlx_lm.benchmark", "mlx_lm.generate"):
        return result_from_mlx(text, source_name=str(path))
    return parse_result(text, path)
