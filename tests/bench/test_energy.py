"""Energy: power-line parsers on captured lines, RAPL on a fake sysfs tree, samplers on fake tools."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import pytest

from edgeai.bench.energy import (
    EnergyMeter,
    measure_energy,
    parse_nvidia_power,
    parse_powermetrics,
    parse_tegrastats,
    rapl_delta_uj,
    rapl_zones,
)

FIXTURES = Path(__file__).parent / "fixtures" / "device"
ORIN_NANO = (FIXTURES / "jetson-orin-nano-super/tegrastats.txt").read_text().strip()
# Jetson Nano, JetPack 4 (POM_* rails, mW without a unit): a public tegrastats parser's docstring
NANO = ("RAM 1766/3964MB (lfb 197x4MB) SWAP 0/2048MB (cached 0MB) CPU [24%@1224,15%@1224,13%@1224,10%@1224] "
        "EMC_FREQ 0% GR3D_FREQ 0% PLL@21C CPU@25C PMIC@100C GPU@23.5C AO@33.5C thermal@24.5C "
        "POM_5V_IN 2545/2547 POM_5V_GPU 0/0 POM_5V_CPU 549/529")
# AGX Orin (no input rail: module rails only): a public Jetson-monitor test fixture
AGX_ORIN = ("10-13-2026 12:00:00 RAM 4023/30536MB (lfb 5555x4MB) SWAP 0/15268MB (cached 0MB) "
            "CPU [0%@1190,0%@1190,off,off] EMC_FREQ 0%@2133 GR3D_FREQ 0%@[0,0] cpu@45.5C tj@45.5C "
            "VDD_GPU_SOC 3188mW/3188mW VDD_CPU_CV 1195mW/1195mW VIN_SYS_5V0 3229mW/3229mW")
# Xavier-era releases printing watts without an average: a public tegrastats-parser test
XAVIER = ("RAM 4567/15467MB (lfb 9x4MB) SWAP 0/7733MB CPU [5%@1420,3%@1420] GR3D_FREQ 12% PLL@38.5C "
          "VDD_IN 4.5W VDD_CPU 1.2W VDD_GPU 0.9W VDD_SOC 1.1W")


@pytest.mark.parametrize(("line", "watts"), [
    (ORIN_NANO, 4.556), (NANO, 2.545), (AGX_ORIN, 7.612), (XAVIER, 4.5),
    ("RAM 1/2MB CPU [1%@729]", None), ("", None),
])
def test_tegrastats_board_power(line, watts):
    assert parse_tegrastats(line) == (pytest.approx(watts) if watts is not None else None)


def test_nvidia_smi_power_values():
    assert parse_nvidia_power("69.52\n") == 69.52
    assert parse_nvidia_power("[N/A]") is None
    assert parse_nvidia_power("[Not Supported]") is None


def test_powermetrics_lines():
    # powermetrics --samplers cpu_power,gpu_power,ane_power (Apple Silicon, macOS 13+), and an Intel Mac
    assert parse_powermetrics("Combined Power (CPU + GPU + ANE): 5234 mW") == pytest.approx(5.234)
    assert parse_powermetrics("Intel energy model derived package power (CPUs+GT+SA): 5.23W") == 5.23
    assert parse_powermetrics("CPU Power: 4011 mW") is None  # a part of the combined figure


def test_rapl_wraparound():
    max_range = 262143328850
    assert rapl_delta_uj(1_000, 5_000, max_range) == 4_000
    assert rapl_delta_uj(max_range - 500, 1_500, max_range) == 2_000


def _zone(powercap: Path, name: str, energy_uj: int, max_uj: int = 262143328850) -> Path:
    zone = powercap / name
    zone.mkdir(parents=True)
    (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")
    _set(zone, energy_uj)
    return zone


def _set(zone: Path, energy_uj: int) -> None:
    # sysfs reads are atomic; a rename gives the polling thread the same guarantee
    tmp = zone / "energy_uj.tmp"
    tmp.write_text(f"{energy_uj}\n")
    os.replace(tmp, zone / "energy_uj")


def test_rapl_sums_packages_and_ignores_subzones(tmp_path):
    max_uj = 262143328850
    pkg0 = _zone(tmp_path, "intel-rapl:0", 10_000_000)
    pkg1 = _zone(tmp_path, "intel-rapl:1", max_uj - 500_000)
    core = _zone(tmp_path, "intel-rapl:0:0", 0)  # the cores inside package 0: already counted
    with measure_energy(source="rapl", powercap=tmp_path) as meter:
        _set(pkg0, 12_000_000)
        _set(pkg1, 1_500_000)  # wrapped
        _set(core, 99_000_000)
    assert meter.source == "rapl" and meter.reason is None
    assert meter.joules == pytest.approx(4.0)
    assert meter.avg_watts == pytest.approx(4.0 / meter.seconds)


def test_rapl_poll_undoes_every_wrap_of_a_long_region(tmp_path):
    max_uj = 10_000_000
    zone = _zone(tmp_path, "intel-rapl:0", max_uj - 1_000_000, max_uj)
    zones, reason = rapl_zones(tmp_path)
    assert reason is None
    with EnergyMeter("rapl", counters=zones, poll_s=0.01) as meter:
        for value in (1_000_000, max_uj - 1_000_000, 1_000_000):  # wraps twice
            _set(zone, value)
            time.sleep(0.15)
    # +2 J, +8 J, +2 J; reading only the ends would see one wrap: 2 J
    assert meter.joules == pytest.approx(12.0)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file: the permission case needs a normal user")
def test_rapl_readable_by_root_only_says_so(tmp_path):
    zone = _zone(tmp_path, "intel-rapl:0", 1)
    (zone / "energy_uj").chmod(0)
    meter = measure_energy(source="rapl", powercap=tmp_path)
    assert meter.joules is None and "root" in meter.reason


def test_nothing_to_measure_gives_reasons_not_errors(tmp_path):
    with measure_energy({}, which=lambda tool: None, powercap=tmp_path / "powercap") as meter:
        pass
    assert meter.joules is None and meter.source is None
    expected = ("tegrastats: not a Jetson", "nvidia: no nvidia-smi", "powermetrics: not macOS",
                "rapl: no RAPL")
    for part in expected:
        assert part in meter.reason
    assert "unknown energy source" in measure_energy(source="bogus").reason


def test_powermetrics_without_root_is_not_permitted_and_never_prompts():
    meter = measure_energy(source="powermetrics", which=lambda tool: f"/usr/bin/{tool}", is_root=False)
    assert meter.joules is None and "not permitted" in meter.reason


def _fake_tool(folder: Path, name: str, lines: list[str], *, interval_flag: str) -> None:
    """A stand-in for tegrastats / nvidia-smi: prints `lines` every interval, as the real tool does."""
    folder.mkdir(exist_ok=True)
    script = folder / name
    script.write_text(
        f"#!{sys.executable}\nimport sys, time\n"
        f"interval = float(sys.argv[sys.argv.index({interval_flag!r}) + 1]) / 1000\n"
        f"while True:\n    print({chr(10).join(lines)!r}, flush=True)\n    time.sleep(interval)\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_tegrastats_sampler_integrates_board_power(tmp_path, monkeypatch):
    _fake_tool(tmp_path / "bin", "tegrastats", [ORIN_NANO], interval_flag="--interval")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    with measure_energy({"jetson": {}}, interval_ms=50) as meter:
        time.sleep(0.8)
    assert meter.source == "tegrastats", meter.reason
    assert len(meter.samples) >= 3
    assert meter.avg_watts == pytest.approx(4.556)
    assert meter.joules == pytest.approx(4.556 * meter.seconds)


def test_nvidia_sampler_adds_up_the_gpus(tmp_path, monkeypatch):
    _fake_tool(tmp_path / "bin", "nvidia-smi", ["250.10", "[N/A]", "150.00"], interval_flag="-lms")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    device = {"nvidia": [{"name": "NVIDIA H100 80GB HBM3"}, {"name": "NVIDIA H100 80GB HBM3"}]}
    with measure_energy(device, source="nvidia", interval_ms=50) as meter:
        time.sleep(0.8)
    assert meter.reason is None
    assert meter.avg_watts == pytest.approx(400.1)
    assert meter.joules == pytest.approx(400.1 * meter.seconds)


def test_a_tool_that_prints_nothing_gives_a_reason(tmp_path):
    meter = EnergyMeter("tegrastats", command=[sys.executable, "-c", "pass"], parse=parse_tegrastats)
    with meter:
        time.sleep(0.2)
    assert meter.joules is None and "no power reading" in meter.reason
    broken = EnergyMeter("tegrastats", command=[str(tmp_path / "missing-tool")], parse=parse_tegrastats)
    with broken:
        pass
    assert broken.joules is None and "tegrastats" in broken.reason
