"""Facts about this machine: CPU model and ISA features, cores, memory, OS. No heavy imports.

Read from the system (/proc on Linux, sysctl on macOS); `doctor` prints them and the bench
records them with every result.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

# ISA features that decide which llama.cpp kernels run
INTERESTING_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "bmi2", "avx512f", "avx512_vnni",
                     "avx512_bf16", "avx512vbmi", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
                     "asimd", "asimddp", "sve", "i8mm")


def _sysctl(name: str) -> str:
    try:
        return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True,
                              timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, object]:
    model, flags = platform.processor() or platform.machine(), set()
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "hardware", "cpu model") and value.strip():
                model = value.strip()
            elif key in ("flags", "features"):
                flags.update(value.split())
    elif platform.system() == "Darwin":
        model = _sysctl("machdep.cpu.brand_string") or model
        flags.update(f.lower() for f in _sysctl("machdep.cpu.features").split())
        if platform.machine() == "arm64":
            flags.update({"asimd", "asimddp"})
    return {"model": model, "cores": os.cpu_count() or 1,
            "features": [f for f in INTERESTING_FLAGS if f in flags]}


def memory_gb() -> tuple[float | None, float | None]:
    """(total, available) RAM in GB, where the OS tells."""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        values = {}
        for line in meminfo.read_text().splitlines():
            key, _, rest = line.partition(":")
            values[key] = int(rest.split()[0]) * 1024
        return values.get("MemTotal", 0) / 1e9, values.get("MemAvailable", 0) / 1e9
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):
        total = None
    return total, None


def os_name() -> str:
    return f"{platform.system()} {platform.release()} {platform.machine()}"
