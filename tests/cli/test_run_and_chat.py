"""`edgeai run`, `edgeai chat --plain` and `edgeai doctor` as a user runs them."""

from __future__ import annotations

import json

import pytest

JSON_KEYS = {"text", "reasoning", "finish_reason", "prompt_tokens", "completion_tokens", "ttft_s",
             "prompt_tps", "gen_tps", "peak_mem_mb", "model", "backend", "format",
             "draft", "drafted", "accepted"}  # --draft auto (the default) reports drafting


def test_run_streams_a_reply_from_the_default_model(cli, default_gguf):
    result = cli("run", "--max-tokens", "60", "Write one sentence about the sea.")
    assert result.returncode == 0, result.stderr.decode()
    text = result.stdout.decode()
    # default sampling (temperature 0.7, no seed): the reply varies, its subject does not
    assert len(text.split()) >= 4 and any(w in text.lower() for w in ("sea", "ocean", "water"))


def test_run_json_prints_one_object_with_the_contract_fields(cli, default_gguf):
    result = cli("run", "--json", "--temperature", "0", "--max-tokens", "24", "What is 2+2?")
    assert result.returncode == 0, result.stderr.decode()
    report = json.loads(result.stdout)
    assert set(report) == JSON_KEYS
    assert "4" in report["text"]
    assert report["backend"] == "llamacpp" and report["model"].startswith("qwen2.5-coder-0.5b")
    assert report["format"] == "gguf" and report["draft"] == "off" and report["drafted"] == 0  # nothing tuned
    assert report["completion_tokens"] >= 1 and report["prompt_tokens"] > 10
    assert abs(report["prompt_tps"] - report["prompt_tokens"] / report["ttft_s"]) < 1e-6
    assert report["gen_tps"] > 0 and report["peak_mem_mb"] > 100


def test_run_reads_the_prompt_from_stdin_when_none_or_dash(cli):
    for args in (["run", "--backend", "echo"], ["run", "--backend", "echo", "-"]):
        result = cli(*args, "--temperature", "0", input="piped question")
        assert result.returncode == 0
        assert result.stdout.decode().strip() == "Echo: piped question"


def test_run_json_schema_with_the_real_model(cli, default_gguf, tmp_path):
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"city": {"type": "string"}},
                                  "required": ["city"]}))
    result = cli("run", "--json-schema", str(schema), "--temperature", "0", "--max-tokens", "40",
                 "Which city is the capital of France? Answer as JSON.")
    assert result.returncode == 0, result.stderr.decode()
    assert isinstance(json.loads(result.stdout)["city"], str)


def test_a_whisper_model_given_to_run_says_it_transcribes(cli):
    result = cli("run", "--model", "whisper-base", "hello")
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert lines[0] == "edgeai: error: whisper-base is a speech-to-text model, not a chat model"
    assert "edgeai transcribe FILE --model whisper-base" in lines[1]


def test_chat_plain_holds_a_two_turn_conversation(cli, default_gguf):
    script = "My name is Zorblat. Just say OK.\nWhat is my name? Answer with the name only.\n"
    result = cli("chat", "--plain", "--temperature", "0", "--max-tokens", "30", input=script)
    assert result.returncode == 0, result.stderr.decode()
    replies = [line for line in result.stdout.decode().splitlines() if line.strip()]
    assert len(replies) >= 2
    assert "zorblat" in replies[-1].lower()


def test_chat_plain_trims_old_turns_to_fit_the_window(cli):
    lines = "\n".join(f"message number {i} " + "padding " * 20 for i in range(12)) + "\n"
    result = cli("chat", "--plain", "--backend", "echo", "--ctx", "400", "--temperature", "0",
                 "--max-tokens", "40", input=lines)
    assert result.returncode == 0, result.stderr.decode()
    assert "dropped" in result.stderr.decode()
    assert "message number 11" in result.stdout.decode().splitlines()[-1]


