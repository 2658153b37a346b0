"""`edgeai.models.hub.pull` against a fake hub on 127.0.0.1 that answers like huggingface.co.

The fake serves HEAD and GET on `/{repo}/resolve/{revision}/{filename}` with the headers that
huggingface_hub reads (X-Repo-Commit, ETag: the sha256 for LFS files, a sha1 for git files,
Content-Length, Range -> 206), and signals errors the hub's way: a status code plus
X-Error-Code (GatedRepo, RepoNotFound, RevisionNotFound, EntryNotFound).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest

from edgeai.config import Settings
from edgeai.errors import BadInput, EdgeAIError
from edgeai.models.catalog import UNVERIFIED, Artifact, Entry
from edgeai.models.hub import _partial_path, pull
from edgeai.models.resolve import artifact_path, read_stamp

pytest.importorskip("huggingface_hub")

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO, FILE = "tiny-org/Tiny-GGUF", "tiny-Q8_0.gguf"
PAYLOAD = random.Random(1234).randbytes(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()
RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>[^?]+)$")


class FakeHub:
    """Files by (repo, filename); records (method, path, Range header) of every request."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.gated: set[str] = set()
        self.requests: list[tuple[str, str, str | None]] = []
        self.honour_range = True
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, repo: str, filename: str, data: bytes, lfs: bool = True) -> None:
        etag = hashlib.sha256(data).hexdigest() if lfs else hashlib.sha1(data).hexdigest()
        self.files[(repo, filename)] = (data, etag)

    def gets(self) -> list[tuple[str, str, str | None]]:
        return [r for r in self.requests if r[0] == "GET"]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest's output clean
                pass

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _error(self, status: int, code: str) -> None:
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _serve(self, body: bool) -> None:
                hub.requests.append((self.command, self.path, self.headers.get("Range")))
                m = RESOLVE.match(self.path)
                if not m or not any(repo == m["repo"] for repo, _ in hub.files):
                    return self._error(401, "RepoNotFound")  # the hub's answer to unknown repos
                repo, rev, name = m["repo"], unquote(m["rev"]), unquote(m["file"])
                if repo in hub.gated:
                    return self._error(403, "GatedRepo")
                if rev not in ("main", COMMIT):
                    return self._error(404, "RevisionNotFound")
                if (repo, name) not in hub.files:
                    return self._error(404, "EntryNotFound")
                data, etag = hub.files[(repo, name)]
                start = 0
                wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if body and wanted and hub.honour_range:
                    start = int(wanted[1])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{etag}"')
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if body:
                    self.wfile.write(data[start:])

        return Handler


