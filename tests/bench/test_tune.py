"""`edgeai doctor --tune`: probes run for real (the echo model: fast and deterministic), the choice
lands in the config file without losing what the user wrote there, and the chat then uses it."""

from __future__ import annotations

import subprocess
import sys

from edgeai.bench.tune import Probe, _pick, thread_candidates, write_config
from edgeai.config import load_settings


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
    assert "threads = 1" in proc.stdout and "n_batch = 64" in proc.stdout and "decode" in proc.stdout
    assert "only one format" in proc.stdout
    settings = load_settings()
    assert settings.model == "echo" and settings.threads >= 1 and settings.n_batch in (64, 128, 256, 512)
    assert f"saved to {edgeai_home / 'config.toml'}" in proc.stdout
