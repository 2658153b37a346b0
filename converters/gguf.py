"""The `gguf` target: HF -> GGUF with the `gguf` package, K-quants through llama.cpp's quantizer.

F32/F16/BF16/Q8_0 are written here, one tensor at a time: the header is planned from the
safetensors shapes, then each tensor is read, converted (tensors.py) and appended. The
K-quants (Q6_K, Q5_K_M, Q4_K_M) go through `llama_cpp.llama_model_quantize` from an F32
intermediate, exactly as `llama-quantize` would. A GGUF source is requantized directly.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

from edgeai.converters.progress import Progress
from edgeai.converters.source import Source, weight_files
from edgeai.converters.tensors import GGUF_ARCH, name_map, to_gguf
from edgeai.errors import BadInput, EdgeAIError
from edgeai.formats import FORMATS

QUANTS = FORMATS["gguf"].quants
NOT_FOR_GEMMA = FORMATS["gguf"].not_for_gemma
WRITTEN_HERE = ("F32", "F16", "BF16", "Q8_0")
# --quant name -> llama.cpp's LLAMA_FTYPE_* name
FTYPES = {"F32": "ALL_F32", "F16": "MOSTLY_F16", "BF16": "MOSTLY_BF16", "Q8_0": "MOSTLY_Q8_0",
          "Q6_K": "MOSTLY_Q6_K", "Q5_K_M": "MOSTLY_Q5_K_M", "Q4_K_M": "MOSTLY_Q4_K_M",
          # block-32 4-bit types: no fallback on rows that are not a multiple of 256 (Qwen 0.5B's 896)
          "Q4_0": "MOSTLY_Q4_0", "IQ4_NL": "MOSTLY_IQ4_NL"}
LOW_BIT = re.compile(r"Q[2-4]|IQ")  # sources that requantizing cannot improve


def default_quant(family: str) -> str:
    return "BF16" if family == "gemma3" else "F16"


def toolchain() -> dict[str, str]:
    from importlib.metadata import version

    return {"gguf": version("gguf"), "llama-cpp-python": version("llama_cpp_python")}


def open_runner(out: Path):
    from edgeai.converters.runners import LlamaCppRunner

    return LlamaCppRunner(next(Path(out).glob("*.gguf")))


def export(source: Source, stage: Path, quant: str, *, progress: Progress, notes: list[str],
           settings=None) -> list[str]:
    from edgeai.converters.hf import copy_notices

    name = f"{source.name}-{quant.lower()}.gguf"
    if source.kind == "gguf":
        requantize(source.path, stage / name, quant, progress, notes)
        return [name]
    if quant in WRITTEN_HERE:
        write_gguf(source, stage / name, quant, progress)
    else:
        intermediate = stage / ".f32.gguf"
        write_gguf(source, intermediate, "F32", progress)
        quantize(intermediate, stage / name, quant, progress)
        intermediate.unlink()
        notes.append(type_note(stage / name))
    return [name, *copy_notices(source.path, stage)]


def type_note(path: Path) -> str:
    """What llama.cpp really wrote: its K-quants fall back to other types on rows that are not
    a multiple of 256, so the asked-for name alone does not say how many bits a file has."""
    from collections import Counter

    from gguf import GGUFReader

    counts = Counter(t.tensor_type.name for t in GGUFReader(str(path)).tensors)
    return "tensor types: " + ", ".join(f"{name} ×{n}" for name, n in counts.most_common())


def requantize(src: Path, dest: Path, quant: str, progress: Progress, notes: list[str]) -> None:
    from edgeai.gguf_info import FILE_TYPES, read_header

    current = FILE_TYPES.get(read_header(src).get("general.file_type"), "")
    if LOW_BIT.match(current):
        notes.append(f"requantized from a {current} GGUF: requantizing a 4-bit (or smaller) source "
                     "restores no quality; convert from the original checkpoint for a better file")
    quantize(src, dest, quant, progress, allow_requantize=True)
    notes.append(type_note(dest))


def quantize(src: Path, dest: Path, quant: str, progress: Progress, allow_requantize: bool = False) -> None:
    import ctypes

    from edgeai.runtime.llamacpp_build import import_llama_cpp

    llama_cpp = import_llama_cpp()
    progress.start(f"quantizing to {quant} (llama.cpp)", None)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_{FTYPES[quant]}")
    params.allow_requantize = allow_requantize
    with _captured_stderr() as log:  # llama.cpp prints a line per tensor from C
        status = llama_cpp.llama_model_quantize(str(src).encode(), str(dest).encode(), ctypes.byref(params))
    if status != 0:
        last = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-1:]
        detail = f": {last[0]}" if last else ""
        raise EdgeAIError(f"llama.cpp could not quantize {src.name} to {quant}{detail}")


@contextmanager
def _captured_stderr():
    """Send file descriptor 2 to a temporary file for the block (C code writes there directly)."""
    import os
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.NamedTemporaryFile(prefix="edgeai-quantize-", suffix=".log") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield Path(log.name)
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _hparams(writer, config: dict, family: str, n_vocab: int) -> None:
    import gguf

    n_head = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // n_head
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    full = rope.get("full_attention", rope) if isinstance(rope, dict) else {}
    if "type" in full and "rope_type" not in full:  # the older config.json spelling
        full = {**full, "rope_type": full["type"]}
    theta = full.get("rope_theta", config.get("rope_theta", 10000.0))
    writer.add_context_length(config.get("max_position_embeddings", 4096))
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(config.get("num_key_value_heads", n_head))
    writer.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
    writer.add_rope_freq_base(float(theta))
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_vocab_size(n_vocab)
    if family == "llama":
        writer.add_rope_dimension_count(head_dim)
    if full.get("rope_type") == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(full["factor"]))
    elif full.get("rope_type") not in (None, "default"):
        raise BadInput(f"rope scaling {full.get('rope_type')!r} is not supported for GGUF export yet")
    if family == "gemma3":
        layers = config.get("layer_types") or []
        expected = ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(len(layers))]
        if layers != expected:  # llama.cpp 0.3.x does not read a pattern from the file
            raise BadInput("this Gemma 3 checkpoint does not use one global attention layer in six, "
                           "the only pattern llama.cpp runs", "export it to MLX or ONNX instead")
        writer.add_sliding_window(config.get("sliding_window") or 512)


def _license(folder: Path) -> str | None:
    """A short license name: the model card's `license:` line, else our import's LICENSE line."""
    patterns = (("README.md", r"^license:\s*(\S+)"), ("LICENSE", r"distributed under the license: (.+)$"))
    for name, pattern in patterns:
        path = folder / name
        if path.is_file():
            match = re.search(pattern, path.read_text(encoding="utf-8", errors="replace")[:4000], re.M)
            if match:
                return match.group(1).strip()
    return "see LICENSE" if (folder / "LICENSE").is_file() else None


def _tensor_type(name: str, shape: tuple[int, ...], quant: str, family: str):
    import gguf

    q = gguf.GGMLQuantizationType
    if len(shape) == 1 or name.endswith("norm.weight"):
        return q.F32
    half = q.BF16 if family == "gemma3" else q.F16
    if quant == "Q8_0":  # rows that are not whole 32-blocks stay 16-bit, as llama.cpp does
        return q.Q8_0 if shape[-1] % 32 == 0 else half
    return {"F32": q.F32, "F16": q.F16, "BF16": q.BF16}[quant]


def _encode(array, qtype):
    import gguf
    import numpy as np

    q = gguf.GGMLQuantizationType
    if qtype == q.F32:
        return np.ascontiguousarray(array, dtype=np.float32)
    if qtype == q.F16:
        return np.ascontiguousarray(array, dtype=np.float16)
    return gguf.quants.quantize(np.ascontiguousarray(array, dtype=np.float32), qtype)


def write_gguf(source: Source, dest: Path, quant: str, progress: Progress) -> None:
    """Write the HF folder `source` as a GGUF of type `quant` (one of WRITTEN_HERE)."""
    import gguf

    from edgeai.converters.gguf_vocab import add_vocab
    from edgeai.converters.safetensors_io import in_order, iter_tensors, tensor_shapes

    config, family = source.config, source.family
    files = weight_files(source.path)
    shapes = tensor_shapes(files)
    mapping = name_map(family, config["num_hidden_layers"], shapes)
    skipped = [n for n in shapes if n not in mapping and not n.endswith("rotary_emb.inv_freq")]
    if skipped:
        raise BadInput(f"{len(skipped)} tensors have no GGUF name (e.g. {skipped[0]})",
                       "the checkpoint does not match its config's architecture")
    if config.get("tie_word_embeddings") and "lm_head.weight" in mapping:
        del mapping["lm_head.weight"]  # llama.cpp reuses token_embd for a tied head
    n_vocab = shapes["model.embed_tokens.weight"][0]
    writer = gguf.GGUFWriter(str(dest), gguf.MODEL_ARCH_NAMES[getattr(gguf.MODEL_ARCH, GGUF_ARCH[family])])
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(source.name)
    license_name = _license(source.path)
    if license_name:
        writer.add_license(license_name)
    _hparams(writer, config, family, n_vocab)
    writer.add_file_type(getattr(gguf.LlamaFileType, FTYPES[quant]))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    add_vocab(writer, source.path, n_vocab)
    order = [n for n in shapes if n in mapping]  # file order: tensors stream in as they are read
    types = {n: _tensor_type(mapping[n], shapes[n], quant, family) for n in order}
    for name in order:
        _plan_tensor(writer, mapping[name], shapes[name], types[name])
    n_head = config["num_attention_heads"]
    n_head_kv = config.get("num_key_value_heads", n_head)
    progress.start(f"writing GGUF {quant}", len(order))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for name, array in in_order(iter_tensors(files), order):
        array = to_gguf(family, mapping[name], array, n_head, n_head_kv)
        writer.write_tensor_data(_encode(array, types[name]))
        progress.advance()
    writer.close()


def _plan_tensor(writer, name: str, shape: tuple[int, ...], qtype) -> None:
    """Announce a tensor before its data exists: float types by shape, the rest by byte shape."""
    import gguf
    import numpy as np

    floats = {gguf.GGMLQuantizationType.F32: np.float32, gguf.GGMLQuantizationType.F16: np.float16}
    if qtype in floats:
        dtype = np.dtype(floats[qtype])
        writer.add_tensor_info(name, shape, dtype, int(np.prod(shape)) * dtype.itemsize, raw_dtype=qtype)
    else:
        byte_shape = gguf.quant_shape_to_byte_shape(shape, qtype)
        writer.add_tensor_info(name, byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape)),
                               raw_dtype=qtype)
