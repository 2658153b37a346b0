"""How Hugging Face tensors and GGUF tensors correspond, for the families we convert.

Names come from the `gguf` package's own tensor maps. Two value changes follow llama.cpp's
conventions, in both directions: Llama's Q/K projections are permuted (HF's rotate-half RoPE vs
llama.cpp's interleaved pairs), and Gemma's RMSNorm weights are stored as w + 1 in GGUF.
"""

from __future__ import annotations

GGUF_ARCH = {"llama": "LLAMA", "qwen2": "QWEN2", "qwen3": "QWEN3", "gemma3": "GEMMA3"}
HF_ARCHITECTURES = {"llama": ("LlamaForCausalLM", "llama"), "qwen2": ("Qwen2ForCausalLM", "qwen2"),
                    "qwen3": ("Qwen3ForCausalLM", "qwen3"), "gemma3": ("Gemma3ForCausalLM", "gemma3_text")}


def name_map(family: str, n_layers: int, hf_names):
    """{hf_name: gguf_name} for every HF tensor the gguf package knows how to name."""
    import gguf

    names = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, GGUF_ARCH[family]), n_layers)
    mapping = {}
    for hf in hf_names:
        target = names.get_name(hf, try_suffixes=(".weight", ".bias"))
        if target is not None:
            mapping[hf] = target
    return mapping


def _heads(name: str, n_head: int, n_head_kv: int) -> int | None:
    if name.endswith(("attn_q.weight", "q_proj.weight")):
        return n_head
    if name.endswith(("attn_k.weight", "k_proj.weight")):
        return n_head_kv
    return None


def to_gguf(family: str, name: str, array, n_head: int, n_head_kv: int):
    """One HF tensor (numpy, float32) as llama.cpp expects it."""
    heads = _heads(name, n_head, n_head_kv) if family == "llama" else None
    if heads:
        rows = array.shape[0]
        pairs = array.reshape(heads, 2, rows // heads // 2, *array.shape[1:])
        array = pairs.swapaxes(1, 2).reshape(array.shape)
    if family == "gemma3" and name.endswith("norm.weight"):
        array = array + 1.0
    return array


def from_gguf(family: str, name: str, array, n_head: int, n_head_kv: int):
    """The inverse of `to_gguf`: one GGUF tensor back in HF's layout and convention."""
    heads = _heads(name, n_head, n_head_kv) if family == "llama" else None
    if heads:
        rows = array.shape[0]
        pairs = array.reshape(heads, rows // heads // 2, 2, *array.shape[1:])
        array = pairs.swapaxes(1, 2).reshape(array.shape)
    if family == "gemma3" and name.endswith("norm.weight"):
        array = array - 1.0
    return array
