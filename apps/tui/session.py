"""The model the chat talks to: a loaded backend, its spec, the request that named it, its lock.

Boundary: turning a model request (catalog id, .gguf path, or an OpenAI-compatible URL such
as `http://127.0.0.1:8080/v1#model`) into a loaded backend. Runs in a worker thread; nothing
here touches Textual. Heavy imports (llama_cpp) happen inside `load_model`, never at import.
Also where a conversation's KV state is kept (`kv_path`) and the size cap on all of them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgeai.config import Settings, default_threads
from edgeai.runtime.base import Backend
from edgeai.types import ModelSpec

# kv/ keeps one state per conversation, growing with its history (a long chat on a 7B model
# can take hundreds of MB): beyond this the least recently used go
KV_CAP_BYTES = 2 * 1024**3

Progress = Callable[[int, int], None]  # (bytes advanced, total bytes) while weights are assembled
Loader = Callable[[str, str | None, Progress | None], tuple[Backend, ModelSpec]]


@dataclass
class LoadedModel:
    """One loaded model. A backend is not thread-safe: every use holds `lock` for a whole turn."""

    backend: Backend
    spec: ModelSpec
    request: str  # what the user asked for (id, path or URL): stored per conversation
    fallback_ctx: int = 4096
    lock: threading.Lock = field(default_factory=threading.Lock)
    kv_owner: int | None = None  # the conversation whose history the KV cache holds now

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def n_ctx(self) -> int:
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


def ui_settings(settings: Settings) -> Settings:
    """Leave one core to the UI thread unless the user chose a thread count: llama.cpp's
    spinning OpenMP threads would otherwise starve typing and scrolling on small machines."""
    if settings.threads is not None:
        return settings
    return replace(settings, threads=max(1, default_threads() - 1))


def default_loader(settings: Settings, chat_template: str | None = None) -> Loader:
    """The real loader: catalog ids, .gguf paths and OpenAI-compatible URLs, via `load_model`."""
    settings = ui_settings(settings)

    def load(request: str, backend: str | None, progress: Progress | None = None
             ) -> tuple[Backend, ModelSpec]:
        from edgeai.runtime.loader import load_model

        return load_model(settings, request, backend, chat_template, progress=progress)

    return load


def kv_path(home: Path, conversation_id: int) -> Path:
    return home / "kv" / f"{conversation_id}.kv"


def prune_kv(folder: Path, cap_bytes: int | None = None) -> list[Path]:
    """Hold the KV states in `folder` to `cap_bytes` (default KV_CAP_BYTES), least recently used
    out first: a state is used when it is saved or restored (a restore touches it). Returns
    what was removed. Only a speed-up is lost: that history is re-processed when reopened."""
    cap = KV_CAP_BYTES if cap_bytes is None else cap_bytes
    states = []
    for path in folder.glob("*.kv"):
        try:
            states.append((path.stat(), path))
        except OSError:
            continue  # deleted with its conversation meanwhile
    states.sort(key=lambda state: state[0].st_mtime, reverse=True)
    total, removed = 0, []
    for stat, path in states:
        total += stat.st_size
        if total > cap:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def can_keep_state(backend: Backend) -> bool:
    return hasattr(backend, "save_state") and hasattr(backend, "restore_state")
