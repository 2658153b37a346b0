"""Which machine a bench result came from: OS, CPU, RAM, Apple chip, NVIDIA GPUs, Jetson board.

`detect()` returns the `device` object of the bench result schema (version 1) and `label()` its
short name for tables and plot legends. The system is read through two seams, so tests run on
captures of machines we do not have (tests/bench/fixtures/device/): `root`, a filesystem root
holding proc/, sys/ and etc/, and `run`, which runs a command and returns its stdout (None when
the tool is missing or fails). Linux is recognised by root/proc/cpuinfo, macOS by `sysctl`;
anything else falls back to `edgeai.system`. RAM and GPU memory are GiB (2^30 bytes, how memory
is sold: a "16 GB" Mac reports 16.0). Spec bandwidth tables live in bandwidth.py.
"""

from __future__ import annotations

import platform
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from edgeai.bench import bandwidth as bw
from edgeai.system import INTERESTING_FLAGS, cpu_info, memory_gb, os_name, parse_cpuinfo

Runner = Callable[[list[str]], "str | None"]

# L4T release -> JetPack, exact releases from NVIDIA's JetPack archive
# (developer.nvidia.com/embedded/jetpack-archive). A release not listed reads as the newest listed
# one below it in the same L4T major plus "+" (36.4.7 -> "6.2.1+"): JetPack patch releases only
# move L4T forward, so that much is known; an unknown major reads as None.
L4T_TO_JETPACK = {
    "36.4.4": "6.2.1", "36.4.3": "6.2", "36.4.0": "6.1", "36.3.0": "6.0", "36.2.0": "6.0 DP",
    "35.6.1": "5.1.5", "35.6.0": "5.1.4", "35.5.0": "5.1.3", "35.4.1": "5.1.2", "35.3.1": "5.1.1",
    "35.2.1": "5.1", "35.1.0": "5.0.2", "34.1.1": "5.0.1 DP", "34.1.0": "5.0 DP",
    "32.7.6": "4.6.6", "32.7.5": "4.6.5", "32.7.4": "4.6.4", "32.7.3": "4.6.3", "32.7.2": "4.6.2",
    "32.7.1": "4.6.1", "32.6.1": "4.6", "32.5.1": "4.5.1", "32.5.0": "4.5", "32.4.4": "4.4.1",
    "32.4.3": "4.4",
}
NVIDIA_QUERY = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version,power.limit",
                "--format=csv,noheader,nounits"]


