"""The embedder seam: a Protocol, a registry of named implementations, and their identity.

Like the backend registry, built-ins are "module:Class" strings imported only when chosen, so
nothing here pulls numpy or tokenizers. A collection records `embedder_meta(e)` when it is
created and refuses an embedder whose id, dimension, normalization or version differ.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from edgeai.errors import BadInput, EdgeAIError

EMBEDDERS: dict[str, str] = {
    "minilm": "edgeai.rag.minilm:MiniLMEmbedder",
}
DEFAULT_EMBEDDER = "minilm"


class Embedder(Protocol):
    id: str  # stable name of the vectors, e.g. "minilm-l6-v2"
    dim: int
    normalized: bool  # rows have unit length, so a dot product is the cosine
    version: str  # changes whenever the same text would get a different vector
    max_tokens: int  # the model sees at most this many word pieces; chunkers stay under it

    def count_tokens(self, text: str) -> int: ...

    def embed(self, texts: list[str]) -> Any: ...  # float32 numpy array (len(texts), dim)


def get_embedder(name: str = DEFAULT_EMBEDDER, **kwargs: Any) -> Embedder:
    """A ready embedder by registry name (keyword arguments go to its constructor)."""
    target = EMBEDDERS.get(name)
    if target is None:
        raise BadInput(f"unknown embedder {name!r}", f"known embedders: {', '.join(sorted(EMBEDDERS))}")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EdgeAIError(f"embedder {name!r} cannot be imported here: {exc}",
                          "install the rag extra: pip install 'edgeai[rag]'") from exc
    return getattr(module, attr)(**kwargs)


def embedder_meta(embedder: Embedder) -> dict[str, Any]:
    """What a collection stores to recognise the vectors it holds."""
    return {"id": embedder.id, "dim": int(embedder.dim), "normalized": bool(embedder.normalized),
            "version": str(embedder.version)}


_controller: list[Any] = []  # threadpoolctl's scan of loaded libraries costs ~1 ms: once per process


@contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Limit numpy's BLAS pool for a block: one query on 2 busy cores is fastest on 1 thread."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # the limit is a matter of speed, never of correctness
        yield
        return
    if not _controller:
        import numpy  # noqa: F401  (its BLAS must be loaded before the scan)

        _controller.append(ThreadpoolController())
    with _controller[0].limit(limits=n, user_api="blas"):
        yield
