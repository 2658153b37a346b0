"""Device detection on captured machines (fixtures/device/, sources in its README) and on this one."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from edgeai.bench.bandwidth import apple_spec_gbps, jetson_spec_gbps, nvidia_spec_gbps
from edgeai.bench.device import (
    clean_cpu_model,
    detect,
    jetpack_for,
    label,
    parse_jetson_clocks,
    parse_l4t,
    parse_nvpmodel,
    run_command,
)
from edgeai.system import INTERESTING_FLAGS

FIXTURES = Path(__file__).parent / "fixtures" / "device"
MACHINES = sorted(path.name for path in FIXTURES.iterdir() if (path / "expected.json").is_file())


def fixture_runner(folder: Path, log: list[str] | None = None):
    """A `run` that answers from the folder's commands.json; anything else is a missing tool."""
    commands = json.loads((folder / "commands.json").read_text())

    def run(cmd: list[str]) -> str | None:
        if log is not None:
            log.append(" ".join(cmd))
        answer = commands.get(" ".join(cmd))
        if isinstance(answer, dict):
            return (folder / answer["file"]).read_text()
        return answer

    return run


def detect_fixture(name: str, **kwargs) -> dict:
    folder = FIXTURES / name
    return detect(root=folder / "root", run=fixture_runner(folder), **kwargs)


def test_every_required_machine_has_a_fixture():
    assert {"macos-m2", "macos-m4-max", "linux-x86", "jetson-orin-nano-super", "nvidia-h100"} <= set(MACHINES)


@pytest.mark.parametrize("name", MACHINES)
def test_detect_reads_each_captured_machine_exactly(name):
    expected = json.loads((FIXTURES / name / "expected.json").read_text())
    device = detect_fixture(name)
    assert device == expected["device"]
    assert label(device) == expected["label"]
    json.dumps(device)  # a result file must be able to hold it


def test_label_without_the_accelerator_names_the_cpu():
    assert label(detect_fixture("nvidia-h100"), accelerator=False) == "Intel Xeon Platinum 8480+ · 16 cores"
    assert label(detect_fixture("macos-m2"), accelerator=False) == "Apple M2 · 8 cores"


def test_label_of_several_gpus_counts_them():
    device = detect_fixture("nvidia-h100")
    device["nvidia"] = device["nvidia"] * 2
    assert label(device) == "2× NVIDIA H100 80GB HBM3"


@pytest.mark.parametrize(("raw", "clean"), [
    ("Intel(R) Core(TM) i9-9980HK CPU @ 2.40GHz", "Intel Core i9-9980HK"),
    ("Intel(R) Xeon(R) Platinum 8480+", "Intel Xeon Platinum 8480+"),
    ("AMD Ryzen 9 7950X 16-Core Processor", "AMD Ryzen 9 7950X 16-Core Processor"),
])
def test_cpu_model_is_cleaned_for_labels(raw, clean):
    assert clean_cpu_model(raw) == clean


def test_jetson_is_not_probed_with_nvidia_smi():
    folder = FIXTURES / "jetson-orin-nano-super"
    asked: list[str] = []
    detect(root=folder / "root", run=fixture_runner(folder, asked))
    assert "nvpmodel -q" in asked
    assert not any(command.startswith("nvidia-smi") for command in asked)


# --- the Jetson rules: L4T -> JetPack, power mode -> memory bandwidth

@pytest.mark.parametrize(("l4t", "jetpack"), [
    ("36.4.3", "6.2"), ("36.4.4", "6.2.1"), ("36.4", "6.1"), ("36.3.0", "6.0"), ("35.4.1", "5.1.2"),
    ("36.4.7", "6.2.1+"),  # newer than the table: the newest known below it, marked as a floor
    ("37.0.0", None), (None, None),
])
def test_jetpack_from_l4t(l4t, jetpack):
    assert jetpack_for(l4t) == jetpack


def test_l4t_from_nv_tegra_release_lines():
    release = "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64"
    assert parse_l4t(release) == "35.4.1"
    assert parse_l4t("not a release file") is None


@pytest.mark.parametrize(("mode", "super_board", "gbps"), [
    ("MAXN_SUPER", True, 102), ("25W", True, 102),   # the Super modes lift the memory clock cap
    ("15W", True, 68), ("7W", True, 68),             # these keep EMC at 2133 MHz
    (None, True, 102), (None, False, 68),            # mode unknown: what the device tree allows
])
def test_orin_nano_bandwidth_follows_the_power_mode(mode, super_board, gbps):
    assert jetson_spec_gbps("p3767-0005", super_board, mode) == gbps


