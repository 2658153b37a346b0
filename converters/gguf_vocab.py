"""An HF tokenizer as GGUF metadata, the way llama.cpp's tokenizers read it.

Two kinds: byte-level BPE (`tokenizer.ggml.model = gpt2`: tokens, types, merges and a named
pre-tokenizer) and SentencePiece (`llama`: pieces, scores and types from tokenizer.model, as
Gemma ships). llama.cpp does not read a pre-tokenizer's regex from the file: it knows a fixed
set of them by name, so a BPE tokenizer whose splitting rules we cannot name is refused rather
than written with a name that would tokenize differently.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgeai.errors import BadInput

# The split rules of the pre-tokenizers llama.cpp knows by name (tokenizers' Split regexes).
_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
           r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPLIT_REGEXES = {_LLAMA3: "llama-bpe", _QWEN2: "qwen2"}
# GGUF token types
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def pre_tokenizer_name(pre: dict | None) -> str:
    """llama.cpp's name for a tokenizer.json pre_tokenizer, or a BadInput that explains."""
    if pre and pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    if pre and pre.get("type") == "Sequence":
        parts = pre.get("pretokenizers", [])
        kinds = [p.get("type") for p in parts]
        if kinds == ["Split", "ByteLevel"] and not parts[1].get("use_regex", True):
            regex = parts[0].get("pattern", {}).get("Regex")
            if regex in SPLIT_REGEXES:
                return SPLIT_REGEXES[regex]
    raise BadInput(
        "unknown pre-tokenizer: this tokenizer splits text into words by rules llama.cpp does not know "
        "by name, so a GGUF of it would tokenize text differently from the original",
        "known: gpt-2, llama-bpe (Llama 3), qwen2, and SentencePiece tokenizers; for another model, "
        "convert it to MLX or ONNX (they keep the tokenizer as it is), or add its rules to llama.cpp first")


def add_vocab(writer, folder: Path, n_vocab: int) -> None:
    """Write the tokenizer of the HF folder into the GGUF writer (padded to n_vocab entries)."""
    import logging

    import gguf

    logging.getLogger("gguf").setLevel(logging.ERROR)  # its notes on template pairs are not the user's
    if (folder / "tokenizer.model").is_file():
        tokens, scores, types = _sentencepiece(folder)
        model, pre = "llama", "default"
        _pad(tokens, types, n_vocab, scores)
        writer.add_tokenizer_model(model)
        writer.add_tokenizer_pre(pre)
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        writer.add_add_space_prefix(_add_dummy_prefix(folder))
        special = gguf.SpecialVocab(folder, load_merges=False, n_vocab=len(tokens))
    else:
        data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
        if data.get("model", {}).get("type") != "BPE":
            raise BadInput(f"tokenizer model {data.get('model', {}).get('type')!r} is not supported for GGUF",
                           "GGUF export takes byte-level BPE (tokenizer.json) or SentencePiece "
                           "(tokenizer.model)")
        tokens, types = _bpe(data)
        _pad(tokens, types, n_vocab)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre_tokenizer_name(data.get("pre_tokenizer")))
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=len(tokens))
    special.add_to_gguf(writer, quiet=True)


def _pad(tokens: list, types: list, n_vocab: int, scores: list | None = None) -> None:
    """Make the vocabulary exactly n_vocab (the embedding's rows): spare ids get names, and
    tokens the model has no row for (added tokens past its vocabulary) are dropped."""
    for values in (tokens, types, scores):
        if values is not None:
            del values[n_vocab:]
    for i in range(len(tokens), n_vocab):
        tokens.append(f"[PAD{i}]")
        types.append(UNUSED)
        if scores is not None:
            scores.append(-1000.0)


def _bpe(data: dict) -> tuple[list[str], list[int]]:
    vocab = dict(data["model"]["vocab"])
    added = {t["content"]: t for t in data.get("added_tokens", [])}
    for content, token in added.items():
        vocab[content] = token["id"]
    by_id = {i: t for t, i in vocab.items()}
    size = max(by_id) + 1
    tokens, types = [], []
    for i in range(size):
        token = by_id.get(i, f"[PAD{i}]")
        tokens.append(token)
        if i not in by_id:
            types.append(UNUSED)
        elif token in added:
            types.append(CONTROL if added[token].get("special") else USER_DEFINED)
        else:
            types.append(NORMAL)
    return tokens, types


def _sentencepiece(folder: Path) -> tuple[list[str], list[float], list[int]]:
    """Pieces, scores and types straight from the model proto (GGUF numbers types the same)."""
    model = _sentencepiece_proto(folder)
    tokens = [p.piece for p in model.pieces]
    scores = [p.score for p in model.pieces]
    types = [int(p.type) for p in model.pieces]
    # tokens added on top of the SentencePiece model (tokenizer.json's added_tokens)
    file = folder / "tokenizer.json"
    if file.is_file():
        for token in json.loads(file.read_text(encoding="utf-8")).get("added_tokens", []):
            i = token["id"]
            if i < len(tokens):
                if tokens[i] == token["content"] and types[i] == NORMAL:
                    types[i] = CONTROL if token.get("special") else USER_DEFINED
                continue
            _pad(tokens, types, i, scores)
            tokens.append(token["content"])
            scores.append(0.0)
            types.append(CONTROL if token.get("special") else USER_DEFINED)
    return tokens, scores, types


def _sentencepiece_proto(folder: Path):
    from sentencepiece import sentencepiece_model_pb2 as pb

    model = pb.ModelProto()
    try:
        model.ParseFromString((folder / "tokenizer.model").read_bytes())
    except Exception as exc:  # protobuf's DecodeError
        raise BadInput(f"{folder / 'tokenizer.model'} is not a SentencePiece model: {exc}") from None
    return model


def _add_dummy_prefix(folder: Path) -> bool:
    return bool(_sentencepiece_proto(folder).normalizer_spec.add_dummy_prefix)