@pytest.fixture
def hub(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_fake_test_token")  # never a real saved login
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    fake = FakeHub()
    fake.add(REPO, FILE, PAYLOAD)
    thread = threading.Thread(target=fake.server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
    thread.join(timeout=5)


def model(repo: str = REPO, filename: str = FILE, revision: str = "main",
          sha256: str = UNVERIFIED) -> tuple[Entry, Artifact]:
    art = Artifact(format="gguf", quant="q8_0", file=filename, sha256=sha256,
                   source={"kind": "hf", "repo": repo, "revision": revision, "filename": filename})
    entry = Entry(id="tiny", name="Tiny", family="tiny", license="Apache-2.0", license_note="",
                  context_length=2048, chat=True, description="", artifacts=(art,))
    return entry, art


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_pull_downloads_stamps_unverified_sha_and_second_pull_gets_nothing(hub, tmp_path):
    entry, art = model()
    settings = Settings(home=tmp_path)
    path = pull(entry, art, settings, endpoint=hub.endpoint)
    assert path == artifact_path(entry, art, settings)
    assert path.read_bytes() == PAYLOAD
    stamp = read_stamp(path)
    assert stamp["sha256"] == SHA and stamp["verified"] is False
    assert len(hub.gets()) == 1 and leftovers(path.parent) == []

    assert pull(entry, art, settings, endpoint=hub.endpoint) == path
    assert len(hub.gets()) == 1  # only a HEAD: the body is not fetched again
    assert path.read_bytes() == PAYLOAD


def test_pinned_catalog_sha_is_verified_and_then_needs_no_network(hub, tmp_path):
    entry, art = model(sha256=SHA)
    path = pull(entry, art, Settings(home=tmp_path), endpoint=hub.endpoint)
    assert read_stamp(path) == {**read_stamp(path), "sha256": SHA, "verified": True}
    before = len(hub.requests)
    pull(entry, art, Settings(home=tmp_path), endpoint=hub.endpoint)
    assert len(hub.requests) == before


@pytest.mark.parametrize("honour_range", [True, False], ids=["range", "server-ignores-range"])
def test_pull_continues_a_partial_download_with_a_range_request(hub, tmp_path, honour_range):
    hub.honour_range = honour_range
    entry, art = model()
    settings = Settings(home=tmp_path)
    dest = artifact_path(entry, art, settings)
    dest.parent.mkdir(parents=True)
    half = len(PAYLOAD) // 2
    _partial_path(dest, SHA).write_bytes(PAYLOAD[:half])  # what an interrupted pull leaves

    assert pull(entry, art, settings, endpoint=hub.endpoint).read_bytes() == PAYLOAD
    assert [r[2] for r in hub.gets()] == [f"bytes={half}-"]
    assert leftovers(dest.parent) == []


def test_partial_download_of_another_version_is_not_continued(hub, tmp_path):
    entry, art = model()
    settings = Settings(home=tmp_path)
    dest = artifact_path(entry, art, settings)
    dest.parent.mkdir(parents=True)
    stale = _partial_path(dest, "f" * 64)
    stale.write_bytes(b"x" * 1000)

    assert pull(entry, art, settings, endpoint=hub.endpoint).read_bytes() == PAYLOAD
    assert [r[2] for r in hub.gets()] == [None] and not stale.exists()


def test_gated_repo_says_so_and_names_hf_token(hub, tmp_path):
    hub.gated.add(REPO)
    entry, art = model()
    with pytest.raises(EdgeAIError) as err:
        pull(entry, art, Settings(home=tmp_path), endpoint=hub.endpoint)
    assert type(err.value) is EdgeAIError
    assert "gated" in err.value.message and "HF_TOKEN" in err.value.message
    assert f"https://huggingface.co/{REPO}" in err.value.message
    assert not artifact_path(entry, art, Settings(home=tmp_path)).exists()


@pytest.mark.parametrize("what, words", [
    ({"repo": "nobody/No-Such-GGUF"}, "does not exist"),
    ({"filename": "missing.gguf"}, "has no file 'missing.gguf'"),
    ({"revision": "v9"}, "has no revision 'v9'"),
], ids=["repo", "file", "revision"])
def test_unknown_repo_file_or_revision_is_bad_input(hub, tmp_path, what, words):
    entry, art = model(**what)
    with pytest.raises(BadInput, match=words):
        pull(entry, art, Settings(home=tmp_path), endpoint=hub.endpoint)
    assert not artifact_path(entry, art, Settings(home=tmp_path)).exists()


@pytest.mark.parametrize("lfs", [True, False], ids=["etag-is-sha256", "git-etag"])
def test_catalog_sha_mismatch_fails_and_leaves_nothing(hub, tmp_path, lfs):
    hub.add(REPO, FILE, PAYLOAD, lfs=lfs)
    entry, art = model(sha256="0" * 64)
    settings = Settings(home=tmp_path)
    with pytest.raises(EdgeAIError, match=f"sha256 {SHA}, the catalog expects {'0' * 64}"):
        pull(entry, art, settings, endpoint=hub.endpoint)
    dest = artifact_path(entry, art, settings)
    assert not dest.exists() and leftovers(dest.parent) == []
    # an LFS ETag is the sha256: the mismatch is caught before any byte is fetched
    assert len(hub.gets()) == (0 if lfs else 1)


def test_changed_hub_file_is_refused_after_trust_on_first_use(hub, tmp_path):
    entry, art = model()
    settings = Settings(home=tmp_path)
    path = pull(entry, art, settings, endpoint=hub.endpoint)
    changed = PAYLOAD[::-1]
    hub.add(REPO, FILE, changed)
    new_sha = hashlib.sha256(changed).hexdigest()
    with pytest.raises(EdgeAIError) as err:
        pull(entry, art, settings, endpoint=hub.endpoint)
    assert SHA in err.value.message and new_sha in err.value.message
    assert path.read_bytes() == PAYLOAD and read_stamp(path)["sha256"] == SHA


def test_unreachable_hub_fails_fast_with_cannot_reach(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_fake_test_token")
    with socket.socket() as sock:  # a loopback port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    entry, art = model()
    started = time.monotonic()
    with pytest.raises(EdgeAIError, match=f"cannot reach the hub at {endpoint}") as err:
        pull(entry, art, Settings(home=tmp_path), endpoint=endpoint)
    assert time.monotonic() - started < 5
    assert type(err.value) is EdgeAIError and err.value.hint
    assert "\n" not in err.value.message


PULL_IN_A_FRESH_PROCESS = """
import json, sys
from pathlib import Path
from huggingface_hub import constants  # imported while HF_HUB_OFFLINE=1
from edgeai.config import Settings
from edgeai.models.catalog import Artifact, Entry
from edgeai.models.hub import pull
src = {"kind": "hf", "repo": sys.argv[2], "revision": "main", "filename": sys.argv[3]}
art = Artifact(format="gguf", quant="q8_0", file=sys.argv[3], source=src)
entry = Entry(id="tiny", name="Tiny", family="tiny", license="", license_note="",
              context_length=2048, chat=True, description="", artifacts=(art,))
offline_before = constants.is_offline_mode()
path = pull(entry, art, Settings(home=Path(sys.argv[4])), endpoint=sys.argv[1])
print(json.dumps([str(path), offline_before, constants.is_offline_mode()]))
"""


def test_pull_works_when_hf_hub_offline_was_set_before_huggingface_hub_was_imported(
        hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # what the edgeai CLI does at startup
    done = subprocess.run(
        [sys.executable, "-c", PULL_IN_A_FRESH_PROCESS, hub.endpoint, REPO, FILE, str(tmp_path)],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    path, offline_before, offline_after = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(path).read_bytes() == PAYLOAD
    assert offline_before and offline_after  # lifted for the pull only
