"""Bytes one decode step streams from memory: the denominator of the bandwidth ceiling.

Boundary: reads a model artifact's tensor table (GGUF through edgeai.gguf_info, ONNX through
the `onnx` package without its external data, safetensors headers) and counts; knows nothing
about bandwidth or timing (bench/bandwidth_probe.py, bench/llm.py).

At batch 1 a decode step reads every weight once, except tables it gathers from: of the
token-embedding table it reads the new token's row only — unless the output projection is tied
to it (GGUF: no `output.weight`; ONNX: the same initializer feeds the LM head; HF: no
`lm_head.weight`), when the LM head reads it whole. Mixture-of-experts layers read only the
routed experts (counted as used/total of each expert tensor: an estimate, marked). On top comes
the KV cache so far: `kv_per_position` x the positions in context. Tokenizer and config files
are never counted. Counting the whole file overstated the default GGUF's bytes 1.25x.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

# GGUF tensors of which a step reads one row (the token's, or the position's)
GGUF_GATHERED = ("token_embd.weight", "position_embd.weight", "token_types.weight",
                 "per_layer_token_embd.weight")
# HF (safetensors) names of the token-embedding table and of an untied LM head
HF_EMBEDDINGS = ("embed_tokens", "wte", "word_embeddings", "tok_embeddings", "embed_in")
HF_HEADS = ("lm_head", "embed_out", "output")
# files of an exported folder that hold no weights a step reads
NOT_WEIGHTS = (".json", ".txt", ".jinja", ".md", ".model", ".tiktoken", ".py", ".lock", ".yaml")


@dataclass(frozen=True)
class TokenBytes:
    weights: int  # bytes of weights one decode step reads
    kv_per_position: int | None  # KV cache bytes per position in context (None: unknown)
    method: str  # how `weights` was counted; "(estimate)" where it is not exact
    file_bytes: int  # the artifact's size on disk: what was counted before
    embedding: str  # what was done with the token-embedding table, in words

    def at_context(self, positions: int) -> int:
        """Bytes a step reads with `positions` tokens already in the KV cache."""
        return self.weights + (self.kv_per_position or 0) * positions

    def as_dict(self) -> dict:
        return {"weights": self.weights, "kv_per_position": self.kv_per_position, "method": self.method,
                "file_bytes": self.file_bytes, "embedding": self.embedding}


def token_bytes(path: Path) -> TokenBytes:
    """The bytes a step streams for the artifact at `path`: a .gguf file, an ONNX folder, a
    folder of safetensors (MLX, HF), else its weight files' sizes (an estimate)."""
    path = Path(path)
    if path.is_file() and path.suffix == ".gguf":
        return gguf_token_bytes(path)
    if path.is_dir() and any(path.glob("*.onnx")):
        return onnx_token_bytes(path)
    if path.is_dir() and any(path.glob("*.safetensors")):
        return safetensors_token_bytes(path)
    return file_estimate(path)


# -- GGUF ---------------------------------------------------------------------------------------------
def gguf_token_bytes(path: Path, header=None) -> TokenBytes:
    """`header`: the file's `read_header`, where the caller has read it already."""
    from edgeai.gguf_info import kv_bytes_per_token, read_header

    header = header or read_header(path)
    arch = header.architecture
    names = {t.name for t in header.tensors}
    tied = "output.weight" not in names
    experts = header.get(f"{arch}.expert_count") or 0
    used = header.get(f"{arch}.expert_used_count") or experts
    total, estimate, embedding = 0, False, "no token-embedding table found"
    for tensor in header.tensors:
        if tensor.nbytes is None:  # a type this reader does not know: count the file instead
            return file_estimate(path)
        size = tensor.nbytes
        if tensor.name == "token_embd.weight":
            if tied:
                embedding = f"tied to the output (no output.weight): all {tensor.rows:,} rows counted"
            else:
                size //= tensor.rows
                embedding = f"untied: 1 of {tensor.rows:,} rows counted ({size:,} bytes)"
        elif tensor.name in GGUF_GATHERED:
            size //= tensor.rows
        elif "_exps." in tensor.name and experts:
            size = size * used // experts
            estimate = True
        total += size
    method = "gguf tensor table" + (f" ({used} of {experts} experts: estimate)" if estimate else "")
    return TokenBytes(total, kv_bytes_per_token(header), method, header.file_size, embedding)


# -- ONNX ---------------------------------------------------------------------------------------------
# com.microsoft ops that read one row of a cos/sin cache input per position: input index -> role
_ROW_INPUTS = {"GroupQueryAttention": (7, 8), "RotaryEmbedding": (2, 3)}
_GATHERS = ("Gather", "GatherBlockQuantized")
# ops that only re-lay an initializer out (constant-folded once by onnxruntime): look through them
_LAYOUT = ("Transpose", "Reshape", "Cast", "Identity", "Squeeze", "Unsqueeze")


def _initializer_bytes(tensor, folder: Path) -> int:
    """Bytes of one initializer: its external data's length, its raw data, else shape x type."""
    import onnx

    external = {e.key: e.value for e in tensor.external_data}
    if "length" in external:
        return int(external["length"])
    if "location" in external:  # no length: the rest of the data file from the offset
        return (folder / external["location"]).stat().st_size - int(external.get("offset", 0))
    if tensor.raw_data:
        return len(tensor.raw_data)
    count = math.prod(tensor.dims)
    if tensor.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
        return (count + 1) // 2
    return count * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize


def _uses(graph) -> dict[str, list[tuple[str, int, str]]]:
    """value name -> [(op type, input index, the op's first output)] of every node reading it."""
    uses: dict[str, list[tuple[str, int, str]]] = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            uses.setdefault(name, []).append((node.op_type, i, node.output[0] if node.output else ""))
    return uses


