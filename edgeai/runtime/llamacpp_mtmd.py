"""Images into a llama.cpp model through llama.cpp's multimodal library (`mtmd`), inside edgeai's
own decode path.

Boundaries: this module owns the `mtmd` context (the projector, `LoadOptions.mmproj_path`), turns
a rendered chat prompt plus its images into mtmd's chunks (`mtmd_tokenize`: text chunks and image
chunks at the media marker) and evaluates an image chunk into one sequence of the backend's
context (`mtmd_helper_eval_chunk_single`, at that sequence's position, with the context's
`n_batch`). Text chunks are not evaluated here: the backend's step appends them through its own
`llama_batch` in prefill steps, so stop mid-prefill and the KV prefix reuse work as for text.
llama-cpp-python's high-level chat handlers (Llava15ChatHandler etc.) are not used: they own the
whole prompt and bypass both.

Prefix reuse across images: a `MediaPrompt`'s `tokens` hold the text chunks' ids and, for each
position an image takes, a negative id derived from the SHA-256 of the image file's bytes (also
the mtmd bitmap's id). The backend's usual common-prefix comparison then keeps the text before an
image, keeps an identical image, and stops at the first position where an image changed; a prefix
that would end inside an image is cut back to the image's start (an image is evaluated whole).

Images are decoded by `edgeai.vision.image.open_image` (the pixel cap, EXIF orientation, one-line
errors) and handed to mtmd as RGB pixels; mtmd resizes them to the projector's input.
"""

from __future__ import annotations

import ctypes
import hashlib
import re
import threading
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from edgeai.errors import BadInput, EdgeAIError
from edgeai.types import Message


def has_images(prompt) -> bool:
    return isinstance(prompt, list) and any(m.images for m in prompt)


def with_markers(messages: Sequence[Message], marker: str) -> list[Message]:
    """Each message's images as media markers before its text (LLaVA's and llama-server's order
    for an attachment without a position), in the order the images are given."""
    return [replace(m, content=marker * len(m.images) + ("\n" if m.images else "") + m.content)
            if m.images else m for m in messages]


def image_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_token(key: str) -> int:
    """The id an image's positions carry in a `MediaPrompt`: negative (no vocabulary id is), the
    same for the same bytes, different (to 1 in 2^28) for different ones."""
    return -1 - int(key[:7], 16)


@dataclass(frozen=True)
class Segment:
    start: int  # positions in MediaPrompt.tokens
    end: int
    chunk: int | None  # an mtmd image chunk (owned by the prompt's chunk list); None: text
    key: str = ""  # the image's SHA-256


class MediaPrompt:
    """A prompt as mtmd chunks: the rendered `text` (with markers), `tokens` (text ids, image
    positions as `image_token`s) and the `segments` they form. Owns the chunk list: `close()`
    frees it."""

    def __init__(self, mtmd, chunks, text: str, tokens: list[int], segments: list[Segment]) -> None:
        self._mtmd, self._chunks = mtmd, chunks
        self.text, self.tokens, self.segments = text, tokens, segments

    @property
    def image_tokens(self) -> int:
        return sum(s.end - s.start for s in self.segments if s.chunk is not None)

    def reusable(self, keep: int) -> int:
        """`keep` cut back to the start of an image it would end inside."""
        for seg in self.segments:
            if seg.chunk is not None and seg.start < keep < seg.end:
                return seg.start
        return keep

    def close(self) -> None:
        if self._chunks is not None:
            self._mtmd.mtmd_input_chunks_free(self._chunks)
            self._chunks = None

    def __del__(self) -> None:
        self.close()


def check_projector(path: str | Path) -> Path:
    """`path` as a vision projector GGUF (`--mmproj`), checked from its header alone (quick, no
    llama.cpp): it exists, is a GGUF file, is whole, and has a vision encoder. Whether it fits
    the text model only mtmd can tell, when it loads. One-line `BadInput`s."""
    from edgeai.errors import ModelFormatError
    from edgeai.gguf_info import read_header

    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise BadInput(f"the projector (--mmproj) {path} {what}",
                       "pass the mmproj-*.gguf file published with the model")
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise BadInput(f"cannot read the projector {path}: {exc.strerror or exc}") from None
    if magic != b"GGUF":
        raise BadInput(f"{path.name} is not a GGUF file, so not a projector (--mmproj)",
                       "pass the mmproj-*.gguf file published with the model")
    try:
        header = read_header(path)
    except ModelFormatError as exc:  # truncated, or a value type this reader does not know
        message = exc.message.removeprefix("GGUF file ") if exc.message.startswith("GGUF file ") \
            else f"{path.name} cannot be read: {exc.message}"
        raise BadInput(f"the projector {message}", "download it again") from None
    if header.architecture != "clip":
        raise BadInput(f"{path.name} is a model GGUF ({header.architecture or 'no architecture'}), "
                       "not a vision projector",
                       "pass the model as --model and its mmproj-*.gguf as --mmproj")
    if not header.get("clip.has_vision_encoder"):
        raise BadInput(f"{path.name} has no vision encoder (no clip.has_vision_encoder key; "
                       "audio-only projectors are not supported)")
    return path


