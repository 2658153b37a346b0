"""edgeai: an edge-first, on-device AI suite.

This module stays import-light: `edgeai --help` must never wait on llama_cpp, torch, mlx or
onnxruntime. Heavy stacks are imported inside the backends that need them.
"""

__version__ = "0.1.0"
