"""Loads edgeai's OpenBLAS shim for mlx[cpu] just before `mlx` is first imported.

install.py copies this file into the venv's site-packages as `_edgeai_mlx_blas.py`, next to a
`_edgeai_mlx_blas.pth` whose one line imports it when any interpreter of the venv starts. It only
registers an import hook: a process that never imports mlx loads nothing (not even ctypes).
The shim must be in the global symbol scope before libmlx.so is loaded so that libmlx's
`cblas_sgemm` binds to it rather than to the reference BLAS its wheel vendors (see shim.c).
`EDGEAI_MLX_BLAS=0` leaves mlx as shipped, for one process (how before/after is measured).
Stdlib only, and it never raises: a broken hook must not break every interpreter of the venv.
"""

import os
import sys

LIB = os.path.join(sys.prefix, "lib", "edgeai-mlx-blas", "libmlx_cblas.so")


class MlxBlasHook:
    """A meta-path finder that never finds anything; it only acts on the first `mlx` import."""

    done = False

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if cls.done or not (name == "mlx" or name.startswith("mlx.")):
            return None
        cls.done = True  # not removed from sys.meta_path: that list is being iterated right now
        if os.environ.get("EDGEAI_MLX_BLAS", "1") != "0" and os.path.exists(LIB):
            try:
                import ctypes

                ctypes.CDLL(LIB, mode=ctypes.RTLD_GLOBAL)
            except OSError as exc:  # mlx then runs on its own BLAS, as shipped
                sys.stderr.write(f"edgeai mlx BLAS: not loaded ({exc})\n")
        return None


if not any(getattr(f, "__name__", "") == "MlxBlasHook" for f in sys.meta_path):
    sys.meta_path.insert(0, MlxBlasHook)
