"""Energy over a timed region, where the platform tells it: joules, hence tokens per joule.

    with measure_energy(device) as meter:
        ...decode...
    meter.joules            # None when nothing here reports power; meter.reason says why

Sources, tried in this order (or the one named by `source=`):
- `tegrastats` (Jetson): `tegrastats --interval 100`, the board's input rail (VDD_IN on Orin,
  POM_5V_IN on Nano/TX2; else the sum of the rails listed, as on AGX Orin), in mW.
- `nvidia` (NVIDIA GPUs): `nvidia-smi --query-gpu=power.draw ... -lms 100`, summed over the GPUs:
  the GPU board only, not the host. The driver smooths power.draw over ~1 s on recent GPUs, so
  regions shorter than a few seconds read imprecisely.
- `powermetrics` (macOS): CPU+GPU+ANE "Combined Power"; needs root, so without it the reason says
  "not permitted" rather than prompting for a password.
- `rapl` (Linux Intel/AMD): the package energy counters in /sys/class/powercap/intel-rapl:N,
  read by a poll that undoes wraparound (max_energy_range_uj); since Linux 5.10 readable by root
  only. The CPU package(s), not the whole machine.
A sampled source gives joules = mean sampled power x the region's duration; the counter gives
the difference of its readings. Nothing here raises for a missing tool: it reports a reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

POWERCAP = Path("/sys/class/powercap")
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*)\s+(\d+(?:\.\d+)?)(mW|W)?/\d+")
_RAIL_NO_AVERAGE = re.compile(r"\b(VDD_[A-Z0-9_]+|POM_[A-Z0-9_]+|VIN_[A-Z0-9_]+)\s+(\d+(?:\.\d+)?)(mW|W)\b")
_POWERMETRICS = re.compile(r"(Combined Power \(CPU \+ GPU \+ ANE\)|package power \(CPUs\+GT\+SA\)):\s*"
                           r"([\d.]+)\s*(mW|W)", re.IGNORECASE)


def parse_tegrastats(line: str) -> float | None:
    """Board input power in watts from one tegrastats line: 'VDD_IN 4556mW/4556mW' (Orin; current
    /average), 'POM_5V_IN 2545/2547' (Nano, TX2: mW), 'VDD_IN 4.5W' (some releases); without an
    input rail, the sum of the rails shown (AGX Orin: VDD_GPU_SOC + VDD_CPU_CV + VIN_SYS_5V0)."""
    rails: dict[str, float] = {}
    for pattern in (_RAIL, _RAIL_NO_AVERAGE):
        for name, value, unit in pattern.findall(line):
            if name in ("RAM", "SWAP", "IRAM", "EMC_FREQ", "GR3D_FREQ", "APE"):
                continue
            rails.setdefault(name, float(value) if unit == "W" else float(value) / 1000)
    for total in ("VDD_IN", "POM_5V_IN"):
        if total in rails:
            return rails[total]
    return sum(rails.values()) if rails else None


def parse_nvidia_power(line: str) -> float | None:
    """One `power.draw` value in watts ('69.52'); None for '[N/A]' or '[Not Supported]'."""
    try:
        return float(line.strip())
    except ValueError:
        return None


def parse_powermetrics(line: str) -> float | None:
    """'Combined Power (CPU + GPU + ANE): 5234 mW' (Apple Silicon) or, on an Intel Mac,
    'Intel energy model derived package power (CPUs+GT+SA): 5.23W'."""
    found = _POWERMETRICS.search(line)
    if not found:
        return None
    value = float(found.group(2))
    return value / 1000 if found.group(3) == "mW" else value


def rapl_delta_uj(before: int, after: int, max_range_uj: int) -> int:
    """Energy between two readings of a RAPL counter, which wraps to 0 past `max_range_uj`."""
    return after - before if after >= before else after + max_range_uj - before


class EnergyMeter:
    """A context manager sampling power while its block runs. After the block: `joules`,
    `seconds`, `avg_watts`, `samples`, `source` and, when joules is None, `reason`."""

    def __init__(self, source: str | None, reason: str | None = None, *, command: list[str] | None = None,
                 parse: Callable[[str], float | None] | None = None, group: int = 1,
                 counters: list[Path] | None = None, poll_s: float = 0.5):
        self.source, self.reason = source, reason
        self._command, self._parse, self._group = command, parse, group
        self._counters, self._poll_s = counters or [], poll_s
        self.joules: float | None = None
        self.seconds = 0.0
        self.avg_watts: float | None = None
        self.samples: list[float] = []
        self._watts: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen | None = None
        self._energy_uj = 0
        self._start = 0.0

    def __enter__(self) -> EnergyMeter:
        self._start = time.perf_counter()
        if self.source is None:
            return self
        try:
            if self._command:
                self._process = subprocess.Popen(self._command, stdout=subprocess.PIPE,
                                                 stderr=subprocess.DEVNULL, text=True, errors="replace",
                                                 bufsize=1)
                self._thread = threading.Thread(target=self._read_lines, daemon=True)
            else:
                readings = [_read_counter(path) for path in self._counters]
                self._thread = threading.Thread(target=self._poll_counters, args=(readings,), daemon=True)
        except (OSError, ValueError) as exc:
            self._fail(f"{self.source}: {exc}")
            return self
        self._start = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.seconds = time.perf_counter() - self._start
        if self.source is None or self._thread is None:
            return
        self._stop.set()
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._thread.join(timeout=5)
        if self._command:
            self.samples = list(self._watts)
            if not self.samples:
                self._fail(f"{self.source} gave no power reading in {self.seconds:.2f} s")
                return
            self.avg_watts = sum(self.samples) / len(self.samples)
            self.joules = self.avg_watts * self.seconds
        elif self.reason is None:
            self.joules = self._energy_uj / 1e6
            self.avg_watts = self.joules / self.seconds if self.seconds > 0 else None

    def _fail(self, reason: str) -> None:
        self.reason, self.joules, self.avg_watts = reason, None, None

    def _read_lines(self) -> None:
        """Each sample is `group` lines (one per GPU for nvidia-smi); their watts add up."""
        assert self._process is not None and self._process.stdout is not None and self._parse is not None
        pending: list[float] = []
        for line in self._process.stdout:
            if self._stop.is_set():
                break
            watts = self._parse(line)
            if watts is None:
                continue
            pending.append(watts)
            if len(pending) == self._group:
                self._watts.append(sum(pending))
                pending = []

    def _poll_counters(self, readings: list[tuple[int, int]]) -> None:
        """Add each counter's increase every `poll_s`, so a wrap between polls is undone."""
        while True:
            stopping = self._stop.wait(self._poll_s)
            try:
                for index, path in enumerate(self._counters):
                    value, max_range = _read_counter(path)
                    self._energy_uj += rapl_delta_uj(readings[index][0], value, max_range)
                    readings[index] = (value, max_range)
            except (OSError, ValueError) as exc:
                self._fail(f"rapl: {exc}")
                return
            if stopping:
                return


