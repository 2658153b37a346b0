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


# ARM cores by (implementer, part) from /proc/cpuinfo (Arm TRMs' MIDR values; 0x4e = NVIDIA)
ARM_CORES = {
    ("0x41", "0xd03"): "Cortex-A53", ("0x41", "0xd04"): "Cortex-A35", ("0x41", "0xd05"): "Cortex-A55",
    ("0x41", "0xd07"): "Cortex-A57", ("0x41", "0xd08"): "Cortex-A72", ("0x41", "0xd09"): "Cortex-A73",
    ("0x41", "0xd0a"): "Cortex-A75", ("0x41", "0xd0b"): "Cortex-A76", ("0x41", "0xd0c"): "Neoverse-N1",
    ("0x41", "0xd0d"): "Cortex-A77", ("0x41", "0xd40"): "Neoverse-V1", ("0x41", "0xd41"): "Cortex-A78",
    ("0x41", "0xd42"): "Cortex-A78AE", ("0x41", "0xd44"): "Cortex-X1", ("0x41", "0xd46"): "Cortex-A510",
    ("0x41", "0xd47"): "Cortex-A710", ("0x41", "0xd48"): "Cortex-X2", ("0x41", "0xd49"): "Neoverse-N2",
    ("0x41", "0xd4b"): "Cortex-A78C", ("0x41", "0xd4f"): "Neoverse-V2", ("0x41", "0xd80"): "Cortex-A520",
    ("0x41", "0xd81"): "Cortex-A720", ("0x41", "0xd82"): "Cortex-X4", ("0x4e", "0x004"): "NVIDIA Carmel",
}


def parse_cpuinfo(text: str) -> dict[str, object]:
    """What a /proc/cpuinfo text says: model name (x86 `model name`, or ARM `Hardware`/`cpu model`,
    else None), ISA flags, processor count, each processor's ARM core name (from `CPU part`) and the
    physical core count where x86 lists `physical id`/`core id` (else None)."""
    model, flags, processors, arm, cores = None, set(), 0, [], set()
    implementer, physical = None, None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "processor":
            processors += 1
        elif key in ("model name", "hardware", "cpu model") and value:
            model = value
        elif key in ("flags", "features"):
            flags.update(value.split())
        elif key == "cpu implementer":
            implementer = value.lower()
        elif key == "cpu part":
            part = value.lower()
            arm.append(ARM_CORES.get((implementer or "", part), f"ARM part {part}"))
        elif key == "physical id":
            physical = value
        elif key == "core id":
            cores.add((physical, value))
    return {"model": model, "flags": flags, "processors": processors, "arm_cores": arm,
            "physical_cores": len(cores) or None}


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, object]:
    model, flags = platform.processor() or platform.machine(), set()
    if cpuinfo.is_file():
        parsed = parse_cpuinfo(cpuinfo.read_text(errors="replace"))
        model = parsed["model"] or model
        flags = parsed["flags"]
    elif platform.system() == "Darwin":
        model = _sysctl("machdep.cpu.brand_string") or model
        flags.update(f.lower() for f in _sysctl("machdep.cpu.features").split())
        if platform.machine() == "arm64":
            flags.update({"asimd", "asimddp"})
    return {"model": model, "cores": os.cpu_count() or 1,
            "features": [f for f in INTERESTING_FLAGS if f in flags]}


def memory_gb(meminfo: Path = Path("/proc/meminfo")) -> tuple[float | None, float | None]:
    """(total, available) RAM in GB (10^9 bytes), where the OS tells."""
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
