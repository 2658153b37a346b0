"""`edgeai doctor --tune`: probes run for real (the echo model: fast and deterministic), the choice
lands in the config file without losing what the user wrote there, and the chat then uses it."""

from __future__ import annotations

import subprocess
import sys

from edgeai.bench.tune import (
    BATCH_SIZES,
    Probe,
    Threads,
    _pick,
    chat_candidates,
    thread_candidates,
    thread_settings,
    tune_chat,
    write_config,
)
from edgeai.config import default_threads, load_settings


def test_thread_candidates_cover_small_machines_and_sample_big_ones():
    assert thread_candidates(1) == [1]
    assert thread_candidates(4) == [1, 2, 3, 4]
    assert thread_candidates(32) == [1, 2, 4, 8, 16, 32]
    assert thread_candidates(12) == [1, 2, 4, 6, 8, 12]


def test_pick_prefers_fewer_threads_within_tolerance():
    probes = [Probe("threads", 1, decode_tps=10.0), Probe("threads", 2, decode_tps=10.2),
              Probe("threads", 4, decode_tps=14.0), Probe("threads", 8, error="crashed")]
    assert _pick(probes, "decode_tps", 0.03).value == 4
    probes[2] = Probe("threads", 4, decode_tps=10.25)
    assert _pick(probes, "decode_tps", 0.03).value == 1  # 10.0 is within 3% of 10.25
    assert _pick([Probe("threads", 1, error="x")], "decode_tps", 0.03) is None


def test_thread_settings_probe_each_wait_policy_where_threads_wait():
    assert thread_settings(1) == [(1, "passive")]
    assert thread_settings(2) == [(1, "passive"), (2, "active"), (2, "passive"), (2, "default")]


def test_ties_go_to_fewer_threads_then_to_sleeping_ones():
    probes = [Probe("threads", Threads(2, "active"), decode_tps=20.5),
              Probe("threads", Threads(2, "passive"), decode_tps=20.0),
              Probe("threads", Threads(1, "passive"), decode_tps=12.0)]
    assert _pick(probes, "decode_tps", 0.03, cost=lambda p: p.value.cost()).value == Threads(2, "passive")
    probes[1] = Probe("threads", Threads(2, "passive"), decode_tps=15.0)
    assert _pick(probes, "decode_tps", 0.03, cost=lambda p: p.value.cost()).value == Threads(2, "active")


def test_the_chat_takes_the_fastest_setting_that_keeps_typing_as_quick():
    measured = {Threads(1, "passive"): (28.0, 0.010), Threads(2, "passive"): (20.0, 0.0105),
                Threads(2, "active"): (36.0, 0.030), Threads(2, "default"): (34.0, 0.0108)}
    seen = []

    def probe(setting, on_probe, on_tick):
        seen.append(setting)
        tps, p95 = measured[setting]
        return Probe("chat", setting, decode_tps=tps, keypress_p95_s=p95)

    probes, choice, note = tune_chat(2, probe=probe)
    assert seen == chat_candidates(2) and seen[0] == Threads(1, "passive")  # the baseline first
    # active types 3x slower while streaming: out; default is within 10% of the baseline and fastest
    assert choice == {"chat_threads": 2, "chat_wait_policy": "default"} and note is None
    measured[Threads(2, "default")] = (34.0, 0.0200)
    assert tune_chat(2, probe=probe)[1] == {"chat_threads": 1, "chat_wait_policy": "passive"}
    assert tune_chat(1, probe=probe)[1] == {"chat_threads": 1, "chat_wait_policy": "passive"}


def test_write_config_keeps_comments_tables_and_other_keys(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('# my settings\nmodel = "echo"\nthreads = 7  # old\n\n[extra]\nthreads = 99\n')
    write_config(path, {"threads": 2, "n_batch": 128, "backend": "llamacpp"})
    text = path.read_text()
    assert text.startswith("# my settings\nmodel = \"echo\"\nthreads = 2\n")
    assert 'n_batch = 128\nbackend = "llamacpp"\n[extra]\nthreads = 99' in text


def test_doctor_tune_writes_the_measured_choice(edgeai_home):
    edgeai_home.mkdir(parents=True, exist_ok=True)
    (edgeai_home / "config.toml").write_text('model = "echo"\n')
    proc = subprocess.run([sys.executable, "-m", "edgeai", "doctor", "--tune"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "decode" in proc.stdout and "only one format" in proc.stdout
    # the probe lines print every candidate ("threads = 1", "n_batch = 64"): the choice is only
    # in the `saved to` line and the config file
    config = edgeai_home / "config.toml"
    saved = [ln for ln in proc.stdout.splitlines() if ln.startswith("saved to ")]
    assert len(saved) == 1 and saved[0].startswith(f"saved to {config}: "), proc.stdout
    chosen = dict(item.split(" = ") for item in saved[0].removeprefix(f"saved to {config}: ").split(", "))
    assert sorted(chosen) == ["n_batch", "threads", "wait_policy"]
    threads, n_batch, policy = int(chosen["threads"]), int(chosen["n_batch"]), chosen["wait_policy"]
    assert threads in thread_candidates(default_threads()) and n_batch in BATCH_SIZES
    assert policy in ("active", "passive", "default") and (threads > 1 or policy == "passive")
    lines = config.read_text().splitlines()
    assert lines == ['model = "echo"', f"threads = {threads}", f'wait_policy = "{policy}"',
                     f"n_batch = {n_batch}"]
    settings = load_settings()
    assert (settings.model, settings.threads, settings.wait_policy, settings.n_batch) == (
        "echo", threads, policy, n_batch)
