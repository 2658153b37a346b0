"""OUT is written whole or not at all: a temporary sibling folder, renamed into place at the end.

A killed conversion leaves only `.NAME.partial-PID`; the next run for the same OUT removes
those whose process is gone. An existing OUT is refused unless `force`, and even then it is
replaced only after the new one is complete.
"""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgeai.errors import BadInput

PARTIAL = ".partial-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(out: Path) -> list[Path]:
    """Remove temporaries of `out` left by conversions that are no longer running."""
    removed = []
    for path in out.parent.glob(f".{glob.escape(out.name)}{PARTIAL}*"):
        pid = path.name.rpartition(PARTIAL)[2]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def check_output(out: Path, force: bool) -> Path:
    """The absolute OUT, after refusing what must not be overwritten."""
    out = Path(out).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out} exists and is not a folder", "OUT is a folder; choose another path")
    if out.exists() and not force and any(out.iterdir()):  # an empty folder holds nothing to lose
        raise BadInput(f"{out} already exists", "pass --force to replace it")
    if out.exists() and any(out.iterdir()) and not _is_export(out):
        raise BadInput(f"{out} is not an edgeai export; --force replaces only those",
                       "choose another OUT, or remove the folder yourself")
    if out.parent.exists() and not out.parent.is_dir():
        raise BadInput(f"{out.parent} is not a folder")
    return out


def _is_export(folder: Path) -> bool:
    """A folder `edgeai convert` made (one format, or `--to all`'s one folder per format)."""
    return (folder / "manifest.json").is_file() or any(folder.glob("*/manifest.json"))


@contextmanager
def staged_output(out: Path, force: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it becomes `out`, on any error it vanishes."""
    out = check_output(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(out)
    stage = out.parent / f".{out.name}{PARTIAL}{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
        if out.exists() and force:  # the old OUT goes only once the new one is whole
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            try:
                os.replace(stage, out)
            except BaseException:
                os.replace(old, out)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(stage, out)  # fails, keeping what is there, if OUT appeared meanwhile
    finally:
        shutil.rmtree(stage, ignore_errors=True)
