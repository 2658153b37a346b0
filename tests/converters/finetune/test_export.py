"""A tuned model leaving MLX: the fused HF folder, the exports with their cards, the adapter-only
GGUF for llama.cpp, and `edgeai run --adapter`.

The runs are made by hand (tests/edgeai_testing/tuned_runs.py: mlx-lm's LoRA/DoRA layers with a
nonzero `lora_b` on a tiny Llama), so these tests check the plumbing after training, not
training. What a user notices is what is asserted: the fused model computes what the base with
its adapter computes, in transformers and in llama.cpp; exports load and run; bad flags fail in
one line; a failed export leaves nothing behind.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("mlx_lm")

from edgeai_testing.tuned_runs import make_run  # noqa: E402

from edgeai.converters import convert  # noqa: E402
from edgeai.converters.finetune.export import (  # noqa: E402
    export_run,
    fuse,
    parse_exports,
    write_adapter_gguf,
)
from edgeai.errors import BadInput, EdgeAIError  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog. def main():\n    return 0\n"


@pytest.fixture(scope="module")
def bases(tiny_models, tmp_path_factory):
    """The tiny Llama as HF, as MLX fp32 and 4-bit, and as an F32 GGUF."""
    root = tmp_path_factory.mktemp("bases")
    hf = tiny_models("llama")
    made = {"hf": hf}
    for quant in ("fp32", "4bit"):
        made[quant] = root / f"mlx-{quant}"
        convert(hf, made[quant], to="mlx", quant=quant, check=False)
    convert(hf, root / "gguf", to="gguf", quant="F32", check=False)
    made["gguf"] = next((root / "gguf").glob("*.gguf"))
    return made


@pytest.fixture(scope="module")
def runs(bases, tmp_path_factory):
    """method -> a finished run on the matching base (qlora: the 4-bit one)."""
    root = tmp_path_factory.mktemp("runs")
    return {
        "lora": make_run(root / "lora", bases["fp32"], hf=bases["hf"], gguf=bases["gguf"]),
        "dora": make_run(root / "dora", bases["fp32"], method="dora", hf=bases["hf"]),
        "qlora": make_run(root / "qlora", bases["4bit"], hf=bases["hf"], quantized="4bit"),
    }


def mlx_logits(base: Path, adapter: Path | None, text: str = TEXT):
    """The base with its adapter in mlx-lm, computed densely in fp32 (a QLoRA base's 4-bit
    layers dequantized to the values they stand for, without rounding them to fp16)."""
    import mlx.core as mx
    import mlx_lm
    import numpy as np
    from mlx_lm.utils import dequantize_model

    model, tokenizer = mlx_lm.load(str(base), adapter_path=str(adapter) if adapter else None)
    model.set_dtype(mx.float32)  # the 4-bit layers' scales too: their exact affine values
    model = dequantize_model(model)
    ids = tokenizer.encode(text)
    return ids, np.array(model(mx.array(ids)[None])[0].astype(mx.float32))


def torch_logits(folder: Path, ids):
    from edgeai.converters.runners import TorchRunner

    runner = TorchRunner(folder)
    try:
        return runner.logits(ids)
    finally:
        runner.close()


# -- --export ---------------------------------------------------------------------------------
def test_parse_exports_reads_the_format_table():
    assert parse_exports("gguf:Q4_K_M,onnx:int4,coreml:int8,mlx:4bit") == [
        ("gguf", "Q4_K_M"), ("onnx", "int4"), ("coreml", "int8"), ("mlx", "4bit")]
    assert parse_exports(" GGUF:q8_0 , hf ") == [("gguf", "Q8_0"), ("hf", None)]  # the table's spelling


@pytest.mark.parametrize("spec, says", [
    ("ggml:Q4_K_M", "unknown format 'ggml'"),
    ("gguf:Q3_K", "gguf has no quant 'Q3_K'"),
    ("gguf:", "no quant after the colon"),
    ("gguf:Q4_K_M,,onnx:int4", "empty item"),
    ("", "--export is empty"),
    ("gguf:Q4_K_M,gguf:Q8_0", "names gguf twice"),
])
def test_a_bad_export_spec_is_one_line(spec, says):
    with pytest.raises(BadInput) as caught:
        parse_exports(spec)
    assert says in caught.value.message and "\n" not in caught.value.message


# -- fuse -------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["lora", "dora", "qlora"])
def test_the_fused_folder_computes_what_the_base_with_its_adapter_does(runs, method, tmp_path):
    import numpy as np

    from edgeai.converters.source import open_source

    run = runs[method]
    base = Path(json.loads((run / "manifest.json").read_text())["base"]["mlx_path"])
    fused = fuse(run, tmp_path / "fused")
    ids, tuned = mlx_logits(base, run)
    _, plain = mlx_logits(base, None)
    got = torch_logits(fused, ids)
    assert np.abs(got - tuned).max() < 1e-3  # transformers on the fused weights = mlx-lm + adapter
    assert np.abs(got - plain).max() > 0.5  # ... and that is not the base: the adapter is in there
    config = json.loads((fused / "config.json").read_text())
    assert "quantization" not in config and "quantization_config" not in config
    assert config["dtype"] == "float32"  # the original's dtype, also from the 4-bit base
    names = {p.name for p in fused.iterdir()}
    assert {"model.safetensors", "tokenizer.json", "LICENSE", "chat_template.jinja"} <= names
    assert open_source(fused).family == "llama"  # what every converter starts from


def test_fuse_refuses_a_folder_that_is_not_a_finished_run(tmp_path):
    (tmp_path / "OUT.partial").mkdir()
    with pytest.raises(BadInput, match="not a finished fine-tune run") as caught:
        fuse(tmp_path / "OUT", tmp_path / "fused")
    assert "--resume" in caught.value.hint
    assert not (tmp_path / "fused").exists()


# -- export_run -------------------------------------------------------------------------------
def test_a_q4_k_m_export_runs_in_llama_cpp_and_its_card_says_what_tuning_changed(runs, bases):
    from edgeai.runtime import generate, get_backend
    from edgeai.types import GenParams, LoadOptions, ModelSpec

    run = runs["lora"]
    made = export_run(run, "gguf:Q4_K_M")
    assert [(p.name, m.quant) for p, m in made] == [("gguf", "Q4_K_M")]
    folder = run / "exports" / "gguf"
    report = json.loads((folder / "report.json").read_text())
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["source"] == str(run) and any("fine-tune run" in n for n in manifest["notes"])
    assert report["numbers_checked"] and report["greedy_equal"] is not None
    vs_base = report["vs_base"]
    assert vs_base["source"] == str(bases["hf"]) and vs_base["numbers_checked"]
    # the export is much closer to the tuned model (only quantization apart) than to the base
    assert vs_base["top1_agreement"] < report["top1_agreement"]
    assert not list(run.glob(".*")) and sorted(p.name for p in (run / "exports").iterdir()) == [
        "adapter-gguf", "gguf"]  # no fused copy or stage left behind

    gguf = next(folder.glob("*.gguf"))
    backend = get_backend("llamacpp")
    backend.load(ModelSpec(id="tuned", artifacts={"gguf": gguf}), LoadOptions(n_ctx=512, n_threads=2))
    try:
        reply = generate(backend, "def main():", GenParams(temperature=0, max_tokens=8, ignore_eos=True))
    finally:
        backend.close()
    assert reply.final.completion_tokens == 8
    # the base has a GGUF and the method is LoRA: the adapter-only GGUF came along
    adapter = run / "exports" / "adapter-gguf"
    assert (adapter / f"{run.name}-lora.gguf").is_file()
    assert (adapter / "Modelfile").read_text().startswith(f"FROM {bases['gguf']}")


def test_a_failed_export_leaves_no_exports_folder(runs, monkeypatch):
    import edgeai.converters

    calls = []

    def failing(src, out, **kwargs):
        calls.append(kwargs["to"])
        if kwargs["to"] == "hf":
            return real(src, out, **kwargs)
        raise EdgeAIError("onnx export failed: the builder crashed")

    real = edgeai.converters.convert
    monkeypatch.setattr(edgeai.converters, "convert", failing)
    run = runs["dora"]
    with pytest.raises(EdgeAIError, match="builder crashed"):
        export_run(run, "hf:fp32,onnx:int4")
    assert calls == ["hf", "onnx"]  # the first one was made, and then went with the second
    assert not (run / "exports").exists()
    assert sorted(p.name for p in run.iterdir()) == ["adapter_config.json", "adapters.safetensors",
                                                      "manifest.json"]


def test_quants_a_family_refuses_fail_before_the_fuse(runs, monkeypatch):
    import edgeai.converters.finetune.export as export

    monkeypatch.setattr(export, "_family", lambda config: "gemma3")
    monkeypatch.setattr(export, "fuse", lambda *a, **k: pytest.fail("fused before the checks"))
    with pytest.raises(BadInput, match="Gemma models overflow in fp16"):
        export_run(runs["lora"], "mlx:fp16")


# -- the adapter-only GGUF --------------------------------------------------------------------
def test_the_adapter_gguf_turns_the_base_gguf_into_the_fused_model(runs, bases, tmp_path):
    import numpy as np
    from llama_cpp import Llama

    run = runs["lora"]
    adapter = write_adapter_gguf(run, tmp_path / "adapter", bases["gguf"])
    fused = fuse(run, tmp_path / "fused")

    def llama_logits(**lora):
        llm = Llama(model_path=str(bases["gguf"]), n_ctx=256, n_threads=2, logits_all=True, verbose=False,
                    **lora)
        try:
            ids = llm.tokenize(TEXT.encode(), add_bos=False)
            llm.eval(ids)
            return ids, np.array(llm.scores[: len(ids)])
        finally:
            llm.close()

    ids, plain = llama_logits()
    _, tuned = llama_logits(lora_path=str(adapter))
    target = torch_logits(fused, ids)
    assert np.abs(plain - target).max() > 0.5
    assert np.abs(tuned - target).max() < 0.05  # llama.cpp + adapter = the fused model


@pytest.mark.parametrize("family", ["qwen2", "gemma3"])
def test_the_adapter_gguf_works_for_the_other_families_too(tiny_models, family, tmp_path):
    """Qwen2: a tied head, biased projections, no Q/K permutation; Gemma 3: its own norms and
    sliding window. The adapter must still turn the base GGUF into the fused model."""
    import numpy as np
    from llama_cpp import Llama

    hf = tiny_models(family)
    convert(hf, tmp_path / "mlx", to="mlx", quant="fp32", check=False)
    convert(hf, tmp_path / "gguf", to="gguf", quant="F32", check=False)
    gguf = next((tmp_path / "gguf").glob("*.gguf"))
    run = make_run(tmp_path / "run", tmp_path / "mlx", hf=hf, gguf=gguf, layers=3)
    adapter = write_adapter_gguf(run, tmp_path / "adapter", gguf)
    llm = Llama(model_path=str(gguf), n_ctx=256, n_threads=2, logits_all=True, verbose=False,
                lora_path=str(adapter))
    try:
        ids = llm.tokenize(TEXT.encode(), add_bos=False)
        llm.eval(ids)
        tuned = np.array(llm.scores[: len(ids)])
    finally:
        llm.close()
    assert np.abs(tuned - torch_logits(fuse(run, tmp_path / "fused"), ids)).max() < 0.05


def test_the_adapter_gguf_has_llama_cpp_s_layout(runs, bases, tmp_path):
    from edgeai.gguf_info import read_header

    path = write_adapter_gguf(runs["lora"], tmp_path / "adapter", bases["gguf"])
    header = read_header(path)
    assert header.get("general.type") == "adapter" and header.get("adapter.type") == "lora"
    assert header.get("adapter.lora.alpha") == pytest.approx(2.0 * 4)  # mlx-lm's scale x rank
    assert header.architecture == "llama"
    dims = {t.name: t.dims for t in header.tensors}
    assert dims["blk.1.attn_q.weight.lora_a"] == (256, 4)  # ne: [in, r]
    assert dims["blk.1.attn_q.weight.lora_b"] == (4, 256)  # ne: [r, out]
    assert dims["blk.0.ffn_down.weight.lora_a"] == (512, 4)
    assert len(dims) == 2 * 2 * 7  # two blocks, seven linear layers each, A and B


def test_a_dora_run_has_no_adapter_gguf(runs, bases, tmp_path):
    with pytest.raises(BadInput, match="DoRA adapter has no llama.cpp adapter format") as caught:
        write_adapter_gguf(runs["dora"], tmp_path / "adapter", bases["gguf"])
    assert "\n" not in caught.value.message and not (tmp_path / "adapter").exists()


# -- edgeai run --adapter ---------------------------------------------------------------------
def test_run_with_an_adapter_uses_the_run_s_base_on_the_mlx_backend(cli, runs):
    args = ("--temperature", "0", "--max-tokens", "8", "--json", "Hello")
    tuned = cli("run", "--adapter", str(runs["qlora"]), *args)
    assert tuned.returncode == 0, tuned.stderr.decode()
    report = json.loads(tuned.stdout)
    base = json.loads((runs["qlora"] / "manifest.json").read_text())["base"]["mlx_path"]
    plain = cli("run", "--model", base, "--backend", "mlx", *args)
    assert plain.returncode == 0, plain.stderr.decode()
    assert report["backend"] == "mlx" and report["completion_tokens"] >= 1
    assert report["text"] != json.loads(plain.stdout)["text"]  # the adapter answered, not the bare base


def test_run_with_an_adapter_refuses_another_backend_in_one_line(cli, runs, tmp_path):
    result = cli("run", "--adapter", str(runs["lora"]), "--backend", "llamacpp", "Hello")
    assert result.returncode == 2
    error = result.stderr.decode()
    assert "edgeai: error: --adapter is an MLX adapter: the llamacpp backend cannot apply it\n" in error
    missing = cli("run", "--adapter", str(tmp_path / "nothing"), "Hello")
    assert missing.returncode == 2 and "is not a finished fine-tune run" in missing.stderr.decode()


def test_chat_plain_with_an_adapter_answers_on_the_mlx_backend(cli, runs):
    result = cli("chat", "--plain", "--adapter", str(runs["lora"]), "--temperature", "0", "--max-tokens", "6",
                 input="Hello\n")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip()


def test_the_chat_app_applies_the_adapter_only_to_the_model_it_was_given_for(monkeypatch, settings):
    import edgeai.runtime.loader
    from edgeai.tui.loader import default_loader

    applied = []
    monkeypatch.setattr(edgeai.runtime.loader, "load_model",
                        lambda *args, adapter=None, **kwargs: applied.append(adapter))
    load = default_loader(settings, adapter=("/bases/tiny", "/runs/facts"))
    load("/bases/tiny", "mlx")
    load("qwen2.5-coder-0.5b-instruct", None)  # the user switched models in the app
    assert applied == ["/runs/facts", None]
