"""Tiny Hugging Face checkpoints the converter tests build in seconds, offline.

Each family (llama, qwen2, qwen3, gemma3) gets random weights at dimensions every block
quantizer accepts (rows a multiple of 256), a real tokenizer trained on public-domain text and
the interpreter's own sources, a chat template and a LICENSE file, so an export can be checked
for everything that should travel with it.
"""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

FAMILIES = ("llama", "qwen2", "qwen3", "gemma3")
VOCAB = 1024
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
GEMMA_CHAT = ("{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' "
              "else m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
              "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def training_text() -> list[str]:
    """English prose plus Python source: enough variety for a 1k-token vocabulary."""
    from edgeai.bench.texts import PASSAGES

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(stdlib.glob("[a-c]*.py"))[:12]
    return list(PASSAGES) * 20 + [f.read_text(encoding="utf-8", errors="replace") for f in files]


def _bpe_tokenizer(family: str, dest: Path) -> None:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    if family == "qwen2" or family == "qwen3":
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_text(), trainer)
    tok.save(str(dest / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|endoftext|>",
              "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "chat_template": CHATML,
              "model_max_length": 2048}
    (dest / "tokenizer_config.json").write_text(json.dumps(config, indent=1))


def _spm_tokenizer(dest: Path) -> None:
    """A SentencePiece BPE model with byte fallback, as Gemma ships (tokenizer.model)."""
    import io

    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(line for text in training_text() for line in text.splitlines() if line),
        model_writer=model, vocab_size=VOCAB, model_type="bpe", byte_fallback=True,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, user_defined_symbols=["<start_of_turn>", "<end_of_turn>"],
        add_dummy_prefix=False, remove_extra_whitespaces=False, minloglevel=2)
    (dest / "tokenizer.model").write_bytes(model.getvalue())
    config = {"tokenizer_class": "GemmaTokenizer", "add_bos_token": True, "add_eos_token": False,
              "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    (dest / "tokenizer_config.json").write_text(json.dumps(config))
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(dest))  # converts tokenizer.model to tokenizer.json
    tokenizer.chat_template = GEMMA_CHAT
    tokenizer.save_pretrained(str(dest))


def _config(family: str) -> dict:
    common = {"vocab_size": VOCAB, "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048,
              "rms_norm_eps": 1e-6, "tie_word_embeddings": False}
    if family == "llama":
        return {**common, "architectures": ["LlamaForCausalLM"], "model_type": "llama",
                "bos_token_id": 0, "eos_token_id": 2, "rope_theta": 10000.0}
    if family == "qwen2":
        return {**common, "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
                "bos_token_id": 0, "eos_token_id": 2, "rope_theta": 1000000.0, "tie_word_embeddings": True}
    if family == "qwen3":
        return {**common, "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "head_dim": 64,
                "bos_token_id": 0, "eos_token_id": 2, "rope_theta": 1000000.0}
    if family == "gemma3":
        return {**common, "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
                "head_dim": 64, "num_key_value_heads": 1, "sliding_window": 4096, "query_pre_attn_scalar": 64,
                "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0,
                # six layers: llama.cpp fixes Gemma 3's pattern at five local layers, then a global one
                "num_hidden_layers": 6, "torch_dtype": "bfloat16"}
    raise ValueError(f"unknown tiny family {family!r}")


def build_tiny_hf(dest: Path, family: str = "llama", seed: int = 0) -> Path:
    """Write a tiny `family` checkpoint to `dest` (a new folder) and return it."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    dest = Path(dest)
    dest.mkdir(parents=True)
    if family == "gemma3":
        _spm_tokenizer(dest)
    else:
        _bpe_tokenizer(family, dest)
    config = AutoConfig.for_model(**_config(family))
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():  # spread the logits so the argmax is not a coin toss
        for name, param in model.named_parameters():
            if param.dim() == 2:
                param.mul_(3.0)
            elif "norm" in name and family == "gemma3":  # Gemma stores norm weights as w - 1
                param.normal_(0.0, 0.1)
    model.save_pretrained(str(dest))
    (dest / "LICENSE").write_text("Tiny test model. Apache-2.0.\n")
    return dest
