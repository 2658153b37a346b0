import pytest

from edgeai.errors import ModelFormatError
from edgeai.gguf_info import GGML_TYPE_SIZES, read_header


def test_header_of_the_default_model(default_gguf):
    header = read_header(default_gguf)
    assert header.architecture == "qwen2"
    assert header.get("qwen2.context_length") == 32768
    assert "im_start" in header.get("tokenizer.chat_template")
    assert header.data_end == header.file_size == 491_400_064


def test_truncated_and_foreign_files(default_gguf, tmp_path):
    cut = tmp_path / "cut.gguf"
    with default_gguf.open("rb") as f:
        cut.write_bytes(f.read(1 << 20))
    with pytest.raises(ModelFormatError, match="truncated"):
        read_header(cut)
    tail_cut = tmp_path / "tail.gguf"
    with default_gguf.open("rb") as f:
        tail_cut.write_bytes(f.read(400_000_000))
    with pytest.raises(ModelFormatError, match="tensors need"):
        read_header(tail_cut)
    text = tmp_path / "x.gguf"
    text.write_text("hello world")
    with pytest.raises(ModelFormatError, match="bad magic b'hell'"):
        read_header(text)


def test_type_sizes_match_gguf_py():
    constants = pytest.importorskip("gguf.constants", reason="gguf-py (dev extra) not installed")
    for ttype, (block, size) in GGML_TYPE_SIZES.items():
        assert constants.GGML_QUANT_SIZES[constants.GGMLQuantizationType(ttype)] == (block, size)
