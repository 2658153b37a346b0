"""Threads and OpenMP's wait policy per surface (runtime/threads.py): what each surface loads
with, that an exported policy wins, and that a real `edgeai run` loads llama.cpp under the
headless policy its settings name (the policy only takes hold before the runtime loads)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from edgeai.config import Settings
from edgeai.errors import BadInput
from edgeai.runtime import threads
from edgeai.runtime.threads import CHAT, HEADLESS, child_env, for_surface


def test_each_surface_has_its_own_threads_and_policy(monkeypatch):
    monkeypatch.setattr("edgeai.runtime.threads.default_threads", lambda: 4)
    home = Settings(home=".")
    assert (for_surface(home, HEADLESS).threads, for_surface(home, HEADLESS).wait_policy) == (4, "active")
    assert (for_surface(home, CHAT).threads, for_surface(home, CHAT).wait_policy) == (3, "passive")
    tuned = Settings(home=".", threads=2, wait_policy="default", chat_threads=4, chat_wait_policy="active")
    assert (for_surface(tuned, HEADLESS).threads, for_surface(tuned, HEADLESS).wait_policy) == (2, "default")
    assert (for_surface(tuned, CHAT).threads, for_surface(tuned, CHAT).wait_policy) == (4, "active")
    # resolving twice keeps what the first resolution chose (the loader re-resolves the app's)
    chat = for_surface(tuned, CHAT)
    assert for_surface(chat, HEADLESS) == chat
    with pytest.raises(BadInput, match="wait_policy must be one of"):
        for_surface(Settings(home=".", wait_policy="spin"), HEADLESS)


def test_a_child_gets_the_policy_and_default_unsets_it():
    env = child_env("active", {"OMP_WAIT_POLICY": "passive", "PATH": "/bin"})
    assert (env["OMP_WAIT_POLICY"], env["EDGEAI_WAIT_POLICY"], env["PATH"]) == ("active", "active", "/bin")
    assert env["GOMP_SPINCOUNT"] == threads.SPIN_BOUNDS["GOMP_SPINCOUNT"]  # spins, but not forever
    assert child_env("active", {"GOMP_SPINCOUNT": "INFINITY"})["GOMP_SPINCOUNT"] == "INFINITY"  # the user's
    assert "GOMP_SPINCOUNT" not in child_env("passive", {})
    env = child_env("default", {"OMP_WAIT_POLICY": "passive"})
    assert "OMP_WAIT_POLICY" not in env and env["EDGEAI_WAIT_POLICY"] == "default"


def test_an_exported_policy_wins(monkeypatch):
    monkeypatch.setattr(threads, "_loaded", [])
    monkeypatch.setattr(threads, "_ours", [])
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")  # the user's
    assert threads.apply("active") == "passive" and os.environ["OMP_WAIT_POLICY"] == "passive"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert threads.apply("active") == "active"
    assert threads.apply("passive") == "passive"  # ours to change until the runtime loads
    threads.mark_loaded()
    assert threads.apply("default") == "passive" and threads.loaded_policy() == "passive"


def _fresh_process(code: str) -> str:
    """Run `code` in a fresh Python with no wait policy or spin count exported (as a user's
    shell); its last line of output."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.model
@pytest.mark.parametrize("policy", ["active", "default"])
def test_a_headless_load_takes_the_configured_policy(edgeai_home, default_gguf, policy):
    """A fresh process on the real model, no policy exported: the config's `wait_policy`."""
    edgeai_home.mkdir(parents=True, exist_ok=True)
    (edgeai_home / "config.toml").write_text(f'wait_policy = "{policy}"\nthreads = 2\n')
    probe = ("import json, os\n"
             "from edgeai.config import load_settings\n"
             "from edgeai.runtime.loader import load_model\n"
             "from edgeai.runtime import threads\n"
             "backend, spec = load_model(load_settings())\n"
             "print(json.dumps([threads.loaded_policy(), os.environ.get('OMP_WAIT_POLICY')]))\n")
    loaded, exported = json.loads(_fresh_process(probe))
    assert loaded == policy and exported == (None if policy == "default" else policy)


@pytest.mark.model
def test_an_idle_process_under_active_stops_spinning(edgeai_home, default_gguf):
    """`active` spins between calls, not forever: after a reply, an idle process (a server
    between requests) gives the cores back. Unbounded, it kept one at 100% (2.9 s of CPU in 3 s)."""
    probe = ("import time\n"
             "from dataclasses import replace\n"
             "from edgeai.config import load_settings\n"
             "from edgeai.runtime.loader import load_model\n"
             "from edgeai.types import GenParams, Message\n"
             "backend, _ = load_model(replace(load_settings(), threads=2, wait_policy='active'))\n"
             "list(backend.stream([Message('user', 'hi')], GenParams(max_tokens=8, temperature=0)))\n"
             "start = time.process_time()\n"
             "time.sleep(3)\n"
             "print(time.process_time() - start)\n")
    assert float(_fresh_process(probe)) < 1.5  # seconds of CPU while idle for 3 s