# mtmd's log callback: everything on to llama-cpp-python's logger (which the backend keeps at
# errors only), error lines also kept while a projector loads so its refusal can say why
_ERROR = 4  # ggml_log_level's GGML_LOG_LEVEL_ERROR
_log_state: dict = {"callback": None, "errors": None}
_log_lock = threading.Lock()
_load_lock = threading.Lock()  # one projector load at a time: the kept errors are that load's


def _route_logs(mtmd_cpp) -> None:
    """mtmd and its helpers log every image at INFO level through their own loggers: route them
    through llama-cpp-python's (once per process; the callback object must stay alive)."""
    with _log_lock:
        if _log_state["callback"] is not None:
            return
        import llama_cpp
        from llama_cpp._logger import llama_log_callback

        @llama_cpp.llama_log_callback
        def callback(level: int, text: bytes, user_data) -> None:
            errors = _log_state["errors"]
            if errors is not None and level == _ERROR:
                errors.append(text.decode("utf-8", errors="replace"))
            llama_log_callback(level, text, user_data)

        _log_state["callback"] = callback
        mtmd_cpp.mtmd_log_set(callback, ctypes.c_void_p(0))
        mtmd_cpp.mtmd_helper_log_set(callback, ctypes.c_void_p(0))


@contextmanager
def _errors_logged():
    """The error lines mtmd logs while the block runs (one load at a time)."""
    errors: list[str] = []
    with _load_lock:
        _log_state["errors"] = errors
        try:
            yield errors
        finally:
            _log_state["errors"] = None


def _cause(errors: list[str]) -> str:
    """The first error line mtmd logged, without its function-name prefixes:
    'mtmd_init_from_file: error: mismatch between text model (n_embd = 64) and mmproj (n_embd = 32)'
    -> 'mismatch between text model (n_embd = 64) and mmproj (n_embd = 32)'."""
    for line in errors:
        line = line.strip().splitlines()[0] if line.strip() else ""
        line = re.sub(r"^(\w+: )+", "", line).removeprefix("error: ").strip()
        if line:
            return line
    return ""