def _final_uses(name: str, uses: dict, depth: int = 0) -> list[tuple[str, int, str]]:
    """The ops that read `name`'s data, looking through layout ops (a transposed tied head)."""
    found = []
    for op, index, out in uses.get(name, []):
        if op in _LAYOUT and index == 0 and depth < 4:
            found += _final_uses(out, uses, depth + 1)
        else:
            found.append((op, index, out))
    return found


def _gathered(found: list[tuple[str, int, str]]) -> bool:
    """Every reader takes rows of it: a gather's data (a quantized gather's scales and zero
    points too), an attention op's cos/sin cache."""
    return bool(found) and all((op in _GATHERS and index in (0, 2, 3)) or index in _ROW_INPUTS.get(op, ())
                               for op, index, _ in found)


def onnx_token_bytes(folder: Path) -> TokenBytes:
    import onnx

    folder = Path(folder)
    total, embedding, kv = 0, "no token-embedding table found", None
    for model_file in sorted(folder.glob("*.onnx")):
        graph = onnx.load(str(model_file), load_external_data=False).graph
        uses = _uses(graph)
        ids = {i.name for i in graph.input if "input_ids" in i.name}
        lookups = {node.output[0] for node in graph.node  # the gathers that take the token ids
                   if node.op_type in _GATHERS and len(node.input) > 1 and node.input[1] in ids}
        for tensor in graph.initializer:
            size = _initializer_bytes(tensor, folder)
            found = _final_uses(tensor.name, uses)
            rows = tensor.dims[0] if tensor.dims else 1
            if _gathered(found):
                size //= max(1, rows)
            if any(op in _GATHERS and index == 0 and out in lookups for op, index, out in found):
                embedding = (f"untied: 1 of {rows:,} rows counted" if _gathered(found) else
                             f"shared with the LM head ({tensor.name}): counted whole")
            total += size
        kv = kv or _onnx_kv_per_position(graph, folder)
    return TokenBytes(total, kv, "onnx initializers", _folder_bytes(folder), embedding)


def _onnx_kv_per_position(graph, folder: Path) -> int | None:
    """K and V bytes per position: the past_key_values inputs' element type, their shape
    [batch, kv heads, past, head size] where it is fixed, else onnxruntime-genai's config."""
    import onnx

    past = [v for v in graph.input if v.name.startswith("past_key_values.")]
    if not past:
        return None
    itemsize = onnx.helper.tensor_dtype_to_np_dtype(past[0].type.tensor_type.elem_type).itemsize
    dims = [d.dim_value for d in past[0].type.tensor_type.shape.dim]
    if len(dims) == 4 and dims[1] and dims[3]:
        return len(past) * dims[1] * dims[3] * itemsize
    try:
        decoder = json.loads((folder / "genai_config.json").read_text(encoding="utf-8"))["model"]["decoder"]
        return (2 * decoder["num_hidden_layers"] * decoder["num_key_value_heads"] * decoder["head_size"]
                * itemsize)
    except (OSError, ValueError, KeyError, TypeError):
        return None


# -- safetensors (MLX, HF) ---------------------------------------------------------------------------
def _safetensors_header(path: Path) -> dict:
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(length))


def safetensors_token_bytes(folder: Path) -> TokenBytes:
    """Every tensor of the folder's safetensors; the embedding table (its weight and, quantized,
    its scales and biases) by one row unless no LM head is stored (tied)."""
    folder = Path(folder)
    tensors: dict[str, tuple[int, int]] = {}  # name -> (bytes, rows)
    for file in sorted(folder.glob("*.safetensors")):
        for name, info in _safetensors_header(file).items():
            if name != "__metadata__":
                start, end = info["data_offsets"]
                tensors[name] = (end - start, info["shape"][0] if info["shape"] else 1)
    parts = [n.split(".") for n in tensors]
    tied = not any(p[-2] in HF_HEADS for p in parts if len(p) >= 2)
    total, embedding = 0, "no token-embedding table found"
    for name, (size, rows) in tensors.items():
        if any(f"{e}." in name for e in HF_EMBEDDINGS):
            if tied:
                embedding = f"tied to the LM head (no lm_head): all {rows:,} rows counted"
            else:
                size //= max(1, rows)
                embedding = f"untied: 1 of {rows:,} rows counted"
        total += size
    method = "safetensors tensors (KV from config.json: estimate)"
    return TokenBytes(total, _hf_kv_per_position(folder), method, _folder_bytes(folder), embedding)


def _hf_kv_per_position(folder: Path) -> int | None:
    """K and V bytes per position from config.json, in the weights' dtype (fp32 -> 4 bytes, else 2:
    MLX and torch keep the cache in the activations' type)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        config = config.get("text_config", config)
        heads = config["num_attention_heads"]
        head = config.get("head_dim") or config["hidden_size"] // heads
        per = 2 * config["num_hidden_layers"] * config.get("num_key_value_heads", heads) * head
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return None
    return per * (4 if config.get("torch_dtype", config.get("dtype")) == "float32" else 2)


# -- anything else ------------------------------------------------------------------------------------
def _folder_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def file_estimate(path: Path) -> TokenBytes:
    """The artifact's weight files counted whole (no tokenizer or config files): an estimate."""
    path = Path(path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    weights = sum(p.stat().st_size for p in files
                  if not p.name.lower().endswith(NOT_WEIGHTS) and not p.name.lower().startswith("license"))
    return TokenBytes(weights, None, "weight files' size (estimate)", _folder_bytes(path),
                      "not identified: the files counted whole")
