"""The echo backend loaded as a test model: deterministic replies, optional per-token delay."""

from __future__ import annotations

from edgeai.runtime import get_backend
from edgeai.types import LoadOptions, ModelSpec


def echo_model(model_id: str = "echo", token_delay: float = 0.0, n_ctx: int = 4096):
    """(backend, spec) of a loaded echo model named `model_id`."""
    backend = get_backend("echo")
    spec = ModelSpec(id=model_id, family="echo", defaults={"token_delay": token_delay})
    backend.load(spec, LoadOptions(n_ctx=n_ctx))
    return backend, spec


def keep_state(backend, *, on_save=None, restored: list | None = None, marker: bytes = b"kv",
               tokens: int = 7) -> None:
    """Give the echo backend llamacpp's KV-state methods: a save writes `marker` (after calling
    `on_save(path)`), a restore records the conversation id its file is named by
    (`<chat.db uid>-<id>.kv`) in `restored` and reports `tokens` restored."""

    def save_state(path):
        if on_save is not None:
            on_save(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(marker)
        return len(marker)

    def restore_state(path):
        if restored is not None:
            restored.append(int(path.stem.rpartition("-")[2]))
        return tokens

    backend.save_state, backend.restore_state = save_state, restore_state
    backend.clear_state = lambda: None


def on_stream_close(backend, closing) -> None:
    """Call `closing()` when a stream of the backend is closed (finished, stopped or abandoned),
    before the close returns: to see that it happened, or to make it slow."""
    real = backend.stream

    def stream(prompt, params):
        inner = real(prompt, params)

        def chunks():
            try:
                yield from inner
            finally:
                closing()

        return chunks()

    backend.stream = stream


def record_streams(backend) -> list[tuple]:
    """Keep every (prompt, params) the backend's `stream` is given, in order."""
    calls: list[tuple] = []
    real = backend.stream

    def stream(prompt, params):
        calls.append((prompt, params))
        return real(prompt, params)

    backend.stream = stream
    return calls
