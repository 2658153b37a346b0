"""The `hf` target: a Hugging Face folder (config, safetensors, tokenizer, chat template, license).

From a GGUF file this is the import: every tensor is dequantized by the `gguf` package and
written straight into a safetensors file, one tensor in memory at a time; the config and the
tokenizer come from transformers' own GGUF readers; an untied output head stays untied. For a
SentencePiece vocabulary (Gemma) a `tokenizer.model` is rebuilt from the GGUF's pieces and
scores too, so the folder is what the original repository ships. From an HF folder it is a
re-save in another dtype.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from edgeai.converters.progress import Progress
from edgeai.converters.safetensors_io import write_streaming
from edgeai.converters.source import Source, weight_files
from edgeai.converters.tensors import HF_ARCHITECTURES, from_gguf, name_map
from edgeai.formats import FORMATS

QUANTS = FORMATS["hf"].quants
NOT_FOR_GEMMA = FORMATS["hf"].not_for_gemma
SAFETENSORS_DTYPE = {"fp32": "F32", "bf16": "BF16", "fp16": "F16"}
TORCH_DTYPE = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
WEIGHTS = "model.safetensors"
ROW_BLOCK = 8192  # rows dequantized at a time for large tensors (embeddings, output heads)
# files of an HF folder that are not weights and travel unchanged on a re-save
NOTICE_PREFIXES = ("LICENSE", "LICENCE", "NOTICE", "USE_POLICY")
KEEP = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
        "chat_template.jinja", "chat_template.json", "generation_config.json", "added_tokens.json",
        "vocab.json", "merges.txt")


def default_quant(family: str) -> str:
    return "fp32"  # an import is the source of later exports: keep every bit the GGUF had


def toolchain() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("gguf", "transformers", "safetensors", "tokenizers")}


def open_runner(out: Path):
    from edgeai.converters.runners import TorchRunner

    return TorchRunner(out)


def export(source: Source, stage: Path, quant: str, *, progress: Progress, notes: list[str],
           settings=None) -> list[str]:
    if source.kind == "gguf":
        return import_gguf(source, stage, quant, progress, notes)
    return resave(source, stage, quant, progress)


def is_notice(name: str) -> bool:
    return name.upper().startswith(NOTICE_PREFIXES)


def copy_notices(src_folder: Path, stage: Path) -> list[str]:
    """LICENSE / NOTICE / USE_POLICY files travel with every export."""
    copied = []
    for path in sorted(src_folder.iterdir()):
        if path.is_file() and is_notice(path.name):
            shutil.copy2(path, stage / path.name)
            copied.append(path.name)
    return copied


def make_self_contained(hf: Path, stage: Path) -> None:
    """After a toolchain wrote its folder: the license files and Gemma's tokenizer.model copied
    from the source, and no absolute paths into the source left in tokenizer_config.json
    (transformers records where it read the SentencePiece file)."""
    from edgeai.fileio import atomic_write

    copy_notices(hf, stage)
    if (hf / "tokenizer.model").is_file():
        shutil.copyfile(hf / "tokenizer.model", stage / "tokenizer.model")
    tok_config = stage / "tokenizer_config.json"
    if tok_config.is_file():
        data = json.loads(tok_config.read_text(encoding="utf-8"))
        local = {k: v for k, v in data.items() if not (isinstance(v, str) and os.path.isabs(v))}
        if local != data:
            atomic_write(tok_config, json.dumps(local, indent=2, ensure_ascii=False) + "\n")


def resave(source: Source, stage: Path, quant: str, progress: Progress) -> list[str]:
    from edgeai.converters.safetensors_io import in_order, iter_tensors, tensor_shapes

    files = weight_files(source.path)
    shapes = tensor_shapes(files)  # file order, which write_streaming follows
    arrays = in_order(iter_tensors(files), shapes)

    def produce(name: str):
        return next(arrays)[1]

    progress.start(f"writing {WEIGHTS} ({quant})", len(shapes))
    write_streaming(stage / WEIGHTS, shapes, SAFETENSORS_DTYPE[quant], produce, {"format": "pt"},
                    lambda _: progress.advance())
    config = dict(source.config)
    config["torch_dtype"] = config["dtype"] = TORCH_DTYPE[quant]
    (stage / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    kept = [name for name in KEEP if (source.path / name).is_file()]
    for name in kept:
        shutil.copy2(source.path / name, stage / name)
    return ["config.json", WEIGHTS, *kept, *copy_notices(source.path, stage)]


def import_gguf(source: Source, stage: Path, quant: str, progress: Progress | None = None,
                notes: list[str] | None = None) -> list[str]:
    """Dequantize a GGUF into an HF folder at `stage`."""
    from gguf import GGUFReader

    progress = progress or Progress()
    progress.start("reading the GGUF", None)
    reader = GGUFReader(source.path)
    tensors = {t.name: t for t in reader.tensors}
    config = _config(source, reader, tensors, quant)
    progress.start("converting the tokenizer", None)
    written = _tokenizer(source, reader, stage)
    n_head, n_head_kv = config["num_attention_heads"], config["num_key_value_heads"]
    hf_names = _hf_parameter_names(config)
    mapping = name_map(source.family, config["num_hidden_layers"], hf_names)
    missing = [hf for hf in hf_names if mapping.get(hf) not in tensors]
    if config["tie_word_embeddings"]:
        missing = [hf for hf in missing if hf != "lm_head.weight"]
    if missing:
        from edgeai.errors import ModelFormatError

        raise ModelFormatError(f"{source.path.name} lacks tensors a {source.family} model needs: "
                               f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    wanted = {hf: mapping[hf] for hf in hf_names if hf not in missing and mapping.get(hf) in tensors}
    shapes = {hf: tuple(int(n) for n in reversed(tensors[g].shape)) for hf, g in wanted.items()}

    def produce(hf: str):
        from gguf.quants import dequantize

        tensor = tensors[wanted[hf]]
        shape = shapes[hf]
        if len(shape) == 2 and shape[0] > ROW_BLOCK and not hf.endswith(("q_proj.weight", "k_proj.weight")):
            return (dequantize(tensor.data[i:i + ROW_BLOCK], tensor.tensor_type).reshape(-1, shape[1])
                    for i in range(0, shape[0], ROW_BLOCK))  # embeddings and heads, in row blocks
        array = dequantize(tensor.data, tensor.tensor_type).reshape(shape)
        return from_gguf(source.family, hf, array, n_head, n_head_kv)

    progress.start(f"dequantizing {len(wanted)} tensors to {quant}", len(wanted))
    write_streaming(stage / WEIGHTS, shapes, SAFETENSORS_DTYPE[quant], produce, {"format": "pt"},
                    lambda _: progress.advance())
    (stage / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    generation = {k: config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in config}
    (stage / "generation_config.json").write_text(json.dumps(generation, indent=2, sort_keys=True) + "\n")
    written += _license(reader, stage)
    if notes is not None and _is_quantized(tensors):
        notes.append("dequantized from a quantized GGUF: the weights are the quantized values, "
                     "not the original checkpoint's")
    return ["config.json", "generation_config.json", WEIGHTS, *written]


def _field(reader, key: str, default=None):
    field = reader.fields.get(key)
    return field.contents() if field is not None else default


def _is_quantized(tensors) -> bool:
    return any(t.tensor_type.name not in ("F32", "F16", "BF16") for t in tensors.values())


def _config(source: Source, reader, tensors, quant: str) -> dict:
    """config.json from the GGUF's hyperparameters (transformers' own GGUF config reader parses
    the whole vocabulary first and takes a minute on a 150k-token model)."""
    from transformers import AutoConfig

    arch = source.family

    def hp(key: str, default=None):
        return _field(reader, f"{arch}.{key}", default)

    architecture, model_type = HF_ARCHITECTURES[arch]
    n_head = int(hp("attention.head_count"))
    hidden = int(hp("embedding_length"))
    values = dict(
        architectures=[architecture], vocab_size=int(tensors["token_embd.weight"].shape[1]),
        hidden_size=hidden, intermediate_size=int(hp("feed_forward_length")),
        num_hidden_layers=int(hp("block_count")), num_attention_heads=n_head,
        num_key_value_heads=int(hp("attention.head_count_kv", n_head)),
        max_position_embeddings=int(hp("context_length", 4096)),
        rms_norm_eps=float(hp("attention.layer_norm_rms_epsilon", 1e-6)),
        tie_word_embeddings="output.weight" not in tensors)
    for key, token in (("bos_token_id", "bos"), ("eos_token_id", "eos"), ("pad_token_id", "padding")):
        if _field(reader, f"tokenizer.ggml.{token}_token_id") is not None:
            values[key] = int(_field(reader, f"tokenizer.ggml.{token}_token_id"))
    head_dim = hp("attention.key_length")
    if head_dim is not None:
        values["head_dim"] = int(head_dim)
    theta = float(hp("rope.freq_base", 10000.0))
    if arch == "gemma3":
        full = {"rope_type": "default", "rope_theta": theta}
        if hp("rope.scaling.type") == "linear":
            full = {"rope_type": "linear", "rope_theta": theta, "factor": float(hp("rope.scaling.factor"))}
        # llama.cpp fixes the local layers' base at 10000 (it is not stored in the GGUF)
        values.update(rope_parameters={"full_attention": full,
                                       "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}},
                      sliding_window=int(hp("attention.sliding_window", 512)),
                      query_pre_attn_scalar=int(head_dim or hidden // n_head))
    else:
        values["rope_theta"] = theta
    config = AutoConfig.for_model(model_type, **values).to_dict()
    config["torch_dtype"] = config["dtype"] = TORCH_DTYPE[quant]
    for key in ("transformers_version", "_name_or_path", "quantization_config"):
        config.pop(key, None)
    return config


def _hf_parameter_names(config: dict) -> list[str]:
    """The state-dict names of the model the config describes (built on the meta device)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(**{k: v for k, v in config.items() if k != "model_type"},
                               model_type=config["model_type"])
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    return list(model.state_dict().keys())


