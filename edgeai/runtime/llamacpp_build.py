"""What the installed llama-cpp-python build can do, and the AMX guard that keeps it alive.

llama.cpp's AMX matmul segfaults on the first multi-token decode of a quantized GGUF on some
Sapphire Rapids CPUs (llama.cpp issue #20824). A build compiled with AMX keeps the crash
whatever flags we pass at run time, except one: model params `use_extra_bufts=False`, which
`Llama()` exposes no keyword for. `amx_guard()` patches `llama_model_default_params` for the
duration of one model load only — the one sanctioned monkeypatch in the code base.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from edgeai.errors import MissingExtra

INSTALL_HINT = "scripts/setup (or: pip install 'edgeai[llamacpp]')"


def import_llama_cpp() -> ModuleType:
    # OpenMP threads busy-wait by default; on small machines that stalls whatever else runs
    # (the UI, a second process). Must be set before the library is loaded.
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    try:
        import llama_cpp
    except ImportError:
        raise MissingExtra("llama-cpp-python (the llamacpp backend)", INSTALL_HINT) from None
    return llama_cpp


def system_info(llama_cpp: ModuleType) -> str:
    return llama_cpp.llama_print_system_info().decode("utf-8", errors="replace")


def needs_amx_guard(info: str) -> bool:
    """True when the build carries AMX kernels (llama.cpp reports `AMX_INT8 = 1`)."""
    return "AMX_INT8 = 1" in info


def supports_gpu_offload(llama_cpp: ModuleType) -> bool:
    return bool(llama_cpp.llama_supports_gpu_offload())


@contextmanager
def amx_guard(llama_cpp: ModuleType) -> Iterator[bool]:
    """Within the block, new models load without extra buffer types if the build has AMX."""
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
