"""Files sent with a chat message (an image for `/image`): checked, copied into the data dir by
content hash, and described by the record chat.db keeps with the message.

Boundary: a path the user named in, an attachment record out (`attach_image`), a plain dict as
`ChatDB.add_message(attachments=...)` stores it: `kind`, `name` (the file's own name, shown and
exported), `file` (the copy, relative to the data dir: `attachments/<sha256>.<ext>`), `sha256`,
`bytes`, `width`, `height`. The copy is what every later turn, a regenerate, an export or a
restart uses, so the user may move or delete the original. Same content, same copy: an image
sent twice is stored once. Copies are written atomically (`edgeai.fileio`), so a killed copy
never leaves a half file under the hashed name. `prune` removes copies no message names any more.

The image is decoded once here, within the vision cap (`edgeai.vision.image.open_image`), so a
corrupt file, a decompression bomb or a non-image is refused with one line when it is attached,
not later in a turn. Pillow is imported only then.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from edgeai.chatdb import ChatDB
from edgeai.errors import BadInput
from edgeai.fileio import atomic_writer, sha256_file

FOLDER = "attachments"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
MAX_BYTES = 64 << 20  # an attachment is a photo or a scan; anything larger is a mistake
GRACE_S = 3600.0  # a copy this young is never pruned (it may be waiting in a prompt)


def looks_like_image_path(text: str) -> Path | None:
    """A pasted (or dropped) path to an existing image file -> that path, else None. Terminals
    paste a dropped file quoted or with escaped spaces; both are undone."""
    text = text.strip()
    if not text or "\n" in text or len(text) > 4096:
        return None
    if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    text = text.replace("\\ ", " ")
    if text.startswith("file://"):
        text = text[len("file://"):]
    path = Path(text).expanduser()
    try:
        return path if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() else None
    except OSError:  # a name too long for the file system
        return None


def attach_image(home: Path, path: str | Path) -> dict[str, Any]:
    """Check `path` is an image we can read (within the pixel cap), copy it into
    `<home>/attachments/` by content hash, and return its record. Errors are one-line BadInput."""
    from edgeai.vision.image import open_image

    source = Path(path).expanduser()
    if source.is_file() and source.stat().st_size > MAX_BYTES:
        raise BadInput(f"{source.name} is {source.stat().st_size / 2**20:.0f} MB; an attachment may be "
                       f"at most {MAX_BYTES >> 20} MB")
    opened = open_image(source)  # BadInput: missing, not an image, corrupt, over the cap
    opened.image.close()
    facts = opened.facts
    digest = sha256_file(source)
    suffix = source.suffix.lower() if source.suffix.lower() in IMAGE_SUFFIXES else ".img"
    relative = f"{FOLDER}/{digest}{suffix}"
    target = Path(home) / relative
    if not target.is_file():  # same content already stored: nothing to copy
        try:
            with atomic_writer(target) as out, source.open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
        except OSError as exc:
            raise BadInput(f"cannot copy {source.name} into {target.parent}: {exc.strerror or exc}") from None
    return {"kind": "image", "name": source.name, "file": relative, "sha256": digest,
            "bytes": target.stat().st_size, "width": facts.width, "height": facts.height,
            "path": str(target)}


def label(record: dict[str, Any]) -> str:
    """'[image: receipt.png 800×1200]': how an attachment is named where it cannot be drawn."""
    size = f" {record['width']}×{record['height']}" if record.get("width") else ""
    return f"[{record.get('kind', 'file')}: {record.get('name', '?')}{size}]"


def prune(home: Path, db: ChatDB) -> int:
    """Delete the copies under `<home>/attachments/` that no message names (a deleted or cleared
    conversation's images); return how many went. Another window's message being written names
    its copy before it is committed, and an image waiting in a prompt is named by nothing yet: a
    copy younger than `GRACE_S` stays."""
    import time

    folder = Path(home) / FOLDER
    if not db.persistent or not folder.is_dir():
        return 0
    named = db.attachment_files()
    removed = 0
    for copy in folder.iterdir():
        if copy.name.startswith("."):  # a copy being written (atomic_writer's temp file)
            continue
        if f"{FOLDER}/{copy.name}" not in named and time.time() - copy.stat().st_mtime > GRACE_S:
            copy.unlink(missing_ok=True)
            removed += 1
    return removed
