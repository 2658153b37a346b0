"""The bandwidth ceiling: the probe's result, its per-machine cache, and the tok/s arithmetic.

The probes here are real but tiny (32-64 MiB, one thread, a fraction of a second): they check
the shape and the bookkeeping, never a speed. The cache is the session's tmp one
(`EDGEAI_SHARED_CACHE`, tests/conftest.py) or a tmp file; the user's is never touched.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edgeai.bench import bandwidth_probe as bp
from edgeai.bench.bandwidth import ceiling_tok_s, pct_of_ceiling
from edgeai.bench.device import detect

TINY = {"size_mb": 32, "threads": [1], "min_s": 0.0, "max_s": 0.05}


def test_the_probe_reports_its_best_configuration_with_the_spread_of_its_rounds():
    result = bp.probe(size_mb=64, threads=[1], min_s=0.0, max_s=0.2)
    assert result["probe_version"] == bp.PROBE_VERSION and result["kernel"] == bp.KERNEL
    # whole passes over the buffer, and the buffer in 16 MiB pieces (one thread)
    assert [(c["threads"], c["size_mb"]) for c in result["configs"]] == [(1, 64), (1, 16)]
    best = max(result["configs"], key=lambda c: c["max"])
    assert result["gbps"] == best["max"] > 0 and result["buffer_mb"] == 64
    assert result["threads"] == 1 and result["size_mb"] == best["size_mb"]
    spread = result["spread"]  # each round's fastest read of the winning configuration
    assert spread["min"] <= spread["median"] <= spread["max"] == result["gbps"]
    assert spread["pct"] == pytest.approx(100 * (spread["max"] - spread["min"]) / spread["median"], abs=0.2)
    assert spread["rounds"] == result["rounds"] >= 3  # at least three rounds after the warm-up
    assert [c["samples"] for c in result["configs"]] == [result["rounds"], 4 * result["rounds"]]
    assert result["measured_utc"].endswith("Z")
    assert result["method"].startswith(f"{bp.KERNEL}, 1 thread") and "warmed reads" in result["method"]
    assert result["pinned"] == hasattr(os, "sched_setaffinity")


def test_pieces_stay_long_enough_for_the_barrier_not_to_matter():
    assert bp.chunks_per_pass(1040, 1) == bp.chunks_per_pass(1040, 2) == 16
    assert bp.chunks_per_pass(2048, 32) == 4 and bp.chunks_per_pass(1024, 64) == 1  # whole passes only


def test_every_core_count_is_measured_on_a_small_machine_and_a_sample_on_a_big_one():
    assert bp.thread_counts(1) == [1] and bp.thread_counts(2) == [1, 2]
    assert bp.thread_counts(4) == [1, 2, 3, 4]
    assert bp.thread_counts(12) == [1, 2, 4, 8, 12] and bp.thread_counts(64) == [1, 2, 4, 8, 16, 32, 64]


def test_two_pinned_threads_each_read_their_own_slice():
    if len(bp.usable_cpus()) < 2:
        pytest.skip("needs two cores")
    result = bp.probe(size_mb=32, threads=[1, 2], min_s=0.0, max_s=0.05)
    assert sorted({c["threads"] for c in result["configs"]}) == [1, 2]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        bp.probe(size_mb=16, threads=[0])
    with pytest.raises(ValueError):
        bp.probe(size_mb=16, threads=[1], min_s=2.0, max_s=1.0)


def test_the_buffer_is_well_beyond_the_last_level_cache_within_the_free_memory():
    assert bp.buffer_mb(260.0, 20.0) == 1040  # this VM: 4x its 260 MiB L3
    assert bp.buffer_mb(None, None) == 512 and bp.buffer_mb(8.0, 64.0) == 512
    assert bp.buffer_mb(1024.0, 64.0) == 2048  # capped
    assert bp.buffer_mb(260.0, 1.0) == int(1e9 / 2**20 / 4)  # a quarter of what is free


def test_the_last_level_cache_is_read_from_sysfs(tmp_path):
    for index, size in (("index0", "48K"), ("index2", "2048K"), ("index3", "260M")):
        folder = tmp_path / "sys/devices/system/cpu/cpu0/cache" / index
        folder.mkdir(parents=True)
        (folder / "size").write_text(size + "\n")
    assert bp.last_level_cache_mb(tmp_path) == 260.0
    assert bp.last_level_cache_mb(tmp_path / "nothing") is None


# -- the cache ----------------------------------------------------------------------------------------
def test_the_cache_sits_beside_the_shared_models_cache_never_in_the_users():
    shared = Path(os.environ["EDGEAI_SHARED_CACHE"])  # the session's tmp dir (tests/conftest.py)
    assert bp.cache_path() == shared.parent / "bandwidth.json"


def test_a_miss_measures_and_saves_a_hit_reads_and_remeasure_measures_again(tmp_path):
    path = tmp_path / "bandwidth.json"
    first, cached = bp.cached_probe(path=path, **TINY)
    assert not cached and path.is_file()
    saved = json.loads(path.read_text())["machines"]
    assert list(saved) == [bp.machine_key()] and saved[bp.machine_key()]["gbps"] == first["gbps"]
    assert [h["gbps"] for h in first["history"]] == [first["gbps"]]

    again, cached = bp.cached_probe(path=path, **TINY)
    assert cached and again == first  # nothing measured: the same entry

    fresh, cached = bp.cached_probe(path=path, remeasure=True, **TINY)
    assert not cached and len(fresh["history"]) == 2
    assert [h["gbps"] for h in fresh["history"]] == [first["gbps"], fresh["gbps"]]
    assert bp.cached_probe(path=path, **TINY) == (fresh, True)


def test_other_machines_entries_are_kept_and_an_old_method_or_a_damaged_file_is_measured_again(tmp_path):
    path = tmp_path / "bandwidth.json"
    path.write_text("{ not json")
    _, cached = bp.cached_probe(path=path, **TINY)
    assert not cached
    data = json.loads(path.read_text())
    data["machines"]["Other CPU | 8 cores | 32 GB"] = {"probe_version": bp.PROBE_VERSION, "gbps": 50.0}
    data["machines"][bp.machine_key()]["probe_version"] = 0  # measured by an older method
    path.write_text(json.dumps(data))
    entry, cached = bp.cached_probe(path=path, **TINY)
    assert not cached and entry["probe_version"] == bp.PROBE_VERSION
    assert len(entry["history"]) == 1  # the old method's history is not mixed in
    assert json.loads(path.read_text())["machines"]["Other CPU | 8 cores | 32 GB"]["gbps"] == 50.0


def test_the_machine_key_names_the_cpu_its_cores_and_its_memory():
    model, cores, ram = bp.machine_key().split(" | ")
    assert model and cores == f"{len(bp.usable_cpus())} cores" and ram.endswith(" GB")


def test_detect_attaches_the_cached_probe_in_schema_shape():
    entry, _ = bp.cached_probe(**TINY)  # the session's cache: detect() must not measure again
    device = detect(measure_bandwidth=True)
    bandwidth = device["bandwidth"]
    assert bandwidth["measured_gbps"] == entry["gbps"] and bandwidth["cached"] is True
    assert bandwidth["spread"] == entry["spread"] and bandwidth["method"] == entry["method"]
    assert detect()["bandwidth"] is None


def test_the_text_shows_the_spread_the_table_and_the_last_probes(tmp_path):
    bp.cached_probe(path=tmp_path / "b.json", **TINY)
    entry, cached = bp.cached_probe(path=tmp_path / "b.json", remeasure=True, **TINY)
    text = bp.describe({**entry, "loadavg": [0.1, 0.1, 0.1]}, cached, tmp_path / "b.json")
    assert f"memory read bandwidth: {entry['gbps']:g} GB/s" in text
    assert f"spread {entry['spread']['pct']:g}%" in text and "threads  read MiB" in text
    assert "the last 2 probes here:" in text and "busy" not in text
    busy = bp.describe({**entry, "loadavg": [1000.0, 1000.0, 1000.0]}, cached, tmp_path / "b.json")
    assert "the machine was busy (load 1000 on" in busy


def test_spreads_are_max_minus_min_over_the_median():
    assert bp.spread_pct([20.0, 25.0, 30.0]) == 40.0
    history = [{"gbps": g} for g in (10.0, 27.0, 26.0, 27.5, 26.5, 27.0)]
    assert bp.history_spread(history) == pytest.approx(100 * 1.5 / 27.0, abs=0.1)  # the last five
    assert bp.history_spread(history[:1]) is None


# -- the arithmetic -----------------------------------------------------------------------------------
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


def test_the_command_prints_the_cached_probe(cli):
    entry, _ = bp.cached_probe(**TINY)  # the session's cache, so the command measures nothing
    shown = cli("bench", "bandwidth", "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["cached"] is True and data["gbps"] == entry["gbps"] and data["key"] == bp.machine_key()
    text = cli("bench", "bandwidth")
    out = text.stdout.decode()
    assert text.returncode == 0 and f"memory read bandwidth: {entry['gbps']:g} GB/s (cached" in out
    assert str(bp.cache_path()) in out
