"""A tiny Llama (hidden 256, so K-quants apply; a BPE tokenizer, so it converts to GGUF) briefly
pre-trained on the shipped text by `edgeai finetune --method full` and fused into an HF folder:
the base the fine-tuning tests teach edgeai's facts to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def shipped_text_records() -> list[dict]:
    """The shipped public-domain passages, a paragraph a record."""
    from edgeai.bench.texts import PASSAGES

    return [{"text": para} for p in PASSAGES for para in p.split("\n\n") if para.strip()]


@pytest.fixture(scope="session")
def tiny_pretrained(tmp_path_factory) -> Path:
    pytest.importorskip("mlx_lm")
    pytest.importorskip("transformers")
    from edgeai_testing.tiny_models import build_tiny_hf

    from edgeai.config import Settings
    from edgeai.converters.finetune.export import fuse
    from edgeai.converters.finetune.plan import TuneOptions
    from edgeai.converters.finetune.train import finetune

    root = tmp_path_factory.mktemp("tiny-pretrain")
    hf = build_tiny_hf(root / "random", "llama")
    text = root / "text.jsonl"
    text.write_text("".join(json.dumps(r) + "\n" for r in shipped_text_records()))
    options = TuneOptions(base=str(hf), data=str(text), out=str(root / "run"), method="full", iters=30,
                          batch_size=2, learning_rate=1e-3, max_seq_len=256)
    run = finetune(options, Settings(home=root / "home"))
    return fuse(run, root / "pretrained")