def _read_counter(zone: Path) -> tuple[int, int]:
    return int((zone / "energy_uj").read_text()), int((zone / "max_energy_range_uj").read_text())


def _line_buffered(command: list[str]) -> list[str]:
    # a tool writing into a pipe buffers its output; stdbuf makes each sample arrive when taken
    return (["stdbuf", "-oL", *command]) if shutil.which("stdbuf") else command


def rapl_zones(powercap: Path = POWERCAP) -> tuple[list[Path], str | None]:
    """The package zones (intel-rapl:0, :1 ..., not their subzones) and, if none can be read, why."""
    zones = sorted(path for path in powercap.glob("intel-rapl:*") if path.name.count(":") == 1)
    if not zones:
        return [], f"no RAPL energy counters in {powercap} (not an Intel/AMD host, or a virtual machine)"
    try:
        for zone in zones:
            _read_counter(zone)
    except PermissionError:
        return [], f"RAPL counters in {powercap} are readable by root only (Linux >= 5.10): run as root"
    except (OSError, ValueError) as exc:
        return [], f"RAPL counters unreadable: {exc}"
    return zones, None


def measure_energy(device: dict | None = None, *, source: str | None = None, interval_ms: int = 100,
                   powercap: Path = POWERCAP, which: Callable[[str], str | None] = shutil.which,
                   is_root: bool | None = None) -> EnergyMeter:
    """An `EnergyMeter` for the first source this machine has (see the module docstring), or for
    `source` ('tegrastats', 'nvidia', 'powermetrics', 'rapl'). `device` (detect()'s output) says
    which GPUs exist; without it the tools are looked for on PATH."""
    device = device or {}
    is_root = (os.geteuid() == 0 if hasattr(os, "geteuid") else False) if is_root is None else is_root
    reasons = []
    for name in [source] if source else ["tegrastats", "nvidia", "powermetrics", "rapl"]:
        meter, reason = _meter(name, device, interval_ms, powercap, which, is_root)
        if meter is not None:
            return meter
        reasons.append(reason)
    return EnergyMeter(None, "; ".join(r for r in reasons if r) or "no power sensor found")


def _meter(name: str, device: dict, interval_ms: int, powercap: Path, which: Callable[[str], str | None],
           is_root: bool) -> tuple[EnergyMeter | None, str | None]:
    if name == "tegrastats":
        if not which("tegrastats"):
            return None, "tegrastats: not a Jetson" if not device.get("jetson") else "tegrastats: not on PATH"
        command = ["tegrastats", "--interval", str(interval_ms)]
        return EnergyMeter(name, command=_line_buffered(command), parse=parse_tegrastats), None
    if name == "nvidia":
        if not which("nvidia-smi"):
            return None, "nvidia: no nvidia-smi"
        gpus = len(device.get("nvidia") or []) or 1
        command = ["nvidia-smi", "--query-gpu=power.draw", "--format=csv,noheader,nounits",
                   "-lms", str(interval_ms)]
        return EnergyMeter(name, command=_line_buffered(command), parse=parse_nvidia_power, group=gpus), None
    if name == "powermetrics":
        if not which("powermetrics"):
            return None, "powermetrics: not macOS"
        if not is_root:
            return None, "powermetrics: not permitted (it needs root: run the bench with sudo for energy)"
        command = ["powermetrics", "--samplers", "cpu_power,gpu_power,ane_power", "-i", str(interval_ms)]
        return EnergyMeter(name, command=_line_buffered(command), parse=parse_powermetrics), None
    if name == "rapl":
        zones, reason = rapl_zones(powercap)
        return (EnergyMeter(name, counters=zones), None) if zones else (None, f"rapl: {reason}")
    return None, f"unknown energy source {name!r} (tegrastats, nvidia, powermetrics, rapl)"
