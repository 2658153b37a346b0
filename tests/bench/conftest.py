"""Shared for the bench tests: a result shaped like an `edgeai bench llm --quick` run on this
machine (the numbers are this machine's rough figures from ENVIRONMENT.md, not a measurement)."""

from __future__ import annotations

import pytest

from edgeai.bench.schema import add_row, new_result

DEVICE = {"os": "Linux 6.8 x86_64", "hostname_hash": None,
          "cpu": {"model": "Intel(R) Xeon(R) Platinum 8480+", "arch": "x86_64", "cores": 2,
                  "physical_cores": 2, "features": ["avx2", "avx512f"]},
          "memory_gb": 24.0, "apple": None, "nvidia": None, "jetson": None,
          "bandwidth": {"measured_gbps": 16.2, "method": "numpy read, 1 thread, 1 GiB"}}


def quick_run() -> dict:
    result = new_result("llm", DEVICE, {"threads": 2, "warmup": 1, "repeats": 3, "quick": True},
                        {"edgeai": "0.1.0", "python": "3.11.9"}, "Xeon Platinum 8480+ · 2 cores",
                        {"tool": "edgeai", "version": "0.1.0"})
    common = dict(backend="llamacpp", model="qwen2.5-coder-0.5b-instruct", quant="Q4_K_M",
                  model_bytes=491400064, n_params=494032768, threads=2, gpu_layers=0, peak_rss_mb=612.0)
    add_row(result, **common, test="pp128", samples=[160.1, 158.9, 161.0])
    add_row(result, **common, test="tg32", samples=[19.0, 19.4, 18.7], bw_ceiling_pct=57.6)
    add_row(result, **common, test="ttft", unit="s", n_prompt=128, n_gen=1, samples=[0.8, 0.81, 0.79])
    result["skipped"].append({"backend": "onnx", "reason": "no ONNX artifact given"})
    return result


@pytest.fixture
def quick_result() -> dict:
    """A fresh quick-run result (tests may change it)."""
    return quick_run()


@pytest.fixture
def make_quick_result():
    """Make more quick-run results, each fresh (to compare runs with each other)."""
    return quick_run
