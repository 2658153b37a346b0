"""What a bad input must look like on the command line: the exit code (2 unless said), no
traceback, nothing on stdout, `edgeai: error: ...` on one line and at most a hint after it."""

from __future__ import annotations


def one_line_error(result, *needles: str, code: int = 2) -> str:
    """`result`: a finished subprocess (bytes). Returns the error line; each needle must be in it."""
    err = result.stderr.decode()
    assert result.returncode == code, err
    assert "Traceback" not in err and result.stdout == b"", err
    lines = err.strip().splitlines()
    assert lines and lines[0].startswith("edgeai: error: ") and len(lines) <= 2, err
    assert all(n in lines[0] for n in needles), err
    return lines[0]