class Projector:
    """An mmproj loaded against a text model: `prompt` tokenizes, `eval_image` evaluates."""

    def __init__(self, lib, model, path: str | Path, *, threads: int, use_gpu: bool) -> None:
        from llama_cpp import mtmd_cpp

        path = check_projector(path)
        self._mtmd, self._lib = mtmd_cpp, lib
        _route_logs(mtmd_cpp)
        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu = use_gpu
        params.n_threads = threads
        params.print_timings = False
        params.warmup = False  # the first image pays for the graph; loading stays quick
        from llama_cpp._utils import suppress_stdout_stderr

        with _errors_logged() as errors, suppress_stdout_stderr(disable=False):
            # clip.cpp's load log stays off the terminal; its errors are kept for the message
            ctx = mtmd_cpp.mtmd_init_from_file(str(path).encode(), model.model, params)
        if not ctx:
            # mtmd logs the cause (a width that does not match the text model, an unknown
            # projector type, a missing tensor) and returns NULL: the first error line says it
            cause = _cause(errors)
            raise BadInput(f"llama.cpp could not load the projector {path.name}"
                           + (f": {cause}" if cause else ""),
                           "pass the mmproj made for this model (the file published beside its GGUF)")
        self._ctx = ctx
        if not mtmd_cpp.mtmd_support_vision(ctx):
            self.close()
            raise BadInput(f"{path.name} has no vision encoder (audio-only projectors are not supported)")
        if mtmd_cpp.mtmd_decode_use_mrope(ctx):
            # M-RoPE models (Qwen2-VL family) need 4-D positions for text after an image too;
            # the backend's own batch writes 1-D positions
            self.close()
            raise BadInput(f"{path.name} is an M-RoPE projector (Qwen2-VL family), which edgeai's "
                           "llama.cpp decode path does not support yet")
        self.marker = mtmd_cpp.mtmd_default_marker().decode()
        self.path = path

    def close(self) -> None:
        if getattr(self, "_ctx", None):
            self._mtmd.mtmd_free(self._ctx)
            self._ctx = None

    def prompt(self, text: str, images: Iterable[Path], *, add_special: bool) -> MediaPrompt:
        """`text` (with one marker per image, in order) and the images as mtmd chunks."""
        m = self._mtmd
        bitmaps = [self._bitmap(Path(p)) for p in images]
        chunks = m.mtmd_input_chunks_init()
        try:
            encoded = text.encode("utf-8")
            inp = m.mtmd_input_text(encoded, len(encoded), add_special, True)
            array = (m.mtmd_bitmap_p_ctypes * max(len(bitmaps), 1))(*[b for b, _ in bitmaps])
            code = m.mtmd_tokenize(self._ctx, chunks, ctypes.byref(inp), array, len(bitmaps))
            if code == 1:
                raise BadInput(f"the prompt has {text.count(self.marker)} media markers for "
                               f"{len(bitmaps)} images", f"do not write {self.marker} in a message")
            if code != 0:
                raise BadInput(f"llama.cpp could not preprocess the images (mtmd_tokenize returned {code})")
            tokens, segments = self._flatten(chunks, [key for _, key in bitmaps])
        except BaseException:
            m.mtmd_input_chunks_free(chunks)
            raise
        finally:
            for bitmap, _ in bitmaps:
                m.mtmd_bitmap_free(bitmap)  # the chunks hold their own preprocessed copies
        if segments and segments[-1].chunk is not None:
            m.mtmd_input_chunks_free(chunks)
            raise BadInput("the prompt ends in an image: there is no text position to answer from")
        return MediaPrompt(m, chunks, text, tokens, segments)

    def _bitmap(self, path: Path):
        from edgeai.vision.image import open_image

        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BadInput(f"cannot read image {path}: {exc.strerror or exc}") from None
        image = open_image(path).image  # RGB, oriented, within the pixel cap; one-line errors
        pixels = image.tobytes()
        buf = (ctypes.c_uint8 * len(pixels)).from_buffer_copy(pixels)
        bitmap = self._mtmd.mtmd_bitmap_init(image.width, image.height, buf)
        if not bitmap:
            raise EdgeAIError(f"llama.cpp could not take the pixels of {path.name}")
        key = image_key(data)
        self._mtmd.mtmd_bitmap_set_id(bitmap, key.encode())
        return bitmap, key

    def _flatten(self, chunks, keys: list[str]) -> tuple[list[int], list[Segment]]:
        m = self._mtmd
        tokens: list[int] = []
        segments: list[Segment] = []
        for i in range(m.mtmd_input_chunks_size(chunks)):
            chunk = m.mtmd_input_chunks_get(chunks, i)
            kind = m.mtmd_input_chunk_get_type(chunk)
            start = len(tokens)
            if kind == m.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n = ctypes.c_size_t()
                ids = m.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                tokens.extend(ids[k] for k in range(n.value))
                segments.append(Segment(start, len(tokens), None))
            elif kind == m.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                chunk_id = m.mtmd_input_chunk_get_id(chunk)
                key = chunk_id.decode() if chunk_id else (keys[0] if keys else "")
                # positions, not embeddings: equal for every non-M-RoPE model (refused at load)
                tokens.extend([image_token(key)] * m.mtmd_input_chunk_get_n_pos(chunk))
                segments.append(Segment(start, len(tokens), chunk, key))
            else:
                raise BadInput("audio input is not supported by the llama.cpp backend")
        return tokens, segments

    def eval_image(self, ctx, chunk, n_past: int, seq: int, n_batch: int) -> int:
        """Encode one image chunk and decode its embeddings into `seq` from position `n_past`;
        return the new position."""
        m = self._mtmd
        new_n_past = self._lib.llama_pos(n_past)
        code = m.mtmd_helper_eval_chunk_single(self._ctx, ctx, chunk, n_past, seq, n_batch, False,
                                               ctypes.byref(new_n_past))
        if code != 0:
            raise EdgeAIError(f"llama.cpp could not evaluate an image (mtmd returned {code}"
                              f"{': no room in the KV cache' if code == 1 else ''})")
        return int(new_n_past.value)
