"""The bench result file (schema version 1): build, check, load and save one run's JSON.

Boundary: this module knows the file's shape and nothing about how numbers are measured
(bench/llm.py), imported (bench/importers.py) or shown (bench/compare.py). Standard library
only, so `validate` runs anywhere a result file is read. One file per run:
{schema_version, kind, suite, created_utc, label, source, device, versions, settings,
 results: [row...], skipped: [{backend, reason}...]}; a row is one (backend, model, test, depth)
with its raw samples and their median/min/max.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgeai.errors import BadInput, EdgeAIError
from edgeai.fileio import atomic_write

SCHEMA_VERSION = 1
KIND = "edgeai-bench-result"
SUITES = ("llm", "embed", "rag", "stt", "tts", "serve", "guard")
SOURCE_TOOLS = ("edgeai", "llama-bench", "mlx_lm.benchmark", "published")
# llama-bench's names (pp512, tg128, pp512+tg128) plus ours: time to first token, load time
LLM_TEST = re.compile(r"^(?:pp(?P<pp>[1-9]\d*)(?:\+tg(?P<pgtg>[1-9]\d*))?|tg(?P<tg>[1-9]\d*)|ttft|load)$")
OTHER_TEST = re.compile(r"^[a-z][a-z0-9_.+@-]*$")  # embed/rag/stt name their own tests
UTC_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z$")
# optional (a row may lack them): a decode row's ceiling share carries the bandwidth it used, that
# bandwidth's spread over the probe's passes in % (null for a spec), and the bytes a step streams
ROW_NUMBERS = ("peak_rss_mb", "bw_ceiling_pct", "tokens_per_joule", "bw_gbps", "bw_spread_pct")
ROW_COUNTS = ("model_bytes", "n_params", "bytes_per_token")


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def summarize(samples: list[float]) -> tuple[float, float, float]:
    """(median, min, max) of the raw samples."""
    return statistics.median(samples), min(samples), max(samples)


def parse_test(test: str) -> tuple[int, int] | None:
    """(n_prompt, n_gen) a throughput test name implies: pp512 → (512, 0), tg128 → (0, 128),
    pp512+tg128 → (512, 128); None for ttft/load and names that are not llama-bench's."""
    m = LLM_TEST.match(test)
    if not m or not (m["pp"] or m["tg"]):
        return None
    if m["tg"]:
        return 0, int(m["tg"])
    return int(m["pp"]), int(m["pgtg"] or 0)


def test_name(n_prompt: int, n_gen: int) -> str:
    """llama-bench's name for a (n_prompt, n_gen) run (tools/llama-bench: pp, tg or pp+tg)."""
    if n_gen == 0:
        return f"pp{n_prompt}"
    if n_prompt == 0:
        return f"tg{n_gen}"
    return f"pp{n_prompt}+tg{n_gen}"


def ceiling_pct(tok_s: float, bytes_per_token: float | None, bandwidth_gbps: float | None) -> float | None:
    """Decode speed as a percentage of the memory-bandwidth ceiling: every generated token
    streams the weights (and KV cache) once, so tok/s <= bandwidth / bytes read per token."""
    if not bytes_per_token or not bandwidth_gbps:
        return None
    from edgeai.bench.bandwidth import pct_of_ceiling

    return round(pct_of_ceiling(tok_s, bandwidth_gbps, bytes_per_token), 1)


def bandwidth_gbps(device: dict, *, on_gpu: bool) -> tuple[float | None, str | None]:
    """The bandwidth a run's ceiling is computed against, and where it came from. A GPU run
    uses the accelerator's spec (unified memory on Apple/Jetson is the same pool); a CPU run
    uses what the machine measured, falling back to an Apple chip's spec (unified memory)."""
    nvidia = device.get("nvidia") or []
    jetson = device.get("jetson") or {}
    apple = device.get("apple") or {}
    measured = (device.get("bandwidth") or {}).get("measured_gbps")
    if on_gpu:
        for spec, where in ((jetson.get("bandwidth_gbps_spec"), "Jetson spec"),
                            (nvidia[0].get("bandwidth_gbps_spec") if nvidia else None, "GPU spec"),
                            (apple.get("bandwidth_gbps_spec"), "Apple spec")):
            if spec:
                return float(spec), where
    if measured:
        return float(measured), "measured"
    if apple.get("bandwidth_gbps_spec"):
        return float(apple["bandwidth_gbps_spec"]), "Apple spec"
    if jetson.get("bandwidth_gbps_spec"):
        return float(jetson["bandwidth_gbps_spec"]), "Jetson spec"
    return None, None