def _tokenizer(source: Source, reader, stage: Path) -> list[str]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source.path.parent), gguf_file=source.path.name)
    template = _field(reader, "tokenizer.chat_template")
    if template:
        tokenizer.chat_template = template
    before = set(p.name for p in stage.iterdir())
    tokenizer.save_pretrained(str(stage))
    if _field(reader, "tokenizer.ggml.model") == "llama":
        _write_sentencepiece(reader, stage / "tokenizer.model")
    return sorted(p.name for p in stage.iterdir() if p.name not in before)


def _write_sentencepiece(reader, path: Path) -> None:
    """A SentencePiece model from the GGUF's pieces, scores and types (same type numbering)."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    model = pb.ModelProto()
    tokens = _field(reader, "tokenizer.ggml.tokens")
    scores = _field(reader, "tokenizer.ggml.scores") or [0.0] * len(tokens)
    types = _field(reader, "tokenizer.ggml.token_type") or [1] * len(tokens)
    for token, score, kind in zip(tokens, scores, types, strict=True):
        piece = model.pieces.add()
        piece.piece, piece.score, piece.type = token, float(score), int(kind)
    spec = model.trainer_spec
    spec.model_type = pb.TrainerSpec.BPE
    spec.vocab_size = len(tokens)
    spec.byte_fallback = 6 in types
    for key, attr in (("unknown", "unk_id"), ("bos", "bos_id"), ("eos", "eos_id"), ("padding", "pad_id")):
        setattr(spec, attr, int(_field(reader, f"tokenizer.ggml.{key}_token_id", -1)))
    norm = model.normalizer_spec
    norm.name = "identity"
    norm.add_dummy_prefix = bool(_field(reader, "tokenizer.ggml.add_space_prefix", False))
    norm.remove_extra_whitespaces = False
    norm.escape_whitespaces = True
    path.write_bytes(model.SerializeToString())


def _license(reader, stage: Path) -> list[str]:
    """The GGUF's license metadata as a LICENSE notice (the full text is not in a GGUF)."""
    name = _field(reader, "general.license")
    if not name:
        return []
    lines = [f"This model is distributed under the license: {name}"]
    for key in ("general.license.name", "general.license.link", "general.name", "general.source.url"):
        if _field(reader, key):
            lines.append(f"{key}: {_field(reader, key)}")
    lines.append("(from the source GGUF's metadata; see the original model's repository for the full text)")
    (stage / "LICENSE").write_text("\n".join(lines) + "\n")
    return ["LICENSE"]