def run_command(cmd: list[str], timeout: float = 10.0) -> str | None:
    """stdout of `cmd`, or None when the tool is missing, fails or hangs."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def detect(*, root: Path = Path("/"), run: Runner = run_command, measure_bandwidth: bool = False) -> dict:
    """The `device` object: {os, hostname_hash, cpu, memory_gb, apple, nvidia, jetson, bandwidth}.
    `measure_bandwidth` adds the machine's read bandwidth with its spread: the cached probe
    (bench/bandwidth_probe.py), measured first (a few seconds) when there is none."""
    root = Path(root)
    apple = jetson = None
    if (root / "proc/cpuinfo").is_file():
        os_text, cpu, memory = _linux(root, run)
        jetson = _jetson(root, run)
    elif brand := _sysctl(run, "machdep.cpu.brand_string"):
        os_text, cpu, memory, apple = _macos(run, brand)
    else:
        os_text, cpu, memory = _other()
    # a Jetson's GPU is described by `jetson`; its nvidia-smi (JetPack 6) reports little of it
    nvidia = None if jetson or apple else _nvidia(run)
    device = {"os": os_text, "hostname_hash": None, "cpu": cpu, "memory_gb": memory, "apple": apple,
              "nvidia": nvidia, "jetson": jetson, "bandwidth": None}
    if measure_bandwidth:
        from edgeai.bench.bandwidth_probe import cached_probe, device_entry

        device["bandwidth"] = device_entry(*cached_probe())
    return device


def label(device: dict, *, accelerator: bool = True) -> str:
    """A short name for tables and legends: the Jetson board and power mode, the Apple chip and
    GPU cores, the NVIDIA GPU(s), else the CPU and its cores. `accelerator=False` names the CPU."""
    jetson, apple, nvidia = device.get("jetson"), device.get("apple"), device.get("nvidia")
    if accelerator and jetson:
        name = _jetson_name(jetson)
        return f"{name} · {jetson['power_mode']}" if jetson.get("power_mode") else name
    if accelerator and apple and apple.get("chip"):
        cores = apple.get("gpu_cores")
        return f"{apple['chip']} · {cores} GPU cores" if cores else apple["chip"]
    if accelerator and nvidia:
        names = [gpu["name"] for gpu in nvidia]
        if len(set(names)) == 1:
            return names[0] if len(names) == 1 else f"{len(names)}× {names[0]}"
        return " + ".join(names)
    cpu = device.get("cpu") or {}
    model = clean_cpu_model(cpu.get("model") or "unknown CPU")
    return f"{model} · {cpu['cores']} cores" if cpu.get("cores") else model


def clean_cpu_model(model: str) -> str:
    """'Intel(R) Core(TM) i9-9980HK CPU @ 2.40GHz' -> 'Intel Core i9-9980HK'."""
    model = re.sub(r"\((R|TM|tm|r)\)", "", model)
    model = re.sub(r"\s*(CPU\s*)?@\s*[\d.]+\s*GHz", "", model)
    return re.sub(r"\s+", " ", model).strip()


def _jetson_name(jetson: dict) -> str:
    model = re.sub(r"\b(NVIDIA|Engineering Reference|Developer Kit)\b", "", jetson.get("model") or "")
    model = re.sub(r"\s+", " ", model).strip()
    if not model:
        model = re.sub(r"\s*\(.*\)$", "", jetson.get("module") or "Jetson")
    return model if model.startswith("Jetson") else f"Jetson {model}"


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").replace("\x00", "\n").strip() or None
    except OSError:
        return None


def _sysctl(run: Runner, name: str) -> str:
    return (run(["sysctl", "-n", name]) or "").strip()


def _number(text: str | None) -> int | float | None:
    try:
        value = float((text or "").strip())
    except ValueError:
        return None
    return int(value) if value.is_integer() else value


def _gib(num_bytes: float | None) -> float | None:
    return round(num_bytes / 2**30, 1) if num_bytes else None


def _linux(root: Path, run: Runner) -> tuple[str, dict, float | None]:
    parsed = parse_cpuinfo(_read(root / "proc/cpuinfo") or "")
    flags = parsed["flags"]
    arch = (run(["uname", "-m"]) or "").strip() or None
    if arch is None and parsed["arm_cores"]:
        arch = "aarch64"
    elif arch is None and "lm" in flags:
        arch = "x86_64"
    arm = list(dict.fromkeys(parsed["arm_cores"]))  # big.LITTLE: "Cortex-A76 + Cortex-A55"
    model = ("ARM " + " + ".join(arm)) if arm else (parsed["model"] or arch)
    cpu = {"model": model, "arch": arch, "cores": parsed["processors"] or None,
           "physical_cores": _physical_cores(root) or parsed["physical_cores"],
           "features": [flag for flag in INTERESTING_FLAGS if flag in flags]}
    meminfo = root / "proc/meminfo"
    total = memory_gb(meminfo)[0] if meminfo.is_file() else None
    release = _read(root / "proc/sys/kernel/osrelease")
    os_text = " ".join(part for part in ("Linux", release, arch) if part)
    return os_text, cpu, _gib(total * 1e9) if total else None


def _physical_cores(root: Path) -> int | None:
    """Distinct SMT sibling groups in sysfs: one per physical core, on x86 and ARM alike."""
    groups = {_read(path) for path in (root / "sys/devices/system/cpu").glob("cpu[0-9]*/topology/"
                                                                         "thread_siblings_list")}
    groups.discard(None)
    return len(groups) or None


def _macos(run: Runner, brand: str) -> tuple[str, dict, float | None, dict | None]:
    arch = (run(["uname", "-m"]) or "").strip() or None
    version = (run(["sw_vers", "-productVersion"]) or "").strip()
    flags: set[str] = set()
    if arch == "arm64":
        flags.add("asimd")  # every Apple Silicon core has NEON; the rest are reported per feature
        for flag, name in (("asimddp", "FEAT_DotProd"), ("i8mm", "FEAT_I8MM")):
            if _sysctl(run, f"hw.optional.arm.{name}") == "1":
                flags.add(flag)
    else:  # an Intel Mac: 'SSE4.2 AVX1.0' and leaf 7 'AVX2 AVX512F AVX512VNNI'
        features = _sysctl(run, "machdep.cpu.features") + " " + _sysctl(run, "machdep.cpu.leaf7_features")
        renames = {"avx1_0": "avx", "avx512vnni": "avx512_vnni", "avx512bf16": "avx512_bf16"}
        for feature in features.lower().replace(".", "_").split():
            flags.add(renames.get(feature, feature))
    cpu = {"model": brand, "arch": arch, "cores": _number(_sysctl(run, "hw.ncpu")),
           "physical_cores": _number(_sysctl(run, "hw.physicalcpu")),
           "features": [flag for flag in INTERESTING_FLAGS if flag in flags]}
    apple = None
    if brand.startswith("Apple"):
        displays = run(["system_profiler", "SPDisplaysDataType"]) or ""
        found = re.search(r"Total Number of Cores:\s*(\d+)", displays)
        gpu_cores = int(found.group(1)) if found else None
        apple = {"chip": brand, "gpu_cores": gpu_cores,
                 "performance_cores": _number(_sysctl(run, "hw.perflevel0.physicalcpu")),
                 "efficiency_cores": _number(_sysctl(run, "hw.perflevel1.physicalcpu")),
                 "bandwidth_gbps_spec": bw.apple_spec_gbps(brand, gpu_cores)}
    os_text = " ".join(part for part in ("macOS", version, arch) if part)
    return os_text, cpu, _gib(_number(_sysctl(run, "hw.memsize"))), apple


def _other() -> tuple[str, dict, float | None]:
    """Neither /proc nor sysctl (Windows): what the standard library knows."""
    info = cpu_info()
    cpu = {"model": info["model"], "arch": platform.machine() or None, "cores": info["cores"],
           "physical_cores": None, "features": info["features"]}
    total = memory_gb()[0]
    return os_name(), cpu, _gib(total * 1e9) if total else None


def _nvidia(run: Runner) -> list[dict] | None:
    out = run(NVIDIA_QUERY)
    if not out:
        return None
    header = run(["nvidia-smi"]) or ""
    found = re.search(r"CUDA Version:\s*([\d.]+)", header)
    if not found:  # the driver's CUDA version is in the banner; nvcc gives the toolkit's
        found = re.search(r"release\s+([\d.]+)", run(["nvcc", "--version"]) or "")
    cuda = found.group(1) if found else None
    gpus = []
    for line in out.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) < 4 or not fields[0]:
            continue
        name, memory_mib, driver, limit = fields[:4]
        mib = _number(memory_mib)  # "[N/A]" on unified-memory parts -> None
        gpus.append({"name": name, "memory_gb": _gib(mib * 2**20) if mib else None,
                     "driver": driver or None, "cuda": cuda, "power_limit_w": _number(limit),
                     "bandwidth_gbps_spec": bw.nvidia_spec_gbps(name)})
    return gpus or None


def _jetson(root: Path, run: Runner) -> dict | None:
    release = _read(root / "etc/nv_tegra_release")
    model = _read(root / "proc/device-tree/model")
    if not release and "jetson" not in (model or "").lower():
        return None
    compatible = (_read(root / "proc/device-tree/compatible") or "").lower()
    pnumber = next((p for p in re.findall(r"p\d{4}-\d{4}", compatible) if p in bw.JETSON_MODULES), None)
    super_board = "-super" in compatible or (model or "").lower().endswith("super")
    l4t = parse_l4t(release)
    mode = parse_nvpmodel(run(["nvpmodel", "-q"]))
    module = f"{bw.JETSON_MODULES[pnumber][0]} ({pnumber})" if pnumber else None
    return {"model": model, "module": module, "l4t": l4t, "jetpack": jetpack_for(l4t), "power_mode": mode,
            "jetson_clocks": parse_jetson_clocks(run(["jetson_clocks", "--show"])),
            "bandwidth_gbps_spec": bw.jetson_spec_gbps(pnumber, super_board, mode)}


def parse_l4t(text: str | None) -> str | None:
    """'# R36 (release), REVISION: 4.3, GCID: ...' (/etc/nv_tegra_release) -> '36.4.3'."""
    found = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text or "")
    return f"{found.group(1)}.{found.group(2).strip('.')}" if found else None


def jetpack_for(l4t: str | None) -> str | None:
    if not l4t:
        return None
    key = tuple(int(part) for part in l4t.split("."))
    key += (0,) * (3 - len(key))
    known = sorted((tuple(int(p) for p in release.split(".")), jetpack)
                   for release, jetpack in L4T_TO_JETPACK.items())
    for release, jetpack in reversed(known):
        if release == key:
            return jetpack
        if release[0] == key[0] and release < key:
            return f"{jetpack}+"
    return None


def parse_nvpmodel(text: str | None) -> str | None:
    """'NV Power Mode: MAXN_SUPER' then the mode number (`nvpmodel -q`) -> 'MAXN_SUPER'."""
    found = re.search(r"NV Power Mode:\s*([^\n]+)", text or "")
    return found.group(1).strip() if found else None


def parse_jetson_clocks(text: str | None) -> bool | None:
    """Whether `jetson_clocks --show` shows clocks pinned at their maximum: every CPU and the GPU
    with MinFreq == MaxFreq, and the memory clock overridden (FreqOverride=1) or pinned likewise.
    None without the output (the tool needs root)."""
    pinned = []
    for line in (text or "").splitlines():
        line = line.strip()
        found = re.search(r"MinFreq=(\d+)\s+MaxFreq=(\d+)", line)
        if not found or not re.match(r"(cpu\d+|GPU|EMC)\b", line):
            continue
        same = found.group(1) == found.group(2)
        pinned.append(same or (line.startswith("EMC") and "FreqOverride=1" in line))
    return all(pinned) if pinned else None
