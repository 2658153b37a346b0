"""Memory bandwidth, the physical limit on decode speed: published specs and the ceiling arithmetic.

At batch 1 every generated token streams the weights it reads (plus the KV cache) from memory
once, so decode tok/s <= bandwidth / bytes read per token (docs: ../shared/research/anchors.md
§C1). This module holds the spec tables (Apple chips, NVIDIA GPUs, Jetson modules) that
`device.detect()` attaches and turns a bandwidth and a byte count into a ceiling. The machine's
own bandwidth is measured and cached by bench/bandwidth_probe.py; the bytes a step reads are
counted by bench/token_bytes.py.
"""

from __future__ import annotations

# Apple unified-memory bandwidth, GB/s, by chip; (chip, GPU cores) where bins of one chip differ.
# Sources: Apple's product specs and newsroom posts per chip; llama.cpp discussion #4167's table;
# Apple ML Research "Exploring LLMs with MLX and the M5 Neural Accelerators" (M5: 153). Collected
# in research/anchors.md §C1.
APPLE_BANDWIDTH: dict[str | tuple[str, int], float] = {
    "Apple M1": 68.25, "Apple M1 Pro": 200, "Apple M1 Max": 400, "Apple M1 Ultra": 800,
    "Apple M2": 100, "Apple M2 Pro": 200, "Apple M2 Max": 400, "Apple M2 Ultra": 800,
    "Apple M3": 100, "Apple M3 Pro": 150, "Apple M3 Max": 400, ("Apple M3 Max", 30): 300,
    "Apple M3 Ultra": 819,
    "Apple M4": 120, "Apple M4 Pro": 273, "Apple M4 Max": 546, ("Apple M4 Max", 32): 410,
    "Apple M5": 153,
}

# NVIDIA GPU memory bandwidth, GB/s, from NVIDIA's datasheets (H100/H200/A100/L4/L40S/A10/T4/V100
# product pages; GeForce specs pages). Matched in order against the nvidia-smi name, lower-cased:
# every token of a rule must appear in the name, so put the specific bins first.
NVIDIA_BANDWIDTH: tuple[tuple[tuple[str, ...], float], ...] = (
    (("h200",), 4800), (("h100", "nvl"), 3900), (("h100", "pcie"), 2000), (("h100",), 3350),
    (("a100", "80gb", "pcie"), 1935), (("a100", "80gb"), 2039), (("a100",), 1555),
    (("l40s",), 864), (("l40",), 864), (("l4",), 300), (("a10g",), 600), (("a10",), 600),
    (("t4",), 320), (("v100s",), 1134), (("v100",), 900),
    (("rtx 6000 ada",), 960), (("rtx a6000",), 768),
    (("rtx 5090",), 1792), (("rtx 4090",), 1008), (("rtx 4080",), 717), (("rtx 3090 ti",), 1008),
    (("rtx 3090",), 936), (("rtx 3080",), 760),
)

# Jetson modules: (name, bandwidth GB/s, bandwidth in the JetPack 6.2 "Super" modes or None).
# NVIDIA Jetson module datasheets and the Orin Nano Super Developer Kit announcement (Dec 2024):
# the Super modes raise the Orin Nano's memory clock (EMC) cap from 2133 to 3199 MHz, 128-bit
# LPDDR5 at 4266 -> 6400 MT/s: 68 -> 102 GB/s (4GB, 64-bit: 34 -> 51). The Orin NX and AGX Orin
# already run their memory at 3200 MHz, so their figure does not change. Keyed by the P-number in
# the device tree's `compatible` string.
JETSON_MODULES: dict[str, tuple[str, float, float | None]] = {
    "p3767-0005": ("Jetson Orin Nano 8GB", 68, 102), "p3767-0003": ("Jetson Orin Nano 8GB", 68, 102),
    "p3767-0004": ("Jetson Orin Nano 4GB", 34, 51),
    "p3767-0000": ("Jetson Orin NX 16GB", 102.4, None), "p3767-0001": ("Jetson Orin NX 8GB", 102.4, None),
    "p3701-0000": ("Jetson AGX Orin", 204.8, None), "p3701-0004": ("Jetson AGX Orin 32GB", 204.8, None),
    "p3701-0005": ("Jetson AGX Orin 64GB", 204.8, None),
    "p3701-0008": ("Jetson AGX Orin Industrial", 204.8, None),
    "p3668-0000": ("Jetson Xavier NX", 59.7, None), "p3668-0001": ("Jetson Xavier NX", 59.7, None),
    "p3668-0003": ("Jetson Xavier NX 16GB", 59.7, None),
    "p2888-0001": ("Jetson AGX Xavier", 136.5, None), "p2888-0004": ("Jetson AGX Xavier 32GB", 136.5, None),
    "p2888-0005": ("Jetson AGX Xavier 64GB", 136.5, None),
    "p3448-0000": ("Jetson Nano", 25.6, None), "p3448-0002": ("Jetson Nano", 25.6, None),
    "p3448-0003": ("Jetson Nano 2GB", 25.6, None),
}
# nvpmodel modes of JetPack 6.2's Super configuration that lift the EMC cap to 3199 MHz; its
# 15W and 7W modes keep 2133 MHz (the 15W block of nvpmodel.conf: EMC MAX_FREQ 2133000000).
SUPER_MEMORY_MODES = frozenset({"25W", "MAXN_SUPER", "MAXN SUPER"})


def apple_spec_gbps(chip: str | None, gpu_cores: int | None) -> float | None:
    if not chip:
        return None
    return APPLE_BANDWIDTH.get((chip, gpu_cores or 0), APPLE_BANDWIDTH.get(chip))


def nvidia_spec_gbps(name: str | None) -> float | None:
    lowered = (name or "").lower()
    for tokens, gbps in NVIDIA_BANDWIDTH:
        if all(token in lowered for token in tokens):
            return gbps
    return None


def jetson_spec_gbps(pnumber: str | None, super_board: bool, power_mode: str | None) -> float | None:
    """Spec bandwidth of a Jetson module in the power mode it runs. The rule for the Orin Nano:
    a Super power mode (25W, MAXN_SUPER) -> the Super figure; a named other mode (15W, 7W) -> the
    original figure; mode unknown -> the Super figure if the board boots the Super device tree, so
    that a ceiling is never set lower than the memory can go (the % of ceiling is never inflated)."""
    if pnumber not in JETSON_MODULES:
        return None
    _, base, boosted = JETSON_MODULES[pnumber]
    if boosted is None:
        return base
    if power_mode:
        return boosted if power_mode.upper() in SUPER_MEMORY_MODES else base
    return boosted if super_board else base


def ceiling_tok_s(bandwidth_gbps: float, bytes_per_token: float) -> float:
    """The decode speed memory bandwidth allows: every token reads `bytes_per_token` once."""
    if bandwidth_gbps <= 0 or bytes_per_token <= 0:
        raise ValueError(f"bandwidth ({bandwidth_gbps}) and bytes per token ({bytes_per_token}) must be > 0")
    return bandwidth_gbps * 1e9 / bytes_per_token


def pct_of_ceiling(tok_s: float, bandwidth_gbps: float, bytes_per_token: float) -> float:
    """Measured decode tok/s as a percentage of `ceiling_tok_s` (unrounded)."""
    return 100.0 * tok_s / ceiling_tok_s(bandwidth_gbps, bytes_per_token)
