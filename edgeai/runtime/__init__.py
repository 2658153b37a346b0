"""The backend registry: names mapped to import paths, imported only when chosen.

`edgeai --help` must not import llama_cpp, torch, mlx or onnxruntime, so the built-ins are a
plain dict of "module:Class" strings. Third-party backends register under the entry-point
group `edgeai.backends`; that group is read only when a name misses the built-in dict (or
when `doctor` lists everything), never on every start.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from edgeai.errors import BackendUnavailable, BadInput
from edgeai.runtime.base import Backend, Result, generate

BUILTIN_BACKENDS: dict[str, str] = {
    "llamacpp": "edgeai.runtime.llamacpp:LlamaCppBackend",
    "echo": "edgeai.runtime.echo:EchoBackend",
    "remote": "edgeai.runtime.remote:RemoteBackend",
    "mlx": "edgeai.runtime.mlx:MlxBackend",
    "onnx": "edgeai.runtime.onnx:OnnxBackend",
    "coreml": "edgeai.runtime.coreml:CoreMLBackend",
}


ENTRY_POINT_GROUP = "edgeai.backends"


def plugin_backends() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def all_backends() -> dict[str, str]:
    return {**plugin_backends(), **BUILTIN_BACKENDS}


def backend_class(name: str) -> type:
    target = BUILTIN_BACKENDS.get(name) or plugin_backends().get(name)
    if target is None:
        known = ", ".join(sorted(all_backends()))
        raise BadInput(f"unknown backend {name!r}", f"known backends: {known}")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable(f"backend {name!r} cannot be imported here: {exc}") from exc
    return getattr(module, attr)


def get_backend(name: str) -> Backend:
    """A fresh, unloaded instance of the named backend."""
    return backend_class(name)()


__all__ = ["Backend", "Result", "generate", "get_backend", "backend_class", "all_backends",
           "BUILTIN_BACKENDS"]
