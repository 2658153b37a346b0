"""Every bad input is one clear line on stderr, the right exit code, and no traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import pytest


def assert_clean_error(result, code: int, *needles: str) -> str:
    err = result.stderr.decode()
    assert result.returncode == code, (result.returncode, err)
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 4, err
    assert lines[0].startswith("edgeai: error: ")
    for needle in needles:
        assert needle in err, err
    return err


def test_model_id_not_in_the_catalog(cli):
    assert_clean_error(cli("run", "--model", "no-such-model", "hi"), 2, "not in the catalog",
                       "edgeai models list")


def test_model_path_that_does_not_exist(cli, tmp_path):
    assert_clean_error(cli("run", "--model", str(tmp_path / "missing.gguf"), "hi"), 2, "does not exist")


def test_a_zip_is_not_gguf(cli, tmp_path):
    archive = tmp_path / "notes.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("notes.txt", "hello")
    assert_clean_error(cli("run", "--model", str(archive), "hi"), 2, "not GGUF", "PK")


def test_a_gguf_truncated_to_its_first_megabyte(cli, tmp_path, default_gguf):
    cut = tmp_path / "cut.gguf"
    with default_gguf.open("rb") as src:
        cut.write_bytes(src.read(1 << 20))
    assert_clean_error(cli("run", "--model", str(cut), "hi"), 2, "truncated")


@pytest.mark.parametrize("prompt", ["", "   \n"])
def test_an_empty_prompt(cli, prompt):
    assert_clean_error(cli("run", "--backend", "echo", prompt), 2, "prompt is empty")


def test_an_empty_prompt_on_stdin(cli):
    assert_clean_error(cli("run", "--backend", "echo", input=""), 2, "prompt is empty")


def test_non_utf8_stdin(cli):
    assert_clean_error(cli("run", "--backend", "echo", "-", input=b"caf\xe9\xff"), 2, "not UTF-8")


def test_a_prompt_longer_than_the_context_window_is_refused_with_counts(cli, default_gguf):
    result = cli("run", "--model", str(default_gguf), "--ctx", "256", "word " * 400)
    err = assert_clean_error(result, 2, "context window is 256")
    assert "prompt is 4" in err  # ~400+ tokens, named in the message


def test_negative_temperature(cli):
    assert_clean_error(cli("run", "--backend", "echo", "--temperature", "-1", "hi"), 2, "--temperature")


def test_a_flag_with_a_non_number_is_a_usage_error(cli):
    assert_clean_error(cli("run", "--max-tokens", "many", "hi"), 2, "many")


@pytest.mark.parametrize("content,needle", [
    ("{not json", "not valid JSON"),
    ('{"type": "nonsense"}', "unknown type 'nonsense'"),
    ('{"type": "object", "properties": {"a": {"type": "strng"}}}', "$.properties.a"),
    ("[1, 2]", "expected an object"),
])
def test_an_invalid_json_schema(cli, tmp_path, content, needle):
    schema = tmp_path / "schema.json"
    schema.write_text(content)
    assert_clean_error(cli("run", "--backend", "echo", "--json-schema", str(schema), "hi"), 2, needle)


def test_a_missing_json_schema_file(cli, tmp_path):
    assert_clean_error(cli("run", "--backend", "echo", "--json-schema", str(tmp_path / "x.json"), "hi"),
                       2, "does not exist")


def test_ctrl_c_during_generation_stops_cleanly_with_130(default_gguf):
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeai", "run", "--model", str(default_gguf), "--max-tokens", "400",
         "--temperature", "0", "Write a very long story about a lighthouse keeper."],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy(),
        # a job started in the background of a non-interactive shell (as CI may be) inherits an
        # ignored SIGINT; a user's terminal delivers it, so give the child the default handler
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = proc.stdout.read(8)  # generation has started
    assert first
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err.decode()
    assert "interrupted" in err.decode()
    assert len(first + out) > 8  # what was generated stays on stdout


def test_a_base_model_cannot_chat(cli, monkeypatch):
    # the catalog's base model is refused before any conversation starts, even without its files
    result = cli("chat", "--plain", "--model", "gemma-3-270m")
    err = result.stderr.decode()
    assert result.returncode in (1, 2) and "Traceback" not in err
    assert "base-model" in err or "base model" in err


def test_json_output_on_bad_input_is_still_an_error_not_json(cli):
    result = cli("run", "--json", "--backend", "echo", "")
    assert result.returncode == 2 and result.stdout == b""
    with pytest.raises(json.JSONDecodeError):
        json.loads(result.stdout or b"x")


def test_an_error_is_the_first_thing_on_stderr(cli, tmp_path):
    """No blank line before it (a progress bar that had nothing to show used to leave one)."""
    result = cli("run", "--model", str(tmp_path / "missing.gguf"), "hi")
    assert result.stderr.decode().startswith("edgeai: error: "), repr(result.stderr[:40])


@pytest.mark.model
def test_a_context_larger_than_the_memory_says_what_it_needs_and_what_fits(cli, default_gguf):
    result = cli("run", "--model", str(default_gguf), "--ctx", "999999999", "hi")
    err = assert_clean_error(result, 2, "999,999,999-token context needs", "GB for its KV cache",
                             "use --ctx ")
    assert err.startswith("edgeai: error: ") and "llama_context" not in err  # llama.cpp's log stays out
    fits = int(err.split("use --ctx ")[1].split()[0])
    assert 1024 <= fits < 999_999_999
