"""A tiny vision-language pair the VLM tests build in well under a second: a llama-arch text
model GGUF and a LLaVA-1.5-style projector (`mmproj`) GGUF, random weights, written with the
`gguf` package.

The projector is the simplest one llama.cpp's clip.cpp loads: `clip.projector_type = mlp` (a
ViT, then linear -> GELU -> linear into the text model's embedding width). The tensor names and
keys are the ones clip.cpp's loader asks for (`tools/mtmd/clip.cpp`, `clip-impl.h` in the
llama.cpp vendored by llama-cpp-python 0.3.36): `v.patch_embd.weight`, `v.position_embd.weight`,
`v.blk.N.{attn_q,attn_k,attn_v,attn_out,ln1,ln2,ffn_up,ffn_down}`, `mm.0`, `mm.2`. Shapes below
are numpy's (row-major), i.e. ggml's `ne` reversed.

The text model's vocabulary is SentencePiece-style: control tokens, the 256 byte tokens
(`<0xNN>`, so any text tokenizes by byte fallback) and the ChatML markers, with a ChatML template.
"""

from __future__ import annotations

from pathlib import Path

TEXT_EMBD = 64  # the text model's width = the projector's output width (mtmd checks they match)
IMAGE_SIZE, PATCH_SIZE = 32, 8  # 16 patches -> 16 image tokens per image
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2


def _vocab() -> tuple[list[str], list[float], list[int]]:
    # token types (llama.cpp's): 1 normal, 2 unknown, 3 control, 6 byte
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)),
              "<|im_start|>", "<|im_end|>", "▁"]
    types = [2, 3, 3] + [6] * 256 + [3, 3, 1]
    return tokens, [0.0] * len(tokens), types


def build_text_model(path: Path, seed: int = 0) -> Path:
    """A 2-layer llama GGUF (width 64, 4 heads, 2 KV heads) with random f32 weights."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    tokens, scores, types = _vocab()
    n_vocab, n_embd, n_ff, n_head, n_kv, n_layer = len(tokens), TEXT_EMBD, 128, 4, 2, 2
    head = n_embd // n_head

    def w(*shape, scale=0.3):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-vlm-text")
    writer.add_context_length(512)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_dimension_count(head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_chat_template(CHATML)
    writer.add_tensor("token_embd.weight", w(n_vocab, n_embd, scale=1.0))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    writer.add_tensor("output.weight", w(n_vocab, n_embd))
    for i in range(n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", w(n_embd, n_embd))
        writer.add_tensor(f"blk.{i}.attn_k.weight", w(n_kv * head, n_embd))
        writer.add_tensor(f"blk.{i}.attn_v.weight", w(n_kv * head, n_embd))
        writer.add_tensor(f"blk.{i}.attn_output.weight", w(n_embd, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", w(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", w(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", w(n_embd, n_ff))
    _write(writer)
    return path


def build_projector(path: Path, seed: int = 1, text_embd: int = TEXT_EMBD) -> Path:
    """A LLaVA-1.5-style mmproj: 2-layer ViT (width 32, 2 heads) on 32x32 images, 8x8 patches,
    MLP projector into `text_embd`. clip.cpp runs the ViT up to its second-to-last layer, as
    LLaVA does, so layer 1 is loaded but unused."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    n_embd, n_ff, n_head, n_layer, hidden = 32, 48, 2, 2, 64  # n_ff != n_embd: clip.cpp's swap check
    n_patches = (IMAGE_SIZE // PATCH_SIZE) ** 2

    def w(*shape, scale=0.3):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "clip")
    writer.add_name("tiny-vlm-mmproj")
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_string("clip.projector_type", "mlp")
    writer.add_bool("clip.use_gelu", True)
    writer.add_uint32("clip.vision.image_size", IMAGE_SIZE)
    writer.add_uint32("clip.vision.patch_size", PATCH_SIZE)
    writer.add_uint32("clip.vision.embedding_length", n_embd)
    writer.add_uint32("clip.vision.feed_forward_length", n_ff)
    writer.add_uint32("clip.vision.block_count", n_layer)
    writer.add_uint32("clip.vision.projection_dim", text_embd)
    writer.add_uint32("clip.vision.attention.head_count", n_head)
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-5)
    writer.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    writer.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    # conv kernel: ggml ne = [patch, patch, 3, n_embd]
    writer.add_tensor("v.patch_embd.weight", w(n_embd, 3, PATCH_SIZE, PATCH_SIZE))
    writer.add_tensor("v.patch_embd.bias", w(n_embd, scale=0.1))
    writer.add_tensor("v.position_embd.weight", w(n_patches, n_embd, scale=0.1))
    writer.add_tensor("v.pre_ln.weight", np.ones(n_embd, np.float32))
    writer.add_tensor("v.pre_ln.bias", np.zeros(n_embd, np.float32))
    for i in range(n_layer):
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            writer.add_tensor(f"v.blk.{i}.{name}.weight", w(n_embd, n_embd))
            writer.add_tensor(f"v.blk.{i}.{name}.bias", w(n_embd, scale=0.1))
        for name in ("ln1", "ln2"):
            writer.add_tensor(f"v.blk.{i}.{name}.weight", np.ones(n_embd, np.float32))
            writer.add_tensor(f"v.blk.{i}.{name}.bias", np.zeros(n_embd, np.float32))
        writer.add_tensor(f"v.blk.{i}.ffn_up.weight", w(n_ff, n_embd))
        writer.add_tensor(f"v.blk.{i}.ffn_up.bias", w(n_ff, scale=0.1))
        writer.add_tensor(f"v.blk.{i}.ffn_down.weight", w(n_embd, n_ff))
        writer.add_tensor(f"v.blk.{i}.ffn_down.bias", w(n_embd, scale=0.1))
    writer.add_tensor("mm.0.weight", w(hidden, n_embd))
    writer.add_tensor("mm.0.bias", w(hidden, scale=0.1))
    writer.add_tensor("mm.2.weight", w(text_embd, hidden))
    writer.add_tensor("mm.2.bias", w(text_embd, scale=0.1))
    _write(writer)
    return path


def _write(writer) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_png(path: Path, rgb: tuple[int, int, int], size: int = 48,
              stripe: tuple[int, int, int] | None = None) -> Path:
    """A small PNG: one colour, optionally a stripe across it."""
    from PIL import Image

    image = Image.new("RGB", (size, size), rgb)
    if stripe is not None:
        for x in range(size):
            for y in range(size // 3, size // 2):
                image.putpixel((x, y), stripe)
    image.save(path)
    return path
