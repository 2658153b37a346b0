"""`edgeai --help` (and the catalog listing) must not wait on any heavy stack."""

import subprocess
import sys

import pytest

HEAVY = ("llama_cpp", "torch", "mlx", "onnxruntime", "transformers", "coremltools", "numpy",
         "huggingface_hub",
         # speech and vision (#15): engines, decoders, devices and image stacks
         "faster_whisper", "ctranslate2", "whisper", "av", "sounddevice", "piper", "PIL", "cv2", "rapidocr")

PROBE = """
import sys
from edgeai.cli import run_cli
code = run_cli({args!r})
heavy = sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})
print('HEAVY=' + ','.join(heavy), file=sys.stderr)
sys.exit(code)
"""


def test_the_chat_app_module_is_light_too():
    """The TUI's first paint must not wait on a heavy stack: importing the app pulls none."""
    probe = ("import sys, edgeai.tui.app\n"
             f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["models", "list"], ["transcribe", "--help"],
                                  ["speak", "--help"], ["see", "--help"], ["bench", "stt", "--help"],
                                  ["bench", "tts", "--help"], ["serve", "--help"]])
def test_no_heavy_imports(args):
    result = subprocess.run([sys.executable, "-c", PROBE.format(args=args, heavy=HEAVY)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "HEAVY=\n" in result.stderr or result.stderr.rstrip().endswith("HEAVY="), result.stderr
