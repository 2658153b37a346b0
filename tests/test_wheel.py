"""The built wheel (not the editable checkout) installs and runs: the package-dir mapping holds."""

import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_installs_and_runs(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(REPO)], check=True, capture_output=True, timeout=300)
    wheel = next(wheels.glob("edgeai-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True,
                   timeout=120)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # the dependencies come from the environment running the tests (a plain path entry, so the
    # editable checkout's import hook there is not activated)
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True, timeout=300)
    where = subprocess.run([py, "-c", "import edgeai.models, edgeai.bench; print(edgeai.models.__file__)"],
                           capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert str(venv) in where
    edgeai = venv / "bin" / "edgeai"
    help_text = subprocess.run([edgeai, "--help"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert help_text.returncode == 0 and "models" in help_text.stdout
    listing = subprocess.run([edgeai, "models", "list"], capture_output=True, text=True, timeout=60,
                             cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "qwen2.5-coder-0.5b-instruct" in listing.stdout and "gemma-3-270m" in listing.stdout
