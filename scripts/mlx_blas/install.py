"""Sends mlx[cpu]'s float32 matmuls to OpenBLAS in this virtual environment (Linux), or undoes it.

Why: the mlx[cpu] wheel links a renamed reference BLAS of its own (mlx_cpu.libs/libblas-*.so),
so every float32 matmul, LoRA training's bulk, runs a plain loop on one core: ~3-5 GFLOP/s on
this machine's Xeon against ~150 for OpenBLAS (scripts/setup's caller sees the figure). Debian's
BLAS alternatives cannot reach a renamed library, and scipy-openblas32, the OpenBLAS wheel the
numpy/scipy project maintains, prefixes its symbols; so a small shim (shim.c) defines the three
symbols libmlx.so takes from its BLAS and forwards them, and a hook (hook.py) loads it before mlx.

What it writes, all inside the venv; no file of mlx or of any other package is touched, so
reinstalling or upgrading mlx keeps working, with or without this:
    <venv>/lib/edgeai-mlx-blas/libmlx_cblas.so    the shim, built here with the C compiler
    <site-packages>/_edgeai_mlx_blas.py, .pth      the hook, and the line that imports it at start
Without mlx-cpu (an Apple or a CUDA build), scipy-openblas32 or a C compiler, or when the check
after building fails, it removes those files and says why: mlx then runs as shipped. Re-running
it rebuilds the same files. `EDGEAI_MLX_BLAS=0` turns it off for one process; OpenBLAS runs one
thread unless `EDGEAI_MLX_BLAS_THREADS=N` (shim.c has the measurement behind that default).

    .venv/bin/python scripts/mlx_blas/install.py [--remove]     (scripts/setup runs it)
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIB_DIR = Path(sys.prefix) / "lib" / "edgeai-mlx-blas"
SHIM = LIB_DIR / "libmlx_cblas.so"
SITE = Path(sysconfig.get_paths()["purelib"])
HOOK, PTH = SITE / "_edgeai_mlx_blas.py", SITE / "_edgeai_mlx_blas.pth"

# Run in a fresh interpreter (the hook acts at import): a matmul checked against numpy, the
# library that computed it, and the speed of a 1024x1024 float32 matmul.
CHECK = """
import json, time
import mlx.core as mx, numpy as np
a, b = np.random.rand(300, 500).astype(np.float32), np.random.rand(500, 200).astype(np.float32)
err = float(np.abs(np.array(mx.array(a) @ mx.array(b)) - a @ b).max())
x = mx.random.normal((1024, 1024)); mx.eval(x @ x)
t = time.perf_counter(); mx.eval(x @ x); dt = time.perf_counter() - t
maps = open("/proc/self/maps").read()
print(json.dumps({"err": err, "gflops": 2 * 1024**3 / dt / 1e9, "openblas": "libscipy_openblas" in maps}))
"""


class NotNeeded(Exception):
    """This mlx does not use the vendored reference BLAS for its work (macOS, a GPU build)."""


def openblas_library() -> Path | None:
    """scipy-openblas32's shared library, found without importing the package."""
    spec = importlib.util.find_spec("scipy_openblas32")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations)), "lib").glob("libscipy_openblas*.so"))
    return found[0] if found else None


def remove() -> None:
    for path in (PTH, HOOK):
        path.unlink(missing_ok=True)
    shutil.rmtree(LIB_DIR, ignore_errors=True)


def check(disabled: bool = False) -> dict:
    import json

    env = {**os.environ, "EDGEAI_MLX_BLAS": "0" if disabled else "1"}
    proc = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode:
        raise RuntimeError(proc.stderr.strip()[-500:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def install() -> str:
    """Build and wire the shim; returns what was done (raises NotNeeded, or RuntimeError with why
    it could not)."""
    if not sys.platform.startswith("linux"):
        raise NotNeeded("not Linux (mlx uses Accelerate on macOS)")
    try:
        importlib.metadata.version("mlx-cpu")
    except importlib.metadata.PackageNotFoundError:
        raise NotNeeded("mlx-cpu is not installed (no mlx, or its CUDA build)") from None
    openblas = openblas_library()
    if openblas is None:
        raise RuntimeError("scipy-openblas32 is not installed")
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise RuntimeError("no C compiler (cc) to build the shim")
    LIB_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=LIB_DIR) as tmp:
        built = Path(tmp) / SHIM.name
        cmd = [cc, "-O2", "-shared", "-fPIC", "-o", str(built), str(HERE / "shim.c"), "-ldl",
               f'-DOPENBLAS_PATH="{openblas}"']
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"building the shim failed: {proc.stderr.strip()[-500:]}")
        os.replace(built, SHIM)
    shutil.copyfile(HERE / "hook.py", HOOK)
    PTH.write_text("import _edgeai_mlx_blas\n", encoding="utf-8")
    before, after = check(disabled=True), check()
    if not after["openblas"] or after["err"] > 1e-3:
        raise RuntimeError(f"the check after building failed: {after}")
    return (f"mlx float32 matmul (1024x1024) {before['gflops']:.1f} -> {after['gflops']:.1f} GFLOP/s "
            f"on OpenBLAS ({openblas.name}, mlx-cpu {importlib.metadata.version('mlx-cpu')})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--remove", action="store_true", help="undo: mlx back on its own BLAS")
    args = ap.parse_args(argv)
    if args.remove:
        remove()
        print("edgeai mlx BLAS: removed; mlx runs on its own BLAS", file=sys.stderr)
        return 0
    try:
        done = install()
    except NotNeeded as exc:
        remove()
        print(f"edgeai mlx BLAS: not needed: {exc}", file=sys.stderr)
        return 0
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        remove()
        print(f"edgeai mlx BLAS: not installed, mlx keeps its own (slow) BLAS: {exc}", file=sys.stderr)
        return 1
    print(f"edgeai mlx BLAS: {done}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
