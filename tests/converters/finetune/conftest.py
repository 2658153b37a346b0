"""A tiny Llama (hidden 256, so K-quants apply; a BPE tokenizer, so it converts to GGUF) briefly
pre-trained on the shipped text by `edgeai finetune --method full` and fused into an HF folder:
the base the fine-tuning tests teach edgeai's facts to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def shipped_text_records() -> list[dict]:
    """The shipped public-domain passages, a sentence or two a record."""
    import re

    from edgeai.bench.texts import PASSAGES

    sentences = [s for p in PASSAGES for s in re.split(r"(?<=[.;!?])\s+", p) if len(s) > 20]
    return [{"text": " ".join(sentences[i:i + 2])} for i in range(0, len(sentences), 2)]


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
    options = TuneOptions(base=str(hf), data=str(text), out=str(root / "run"), method="full", iters=40,
                          batch_size=4, learning_rate=2e-3, max_seq_len=128)
    run = finetune(options, Settings(home=root / "home"))
    return fuse(run, root / "pretrained")
