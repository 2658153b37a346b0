"""Saving and restoring a llama.cpp KV cache to a file, so a conversation resumes instantly.

The file holds a small JSON header (format version, the model file's identity, the cached
token ids) and llama.cpp's own sequence-state bytes (the KV cells, no logits). A file made
for another model, or damaged, is ignored: the caller then simply re-processes the history.
Restoring sets the cached token ids, so the backend's prefix matching reuses exactly what
still matches the next prompt.
"""

from __future__ import annotations

import ctypes
import json
import struct
from pathlib import Path

from edgeai.fileio import atomic_writer

MAGIC = b"EDGEKV1\n"


def model_identity(model_path: Path) -> dict:
    st = Path(model_path).stat()
    return {"model": str(Path(model_path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def save_kv(llama_cpp, ctx, seq: int, tokens: list[int], path: Path, identity: dict) -> int:
    """Write a sequence's cached tokens and their KV cells to `path` atomically; return the
    file's size."""
    size = llama_cpp.llama_state_seq_get_size(ctx, seq)
    buffer = (ctypes.c_uint8 * size)()
    written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, seq)
    header = json.dumps({**identity, "tokens": list(tokens)}).encode()
    with atomic_writer(path) as f:
        f.write(MAGIC + struct.pack("<Q", len(header)) + header)
        f.write(memoryview(buffer)[:written])
    return Path(path).stat().st_size


def load_kv(llama_cpp, ctx, seq: int, path: Path, identity: dict, n_ctx: int) -> list[int]:
    """Restore a saved cache into the (emptied) sequence if it belongs to this model; return the
    tokens it holds ([] if the file is not for this model, or damaged)."""
    try:
        raw = Path(path).read_bytes()
        if not raw.startswith(MAGIC):
            return []
        (length,) = struct.unpack_from("<Q", raw, len(MAGIC))
        start = len(MAGIC) + 8
        header = json.loads(raw[start:start + length])
    except (OSError, ValueError, struct.error):
        return []
    tokens = header.pop("tokens", [])
    if header != identity or not tokens or len(tokens) > n_ctx:
        return []
    data = raw[start + length:]
    buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
    if llama_cpp.llama_state_seq_set_data(ctx, buffer, len(data), seq) == 0:
        return []
    # logits are not saved: the next prompt re-evaluates at least its last token anyway
    return [int(t) for t in tokens]
