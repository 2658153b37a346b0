"""Bad sources and flags meet `edgeai convert` as a user would: one line, a non-zero exit and
nothing at OUT. A killed conversion leaves only a temporary that the next run removes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("llama_cpp")


def broken_copy(tiny_models, tmp_path, family="llama"):
    dest = tmp_path / "src"
    shutil.copytree(tiny_models(family), dest)
    return dest


def assert_clean_failure(result, out, *phrases):
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert "Traceback" not in err and err.startswith("edgeai: error:")
    for phrase in phrases:
        assert phrase in err, err
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.partial-*"))


def test_unsupported_architecture_names_the_supported_ones(cli, tiny_models, tmp_path):
    src = broken_copy(tiny_models, tmp_path)
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, "model_type": "gpt_neox"}))
    out = tmp_path / "out"
    result = cli("convert", str(src), "--to", "gguf", "-o", str(out))
    assert_clean_failure(result, out, "unsupported architecture 'gpt_neox'", "Qwen2", "Gemma 3", "Llama")


def test_unknown_pre_tokenizer_explains_itself(cli, tiny_models, tmp_path):
    src = broken_copy(tiny_models, tmp_path)
    data = json.loads((src / "tokenizer.json").read_text())
    data["pre_tokenizer"] = {"type": "Whitespace"}
    (src / "tokenizer.json").write_text(json.dumps(data))
    out = tmp_path / "out"
    result = cli("convert", str(src), "--to", "gguf", "-o", str(out))
    assert_clean_failure(result, out, "unknown pre-tokenizer", "tokenize text differently")
    assert "llama-bpe" in result.stderr.decode()  # the hint names what is known


@pytest.mark.parametrize("missing, phrase", [("config.json", "has no config.json"),
                                             ("tokenizer.json", "has no tokenizer")])
def test_missing_config_or_tokenizer(cli, tiny_models, tmp_path, missing, phrase):
    src = broken_copy(tiny_models, tmp_path)
    (src / missing).unlink()
    out = tmp_path / "out"
    assert_clean_failure(cli("convert", str(src), "--to", "gguf", "-o", str(out)), out, phrase)


def test_corrupt_and_truncated_safetensors(cli, tiny_models, tmp_path):
    src = broken_copy(tiny_models, tmp_path)
    weights = src / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    assert_clean_failure(cli("convert", str(src), "--to", "gguf", "-o", str(out)), out, "truncated")
    weights.write_bytes(b"\xff" * 64)
    assert_clean_failure(cli("convert", str(src), "--to", "gguf", "-o", str(out)), out,
                         "not a valid safetensors file")


def test_unknown_quant_for_the_target_lists_the_valid_ones(cli, tiny_models, tmp_path):
    out = tmp_path / "out"
    result = cli("convert", str(tiny_models("llama")), "--to", "gguf", "--quant", "q4", "-o", str(out))
    assert_clean_failure(result, out, "unknown --quant 'q4' for gguf", "Q4_K_M")


def test_not_a_gguf_and_missing_source(cli, tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"not a gguf at all" * 10)
    out = tmp_path / "out"
    assert_clean_failure(cli("convert", str(fake), "--to", "hf", "-o", str(out)), out, "GGUF")
    assert_clean_failure(cli("convert", str(tmp_path / "nope"), "--to", "hf", "-o", str(out)), out,
                         "does not exist")


def test_an_existing_out_is_kept_unless_force(cli, tiny_models, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    args = ("convert", str(tiny_models("llama")), "--to", "gguf", "-o", str(out), "--no-validate")
    result = cli(*args)
    assert result.returncode == 2 and "already exists" in result.stderr.decode()
    result = cli(*args, "--force")  # --force replaces only an earlier export, never a user's folder
    assert result.returncode == 2 and "not an edgeai export" in result.stderr.decode()
    assert (out / "mine.txt").read_text() == "keep me"
    (out / "mine.txt").unlink()
    assert cli(*args).returncode == 0  # an empty folder is fine
    (out / "from-the-first-export").write_text("")
    result = cli(*args, "--force")
    assert result.returncode == 0, result.stderr.decode()
    # the earlier export was replaced as a whole, not written over
    assert not (out / "from-the-first-export").exists() and (out / "manifest.json").is_file()


def test_out_may_not_be_the_source_or_hold_it(cli, tiny_models, tmp_path):
    src = broken_copy(tiny_models, tmp_path)
    for out in (src, tmp_path):
        result = cli("convert", str(src), "--to", "gguf", "-o", str(out), "--force")
        assert result.returncode == 2 and "is the source or holds it" in result.stderr.decode()
    assert (src / "model.safetensors").is_file()


def test_kill_9_mid_conversion_then_a_rerun_cleans_up(tiny_models, tmp_path):
    src, out = tiny_models("llama"), tmp_path / "out"
    command = [sys.executable, "-m", "edgeai", "convert", str(src), "--to", "gguf", "-o", str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.partial-*")) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(tmp_path.glob(".out.partial-*")) and not out.exists()  # killed while staging
    result = subprocess.run([*command, "--no-validate"], capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
    assert not list(tmp_path.glob(".out.partial-*"))
    assert json.loads((out / "manifest.json").read_text())["format"] == "gguf"
