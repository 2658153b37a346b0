"""What the installed llama-cpp-python build can do, and the model parameters that keep it alive.

llama.cpp's AMX matmul segfaults on the first multi-token decode of a quantized GGUF on some
Sapphire Rapids CPUs (llama.cpp issue #20824). A build compiled with AMX keeps the crash
whatever flags we pass at run time, except one: model params `use_extra_bufts=False`.
`model_params()` sets it for builds that carry AMX kernels: the backend loads models through
llama.cpp's own API. `Llama()` has no keyword for it, so a raw llama-cpp-python reference
(bench/overhead.py) loads inside `amx_guard()`, which patches `llama_model_default_params` for
that one load — the one sanctioned monkeypatch in the code base.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from edgeai.errors import MissingExtra

INSTALL_HINT = "scripts/setup (or: pip install 'edgeai[llamacpp]')"


def import_llama_cpp(wait_policy: str | None = None) -> ModuleType:
    """llama_cpp, its OpenMP runtime loaded under `wait_policy` (runtime/threads.py) where this
    process has not loaded it yet. Without one, threads sleep between calls (`passive`): a
    library user's process may have a UI or other work that needs the cores."""
    from edgeai.runtime import threads

    threads.apply(wait_policy or "passive")
    try:
        import llama_cpp
    except ImportError:
        raise MissingExtra("llama-cpp-python (the llamacpp backend)", INSTALL_HINT) from None
    threads.mark_loaded()
    return llama_cpp


def system_info(llama_cpp: ModuleType) -> str:
    return llama_cpp.llama_print_system_info().decode("utf-8", errors="replace")


def needs_amx_guard(info: str) -> bool:
    """True when the build carries AMX kernels (llama.cpp reports `AMX_INT8 = 1`)."""
    return "AMX_INT8 = 1" in info


def supports_gpu_offload(llama_cpp: ModuleType) -> bool:
    return bool(llama_cpp.llama_supports_gpu_offload())


def model_params(llama_cpp: ModuleType, gpu_layers: int):
    """llama.cpp's model parameters: `gpu_layers` offloaded (-1: all), and on a build with AMX
    kernels no extra buffer types (no AMX, no CPU repack buffers), which avoids the crash."""
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = gpu_layers
    if needs_amx_guard(system_info(llama_cpp)):
        params.use_extra_bufts = False
    return params


@contextmanager
def amx_guard(llama_cpp: ModuleType) -> Iterator[bool]:
    """Within the block, `Llama()` loads models without extra buffer types if the build has AMX:
    for a raw llama-cpp-python reference (bench/overhead.py), which has no keyword for it. The
    one sanctioned monkeypatch, scoped to that load."""
    if not needs_amx_guard(system_info(llama_cpp)):
        yield False
        return
    low = llama_cpp.llama_cpp  # the module `Llama.__init__` looks the function up in
    original = low.llama_model_default_params

    def params_without_extra_bufts():
        params = original()
        params.use_extra_bufts = False  # no AMX (and no CPU repack) buffers for this model
        return params

    low.llama_model_default_params = params_without_extra_bufts
    try:
        yield True
    finally:
        low.llama_model_default_params = original