# -- building ---------------------------------------------------------------------------------------
def new_result(suite: str, device: dict, settings: dict, versions: dict, label: str,
               source: dict | str = "edgeai") -> dict:
    """An empty result for one run; rows are added with `add_row`. `source` is a dict
    {tool, version, citation, url} or just the tool's name."""
    if isinstance(source, str):
        source = {"tool": source}
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "suite": suite,
        "created_utc": utc_now(),
        "label": label,
        "source": {"tool": source.get("tool", "edgeai"), "version": source.get("version"),
                   "citation": source.get("citation"), "url": source.get("url")},
        "device": device,
        "versions": dict(versions),
        "settings": dict(settings),
        "results": [],
        "skipped": [],
    }


def add_row(result: dict, **row: Any) -> dict:
    """Append one row: median/min/max come from `samples`; n_prompt/n_gen default to what the
    test name says and depth to 0. Returns the row as stored."""
    samples = [float(s) for s in row.pop("samples")]
    if not samples:
        raise ValueError("a row needs at least one sample")
    implied = parse_test(row["test"]) or (0, 0)
    median, low, high = summarize(samples)
    full = {
        "backend": row.pop("backend"), "model": row.pop("model"), "quant": row.pop("quant", None),
        "model_bytes": row.pop("model_bytes", None), "n_params": row.pop("n_params", None),
        "test": row.pop("test"),
        "n_prompt": row.pop("n_prompt", implied[0]), "n_gen": row.pop("n_gen", implied[1]),
        "depth": row.pop("depth", 0),
        "unit": row.pop("unit", "tok/s"),
        "samples": samples, "median": median, "min": low, "max": high,
        "threads": row.pop("threads", None), "gpu_layers": row.pop("gpu_layers", None),
        "peak_rss_mb": row.pop("peak_rss_mb", None), "bw_ceiling_pct": row.pop("bw_ceiling_pct", None),
        "tokens_per_joule": row.pop("tokens_per_joule", None),
    }
    full.update(row)  # extra keys a suite records (e.g. the seconds into a --sustained run)
    result["results"].append(full)
    return full


# -- checking ---------------------------------------------------------------------------------------
def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-6)  # writers may round to 4 digits


