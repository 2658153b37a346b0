"""Where an MLX LoRA/QLoRA training step's time goes on a CPU, and what each kind of matmul achieves.

`ops` times the matmuls a step is made of, at a model's shapes (M tokens against every
projection and the LM head): `x @ W.T` (forward) and `g @ W` (the backward pass's gradient of
the input) in float32 (BLAS), bfloat16 and float16 (mlx's own gemm), and 4-bit
`mx.quantized_matmul` (transpose True for the forward, False for the backward) at groups 64 and
32, with GFLOP/s and the threads used (process CPU time ÷ wall time).

`step` trains the real model the way `mlx_lm lora` does (LoRA on every linear layer of the top
`--layers` blocks, Adam, the step compiled with `mx.compile`) at batch 1 and `--seq` tokens, and
with `--parts` times the step's components in isolation at the same shapes (frozen
projections forward and backward, LoRA adapters, attention, LM head, cross-entropy over the
vocabulary); "rest" is the step minus their sum. Modes: `lora` (the float32 base), `qlora`
(the base quantized in this process, mlx's quantized kernels), `qlora-deq` (the same 4-bit
weights dequantized inside each matmul, forward and backward, then a float32 BLAS matmul).

Times are CPU seconds (the process's, all threads) next to wall seconds: on a shared machine
the other processes inflate the wall time of a single-threaded op, not its CPU time. With the
OpenBLAS shim installed (scripts/mlx_blas), `EDGEAI_MLX_BLAS=0` runs mlx as shipped.

    python -m edgeai.bench.mlx_cpu_profile ops [--model HF_OR_MLX_DIR] [--m 256] [--kinds f32,bf16,q4g64]
    python -m edgeai.bench.mlx_cpu_profile step MODEL [--mode lora|qlora|qlora-deq] [--steps 3] [--parts]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from edgeai.fileio import atomic_write

QWEN_05B = {"hidden_size": 896, "intermediate_size": 4864, "num_attention_heads": 14,
            "num_key_value_heads": 2, "vocab_size": 151936}
KINDS = ("f32", "bf16", "f16", "q4g64", "q4g32")


def shapes(config: dict) -> dict[str, tuple[int, int]]:
    """(input, output) width of each projection of a block, and of the LM head."""
    h, i = config["hidden_size"], config["intermediate_size"]
    kv = config["num_key_value_heads"] * config.get("head_dim", h // config["num_attention_heads"])
    return {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h), "gate_proj": (h, i),
            "up_proj": (h, i), "down_proj": (i, h), "lm_head": (h, config["vocab_size"])}


def model_config(path: str | None) -> dict:
    return json.loads((Path(path) / "config.json").read_text()) if path else dict(QWEN_05B)


def timed(fn, *, budget: float = 1.0, least: int = 2) -> tuple[float, float]:
    """(wall, CPU) seconds of one evaluated call of FN: the run with the least CPU time, after a warm-up."""
    import mlx.core as mx

    mx.eval(fn())
    runs, spent = [], 0.0
    while len(runs) < least or spent < budget:
        wall, cpu = time.perf_counter(), time.process_time()
        mx.eval(fn())
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
        spent += runs[-1][0]
        if spent > 3 * budget:
            break
    return min(runs, key=lambda r: r[1])


def ops(config: dict, *, m: int, kinds: list[str], budget: float, say) -> list[dict]:
    import mlx.core as mx

    rows = []
    for name, (k, n) in shapes(config).items():
        w32, x32, g32 = mx.random.normal((n, k)) * 0.02, mx.random.normal((m, k)), mx.random.normal((m, n))
        mx.eval(w32, x32, g32)
        for kind in kinds:
            if kind.startswith("q"):
                bits, group = (int(v) for v in kind[1:].split("g"))
                wq, sc, bi = mx.quantize(w32, group_size=group, bits=bits)
                mx.eval(wq, sc, bi)
                q = {"scales": sc, "biases": bi, "group_size": group, "bits": bits}
                calls = {"x@W.T": lambda x=x32, wq=wq, q=q: mx.quantized_matmul(x, wq, transpose=True, **q),
                         "g@W": lambda g=g32, wq=wq, q=q: mx.quantized_matmul(g, wq, transpose=False, **q)}
            else:
                dtype = {"f32": mx.float32, "bf16": mx.bfloat16, "f16": mx.float16}[kind]
                w, x, g = w32.astype(dtype), x32.astype(dtype), g32.astype(dtype)
                mx.eval(w, x, g)
                calls = {"x@W.T": lambda w=w, x=x: x @ w.T, "g@W": lambda w=w, g=g: g @ w}
            for op, fn in calls.items():
                wall, cpu = timed(fn, budget=budget)
                row = {"shape": f"{name} {k}x{n}", "m": m, "kind": kind, "op": op,
                       "wall_ms": round(wall * 1e3, 2), "cpu_ms": round(cpu * 1e3, 2),
                       "gflops": round(2 * m * k * n / cpu / 1e9, 2), "threads": round(cpu / wall, 2)}
                rows.append(row)
                say(json.dumps(row))
    return rows


# -- the whole step ------------------------------------------------------------------------------
def dequantizing_linear(q):
    """A frozen 4-bit linear computed as dequantize -> float32 matmul, forward and backward (the
    backward dequantizes again rather than keep a dense copy from the forward)."""
    import mlx.core as mx
    import mlx.nn as nn

    class DequantizingLinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight, self.scales, self.biases = q.weight, q.scales, q.biases
            if "bias" in q:
                self.bias = q.bias
            group, bits = q.group_size, q.bits

            @mx.custom_function
            def matmul(x, w, s, b):
                return x @ mx.dequantize(w, s, b, group_size=group, bits=bits).T

            @matmul.vjp
            def matmul_vjp(primals, cotangent, output):
                x, w, s, b = primals
                dx = cotangent @ mx.dequantize(w, s, b, group_size=group, bits=bits)
                return dx, mx.zeros_like(w), mx.zeros_like(s), mx.zeros_like(b)

            self._matmul = matmul

        def __call__(self, x):
            y = self._matmul(x, self.weight, self.scales, self.biases)
            return y + self.bias if "bias" in self else y

    module = DequantizingLinear()
    module.freeze()  # the base is frozen: only LoRA's matrices train
    return module


def build(path: str, mode: str, layers: int, group: int):
    """The model with LoRA (rank 8, scale 20, mlx-lm's defaults) on the top LAYERS blocks."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_unflatten
    from mlx_lm import load
    from mlx_lm.tuner.lora import LoRALinear
    from mlx_lm.tuner.utils import linear_to_lora_layers

    model, _ = load(path)
    if mode != "lora":
        nn.quantize(model, group_size=group, bits=4)
    model.freeze()
    if mode == "qlora-deq":  # linear_to_lora_layers knows only (Quantized)Linear: wrap by hand
        for block in model.layers[-layers:]:
            wrapped = []
            for key, module in block.named_modules():
                if isinstance(module, nn.QuantizedLinear):
                    lora = LoRALinear(module.weight.shape[1] * 32 // module.bits, module.weight.shape[0],
                                      r=8, scale=20.0)
                    lora.linear = dequantizing_linear(module)
                    wrapped.append((key, lora))
            block.update_modules(tree_unflatten(wrapped))
        swapped = [(key, dequantizing_linear(m)) for key, m in model.named_modules()
                   if isinstance(m, nn.QuantizedLinear)]
        model.update_modules(tree_unflatten(swapped))
    else:
        linear_to_lora_layers(model, layers, {"rank": 8, "dropout": 0.0, "scale": 20.0})
    mx.eval(model.parameters())
    return model


def step_times(model, *, steps: int, seq: int, say) -> list[dict]:
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim
    import numpy as np
    from mlx_lm.tuner.trainer import default_loss

    optimizer = optim.Adam(learning_rate=1e-5)
    value_and_grad = nn.value_and_grad(model, default_loss)
    state = [model.state, optimizer.state, mx.random.state]

    def step(batch, lengths):
        (loss, n), grad = value_and_grad(model, batch, lengths)
        optimizer.update(model, grad)
        return loss, n

    step = mx.compile(step, inputs=state, outputs=state)
    batch = mx.array(np.random.default_rng(0).integers(0, 1000, (1, seq)).astype(np.int32))
    lengths = mx.array([[0, seq]])
    model.train()
    mx.reset_peak_memory()
    rows = []
    for i in range(steps):
        wall, cpu = time.perf_counter(), time.process_time()
        loss, n = step(batch, lengths)
        mx.eval(state, loss, n)
        rows.append({"step": i + 1, "wall_s": round(time.perf_counter() - wall, 3),
                     "cpu_s": round(time.process_time() - cpu, 3), "loss": round(loss.item(), 4),
                     "peak_memory_mb": round(mx.get_peak_memory() / 2**20, 1)})
        say(json.dumps(rows[-1]))
    return rows


def parts(model, config: dict, *, seq: int, layers: int, budget: float, say) -> dict[str, float]:
    """CPU seconds per step of each component, timed in isolation at the model's shapes: one
    block's cost times the blocks that run it (forward: all; backward: the trained ones)."""
    import mlx.core as mx
    import mlx.nn as nn

    m, depth = seq - 1, len(model.layers)
    block, widths = model.layers[-1], shapes(config)
    modules = {"q_proj": block.self_attn.q_proj, "k_proj": block.self_attn.k_proj,
               "v_proj": block.self_attn.v_proj, "o_proj": block.self_attn.o_proj,
               "gate_proj": block.mlp.gate_proj, "up_proj": block.mlp.up_proj,
               "down_proj": block.mlp.down_proj}
    out = dict.fromkeys(("frozen projections, forward", "frozen projections, backward (dX)",
                         "LoRA adapters, forward + backward"), 0.0)
    for name, lora in modules.items():
        k, n = widths[name]
        x, g = mx.random.normal((1, m, k)), mx.random.normal((1, m, n))
        base = lora.linear
        fwd = timed(lambda base=base, x=x: base(x), budget=budget)[1]
        both = timed(lambda base=base, x=x, g=g: mx.vjp(base, [x], [g]), budget=budget)[1]

        def with_lora(x, a, b, lora=lora):
            lora.lora_a, lora.lora_b = a, b
            return lora(x)

        lora_both = timed(lambda x=x, g=g, a=lora.lora_a, b=lora.lora_b: mx.vjp(with_lora, [x, a, b], [g]),
                          budget=budget)[1]
        out["frozen projections, forward"] += fwd * depth
        out["frozen projections, backward (dX)"] += (both - fwd) * layers
        out["LoRA adapters, forward + backward"] += max(0.0, lora_both - both) * layers
        say(json.dumps({"projection": name, "forward_cpu_ms": round(fwd * 1e3, 1),
                        "forward+backward_cpu_ms": round(both * 1e3, 1)}))
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    hd = config.get("head_dim", config["hidden_size"] // heads)
    q, k, v, go = (mx.random.normal((1, h, m, hd)) for h in (heads, kv, kv, heads))

    def attention(q, k, v):
        return mx.fast.scaled_dot_product_attention(q, k, v, scale=hd**-0.5, mask="causal")

    fwd = timed(lambda: attention(q, k, v), budget=budget)[1]
    out["attention, forward"] = fwd * depth
    both = timed(lambda: mx.vjp(attention, [q, k, v], [go]), budget=budget)[1]
    out["attention, backward"] = max(0.0, both - fwd) * layers
    x, g = mx.random.normal((1, m, config["hidden_size"])), mx.random.normal((1, m, config["vocab_size"]))
    head = model.lm_head if hasattr(model, "lm_head") else model.model.embed_tokens.as_linear
    fwd = timed(lambda: head(x), least=1, budget=0)[1]
    out["LM head, forward"] = fwd
    out["LM head, backward (dX)"] = timed(lambda: mx.vjp(head, [x], [g]), least=1, budget=0)[1] - fwd
    targets = mx.random.randint(0, config["vocab_size"], (1, m))

    def cross_entropy(logits):
        return nn.losses.cross_entropy(logits, targets).sum()

    out["cross-entropy over the vocabulary, forward + backward"] = timed(
        lambda: mx.vjp(cross_entropy, [g], [mx.array(1.0)]), budget=budget)[1]
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m edgeai.bench.mlx_cpu_profile",
                                 description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    o = sub.add_parser("ops", help="GFLOP/s of each matmul kind at a model's shapes")
    o.add_argument("--model", help="take the shapes from this model's config.json (default: Qwen2.5-0.5B's)")
    o.add_argument("--m", type=int, default=256, help="tokens (rows of x)")
    o.add_argument("--kinds", default=",".join(KINDS), help=f"of {', '.join(KINDS)}")
    o.add_argument("--budget", type=float, default=1.0, help="seconds to spend timing each op")
    s = sub.add_parser("step", help="a training step of MODEL, whole and by component")
    s.add_argument("model", help="an HF or MLX folder mlx_lm.load reads (float, not quantized)")
    s.add_argument("--mode", default="lora", choices=("lora", "qlora", "qlora-deq"))
    s.add_argument("--steps", type=int, default=3)
    s.add_argument("--seq", type=int, default=256)
    s.add_argument("--layers", type=int, default=16, help="trained blocks, from the top")
    s.add_argument("--group-size", type=int, default=32, help="QLoRA's quantization group")
    s.add_argument("--parts", action="store_true", help="also time the components in isolation")
    s.add_argument("--budget", type=float, default=1.0, help="seconds to spend timing each component")
    for p in (o, s):
        p.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)
    say = lambda line: print(line, flush=True)  # noqa: E731
    env = {"EDGEAI_MLX_BLAS": os.environ.get("EDGEAI_MLX_BLAS", "1"),
           "EDGEAI_MLX_BLAS_THREADS": os.environ.get("EDGEAI_MLX_BLAS_THREADS", "1")}
    if args.what == "ops":
        result = {"env": env, "rows": ops(model_config(args.model), m=args.m, kinds=args.kinds.split(","),
                                          budget=args.budget, say=say)}
    else:
        model = build(args.model, args.mode, args.layers, args.group_size)
        rows = step_times(model, steps=args.steps, seq=args.seq, say=say)
        cpu = statistics.median(r["cpu_s"] for r in (rows[1:] or rows))
        result = {"env": env, "mode": args.mode, "steps": rows, "step_cpu_s": cpu,
                  "peak_memory_mb": max(r["peak_memory_mb"] for r in rows)}
        if args.parts:
            shares = parts(model, model_config(args.model), seq=args.seq, layers=args.layers,
                           budget=args.budget, say=say)
            shares["rest (norms, RoPE, SiLU, residuals, Adam, graph)"] = cpu - sum(shares.values())
            result["parts_cpu_s"] = shares
            for name, value in shares.items():
                say(f"{value:8.2f} s  {value / cpu:6.1%}  {name}")
        say(f"step: {cpu:.2f} CPU s (median of steps 2..), peak {result['peak_memory_mb']:.0f} MiB")
    if args.json:
        atomic_write(args.json, json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
