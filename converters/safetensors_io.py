"""Streaming safetensors: write tensors one at a time under a header planned up front, and read
them one at a time, so memory holds one tensor, never a model.

The `safetensors` package writes whole dicts only; the format itself is simple (an 8-byte
little-endian header length, a JSON header of dtype/shape/offsets, then the raw data), so the
writer here plans the header from shapes alone, in the caller's order (a deterministic one:
the same tensors give the same bytes).
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
    """Write `shapes` (name -> shape) to `path`; `produce(name)` returns each float32 array, or an
    iterator of its row blocks (large tensors need never be whole in memory)."""
    import math

    offsets, header, position = {}, {}, 0
    for name in shapes:  # the caller's order: the order its tensors can be produced in
        nbytes = math.prod(shapes[name]) * DTYPES[dtype]
        header[name] = {"dtype": dtype, "shape": list(shapes[name]),
                        "data_offsets": [position, position + nbytes]}
        offsets[name] = nbytes
        position += nbytes
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(raw)))
        out.write(raw)
        for name in shapes:
            produced = produce(name)
            written = 0
            for part in (produced if isinstance(produced, Iterator) else (produced,)):
                data = to_dtype(part, dtype)
                out.write(data)
                written += len(data)
            if written != offsets[name]:
                raise ValueError(f"tensor {name}: {written} bytes, planned {offsets[name]}")
            if on_tensor:
                on_tensor(name)


def read_header(path: Path) -> tuple[dict, int]:
    """(header without __metadata__, offset where the data starts)."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    header.pop("__metadata__", None)
    return header, 8 + length


def _as_float32(raw: bytes, dtype: str, shape: list[int]):
    import numpy as np

    if dtype == "BF16":  # numpy has no bfloat16: widen the bits
        array = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    elif dtype in ("F16", "F32", "F64"):
        array = np.frombuffer(raw, dtype={"F16": "<f2", "F32": "<f4", "F64": "<f8"}[dtype]).astype(np.float32)
    else:
        raise ValueError(f"tensor dtype {dtype} is not a float type")
    return array.reshape(shape)


def iter_tensors(files: list[Path]) -> Iterator[tuple[str, object]]:
    """(name, float32 numpy array) for every tensor, in file order, one read at a time.

    Plain reads, not a memory map: a mapped 2 GB checkpoint would count 2 GB towards the
    process's resident memory and hide what the conversion itself needs."""
    for file in files:
        header, start = read_header(file)
        with open(file, "rb") as f:
            for name, info in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
                begin, end = info["data_offsets"]
                f.seek(start + begin)
                yield name, _as_float32(f.read(end - begin), info["dtype"], info["shape"])


def tensor_shapes(files: list[Path]) -> dict[str, tuple[int, ...]]:
    """name -> shape, in the order iter_tensors yields them."""
    shapes = {}
    for file in files:
        header, _ = read_header(file)
        for name, info in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
            shapes[name] = tuple(info["shape"])
    return shapes


def in_order(tensors: Iterator[tuple[str, object]], order) -> Iterator[tuple[str, object]]:
    """(name, array) from `tensors` in `order`, holding back only tensors that arrive early and
    dropping those `order` does not name."""
    waiting = {}
    for name in order:
        while name not in waiting:
            key, value = next(tensors)
            waiting[key] = value
        yield name, waiting.pop(name)