def _check_row(row: Any, where: str, suite: str) -> list[str]:
    if not isinstance(row, dict):
        return [f"{where}: a row must be an object"]
    bad: list[str] = []
    for key in ("backend", "model", "test", "unit"):
        if not isinstance(row.get(key), str) or not row.get(key):
            bad.append(f"{where}.{key}: missing or not a non-empty string")
    if row.get("quant") is not None and not isinstance(row["quant"], str):
        bad.append(f"{where}.quant: must be a string or null")
    for key in ROW_COUNTS:
        if row.get(key) is not None and not (_is_int(row[key]) and row[key] > 0):
            bad.append(f"{where}.{key}: must be a positive integer or null")
    for key in ("n_prompt", "n_gen", "depth"):
        if not (_is_int(row.get(key)) and row[key] >= 0):
            bad.append(f"{where}.{key}: must be an integer >= 0")
    for key in ("threads", "gpu_layers"):
        if row.get(key) is not None and not _is_int(row[key]):
            bad.append(f"{where}.{key}: must be an integer or null")
    for key in ROW_NUMBERS:
        if row.get(key) is not None and not (_is_num(row[key]) and row[key] >= 0):
            bad.append(f"{where}.{key}: must be a number >= 0 or null")
    test = row.get("test")
    if isinstance(test, str) and test:
        grammar = LLM_TEST if suite == "llm" else OTHER_TEST
        if not grammar.match(test):
            bad.append(f"{where}.test: {test!r} is not a test name (ppN, tgN, ppN+tgN, ttft, load)"
                       if suite == "llm" else f"{where}.test: {test!r} is not a test name")
        implied = parse_test(test) if suite == "llm" else None
        if implied and (row.get("n_prompt"), row.get("n_gen")) != implied:
            bad.append(f"{where}: test {test} means n_prompt={implied[0]}, n_gen={implied[1]}, "
                       f"the row says {row.get('n_prompt')}, {row.get('n_gen')}")
        if implied and row.get("unit") != "tok/s":
            bad.append(f"{where}.unit: a {test} row is in tok/s, not {row.get('unit')!r}")
        if test in ("ttft", "load") and row.get("unit") not in ("s", "ms"):
            bad.append(f"{where}.unit: a {test} row is in s or ms, not {row.get('unit')!r}")
    samples = row.get("samples")
    if not (isinstance(samples, list) and samples and all(_is_num(s) for s in samples)):
        bad.append(f"{where}.samples: must be a non-empty list of numbers")
        return bad
    median, low, high = summarize(samples)
    for key, want in (("median", median), ("min", low), ("max", high)):
        got = row.get(key)
        if not _is_num(got):
            bad.append(f"{where}.{key}: missing or not a number")
        elif not _close(got, want):
            bad.append(f"{where}.{key}: {got} does not match the samples' {key} {want:g}")
    return bad


def _check_source(source: Any) -> list[str]:
    if not isinstance(source, dict):
        return ["source: must be an object {tool, version, citation, url}"]
    bad = []
    if source.get("tool") not in SOURCE_TOOLS:
        bad.append(f"source.tool: {source.get('tool')!r} is not one of {', '.join(SOURCE_TOOLS)}")
    for key in ("version", "citation", "url"):
        if source.get(key) is not None and not isinstance(source[key], str):
            bad.append(f"source.{key}: must be a string or null")
    if source.get("tool") == "published" and not (source.get("citation") and source.get("url")):
        bad.append("source: a published result must cite where it comes from (citation and url)")
    return bad


def _check_device(device: Any) -> list[str]:
    if not isinstance(device, dict):
        return ["device: must be an object (bench.device.detect() output)"]
    bad = []
    if device.get("cpu") is not None and not isinstance(device["cpu"], dict):
        bad.append("device.cpu: must be an object or null")
    if device.get("memory_gb") is not None and not _is_num(device["memory_gb"]):
        bad.append("device.memory_gb: must be a number or null")
    for key in ("apple", "jetson", "bandwidth"):
        if device.get(key) is not None and not isinstance(device[key], dict):
            bad.append(f"device.{key}: must be an object or null")
    nvidia = device.get("nvidia")
    if nvidia is not None and not (isinstance(nvidia, list) and all(isinstance(g, dict) for g in nvidia)):
        bad.append("device.nvidia: must be a list of objects or null")
    return bad


