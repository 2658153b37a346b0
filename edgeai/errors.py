"""The EdgeAIError family: failures written for the user, mapped to exit codes by the CLI.

`BadInput` (exit 2) is the user's to fix; `EdgeAIError` (exit 1) is a failure of ours or of
the machine. `hint` is an optional second line that says what to do.
"""

from __future__ import annotations


class EdgeAIError(Exception):
    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


def describe(exc: BaseException) -> str:
    """One line for a UI: our message and hint, or the type and text of anything else."""
    if isinstance(exc, EdgeAIError):
        return exc.message + (f" (hint: {exc.hint})" if exc.hint else "")
    return f"{type(exc).__name__}: {exc}"


class BadInput(EdgeAIError):
    """Something the user gave us is wrong: an id, a path, a flag value, a file's format."""

    exit_code = 2


class ModelNotFound(BadInput):
    pass


class ModelFormatError(BadInput):
    """A model file that is not what it claims to be (not GGUF, truncated, corrupt)."""


class ContextOverflow(BadInput):
    def __init__(self, prompt_tokens: int, n_ctx: int, hint: str | None = None):
        super().__init__(
            f"prompt is {prompt_tokens} tokens, the context window is {n_ctx}",
            hint or "shorten the prompt or raise --ctx",
        )
        self.prompt_tokens = prompt_tokens
        self.n_ctx = n_ctx


class MissingExtra(EdgeAIError):
    """An optional dependency (an extra, or a weights package) is not installed."""

    def __init__(self, what: str, install: str):
        super().__init__(f"{what} is not installed", f"install it with: {install}")


class BackendUnavailable(EdgeAIError):
    pass
