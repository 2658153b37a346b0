"""detect-secrets and jsonschema load on first use: `edgeai --help`, `edgeai guard log` and a
guarded turn's import of the guard pull neither."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
from edgeai.cli import run_cli
code = run_cli({args!r})
import edgeai.guard
lazy = ('detect_secrets', 'jsonschema')
print('LOADED=' + ','.join(sorted(m for m in sys.modules if m.split('.')[0] in lazy)), file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize("args", [["--help"], ["guard", "log"]])
def test_the_guard_does_not_import_its_detectors_up_front(args):
    result = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.rstrip().endswith("LOADED="), result.stderr