def test_chat_plain_slash_commands(cli):
    result = cli("chat", "--plain", "--backend", "echo", "--temperature", "0",
                 input="/system Be terse.\nhello\n/clear\n/bye\nnever sent\n")
    out = result.stdout.decode()
    assert result.returncode == 0
    assert "(system prompt set)" in out and "Echo: hello" in out and "never sent" not in out


def test_doctor_reports_backends_cpu_and_memory(cli):
    result = cli("doctor")
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()
    for needle in ("cpu", "memory", "backends", "llamacpp", "echo", "GPU offload", "AMX guard"):
        assert needle in out, out


def plain_repl(monkeypatch, backend, spec, lines: str) -> int:
    """`edgeai chat --plain` in this process, its model `backend` and its input `lines`."""
    import importlib
    import io

    from edgeai.cli import run_cli

    module = importlib.import_module("edgeai.cli.chat")  # `edgeai.cli.chat` is also the command's name
    monkeypatch.setattr(module, "open_model", lambda settings, name, template, **how: (backend, spec))
    monkeypatch.setattr("sys.stdin", io.StringIO(lines))
    return run_cli(["chat", "--plain", "--temperature", "0", "--max-tokens", "40"])


def test_chat_plain_runs_the_engines_turn_sized_by_the_loaded_window(monkeypatch, capsys, edgeai_home):
    from edgeai_testing.echo import echo_model

    from edgeai.chat import turn

    backend, spec = echo_model(n_ctx=400)  # settings.n_ctx stays 4096: the window is the backend's
    turns = []
    real = turn.run_turn

    def run_turn(*args, **kwargs):
        turns.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(turn, "run_turn", run_turn)
    lines = "".join(f"message number {i} " + "padding " * 20 + "\n" for i in range(12))
    assert plain_repl(monkeypatch, backend, spec, lines) == 0
    out, err = capsys.readouterr()
    assert len(turns) == 12 and all(t.db.persistent is False for t in turns)
    assert "old messages to fit the 400-token window" in err
    assert "message number 11" in out.splitlines()[-1]
    assert not (edgeai_home / "chat.db").exists()  # the REPL keeps nothing


def test_chat_plain_keeps_a_reply_cut_by_ctrl_c_in_its_history(monkeypatch, capsys):
    from edgeai_testing.echo import echo_model

    backend, spec = echo_model()
    backend.enqueue("A long scripted answer that Ctrl-C will cut.")
    real, prompts = backend.stream, []

    def stream(prompt, params):
        prompts.append(list(prompt))
        inner = real(prompt, params)

        def chunks():
            said = 0
            for chunk in inner:
                said += len(chunk.text)
                if len(prompts) == 1 and said > 8:
                    raise KeyboardInterrupt  # as the terminal's SIGINT lands mid-reply
                yield chunk

        return chunks()

    backend.stream = stream
    assert plain_repl(monkeypatch, backend, spec, "question\nnext\n") == 0
    out, _ = capsys.readouterr()
    assert "(stopped)" in out and "Echo: next" in out
    kept = [(m.role, m.content) for m in prompts[1]]
    assert kept[0] == ("user", "question") and kept[-1] == ("user", "next")
    role, partial = kept[1]
    assert role == "assistant" and 0 < len(partial) < len("A long scripted answer that Ctrl-C will cut.")
    assert "A long scripted answer that Ctrl-C will cut.".startswith(partial)


def test_doctor_says_which_blas_mlx_uses(monkeypatch):
    """With the shim installed (scripts/setup on Linux) doctor names it; EDGEAI_MLX_BLAS=0 says so."""
    pytest.importorskip("mlx")
    pytest.importorskip("_edgeai_mlx_blas", reason="the OpenBLAS shim is not installed in this venv")
    from edgeai.cli.doctor import mlx_blas_status

    monkeypatch.delenv("EDGEAI_MLX_BLAS", raising=False)
    assert mlx_blas_status().startswith("OpenBLAS through edgeai's shim")
    monkeypatch.setenv("EDGEAI_MLX_BLAS", "0")
    assert mlx_blas_status() == "reference BLAS (EDGEAI_MLX_BLAS=0)"