def test_orin_nano_in_15w_mode_reports_the_original_bandwidth(tmp_path):
    folder = FIXTURES / "jetson-orin-nano-super"
    run = fixture_runner(folder)

    def fifteen_watts(cmd):
        return "NV Power Mode: 15W\n0\n" if cmd == ["nvpmodel", "-q"] else run(cmd)

    device = detect(root=folder / "root", run=fifteen_watts)
    assert device["jetson"]["bandwidth_gbps_spec"] == 68
    assert label(device) == "Jetson Orin Nano Super · 15W"


def test_modules_whose_memory_the_super_modes_leave_alone():
    assert jetson_spec_gbps("p3701-0005", True, "MAXN") == 204.8     # AGX Orin 64GB
    assert jetson_spec_gbps("p3767-0000", True, "MAXN_SUPER") == 102.4  # Orin NX 16GB
    assert jetson_spec_gbps("p9999-0000", True, "MAXN") is None


def test_nvpmodel_verbose_output_and_missing_tool():
    verbose = "NVPM VERB: Config file: /etc/nvpmodel.conf\nNVPM VERB: Current mode: NV Power Mode: 25W\n1\n"
    assert parse_nvpmodel(verbose) == "25W"
    assert parse_nvpmodel(None) is None


def test_jetson_clocks_pinned_or_not():
    pinned = ("cpu0: Online=1 Governor=schedutil MinFreq=1728000 MaxFreq=1728000 CurrentFreq=1728000\n"
              "GPU MinFreq=1020000000 MaxFreq=1020000000 CurrentFreq=1020000000\n"
              "EMC MinFreq=204000000 MaxFreq=3199000000 CurrentFreq=3199000000 FreqOverride=1\n")
    assert parse_jetson_clocks(pinned) is True
    shown = (FIXTURES / "jetson-orin-nano-super/commands/jetson_clocks-show.txt").read_text()
    assert parse_jetson_clocks(shown) is False
    assert parse_jetson_clocks(None) is None  # `jetson_clocks --show` needs root


# --- spec tables

@pytest.mark.parametrize(("chip", "cores", "gbps"), [
    ("Apple M3 Max", 30, 300), ("Apple M3 Max", 40, 400), ("Apple M4 Max", 32, 410),
    ("Apple M4 Max", 40, 546), ("Apple M1", 8, 68.25), ("Apple M4 Pro", None, 273), ("Apple M9", 10, None),
])
def test_apple_bandwidth_by_chip_and_gpu_bin(chip, cores, gbps):
    assert apple_spec_gbps(chip, cores) == gbps


@pytest.mark.parametrize(("name", "gbps"), [
    ("NVIDIA H100 80GB HBM3", 3350), ("NVIDIA H100 PCIe", 2000), ("NVIDIA H100 NVL", 3900),
    ("NVIDIA H200", 4800), ("NVIDIA A100-SXM4-40GB", 1555), ("NVIDIA A100-SXM4-80GB", 2039),
    ("NVIDIA A100 80GB PCIe", 1935), ("NVIDIA L4", 300), ("NVIDIA L40S", 864),
    ("NVIDIA GeForce RTX 4090", 1008), ("Tesla T4", 320), ("NVIDIA Quadro P1000", None),
])
def test_nvidia_bandwidth_by_name(name, gbps):
    assert nvidia_spec_gbps(name) == gbps


# --- missing tools and this machine

def test_missing_tools_and_files_give_nulls_not_errors(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text("processor\t: 0\n")
    device = detect(root=tmp_path, run=lambda cmd: None)
    assert device["cpu"]["cores"] == 1
    assert device["memory_gb"] is None and device["nvidia"] is None and device["jetson"] is None
    assert device["os"] == "Linux"
    assert label(device)


def test_run_command_returns_none_for_missing_failing_or_hanging_tools():
    assert run_command([sys.executable, "-c", "print('hi')"]) == "hi\n"
    assert run_command(["edgeai-no-such-tool-xyz"]) is None
    assert run_command([sys.executable, "-c", "import sys; sys.exit(3)"]) is None
    assert run_command([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.3) is None


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="reads /proc: Linux only")
def test_detect_on_this_machine_is_sane():
    device = detect()
    cpu = device["cpu"]
    assert device["os"].startswith("Linux ")
    assert cpu["cores"] >= 1 and cpu["cores"] >= len(os.sched_getaffinity(0))
    assert cpu["model"] and cpu["arch"]
    assert set(cpu["features"]) <= set(INTERESTING_FLAGS)
    assert 0.1 < device["memory_gb"] < 16384
    assert device["apple"] is None and device["bandwidth"] is None
    assert label(device).endswith(f"· {cpu['cores']} cores") or device["nvidia"] or device["jetson"]
