"""The bandwidth ceiling: measured read bandwidth here, and the tok/s arithmetic."""

from __future__ import annotations

import time

import pytest

from edgeai.bench.bandwidth import ceiling_tok_s, measure_read_bandwidth, pct_of_ceiling
from edgeai.bench.device import detect


def test_read_bandwidth_is_positive_plausible_and_quick():
    start = time.perf_counter()
    result = measure_read_bandwidth(size_mb=128, seconds=0.3)
    elapsed = time.perf_counter() - start
    assert 0.5 < result["measured_gbps"] < 2000  # any machine from a Pi to an HBM GPU host
    assert result["measured_gbps"] >= result["median_gbps"]  # best of N
    assert result["passes"] >= 3
    assert result["method"] == "numpy read, 1 thread, 128 MiB"
    assert elapsed < 5


def test_detect_attaches_the_measurement_in_schema_shape():
    device = detect(measure_bandwidth=True, bandwidth_threads=2)
    assert set(device["bandwidth"]) == {"measured_gbps", "method"}
    assert device["bandwidth"]["measured_gbps"] > 0.5
    assert ", 2 threads, " in device["bandwidth"]["method"]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        measure_read_bandwidth(size_mb=16, threads=0)


def test_ceiling_of_the_default_model_on_an_m2():
    # anchors.md §C1: Qwen2.5-0.5B Q4_K_M (0.39 GB) on a 100 GB/s M2 -> ~256 tok/s
    assert ceiling_tok_s(100, 0.39e9) == pytest.approx(256.4, abs=0.1)
    # #4167: M2, 7B Q4_0 (3.82 GB) measured 21.91 tok/s = 84% of the ceiling
    assert pct_of_ceiling(21.91, 100, 3.82e9) == pytest.approx(83.7, abs=0.1)


def test_ceiling_needs_positive_inputs():
    with pytest.raises(ValueError):
        ceiling_tok_s(0, 1e9)
    with pytest.raises(ValueError):
        pct_of_ceiling(10, 100, 0)
