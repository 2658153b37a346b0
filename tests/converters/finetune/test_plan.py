"""The run's options and plan: a YAML config (mlx-lm's names too) under the flags, the clamps said
aloud, the memory estimate against what MLX measures, and the options users reach for
(target modules, gradient checkpointing and accumulation) in a real short run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeai.converters.finetune.plan import Shape, TuneOptions, clamp_to, estimate, resolve_options
from edgeai.errors import BadInput

FACTS = Path(__file__).resolve().parents[3] / "converters" / "finetune" / "examples" / "edgeai-facts"


def test_a_config_file_takes_mlx_lm_names_and_the_flags_win(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("fine_tune_type: dora\nnum_layers: 4\nbatch_size: 2\nlearning_rate: 3.0e-4\n"
                      "mask_prompt: false\nlora_parameters: {rank: 4, scale: 10.0, dropout: 0.05}\n")
    options = resolve_options({"base": "b", "data": "d", "out": "o", "batch_size": 8}, config)
    assert (options.method, options.lora_layers, options.learning_rate) == ("dora", 4, 3e-4)
    assert (options.rank, options.alpha, options.dropout) == (4, 40.0, 0.05)
    assert options.train_on_prompt and options.batch_size == 8  # the flag over the file


@pytest.mark.parametrize("text, says", [
    ("batch_size: [1\n", "not valid YAML"),
    ("- a\n- b\n", "mapping"),
    ("warp_speed: 9\n", "unknown option 'warp_speed'"),
])
def test_a_bad_config_file_is_one_line(tmp_path, text, says):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    with pytest.raises(BadInput, match=says):
        resolve_options({"base": "b"}, config)


def test_the_clamps_fit_the_data_and_the_model_and_say_why():
    options = TuneOptions(batch_size=8, lora_layers=16, max_seq_len=4096)
    clamp_to(options, depth=2, context=2048, train=5, valid=1)
    assert (options.batch_size, options.lora_layers, options.max_seq_len) == (5, 2, 2048)
    assert options.iters == 50 and options.eval_every == 5 and options.save_every == 5
    said = " / ".join(options.chosen)
    assert "the model has 2 layers" in said and "the train split has 5 records" in said
    assert "three passes" in said


def test_the_estimate_grows_where_memory_does(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
                                  "vocab_size": 151936, "num_attention_heads": 14, "num_key_value_heads": 2,
                                  "torch_dtype": "float32"}))
    shape = Shape.from_config(config)
    lora = estimate(shape, TuneOptions(method="lora", batch_size=1, max_seq_len=256, lora_layers=24))
    qlora = estimate(shape, TuneOptions(method="qlora", batch_size=1, max_seq_len=256, lora_layers=24))
    ckpt = estimate(shape, TuneOptions(method="lora", batch_size=1, max_seq_len=256, lora_layers=24,
                                       grad_checkpoint=True))
    assert qlora.weights < lora.weights / 5  # 5 bits a weight against 32
    assert ckpt.activations < lora.activations / 5
    assert 2350 < lora.weights < 2450  # 630 M parameters in fp32 (the import unties the LM head)
    assert lora.trainable_params == 24 * 8 * sum(a + b for a, b in shape.linears().values())


def test_target_modules_accumulation_and_checkpointing_in_a_real_run(tiny_pretrained, tmp_path):
    from mlx_lm import load

    from edgeai.config import Settings
    from edgeai.converters.finetune.train import finetune

    options = TuneOptions(base=str(tiny_pretrained), data=str(FACTS), out=str(tmp_path / "out"), iters=4,
                          batch_size=2, max_seq_len=128, target_modules=["q_proj", "v_proj"],
                          grad_accumulation=2, grad_checkpoint=True)
    out = finetune(options, Settings(home=tmp_path / "home"))
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["lora_parameters"]["keys"] == ["self_attn.q_proj", "self_attn.v_proj"]
    model, _ = load(str(tiny_pretrained), adapter_path=str(out))  # mlx-lm applies it as written
    adapted = [name for name, m in model.named_modules() if type(m).__name__ == "LoRALinear"]
    assert len(adapted) == 4 and all(n.endswith(("q_proj", "v_proj")) for n in adapted)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4]


def test_a_target_module_the_model_lacks_is_one_line(tiny_pretrained, tmp_path):
    from edgeai.config import Settings
    from edgeai.converters.finetune.train import finetune

    options = TuneOptions(base=str(tiny_pretrained), data=str(FACTS), out=str(tmp_path / "out"), iters=2,
                          target_modules=["qkv_proj"])
    with pytest.raises(BadInput, match="no linear layer named 'qkv_proj'"):
        finetune(options, Settings(home=tmp_path / "home"))
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
