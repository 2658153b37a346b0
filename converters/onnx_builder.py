"""`python -m edgeai.converters.onnx_builder ARGS`: onnxruntime-genai's model builder, with a
Gemma 3 config fix. Run only as a subprocess of `converters/onnx.py`, never imported by edgeai.

transformers 5 stores Gemma 3's rope settings per layer type (`rope_parameters =
{"full_attention": {...}, "sliding_attention": {...}}`) and drops `rope_theta` and
`rope_local_base_freq`; the 0.18 builder reads the flat transformers-4 form (`KeyError:
'rope_type'`, then a silent θ=10000). We hand it the flat form: global θ from the full-attention
layers, the local θ from the sliding ones. Every other config passes through untouched.
"""

from __future__ import annotations

import runpy
import sys

BUILDER = "onnxruntime_genai.models.builder"


def flatten_rope(config):
    """Give a per-layer-type rope config the transformers-4 attributes the builder reads."""
    rope = getattr(config, "rope_parameters", None)
    if isinstance(rope, dict) and "full_attention" in rope and "sliding_attention" in rope:
        config.rope_theta = rope["full_attention"]["rope_theta"]
        config.rope_local_base_freq = rope["sliding_attention"]["rope_theta"]
        config.rope_parameters = dict(rope["full_attention"])
    return config


def main(argv: list[str]) -> None:
    from transformers import AutoConfig

    original = AutoConfig.from_pretrained

    def from_pretrained(*args, **kwargs):
        return flatten_rope(original(*args, **kwargs))

    # The builder calls AutoConfig.from_pretrained itself; there is no other way in.
    AutoConfig.from_pretrained = from_pretrained
    sys.argv = [BUILDER, *argv]
    runpy.run_module(BUILDER, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
