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


def save_kv(llm, path: Path, identity: dict) -> int:
    """Write the cached tokens and their KV cells to `path` atomically; return the byte count."""
    import llama_cpp

    ctx = llm._ctx.ctx
    size = llama_cpp.llama_state_seq_get_size(ctx, 0)
    buffer = (ctypes.c_uint8 * size)()
    written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, 0)
    header = json.dumps({**identity, "tokens": llm._input_ids.tolist()}).encode()
    with atomic_writer(path) as f:
        f.write(MAGIC + struct.pack("<Q", len(header)) + header)
        f.write(memoryview(buffer)[:written])
    return Path(path).stat().st_size


def load_kv(llm, path: Path, identity: dict) -> int:
    """Restore a saved cache if it belongs to this model; return the tokens restored (0 if not)."""
    import llama_cpp

    try:
        raw = Path(path).read_bytes()
        if not raw.startswith(MAGIC):
            return 0
        (length,) = struct.unpack_from("<Q", raw, len(MAGIC))
        start = len(MAGIC) + 8
        header = json.loads(raw[start:start + length])
    except (OSError, ValueError, struct.error):
        return 0
    tokens = header.pop("tokens", [])
    if header != identity or not tokens or len(tokens) > llm.n_ctx():
        return 0
    data = raw[start + length:]
    buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
    llm._ctx.kv_cache_seq_rm(-1, 0, -1)
    if llama_cpp.llama_state_seq_set_data(llm._ctx.ctx, buffer, len(data), 0) == 0:
        llm.reset()
        return 0
    llm.input_ids[: len(tokens)] = tokens
    llm.n_tokens = len(tokens)
    llm._requires_eval = True  # logits are not saved: the next prompt re-evaluates its last token
    return len(tokens)
