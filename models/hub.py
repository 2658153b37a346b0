"""Downloads one catalog artifact from a Hugging Face hub: `pull`, behind `edgeai models pull`.

Boundary: the only module that talks to a model hub, and it does nothing else. It asks the hub
for the file's metadata (HEAD) and fetches the body (GET) with huggingface_hub's own helpers
into a partial file next to the destination, checks the sha256, and only then renames the file
into place and stamps it (resolve.py). Hub and network failures leave as one-line edgeai errors;
no huggingface_hub exception escapes. Loading the file is resolve.py's job, not this module's.

Why not `hf_hub_download`: in huggingface_hub 2.x it writes to a process-unique temporary file
and deletes it on failure, so an interrupted multi-GB download always starts again from zero.
Here the partial file is keyed by the hub's ETag and the next pull continues it with a Range
request. Hashes: a catalog sha256 must match; an "unverified" artifact is pinned on its first
download (trust on first use) and a later pull refuses a file whose hash has changed.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from edgeai.config import Settings
from edgeai.errors import BadInput, EdgeAIError, MissingExtra
from edgeai.fileio import sha256_file
from edgeai.models.catalog import UNVERIFIED, Artifact, Entry
from edgeai.models.resolve import artifact_path, file_lock, read_stamp, write_stamp

if TYPE_CHECKING:
    from huggingface_hub import HfFileMetadata

SHA256 = re.compile(r"[0-9a-f]{64}")  # an LFS file's ETag is its sha256; a git file's is a sha1
NETWORK_HINT = ("check the network connection and HF_ENDPOINT; an interrupted download "
                "continues where it stopped on the next pull")


def pull(entry: Entry, art: Artifact, settings: Settings, *, endpoint: str | None = None,
         token: str | bool | None = None) -> Path:
    """Download `art` of `entry` into the models dir, resuming a partial download; its path.

    `endpoint` defaults to $HF_ENDPOINT or huggingface_hub's default, `token` to
    huggingface_hub's own lookup ($HF_TOKEN, then a saved login).
    """
    if art.kind != "hf":
        raise BadInput(f"model {entry.id} does not come from a hub (its source is {art.kind!r})")
    _require_hub()
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url

    repo, filename = art.source["repo"], art.source["filename"]
    revision = art.source.get("revision") or "main"
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
    dest = artifact_path(entry, art, settings)
    expected = None if art.sha256 == UNVERIFIED else art.sha256
    with _errors(entry, repo, filename, revision, endpoint, dest), file_lock(dest):
        stamp = read_stamp(dest)
        if stamp and expected and stamp["sha256"] == expected:
            return dest  # checked against the catalog's hash when it was written
        with _online():
            url = hf_hub_url(repo, filename, revision=revision, endpoint=endpoint)
            meta = get_hf_file_metadata(url, token=token, endpoint=endpoint)
            if not meta.etag or not meta.commit_hash:
                raise EdgeAIError(f"{endpoint} does not answer like a Hugging Face hub "
                                  f"(no ETag or X-Repo-Commit for {repo}/{filename})",
                                  "check HF_ENDPOINT and any proxy in between")
            remote = meta.etag if SHA256.fullmatch(meta.etag) else None
            if stamp and not expected:
                if remote and remote != stamp["sha256"]:
                    raise _changed(entry, stamp["sha256"], remote, dest)
                return dest  # already downloaded, and the hub still serves the pinned file
            if expected and remote and remote != expected:
                raise _mismatch(entry, remote, expected)  # before fetching a byte of it
            part = _download(url, meta, dest, token, filename)
        sha = sha256_file(part)
        if expected and sha != expected:
            part.unlink()
            raise _mismatch(entry, sha, expected)
        os.replace(part, dest)
        write_stamp(dest, sha, verified=expected is not None)
    return dest


def _require_hub() -> None:
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        raise MissingExtra("huggingface_hub (for model downloads)",
                           "pip install 'edgeai[hub]'") from None


@contextmanager
def _online() -> Iterator[None]:
    """Lift HF_HUB_OFFLINE for this pull only.

    The edgeai CLI sets HF_HUB_OFFLINE=1 for every command, and huggingface_hub reads the variable
    once, at import, into `constants.HF_HUB_OFFLINE` (all `is_offline_mode()` returns): changing
    os.environ later does nothing, so the constant itself is lifted and then restored.
    """
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = False
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved


def _partial_path(dest: Path, etag: str) -> Path:
    """Where an unfinished download of one version (ETag) of `dest` waits to be continued."""
    return dest.with_name(f".{dest.name}.{hashlib.sha256(etag.encode()).hexdigest()[:16]}.part")


def _download(url: str, meta: HfFileMetadata, dest: Path, token: str | bool | None,
              filename: str) -> Path:
    # Not re-exported at the top level, but public in file_download (HfFileSystem uses it).
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    part = _partial_path(dest, meta.etag)
    for stale in dest.parent.glob(f".{dest.name}.*.part"):
        if stale != part:
            stale.unlink()  # bytes of another version: appending to them would corrupt the file
    if part.exists() and meta.size is not None and part.stat().st_size > meta.size:
        part.unlink()
    headers = build_hf_headers(token=token)
    if urlsplit(meta.location).netloc != urlsplit(url).netloc:
        headers.pop("authorization", None)  # a signed CDN address: the token stays on the hub
    with part.open("ab") as out:  # append: a previous run's bytes are kept and continued
        http_get(meta.location, out, resume_size=out.tell(), headers=headers,
                 expected_size=meta.size, displayed_filename=filename)
    return part


def _mismatch(entry: Entry, got: str, expected: str) -> EdgeAIError:
    return EdgeAIError(f"{entry.id} from the hub has sha256 {got}, the catalog expects {expected}",
                       "the hub file changed or the download is corrupt; nothing was installed")


def _changed(entry: Entry, pinned: str, remote: str, dest: Path) -> EdgeAIError:
    return EdgeAIError(f"{entry.id} on the hub now has sha256 {remote}, but its first download "
                       f"was pinned as {pinned}",
                       f"the local file is kept; to trust the new one, delete {dest} and pull again")


def _transport_error() -> type[Exception]:
    try:  # huggingface_hub 2.x speaks httpx2, 1.x httpx; 0.x's requests errors are OSErrors
        from httpx2 import HTTPError
    except ImportError:
        try:
            from httpx import HTTPError
        except ImportError:
            return OSError
    return HTTPError


def _first_line(exc: BaseException) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()),
                type(exc).__name__)


@contextmanager
def _errors(entry: Entry, repo: str, filename: str, revision: str, endpoint: str,
            dest: Path) -> Iterator[None]:
    """huggingface_hub and network exceptions -> one-line edgeai errors (most specific first)."""
    from huggingface_hub import errors as hf

    try:
        yield
    except EdgeAIError:
        raise
    except hf.GatedRepoError:
        raise EdgeAIError(f"model {entry.id} is gated on the hub: accept its license at "
                          f"https://huggingface.co/{repo} and set HF_TOKEN") from None
    except hf.RepositoryNotFoundError:  # also a 401: private, or no such repo
        raise BadInput(f"hub repo {repo} (model {entry.id}) does not exist at {endpoint}",
                       "if it is private, set HF_TOKEN to a token that can read it") from None
    except hf.RevisionNotFoundError:
        raise BadInput(f"hub repo {repo} (model {entry.id}) has no revision {revision!r}") from None
    except hf.LocalEntryNotFoundError as exc:  # before EntryNotFoundError, its base class
        raise EdgeAIError(f"cannot reach the hub at {endpoint}: {_first_line(exc)}",
                          NETWORK_HINT) from None
    except hf.EntryNotFoundError:
        raise BadInput(f"hub repo {repo} (model {entry.id}) has no file {filename!r} at "
                       f"revision {revision!r}") from None
    except hf.HfHubHTTPError as exc:
        raise EdgeAIError(f"the hub at {endpoint} refused {repo}/{filename}: {_first_line(exc)}",
                          "try again later; for a private repo set HF_TOKEN") from None
    except OSError as exc:
        if exc.errno is not None:  # our disk: network failures come as hub or httpx errors
            raise EdgeAIError(f"cannot write to {dest.parent}: {exc.strerror}",
                              "check its free space and permissions") from None
        raise EdgeAIError(f"cannot reach the hub at {endpoint}: {_first_line(exc)}",
                          NETWORK_HINT) from None
    except _transport_error() as exc:
        raise EdgeAIError(f"cannot reach the hub at {endpoint}: {_first_line(exc)}",
                          NETWORK_HINT) from None
