"""A loaded model as a conversation uses it: the backend, its spec, the request that named it,
and the one lock every use of it holds.

Boundary: holding and closing a loaded backend; loading it is `runtime.loader.load_model`. A
backend is not thread-safe, so every turn (the chat app's worker, `edgeai chat --plain`) and
every KV restore runs under `lock`, and `close` waits for it. No UI here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from edgeai.runtime.base import Backend
from edgeai.types import ModelSpec


@dataclass
class LoadedModel:
    """One loaded model. A backend is not thread-safe: every use holds `lock` for a whole turn."""

    backend: Backend
    spec: ModelSpec
    request: str  # what the user asked for (id, path or URL): stored per conversation
    fallback_ctx: int = 4096  # the window when the backend does not say (settings.n_ctx)
    lock: threading.Lock = field(default_factory=threading.Lock)
    kv_owner: int | None = None  # the conversation whose history the KV cache holds now

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def n_ctx(self) -> int:
        """The context window turns are fitted to: what the loaded backend reports."""
        return self.backend.capabilities.context_length or self.fallback_ctx

    @property
    def label(self) -> str:
        return short_id(self.spec.id)

    def matches(self, request: str, backend: str | None) -> bool:
        return request in (self.request, self.spec.id) and backend in (None, self.backend_name)

    def close(self, timeout: float | None = None) -> bool:
        """Close once no turn runs (closing mid-stream would crash llama.cpp). With `timeout`,
        give up after that many seconds and return False: at exit, leaking a backend whose
        worker is stuck beats hanging the terminal."""
        if not self.lock.acquire(timeout=-1 if timeout is None else timeout):
            return False
        try:
            self.backend.close()
        finally:
            self.lock.release()
        return True


def short_id(model_id: str) -> str:
    """'qwen…-instruct:q4_k_m@gguf' -> 'qwen…-instruct:q4_k_m', 'echo:none@echo' -> 'echo': the
    format is implied by the backend shown beside it. Paths and URLs are left as they are."""
    if "/" in model_id or "\\" in model_id:
        return model_id
    name = model_id.partition("@")[0]
    return name.removesuffix(":none")
