"""`edgeai bench llm` end to end: the real default model through llama.cpp, the echo backend for
the protocol's arithmetic, skipped backends, bad plans, and Ctrl-C."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeai.bench.llm import Plan, planned_ticks
from edgeai.bench.llm_protocol import exact_prompt, measure
from edgeai.bench.schema import load_result, validate
from edgeai.runtime.echo import EchoBackend
from edgeai.types import LoadOptions, ModelSpec


def bench(*args: str, cwd: Path | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """`edgeai bench ...` in a subprocess, as a user runs it (text output)."""
    return subprocess.run([sys.executable, "-m", "edgeai", "bench", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def _rows(result: dict, test: str) -> list[dict]:
    return [row for row in result["results"] if row["test"] == test]


@pytest.mark.model
def test_quick_run_on_the_default_model(edgeai_home, tmp_path):
    """The acceptance run: llamacpp on the default GGUF, JSON under the data dir, the table with a
    `% of BW ceiling` column holding a percentage, the other backends skipped with a reason."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = bench("llm", "--quick", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert "% of BW ceiling" in proc.stdout
    assert re.search(r"\b\d{1,3}\.\d%", proc.stdout), proc.stdout
    saved = Path(re.search(r"saved: (\S+)", proc.stdout).group(1))
    assert saved.parent == edgeai_home / "bench" and not list(cwd.iterdir())
    result = load_result(saved)
    assert validate(result) == []
    pp, tg = _rows(result, "pp128"), _rows(result, "tg32")
    assert len(pp) == 1 and len(pp[0]["samples"]) == 3 and pp[0]["n_prompt"] == 128
    assert tg[0]["n_gen"] == 32 and tg[0]["median"] > 0 and 0 < tg[0]["bw_ceiling_pct"] < 100
    assert tg[0]["quant"] == "Q4_K_M" and tg[0]["peak_rss_mb"] > 100
    assert result["device"]["bandwidth"]["measured_gbps"] > 0
    assert {s["backend"] for s in result["skipped"]} >= {"mlx", "onnx"}


def test_echo_protocol_counts_tokens_exactly():
    backend = EchoBackend()
    backend.load(ModelSpec(id="echo", family="echo"), LoadOptions())
    assert len(backend.tokenize(exact_prompt(backend, 100, salt=3))) == 100
    assert exact_prompt(backend, 50, salt=1) != exact_prompt(backend, 50, salt=2)  # no shared prefix
    ticks = []
    samples = list(measure(backend, "echo", pp=64, tg=16, depths=[0, 200], warmup=1, repeats=2,
                           tick=ticks.append))
    plan = Plan(model="echo", pp=64, tg=16, depths=(0, 200), warmup=1, repeats=2)
    assert len(ticks) == planned_ticks(plan, "echo")  # echo keeps no cache: no pp at depth 200
    assert [s.test for s in samples if s.depth == 200] == ["tg16", "tg16"]
    assert all(s.n_prompt == 64 for s in samples if s.test == "pp64")
    assert all(s.n_gen == 16 for s in samples if s.test == "tg16")  # ignore_eos: never short


def test_unloadable_backend_is_skipped_and_the_run_goes_on(tmp_path):
    out = tmp_path / "r.json"
    proc = bench("llm", "--model", "echo", "--backend", "llamacpp", "--backend", "echo",
               "--backend", "mlx", "--pp", "32", "--tg", "8", "--repeats", "2", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    result = load_result(out)
    reasons = {s["backend"]: s["reason"] for s in result["skipped"]}
    assert "GGUF" in reasons["llamacpp"] and "Traceback" not in proc.stderr
    assert "MLX" in reasons["mlx"]
    assert _rows(result, "tg8")[0]["backend"] == "echo"
    assert "skipped llamacpp:" in proc.stdout


def test_nothing_measured_is_a_failure(tmp_path):
    proc = bench("llm", "--model", "echo", "--backend", "llamacpp", "--pp", "16", "--tg", "4",
               "-o", str(tmp_path / "r.json"))
    assert proc.returncode == 1 and "skipped llamacpp" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["--backend", "nope"], "unknown backend 'nope'"),
    (["--tg", "1"], "--tg must be at least 2"),
    (["--depth", "5000"], "does not fit"),
    (["--repeats", "0"], "--repeats must be at least 1"),
])
def test_bad_plans_are_refused_before_anything_runs(tmp_path, args, message):
    proc = bench("llm", "--model", "echo", *args, "-o", str(tmp_path / "r.json"))
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r.json").exists()


def test_ctrl_c_stops_the_run_and_its_child(tmp_path, edgeai_home):
    out = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "edgeai", "bench", "llm", "--model", "echo", "--backend", "echo",
           "--pp", "64", "--tg", "400", "--repeats", "50", "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(6)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert not out.exists()
    children = subprocess.run(["pgrep", "-f", "edgeai.bench.llm --child"], capture_output=True, text=True)
    assert children.stdout.strip() == ""


def test_result_json_is_loadable_by_compare(tmp_path):
    out = tmp_path / "r.json"
    assert bench("llm", "--model", "echo", "--backend", "echo", "--pp", "16", "--tg", "4",
               "--repeats", "1", "-o", str(out)).returncode == 0
    exported = tmp_path / "lb.json"
    assert bench("export", str(out), "-o", str(exported)).returncode == 0
    rows = json.loads(exported.read_text())
    assert {r["n_prompt"] for r in rows} >= {16}


def test_sustained_mode_keeps_every_sample_with_its_time(tmp_path):
    out = tmp_path / "r.json"
    proc = bench("llm", "--model", "echo", "--backend", "echo", "--pp", "0", "--tg", "8", "--repeats", "1",
                 "--sustained", "2", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    result = load_result(out)
    assert [r["test"] for r in result["results"]].count("tg8") == 1  # the timeline is not a second row
    timeline = result["sustained"]["echo"]
    assert len(timeline["tok_s"]) >= 3 and timeline["test"] == "tg8" and 0.5 < timeline["ratio"] < 2
    times = timeline["at_s"]
    assert times == sorted(times) and 1.5 < times[-1] < 4
    assert "sustained echo: tg8" in proc.stdout


def test_embed_suite_reports_encoder_speed_and_corpus_ingest(tmp_path):
    corpus = tmp_path / "docs"
    corpus.mkdir()
    for i in range(3):
        (corpus / f"note{i}.md").write_text(f"# Note {i}\n\nThe vault code for wing {i} is 7{i}31.\n")
    out = tmp_path / "e.json"
    proc = bench("embed", "--corpus", str(corpus), "--repeats", "1", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    result = load_result(out)
    assert result["suite"] == "embed" and validate(result) == []
    tests = {row["test"]: row for row in result["results"]}
    assert tests["encode200"]["unit"] == "chunks/s" and tests["encode200"]["median"] > 0
    assert tests["query"]["unit"] == "ms" and tests["ingest"]["median"] > 0
    assert not list((tmp_path / "home").glob("bench-embed-*"))  # the throwaway collection is gone


def test_rag_suite_reports_latency_per_path_and_recall(tmp_path):
    out = tmp_path / "g.json"
    proc = bench("rag", "--sizes", "600", "--queries", "20", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "ANN recall@10" in proc.stdout
    result = load_result(out)
    tests = {row["test"]: row for row in result["results"]}
    assert {"exact@600", "ann@600", "faiss-flat@600"} <= set(tests)
    assert len(tests["exact@600"]["samples"]) == 20 and tests["ann@600"]["recall_at_10"] > 0.9
    assert bench("rag", "--sizes", "ten").returncode == 2
