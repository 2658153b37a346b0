"""Shared fixtures: a fresh EDGEAI_HOME per test, one assembled default model per session,
the echo backend, and a guard that fails any test opening a non-loopback connection."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from edgeai.config import Settings

# The test process hosts servers, apps and clients beside in-process models, and runs CLI children
# while other tests' threads live on: OpenMP threads that spin between calls would take the cores
# they need. An exported policy is the user's, which edgeai's surfaces respect (runtime/threads.py);
# tests of the policy choice itself remove it.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def is_loopback(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    host = address[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it would need DNS, which is network too


class NetworkAccessInTest(RuntimeError):
    pass


def _guarded(real):
    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(address):
            raise NetworkAccessInTest(f"test tried to connect to {address!r}: tests stay on loopback")
        return real(self, address)

    return connect


@pytest.fixture(autouse=True, scope="session")
def no_network():
    socket.socket.connect = _guarded(_real_connect)
    socket.socket.connect_ex = _guarded(_real_connect_ex)
    yield
    socket.socket.connect, socket.socket.connect_ex = _real_connect, _real_connect_ex


@pytest.fixture(scope="session")
def session_models(tmp_path_factory) -> Path:
    """One models dir for the whole run, so the default model is assembled once."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(autouse=True)
def edgeai_home(tmp_path, monkeypatch, session_models) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("EDGEAI_HOME", str(home))
    monkeypatch.setenv("EDGEAI_MODELS_DIR", str(session_models))
    # a test that clears EDGEAI_MODELS_DIR shares through here, never the user's real cache
    monkeypatch.setenv("EDGEAI_SHARED_CACHE", str(session_models.parent / "shared-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for var in ("EDGEAI_MODEL", "EDGEAI_BACKEND", "EDGEAI_CTX", "EDGEAI_THREADS", "EDGEAI_CONFIG",
                "EDGEAI_GPU_LAYERS", "EDGEAI_WAIT_POLICY"):
        monkeypatch.delenv(var, raising=False)
    return home


def _llama_cpp_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def _default_model_installed() -> bool:
    from edgeai.models.catalog import find_entry
    from edgeai.models.resolve import package_installed

    return package_installed(find_entry("qwen2.5-coder-0.5b-instruct").artifact())


REAL_MODEL_REASON = ("needs llama-cpp-python and the embedded default model "
                     "(scripts/setup installs both)")
real_model_available = _llama_cpp_importable() and _default_model_installed()


@pytest.fixture(scope="session")
def default_gguf(session_models, tmp_path_factory) -> Path:
    if not real_model_available:
        pytest.skip(REAL_MODEL_REASON)
    from edgeai.models import resolve

    settings = Settings(home=tmp_path_factory.mktemp("home"), models_home=session_models)
    return resolve("qwen2.5-coder-0.5b-instruct", settings).artifacts["gguf"]


@pytest.fixture(scope="session")
def llama_backend(default_gguf):
    """One loaded llamacpp backend on the default model, shared (loading is the slow part)."""
    from edgeai.runtime.llamacpp import LlamaCppBackend
    from edgeai.types import LoadOptions, ModelSpec

    backend = LlamaCppBackend()
    backend.load(ModelSpec(id="default", artifacts={"gguf": default_gguf}),
                 LoadOptions(n_ctx=2048, n_threads=2))
    yield backend
    backend.close()


@pytest.fixture
def settings(edgeai_home) -> Settings:
    """The settings a command would load in this test's data dir."""
    from edgeai.config import load_settings

    return load_settings()


@pytest.fixture
def db(tmp_path):
    """A chat.db in the test's folder."""
    from edgeai.chatdb import ChatDB

    database = ChatDB(tmp_path / "chat.db")
    yield database
    database.close()


@pytest.fixture
def make_echo():
    """`make_echo(model_id=, token_delay=, n_ctx=)` -> (backend, spec) of a loaded echo model."""
    from edgeai_testing.echo import echo_model

    return echo_model


@pytest.fixture
def cli():
    """Run the real `edgeai` command in a subprocess, as a user would."""
    return run_edgeai


def run_edgeai(*args: str, input: str | bytes | None = None, timeout: float = 300,
               env: dict | None = None) -> subprocess.CompletedProcess:
    data = input.encode() if isinstance(input, str) else input
    return subprocess.run([sys.executable, "-m", "edgeai", *args], input=data,
                          capture_output=True, timeout=timeout, env={**os.environ, **(env or {})})
