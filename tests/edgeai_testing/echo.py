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
