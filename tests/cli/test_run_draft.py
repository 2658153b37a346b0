"""`edgeai run --draft …` as a user runs it: the --json contract, `auto` through a saved tune,
a backend without the batched step refusing an explicit choice."""

from __future__ import annotations

import json
import os

import pytest

from edgeai.bench.texts import PASSAGES

QUOTE = "Repeat this paragraph exactly, changing only 'times' to 'days':\n\n" + PASSAGES[0]
MODEL = "qwen2.5-coder-0.5b-instruct"


def run_json(cli, *args):
    result = cli("run", "--json", "--temperature", "0", *args)
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


def test_json_reports_drafting_unless_it_is_switched_off(cli):
    report = run_json(cli, "--backend", "echo", "hello")
    assert (report["draft"], report["drafted"], report["accepted"]) == ("off", 0, 0)  # auto, nothing tuned
    assert report["backend"] == "echo" and report["format"] is None  # echo loads no artifact
    report = run_json(cli, "--backend", "echo", "--draft", "off", "hello")
    assert "draft" not in report and "drafted" not in report and report["backend"] == "echo"


def test_a_backend_without_the_batched_step_refuses_an_explicit_draft(cli):
    result = cli("run", "--backend", "echo", "--draft", "ngram", "hello")
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert lines[0] == ("edgeai: error: --draft ngram needs the batched step, which the echo backend "
                        "does not have (it decodes one token at a time)")
    result = cli("run", "--backend", "echo", "--draft-max", "0", "hello")
    assert result.returncode == 2 and b"--draft-max must be at least 1" in result.stderr


def save_tune(draft: str, speedup: float) -> None:
    from pathlib import Path

    from edgeai.tuned import ModelTuning, save_model_tuning

    save_model_tuning(Path(os.environ["EDGEAI_HOME"]), MODEL, ModelTuning(draft=draft, draft_speedup=speedup))


@pytest.mark.model
def test_auto_drafts_where_the_tune_saw_a_win_and_not_where_it_saw_a_loss(cli, default_gguf):
    save_tune("ngram", 1.4)
    won = run_json(cli, "--max-tokens", "48", QUOTE)
    assert won["draft"] == "ngram" and won["drafted"] > 0 and won["accepted"] > 0
    save_tune("ngram", 0.7)
    lost = run_json(cli, "--max-tokens", "48", QUOTE)
    assert (lost["draft"], lost["drafted"], lost["accepted"]) == ("off", 0, 0)


def test_chat_plain_draft_switches_and_reports(cli):
    script = "/draft\n/draft ngram\n/draft off\nhello\n/draft\n"
    result = cli("chat", "--plain", "--backend", "echo", "--temperature", "0", input=script)
    assert result.returncode == 0, result.stderr.decode()
    out, err = result.stdout.decode(), result.stderr.decode()
    assert "(drafting: off)" in out and "Echo: hello" in out
    assert "--draft ngram needs the batched step" in err  # refused, and the REPL goes on
    assert "(drafting is off: the echo backend decodes one token at a time)" in out


@pytest.mark.model
def test_chat_plain_drafts_with_ngram_and_shows_the_accept_rate(cli, default_gguf):
    script = f"/draft ngram\n\"\"\"\n{QUOTE}\n\"\"\"\n/draft\n"
    result = cli("chat", "--plain", "--temperature", "0", "--max-tokens", "48", input=script)
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    assert "(drafting with ngram" in out
    assert "(drafting: ngram; last reply: drafts " in out and "accepted (" in out


def test_serve_refuses_an_explicit_draft_on_a_backend_that_cannot_batch(cli):
    result = cli("serve", "--backend", "echo", "--port", "0", "--draft", "ngram", timeout=60)
    assert result.returncode == 2
    assert b"--draft ngram needs the batched step" in result.stderr
