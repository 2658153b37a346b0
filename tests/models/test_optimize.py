"""`edgeai models optimize` and what it installs: candidates built through the real converters
on a tiny HF checkpoint, kept or deleted by their perplexity ratio; a catalog id resolving to
every installed artifact (`@format` picking one); the tuned winner as the default artifact of
`run` (a backend flag overriding it) and the chat kept on llama.cpp where the winner cannot save
its KV state."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from edgeai.config import Settings
from edgeai.models import find_entry
from edgeai.models.catalog import Artifact
from edgeai.tuned import ModelTuning, save_model_tuning


@pytest.fixture
def settings(settings, tmp_path):
    """This test's own models dir: exports made here never reach the session's."""
    return replace(settings, models_home=tmp_path / "models")


@pytest.fixture
def entry(tmp_path, monkeypatch):
    """A catalog entry `tiny-model` whose artifact is a local GGUF path, added to the catalog."""
    from edgeai.models import catalog

    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")  # resolving never reads it
    base = find_entry("qwen2.5-coder-0.5b-instruct")
    tiny = replace(base, id="tiny-model", aliases=(), role="",
                   artifacts=(Artifact("gguf", "q8_0", "tiny.gguf", {"kind": "path", "path": str(gguf)}),))
    real = catalog.load_catalog()
    monkeypatch.setattr(catalog, "load_catalog", lambda: (*real, tiny))
    return tiny


def fake_export(settings: Settings, fmt: str, quant: str, size: int, ratio: float) -> Path:
    from edgeai.models.installed import export_name, optimized_dir

    folder = optimized_dir(find_entry("tiny-model"), settings) / export_name(fmt, quant)
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"format": fmt, "quant": quant, "size_bytes": size}))
    (folder / "report.json").write_text(json.dumps({"perplexity_ratio": ratio}))
    if fmt == "gguf":
        (folder / f"tiny-{quant.lower()}.gguf").write_bytes(b"GGUF")
    return folder


def test_a_catalog_id_resolves_to_every_installed_artifact(entry, settings):
    from edgeai.models import resolve

    assert list(resolve("tiny-model", settings).artifacts) == ["gguf"]  # nothing optimized: as before
    onnx = fake_export(settings, "onnx", "int4-kquant", 900, 1.06)
    small = fake_export(settings, "onnx", "int4-klast", 500, 1.08)
    q4 = fake_export(settings, "gguf", "Q4_0", 300, 1.09)
    spec = resolve("tiny-model", settings)
    assert list(spec.artifacts) == ["gguf", "onnx"]  # the catalog's first: the runtime picks it
    assert spec.artifacts["gguf"].name == "tiny.gguf" and spec.artifacts["onnx"] == small.resolve()
    assert resolve("tiny-model@onnx", settings).artifacts == {"onnx": small.resolve()}
    picked = resolve("tiny-model:int4-kquant@onnx", settings)
    assert picked.artifacts == {"onnx": onnx.resolve()} and picked.id == "tiny-model:int4-kquant@onnx"
    assert resolve("tiny-model:q4_0", settings).artifacts["gguf"] == (q4 / "tiny-q4_0.gguf").resolve()
    assert resolve("tiny-model@gguf", settings).artifacts["gguf"].name == "tiny.gguf"  # the catalog's
    preferred = resolve("tiny-model", settings, prefer=q4 / "tiny-q4_0.gguf")
    assert preferred.id == "tiny-model:q4_0@gguf" and list(preferred.artifacts) == ["gguf", "onnx"]
    assert preferred.artifacts["gguf"].name == "tiny-q4_0.gguf"

    from edgeai.models.resolve import installed

    assert [i.label for i in installed("tiny-model", settings)] == \
        ["q8_0@gguf", "q4_0@gguf", "int4-klast@onnx", "int4-kquant@onnx"]


def test_the_tuned_winner_is_the_default_and_a_backend_flag_overrides_it(entry, settings):
    from edgeai.runtime.loader import model_spec, pick_backend

    onnx = fake_export(settings, "onnx", "int4-klast", 500, 1.08)
    gguf = entry.artifacts[0].source["path"]
    save_model_tuning(settings.home, "tiny-model", ModelTuning(
        format="onnx", path=str(onnx), chat_format="gguf", chat_path=gguf, chat_why="no KV save"))
    run = model_spec(settings, "tiny-model", None)
    assert pick_backend(run, None) == "onnx" and run.id == "tiny-model:int4-klast@onnx"
    flagged = model_spec(settings, "tiny-model", "llamacpp")
    assert pick_backend(flagged, "llamacpp") == "llamacpp" and flagged.artifacts["gguf"].name == "tiny.gguf"
    assert pick_backend(model_spec(settings, "tiny-model", None, chat=True), None) == "llamacpp"
    explicit = model_spec(settings, "tiny-model@gguf", None)
    assert pick_backend(explicit, None) == "llamacpp"


def test_the_chat_stays_on_llamacpp_when_the_winner_cannot_save_its_kv_state():
    from edgeai.bench.tune_formats import FormatChoice, FormatProbe, chat_missing, choose

    assert chat_missing("llamacpp") == []
    assert chat_missing("onnx") == ["saved KV state"]
    result = choose(FormatChoice(probes=[
        FormatProbe("gguf", "q4_k_m", "/m/a.gguf", "llamacpp", 2, 150.0, 36.0),
        FormatProbe("onnx", "int4-klast", "/m/onnx", "onnx", 2, 300.0, 60.0),
        FormatProbe("gguf", "q4_0", "/m/b.gguf", "llamacpp", 2, 160.0, 48.0),
        FormatProbe("gguf", "iq4_nl", "/m/c.gguf", "llamacpp", 2, None, None, error="crashed")]))
    assert result.winner.path == "/m/onnx"
    assert result.chat.path == "/m/b.gguf"  # the fastest that does all three
    assert "lacks saved KV state" in result.chat_why and "rewind_to" in result.chat_why
    assert "q4_0@gguf (48.0 tok/s)" in result.chat_why


def test_targets_are_checked_before_any_work():
    from edgeai.errors import BadInput
    from edgeai.models.optimize import fits, parse_target

    assert parse_target("onnx:INT4-KQUANT") == ("onnx", "int4-kquant")
    assert parse_target("gguf:q4_0") == ("gguf", "Q4_0")
    for bad in ("onnx", "onnx:int9", "hf:fp32", "tflite:int4"):
        with pytest.raises(BadInput):
            parse_target(bad)
    assert fits({"hidden_size": 896, "intermediate_size": 4864})  # Qwen 0.5B: 896 = 28 × 32
    assert not fits({"hidden_size": 900, "intermediate_size": 4864})


def test_optimize_refuses_a_model_without_an_importable_source(settings, tmp_path):
    from edgeai.errors import BadInput
    from edgeai.models.optimize import optimize

    with pytest.raises(BadInput, match="no source edgeai can import"):
        optimize("echo", settings)
    with pytest.raises(BadInput, match="takes a catalog id"):
        optimize(str(tmp_path / "model.gguf"), settings)


def test_candidates_are_built_checked_and_kept_by_their_ratio(entry, settings, tiny_hf):
    """Two GGUF 4-bit candidates from a tiny HF checkpoint through the real converters: each
    gets a fidelity card; a threshold between their ratios keeps one and deletes the other."""
    pytest.importorskip("llama_cpp")
    from edgeai.converters.source import open_source
    from edgeai.models.installed import exports
    from edgeai.models.optimize import build

    source = open_source(tiny_hf)
    todo = [("gguf", "Q4_0"), ("gguf", "IQ4_NL")]
    first = build(entry, source, todo, settings, threshold=100.0)
    assert [o.kept for o in first] == [True, True] and all(o.ratio and o.ratio > 0 for o in first)
    assert {i.label for i in exports(entry, settings)} == {"q4_0@gguf", "iq4_nl@gguf"}
    notes = json.loads((first[0].path / "manifest.json").read_text())["notes"]
    assert any("q4_0" in n.lower() and "tensor types" in n for n in notes)  # what llama.cpp really wrote
    worse, better = sorted(first, key=lambda o: o.ratio)[::-1]
    assert worse.ratio != better.ratio
    second = build(entry, source, todo, settings, threshold=(worse.ratio + better.ratio) / 2)
    assert all(o.reused for o in second)  # built once; the threshold is applied again
    kept = {o.quant for o in second if o.kept}
    assert kept == {better.quant}
    assert not worse.path.exists() and better.path.exists()
    assert "perplexity ratio" in next(o.why for o in second if not o.kept)


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from edgeai_testing.tiny_models import build_tiny_hf

    return build_tiny_hf(tmp_path_factory.mktemp("tiny") / "qwen2", "qwen2")



@pytest.mark.slow
def test_optimize_on_the_real_default_model_prints_candidates_and_the_one_kept(cli, default_gguf, tmp_path):
    """The CLI contract on the real default model (its fp32 import, a Q4_0 build and its card:
    minutes): the candidate line with its ratio, the kept line, and `models list` showing it."""
    env = {"EDGEAI_HOME": str(tmp_path / "home"), "EDGEAI_MODELS_DIR": str(tmp_path / "models")}
    done = cli("models", "optimize", "--to", "gguf:Q4_0", "--max-ratio", "2.0", env=env, timeout=1800)
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert re.search(r"^candidate gguf:q4_0 +ratio 1\.\d{3} .* kept$", out, re.M), out
    assert re.search(r"^kept: gguf:q4_0 \(×1\.\d{3}\)", out, re.M), out
    listed = cli("models", "list", env=env).stdout.decode()
    assert re.search(r"qwen2.5-coder-0.5b-instruct +optimized +q4_0@gguf", listed), listed


def test_tune_records_the_winner_and_the_chats_choice_in_tuned_json(entry, settings, monkeypatch, capsys):
    """doctor --tune's per-model step over measured probes: tuned.json gets the fastest artifact
    for run/serve/bench and the chat's (with why) — and a saved drafting choice survives."""
    from edgeai.bench import tune_formats
    from edgeai.bench.tune_formats import FormatChoice, FormatProbe, choose
    from edgeai.cli.tune import tune_model
    from edgeai.models.resolve import installed
    from edgeai.tuned import model_tuning

    fake_export(settings, "onnx", "int4-kquant", 900, 1.08)
    items = installed("tiny-model", settings)
    gguf = str(items[0].path)
    onnx = str(items[1].path)
    measured = choose(FormatChoice(probes=[FormatProbe("gguf", "q8_0", gguf, "llamacpp", 2, 150.0, 36.0),
                                           FormatProbe("onnx", "int4-kquant", onnx, "onnx", 2, 300.0, 57.0)]))
    monkeypatch.setattr(tune_formats, "probe_formats", lambda *a, **k: measured)
    monkeypatch.setattr("edgeai.cli.tune._probe_draft", lambda *a: None)
    save_model_tuning(settings.home, "tiny-model", ModelTuning(draft="ngram", draft_speedup=1.3))
    settings = replace(settings, model="tiny-model")
    tune_model(settings, items, {"threads": 2, "wait_policy": "active"}, 2, "llamacpp")
    saved = model_tuning(settings.home, "tiny-model")
    assert (saved.format, saved.path) == ("onnx", onnx)
    assert (saved.chat_format, saved.chat_path) == ("gguf", gguf) and "saved KV state" in saved.chat_why
    assert saved.draft == "ngram" and len(saved.measured) == 2 and saved.at
    out = capsys.readouterr().out
    assert "fastest: int4-kquant@onnx (57.0 tok/s" in out and "chat: q8_0@gguf" in out
