"""One format table (edgeai/formats.py) that the runtime, the converters, the CLI, the resolver and
the bench all read: each of them agrees with it, and none keeps a list of its own."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeai.formats import CONVERT_TARGETS, EXPORT_BACKENDS, FORMAT_BACKENDS, FORMATS, backend_dist

REPO = Path(__file__).resolve().parents[1]


def test_the_table_names_the_backends_and_targets_that_exist():
    from edgeai.runtime import BUILTIN_BACKENDS

    assert set(FORMAT_BACKENDS.values()) <= set(BUILTIN_BACKENDS)
    assert FORMAT_BACKENDS["gguf"] == "llamacpp" and FORMAT_BACKENDS["onnx"] == "onnx"
    assert CONVERT_TARGETS == ("hf", "gguf", "mlx", "onnx", "coreml")
    assert EXPORT_BACKENDS == ("mlx", "onnx", "coreml")
    for name in CONVERT_TARGETS:
        assert (REPO / "converters" / f"{name}.py").is_file()


@pytest.mark.parametrize("name", CONVERT_TARGETS)
def test_each_converter_takes_its_rows_quants(name):
    pytest.importorskip("gguf")
    module = importlib.import_module(f"edgeai.converters.{name}")
    assert module.QUANTS == FORMATS[name].quants
    assert module.NOT_FOR_GEMMA == FORMATS[name].not_for_gemma
    assert module.default_quant("llama") in module.QUANTS


def test_the_cli_offers_every_target_and_every_quant():
    from edgeai.cli import cli
    from edgeai.converters import TARGETS

    assert TARGETS == CONVERT_TARGETS
    text = " ".join(CliRunner().invoke(cli, ["convert", "--help"], terminal_width=400).output.split())
    for name in CONVERT_TARGETS:
        assert f"{name}: {' '.join(FORMATS[name].quants)}" in text
    assert re.search(r"\[hf\|gguf\|mlx\|onnx\|coreml\|all\]", text)


def test_the_resolver_reads_a_folder_by_the_table(tmp_path):
    from edgeai.models.resolve import spec_from_folder

    marked = tmp_path / "genai"
    marked.mkdir()
    (marked / FORMATS["onnx"].marker).write_text("{}")
    assert set(spec_from_folder(marked).artifacts) == {"onnx"}
    for fmt in EXPORT_BACKENDS:
        folder = tmp_path / fmt
        folder.mkdir()
        (folder / "manifest.json").write_text(json.dumps({"format": fmt}))
        assert set(spec_from_folder(folder).artifacts) == {fmt}


def test_the_bench_records_the_package_behind_each_backend():
    from edgeai.bench.llm import backend_versions

    assert backend_dist("llamacpp") == "llama_cpp_python" and backend_dist("echo") is None
    assert set(backend_versions("llamacpp")) == {"llama_cpp_python"}
    assert backend_versions("echo") == {}


def test_no_other_module_spells_out_the_format_list():
    """The old copies (FORMAT_BACKENDS, TARGETS, QUANT_HELP, the bench's dists, the resolver's
    markers) are gone: a literal listing three or more format names lives only in the table."""
    name = r"""["'](?:hf|gguf|mlx|onnx|coreml)["']"""
    literal = re.compile(rf"\(\s*{name}(?:\s*,\s*{name}){{2,}}")
    offenders = []
    for folder in ("edgeai", "converters", "models", "bench"):
        for path in (REPO / folder).rglob("*.py"):
            if path.name == "formats.py":
                continue
            if literal.search(path.read_text(encoding="utf-8")):
                offenders.append(path.relative_to(REPO).as_posix())
    assert offenders == []
