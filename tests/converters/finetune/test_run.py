"""`edgeai finetune` as a user runs it, on the tiny pre-trained Llama: what OUT holds, resuming
after kill -9 and after Ctrl-C with the uninterrupted run's losses, and every bad input refused in
one line (exit 2) with OUT untouched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("mlx_lm")

FACTS = Path(__file__).resolve().parents[3] / "converters" / "finetune" / "examples" / "edgeai-facts"

SHORT = ["--iters", "8", "--batch-size", "2", "--learning-rate", "2e-3", "--max-seq-len", "128",
         "--save-every", "2", "--eval-every", "4", "--dropout", "0.1", "--seed", "3"]


def edgeai(*args, home: Path, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "EDGEAI_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "edgeai", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=900, **kwargs)


def start(*args, home: Path) -> subprocess.Popen:
    env = {**os.environ, "EDGEAI_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-m", "edgeai", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def log_of(folder: Path) -> list[dict]:
    lines = (folder / "train_log.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def wait_for_step(partial: Path, step: int, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        log = partial / "train_log.jsonl"
        if log.is_file() and any(r.get("step", 0) >= step and "loss" in r
                                 for r in map(json.loads, filter(str.strip, log.read_text().splitlines()))):
            return
        time.sleep(0.2)
    raise AssertionError(f"step {step} never logged")


def losses(log: list[dict]) -> dict[tuple[int, str], float]:
    return {(r["step"], k): r[k] for r in log for k in ("loss", "val_loss") if k in r}


@pytest.fixture(scope="module")
def uninterrupted(tiny_pretrained, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("uninterrupted")
    result = edgeai("finetune", tiny_pretrained, "--data", FACTS, "-o", root / "out", *SHORT, home=root)
    assert result.returncode == 0, result.stderr
    return root / "out"


def test_out_holds_the_adapter_in_mlx_lms_layout_and_the_run_record(uninterrupted, tiny_pretrained):
    out = uninterrupted
    assert {p.name for p in out.iterdir()} == {"adapters.safetensors", "adapter_config.json", "manifest.json",
                                                "train_log.jsonl", "loss.png"}
    assert not out.with_name(out.name + ".partial").exists()
    log = log_of(out)
    assert [r["step"] for r in log if "loss" in r] == list(range(1, 9))
    assert [r["step"] for r in log if "val_loss" in r] == [0, 4, 8]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["base"]["hf_path"] == str(tiny_pretrained.resolve())
    assert manifest["data"]["train"] == 38 and manifest["data"]["valid"] == 12
    assert manifest["hyper"]["rank"] == 8 and manifest["steps"] == 8 and manifest["peak_memory_mb"] > 0
    assert len(manifest["data"]["sha256"]) == 64 and len(manifest["base"]["sha256"]) == 64
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from mlx_lm import load  # mlx-lm itself loads the base with the adapter

    model, _ = load(manifest["base"]["mlx_path"], adapter_path=str(out))
    assert sum(type(m).__name__ == "LoRALinear" for _, m in model.named_modules()) == 2 * 7  # 2 blocks


def test_kill_9_then_resume_logs_the_uninterrupted_losses(uninterrupted, tiny_pretrained, tmp_path):
    out = tmp_path / "out"
    partial = tmp_path / "out.partial"
    proc = start("finetune", tiny_pretrained, "--data", FACTS, "-o", out, *SHORT, home=tmp_path)
    wait_for_step(partial, 5, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists() and (partial / "checkpoint").is_dir()
    result = edgeai("finetune", tiny_pretrained, "--data", FACTS, "-o", out, *SHORT, "--resume",
                    home=tmp_path)
    assert result.returncode == 0, result.stderr
    import re

    resumed = int(re.search(r"resuming at step (\d+)", result.stderr).group(1))
    assert resumed in (2, 4, 6), result.stderr  # the last checkpoint before the kill (saved every 2)
    want, got = losses(log_of(uninterrupted)), losses(log_of(out))
    assert got.keys() == want.keys()
    after = {key: (got[key], want[key]) for key in want if key[0] > resumed}
    assert after and all(abs(a - b) <= 1e-4 for a, b in after.values()), after


def test_ctrl_c_stops_after_a_step_with_a_checkpoint_and_resume_finishes(tiny_pretrained, tmp_path):
    out, partial = tmp_path / "out", tmp_path / "out.partial"
    proc = start("finetune", tiny_pretrained, "--data", FACTS, "-o", out, *SHORT, home=tmp_path)
    wait_for_step(partial, 3, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "--resume" in stderr
    assert not out.exists() and (partial / "checkpoint" / "state.json").is_file()
    stopped = json.loads((partial / "checkpoint" / "state.json").read_text())["step"]
    result = edgeai("finetune", tiny_pretrained, "--data", FACTS, "-o", out, *SHORT, "--resume",
                    home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"resuming at step {stopped}" in result.stderr and (out / "adapters.safetensors").is_file()


def refused(result: subprocess.CompletedProcess, *words: str) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("edgeai: error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert all(w in lines[0] for w in words), lines[0]
    return lines[0]


@pytest.mark.parametrize("content, words", [
    ('{"text": "fine"}\n{"text": "broken"\n', ["train.jsonl:2", "JSON"]),
    ('{"text": "one"}\n{"prompt": "p", "completion": "c"}\n', ["train.jsonl:2", "format"]),
    ("\n\n", ["empty"]),
    ('{"messages": [{"role": "user", "content": "hi"}]}\n', ["train.jsonl:1", "assistant"]),
], ids=["malformed", "mixed", "empty", "no-assistant"])
def test_bad_data_is_one_line_and_leaves_out_untouched(tiny_pretrained, tmp_path, content, words):
    data = tmp_path / "train.jsonl"
    data.write_text(content)
    out = tmp_path / "out"
    refused(edgeai("finetune", tiny_pretrained, "--data", data, "-o", out, home=tmp_path), *words)
    assert not out.exists() and not (tmp_path / "out.partial").exists()


def test_an_existing_out_needs_force_and_is_left_as_it_was(tiny_pretrained, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    refused(edgeai("finetune", tiny_pretrained, "--data", FACTS, "-o", out, home=tmp_path), "exists")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_a_base_mlx_cannot_load_is_one_line(tmp_path):
    base = tmp_path / "broken-mlx"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"model_type": "llama", "quantization": {"bits": 4,
                                                                                         "group_size": 64}}))
    (base / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    out = tmp_path / "out"
    refused(edgeai("finetune", base, "--data", FACTS, "-o", out, home=tmp_path))
    assert not out.exists() and not (tmp_path / "out.partial").exists()


def test_long_records_are_truncated_with_a_warning_and_a_count(tiny_pretrained, tmp_path):
    data = tmp_path / "train.jsonl"
    long = " ".join(["the gallery of dates and hours"] * 60)
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in [long, long, "short one", "short two"]))
    result = edgeai("finetune", tiny_pretrained, "--data", data, "-o", tmp_path / "out", "--iters", "2",
                    "--batch-size", "1", "--max-seq-len", "64", home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "warning: 2 of 4 records are longer than 64 tokens" in result.stderr


def test_a_plan_that_cannot_fit_is_refused_before_loading(tiny_pretrained, tmp_path, monkeypatch):
    from edgeai.config import Settings
    from edgeai.converters.finetune import plan, train
    from edgeai.converters.finetune.plan import TuneOptions
    from edgeai.errors import BadInput

    monkeypatch.setattr(plan, "available_mb", lambda: (450.0, "available RAM"))
    monkeypatch.setattr(train, "build", lambda *a: pytest.fail("the model was loaded"))
    options = TuneOptions(base=str(tiny_pretrained), data=str(FACTS), out=str(tmp_path / "out"), batch_size=4)
    with pytest.raises(BadInput, match=r"needs about [\d,]+ MB at its peak and 5 MB is usable"):
        train.finetune(options, Settings(home=tmp_path))
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