def validate(obj: Any) -> list[str]:
    """Every problem with a result object, one line each; empty when it is a valid schema-v1 file."""
    if not isinstance(obj, dict):
        return ["a bench result is a JSON object"]
    bad: list[str] = []
    if obj.get("schema_version") != SCHEMA_VERSION or isinstance(obj.get("schema_version"), bool):
        bad.append(f"schema_version: {obj.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    if obj.get("kind") != KIND:
        bad.append(f"kind: {obj.get('kind')!r}, expected {KIND!r}")
    suite = obj.get("suite")
    if suite not in SUITES:
        bad.append(f"suite: {suite!r} is not one of {', '.join(SUITES)}")
    if not (isinstance(obj.get("created_utc"), str) and UTC_STAMP.match(obj["created_utc"])):
        bad.append(f"created_utc: {obj.get('created_utc')!r} is not a UTC time like 2026-11-22T17:30:00Z")
    if not (isinstance(obj.get("label"), str) and obj["label"].strip()):
        bad.append("label: missing or empty")
    bad += _check_source(obj.get("source"))
    bad += _check_device(obj.get("device"))
    for key in ("versions", "settings"):
        if not isinstance(obj.get(key), dict):
            bad.append(f"{key}: must be an object")
    versions = obj.get("versions")
    if isinstance(versions, dict):
        bad += [f"versions.{k}: must be a string or null" for k, v in versions.items()
                if v is not None and not isinstance(v, str)]
    results = obj.get("results")
    if not isinstance(results, list):
        bad.append("results: must be a list")
    else:
        for i, row in enumerate(results):
            bad += _check_row(row, f"results[{i}]", suite if suite in SUITES else "llm")
    skipped = obj.get("skipped")
    if not isinstance(skipped, list):
        bad.append("skipped: must be a list")
    else:
        for i, item in enumerate(skipped):
            if not (isinstance(item, dict) and isinstance(item.get("backend"), str)
                    and isinstance(item.get("reason"), str)):
                bad.append(f"skipped[{i}]: must be {{backend, reason}} strings")
    return bad


# -- files ------------------------------------------------------------------------------------------
def _other_tool(path: Path, text: str) -> BadInput | None:
    """The error for a file that is another tool's output (it can be imported), else None."""
    from edgeai.bench.importers import detect_format

    fmt = detect_format(text)
    if fmt in ("llama-bench", "mlx_lm.benchmark", "mlx_lm.generate"):
        return BadInput(f"{path} is {fmt} output, not an edgeai bench result",
                        f"convert it with `edgeai bench import {path} -o result.json` "
                        "(bench compare reads it as it is)")
    return None


def parse_result(text: str, path: Path | str = "<text>") -> dict:
    """A result from its JSON text; BadInput with one line for anything that is not a valid one."""
    path = Path(path)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        other = _other_tool(path, text)
        if other:
            raise other from None
        raise BadInput(f"truncated or not JSON: {path} (line {exc.lineno} col {exc.colno})",
                       "re-run the benchmark, or restore the file from where it was copied") from None
    except RecursionError:  # "[[[[..." deeper than the parser's recursion limit
        raise BadInput(f"truncated or not JSON: {path} (nested too deeply)",
                       "re-run the benchmark, or restore the file from where it was copied") from None
    if not isinstance(obj, dict) or obj.get("kind") != KIND:
        raise _other_tool(path, text) or BadInput(
            f"not an edgeai bench result: {path}",
            f"a result is a JSON object with \"kind\": \"{KIND}\" (written by edgeai bench)")
    version = obj.get("schema_version")
    if _is_int(version) and version > SCHEMA_VERSION:
        raise BadInput(f"{path} was written by a newer edgeai (schema {version}); "
                       f"this edgeai reads schema {SCHEMA_VERSION} — upgrade",
                       "pip install -U edgeai")
    if version != SCHEMA_VERSION:
        raise BadInput(f"{path} has an unknown schema_version {version!r} (this edgeai reads "
                       f"{SCHEMA_VERSION})")
    problems = validate(obj)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BadInput(f"{path} is not a valid bench result: {problems[0]}{more}")
    return obj


def load_result(path: Path | str) -> dict:
    """Read and check one result file. Every failure is a BadInput with a one-line message."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"no such bench result: {path}")
    if path.is_dir():
        raise BadInput(f"{path} is a folder, not a bench result file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"not a text file: {path} (a bench result is JSON)") from None
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}") from None
    return parse_result(text, path)


def dumps(result: dict) -> str:
    return json.dumps(result, indent=2, ensure_ascii=False) + "\n"


def save_result(result: dict, path: Path | str) -> Path:
    """Write a result atomically, refusing one that does not validate (a bug of ours, not yours)."""
    problems = validate(result)
    if problems:
        raise EdgeAIError(f"refusing to write an invalid bench result: {problems[0]}")
    path = Path(path)
    atomic_write(path, dumps(result))
    return path
