"""Streaming safetensors: write tensors one at a time under a header planned up front, and read
them one at a time, so memory holds one tensor, never a model.

The `safetensors` package writes whole dicts only; the format itself is simple (an 8-byte
little-endian header length, a JSON header of dtype/shape/offsets, then the raw data), so the
writer here plans the header from shapes alone. Keys are sorted: the same tensors give the
same bytes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

DTYPES = {"F32": 4, "F16": 2, "BF16": 2}


def to_dtype(array, dtype: str) -> bytes:
    """A float32 numpy array as little-endian bytes of `dtype` (bf16 rounded to nearest even)."""
    import numpy as np

    array = np.ascontiguousarray(array, dtype=np.float32)
    if dtype == "F32":
        return array.tobytes()
    if dtype == "F16":
        return array.astype(np.float16).tobytes()
    bits = array.view(np.uint32)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16).tobytes()


def write_streaming(path: Path, shapes: dict[str, tuple[int, ...]], dtype: str,
                    produce: Callable[[str], object], metadata: dict[str, str] | None = None,
                    on_tensor: Callable[[str], None] | None = None) -> None:
    """Write `shapes` (name -> shape) to `path`; `produce(name)` returns each float32 array."""
    import math

    offsets, header, position = {}, {}, 0
    for name in sorted(shapes):
        nbytes = math.prod(shapes[name]) * DTYPES[dtype]
        header[name] = {"dtype": dtype, "shape": list(shapes[name]), "data_offsets": [position, position + nbytes]}
        offsets[name] = nbytes
        position += nbytes
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(raw)))
        out.write(raw)
        for name in sorted(shapes):
            data = to_dtype(produce(name), dtype)
            if len(data) != offsets[name]:
                raise ValueError(f"tensor {name}: {len(data)} bytes, planned {offsets[name]}")
            out.write(data)
            if on_tensor:
                on_tensor(name)


def iter_tensors(files: list[Path]) -> Iterator[tuple[str, object]]:
    """(name, float32 numpy array) for every tensor in the files, one loaded at a time."""
    import torch  # numpy cannot read bf16 checkpoints; torch can, then we widen to float32
    from safetensors import safe_open

    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():
                yield name, handle.get_tensor(name).to(torch.float32).numpy()


def tensor_shapes(files: list[Path]) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    shapes = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():
                shapes[name] = tuple(handle.get_slice(name).get_shape())
    return shapes
