"""Reads a GGUF file's header without llama.cpp: metadata, tensor count, where the data ends.

Used to refuse files that are not GGUF or are truncated with a clear message before llama.cpp
sees them (it would only say "failed to load model"), by `models info`, and by the bench for the
bytes a decoded token streams (the tensor table: name, shape, type, size). Pure stdlib; the
large tokenizer arrays are skipped by seeking, so reading the header of a 1 GB model is instant.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from edgeai.errors import ModelFormatError

MAGIC = b"GGUF"
# GGUF value types -> struct format of a scalar (8 = string, 9 = array are handled apart)
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
            12: "d"}
# ggml tensor type -> (elements per block, bytes per block); from ggml.h / gguf-py constants
GGML_TYPE_SIZES = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
    9: (32, 40), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210),
    15: (256, 292), 16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18),
    21: (256, 110), 22: (256, 82), 23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4),
    27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66),
    39: (32, 17), 40: (64, 36), 41: (128, 18),
}
# Metadata arrays longer than this are skipped, not read (tokenizer vocabularies, merges).
_KEEP_ARRAY = 64


@dataclass(frozen=True)
class TensorInfo:
    """One entry of the tensor table: `dims` in GGUF order (ne0 first: a matrix's row width
    first, its row count last), `nbytes` None when the type is unknown to us."""
    name: str
    dims: tuple[int, ...]
    ggml_type: int
    offset: int
    nbytes: int | None

    @property
    def rows(self) -> int:
        """Rows of the tensor viewed as a matrix of ne0-wide rows (an embedding table: tokens)."""
        return math.prod(self.dims[1:])


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    metadata: dict[str, Any]
    tensor_count: int
    data_end: int | None  # None when a tensor type is unknown to us
    file_size: int
    tensors: tuple[TensorInfo, ...] = ()

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)


class _Truncated(Exception):
    pass


def _read(f: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize("<" + fmt)
    raw = f.read(size)
    if len(raw) < size:
        raise _Truncated
    return struct.unpack("<" + fmt, raw)[0]


def _string(f: BinaryIO, skip: bool = False) -> str | None:
    n = _read(f, "Q")
    if skip:
        f.seek(n, 1)
        return None
    raw = f.read(n)
    if len(raw) < n:
        raise _Truncated
    return raw.decode("utf-8", errors="replace")


def _value(f: BinaryIO, vtype: int) -> Any:
    if vtype in _SCALARS:
        return _read(f, _SCALARS[vtype])
    if vtype == 8:
        return _string(f)
    if vtype == 9:
        itype, count = _read(f, "I"), _read(f, "Q")
        if itype in _SCALARS and count > _KEEP_ARRAY:
            f.seek(count * struct.calcsize("<" + _SCALARS[itype]), 1)
            return f"<array of {count}>"
        if itype == 8 and count > _KEEP_ARRAY:
            for _ in range(count):
                _string(f, skip=True)
            return f"<array of {count}>"
        return [_value(f, itype) for _ in range(count)]
    raise ModelFormatError(f"unknown GGUF value type {vtype}")


def read_header(path: Path) -> GGUFHeader:
    """Parse the header; raise ModelFormatError for a non-GGUF or truncated file."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        magic = f.read(4)
        if magic != MAGIC:
            raise ModelFormatError(f"model file is not GGUF: bad magic {magic!r} in {path.name}",
                                   "pass a .gguf file, or convert the model with edgeai convert")
        try:
            version, n_tensors, n_kv = _read(f, "I"), _read(f, "Q"), _read(f, "Q")
            metadata = {}
            for _ in range(n_kv):
                key = _string(f)
                metadata[key] = _value(f, _read(f, "I"))
            data_end: int | None = 0
            tensors = []
            for _ in range(n_tensors):
                name = _string(f) or ""
                dims = tuple(_read(f, "Q") for _ in range(_read(f, "I")))
                ttype, offset = _read(f, "I"), _read(f, "Q")
                nbytes = tensor_nbytes(ttype, dims)
                tensors.append(TensorInfo(name, dims, ttype, offset, nbytes))
                data_end = None if nbytes is None or data_end is None else max(data_end, offset + nbytes)
            align = int(metadata.get("general.alignment", 32))
            data_start = -(-f.tell() // align) * align
        except _Truncated:
            raise ModelFormatError(f"GGUF file {path.name} is truncated ({size:,} bytes): its "
                                   "header ends early", "download or assemble it again") from None
    end = None if data_end is None else data_start + data_end
    if end is not None and end > size:
        raise ModelFormatError(f"GGUF file {path.name} is truncated: {size:,} bytes, its tensors "
                               f"need {end:,}", "download or assemble it again")
    return GGUFHeader(version, metadata, n_tensors, end, size, tuple(tensors))


def tensor_nbytes(ggml_type: int, dims: tuple[int, ...]) -> int | None:
    """Bytes of a tensor's data (no alignment padding); None for a type unknown to us."""
    if ggml_type not in GGML_TYPE_SIZES:
        return None
    block, nbytes = GGML_TYPE_SIZES[ggml_type]
    return math.prod(dims) // block * nbytes


# llama.cpp's `general.file_type` (enum llama_ftype) -> the quantization name users know
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M",
    18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S",
    25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M",
    32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4",
}


def quant_name(header: GGUFHeader) -> str | None:
    ftype = header.get("general.file_type")
    return FILE_TYPES.get(ftype, f"ftype {ftype}") if ftype is not None else None


def _widest(value: Any) -> Any:
    """Some architectures give a per-layer list of head counts: the widest bounds the cache."""
    if isinstance(value, str):  # a long array the header reader skipped
        return None
    return max(value) if isinstance(value, list) and value else value


def kv_bytes_per_token(header: GGUFHeader, bytes_per_value: int = 2) -> int | None:
    """Bytes of K and V cache one token of context adds (f16 cache by default), from the
    architecture's hyperparameters; None when the header lacks them."""
    arch = header.architecture
    layers = header.get(f"{arch}.block_count")
    heads = _widest(header.get(f"{arch}.attention.head_count"))
    kv_heads = _widest(header.get(f"{arch}.attention.head_count_kv", heads))
    width = header.get(f"{arch}.embedding_length")
    if not (layers and heads and kv_heads and width):
        return None
    key_len = header.get(f"{arch}.attention.key_length", width // heads)
    value_len = header.get(f"{arch}.attention.value_length", key_len)
    return int(layers * kv_heads * (key_len + value_len) * bytes_per_value)
