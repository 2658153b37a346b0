"""How the chat app loads a model: the real loader behind `EdgeChatApp(loader=)`, with the chat
surface's threads and wait policy (one CPU core left to the UI by default).

Boundary: a request (catalog id, .gguf path, or an OpenAI-compatible URL such as
`http://127.0.0.1:8080/v1#model`) in, a loaded backend and its spec out, in the app's load
worker. It stays in the app rather than beside `runtime.loaded.LoadedModel` because leaving a
core free is a UI concern: `edgeai run` and `chat --plain` want every core (runtime/threads.py). Heavy imports
(llama_cpp) happen inside the loader, never at import.
"""

from __future__ import annotations

from collections.abc import Callable

from edgeai.config import Settings
from edgeai.runtime.base import Backend
from edgeai.runtime.threads import CHAT, for_surface
from edgeai.types import ModelSpec

Progress = Callable[[int, int], None]  # (bytes advanced, total bytes) while weights are assembled
Loader = Callable[[str, str | None, Progress | None], tuple[Backend, ModelSpec]]


def ui_settings(settings: Settings) -> Settings:
    """The chat surface's threads and OpenMP wait policy (`chat_threads`, `chat_wait_policy`;
    by default all cores but one, sleeping between calls): llama.cpp's spinning threads would
    otherwise starve typing and scrolling on small machines. The headless `threads` a tune
    wrote for `run` and the server do not apply here."""
    return for_surface(settings, CHAT)


def default_loader(settings: Settings, chat_template: str | None = None,
                   adapter: tuple[str, str] | None = None,
                   mmproj: tuple[str, str] | None = None) -> Loader:
    """The real loader: catalog ids, .gguf paths and OpenAI-compatible URLs, via `load_model`.
    `adapter` = (request, OUT): `chat --adapter OUT` applies that fine-tune whenever the app
    loads that request (its base), and never to another model the user switches to. `mmproj` =
    (request, PATH) likewise: `chat --mmproj PATH` loads that vision projector with that
    request's GGUF (its images then reach the model), never with another model."""
    settings = ui_settings(settings)

    def load(request: str, backend: str | None, progress: Progress | None = None
             ) -> tuple[Backend, ModelSpec]:
        from edgeai.runtime.loader import load_model

        applied = adapter[1] if adapter and request == adapter[0] else None
        projector = mmproj[1] if mmproj and request == mmproj[0] else None
        return load_model(settings, request, backend, chat_template, progress=progress, chat=True,
                          draft="auto", adapter=applied,  # drafting where the tune measured a win
                          mmproj=projector)

    return load
