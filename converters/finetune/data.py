"""Fine-tuning data: JSONL records in, token sequences with per-token loss masks out.

The boundary: this module reads and validates the user's files (a .jsonl file, or a folder with
train.jsonl and optional valid.jsonl / test.jsonl), detects the one format they share (chat
`messages`, ShareGPT `conversations`, `prompt`/`completion`, plain `text`), renders records with
the base's chat template, marks which tokens are training targets, truncates to the sequence
limit (counting what it cut), carves a seeded valid split when none is given, and hashes the
files. It knows nothing of models, batches or training; batches.py turns `Example`s into arrays.

Every mistake in the data is a one-line `BadInput` naming the file and line: `train.jsonl:7: why`.

Masks: a token is a target when the model should learn to produce it. By default that is every
assistant turn of a record (each turn's text plus the template's end-of-turn token, so the tuned
model learns to stop); `train_on_prompt` makes every token a target. The first token of a
sequence is never a target: nothing before it predicts it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeai.errors import BadInput

SPLITS = ("train", "valid", "test")
FORMATS = ("chat", "sharegpt", "completion", "text")
ROLES = ("system", "user", "assistant")
# ShareGPT speakers -> chat roles ("user"/"assistant" too: many ShareGPT exports mix them in)
_SHAREGPT_TO_CHAT = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                     "assistant": "assistant"}


@dataclass(frozen=True)
class Example:
    tokens: tuple[int, ...]
    mask: tuple[bool, ...]  # len == len(tokens); True where the token is a training target


@dataclass
class Dataset:
    train: list[Example]
    valid: list[Example]
    test: list[Example]
    format: str  # "chat" | "sharegpt" | "completion" | "text"
    sha256: str  # over the data files' bytes, in name order
    files: list[str]
    truncated: int  # examples cut to max_seq_len (a warning, not an error)
    longest: int  # the longest example before truncation, in tokens
    train_tokens: int
    valid_carved: bool  # valid was carved off train (seeded) because none was given


@dataclass(frozen=True)
class _Record:
    """One validated record and where it came from (for line-numbered errors later on)."""

    file: str
    line: int
    format: str
    data: dict

    def where(self) -> str:
        return f"{self.file}:{self.line}"


# ---- reading and validating ---------------------------------------------------------------------


def data_files(path: Path) -> dict[str, Path]:
    """split -> file for PATH: a .jsonl file is the train split; a folder holds train.jsonl and more."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"data not found: {path}")
    if path.is_file():
        return {"train": path}
    files = {split: path / f"{split}.jsonl" for split in SPLITS if (path / f"{split}.jsonl").is_file()}
    if "train" not in files:
        raise BadInput(f"{path} has no train.jsonl (a data folder holds train.jsonl, "
                       "and optionally valid.jsonl and test.jsonl)")
    return files


def detect_format(record: dict) -> str | None:
    """The format one record is written in, or None when it is none of the four."""
    if "messages" in record:
        return "chat"
    if "conversations" in record:
        return "sharegpt"
    if "prompt" in record and "completion" in record:
        return "completion"
    if "text" in record:
        return "text"
    return None


def _lines(path: Path):
    """(line number, text) for each non-blank line; bytes that are not UTF-8 name their line."""
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):  # a BOM some editors write; JSON itself never starts so
        raw = raw[3:]
    for number, chunk in enumerate(raw.split(b"\n"), start=1):
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadInput(f"{path.name}:{number}: not UTF-8 (byte 0x{chunk[exc.start]:02x} "
                           f"at column {exc.start + 1})") from None
        if text.strip():
            yield number, text


def _check_messages(where: str, messages: Any, *, key: str, role_key: str, text_key: str,
                    roles: dict[str, str]) -> None:
    if not isinstance(messages, list) or not messages:
        raise BadInput(f"{where}: `{key}` must be a non-empty list of turns")
    learned = False
    for n, turn in enumerate(messages, start=1):
        if not isinstance(turn, dict):
            raise BadInput(f"{where}: turn {n} of `{key}` is not an object")
        role = turn.get(role_key)
        if role not in roles:
            allowed = ", ".join(roles)
            raise BadInput(f"{where}: turn {n} has unknown {role_key} {role!r} (expected one of {allowed})")
        if not isinstance(turn.get(text_key), str):
            raise BadInput(f"{where}: turn {n}'s `{text_key}` is not a string")
        learned = learned or roles[role] == "assistant"
    if not learned:
        raise BadInput(f"{where}: no assistant turn to learn from")


def _check(where: str, record: Any) -> str:
    """Validate one record's structure; return its format."""
    if not isinstance(record, dict):
        raise BadInput(f"{where}: not a JSON object")
    fmt = detect_format(record)
    if fmt == "chat":
        _check_messages(where, record["messages"], key="messages", role_key="role", text_key="content",
                        roles={r: r for r in ROLES})
        tools = record.get("tools")
        if tools is not None and not isinstance(tools, list):
            raise BadInput(f"{where}: `tools` must be a list")
    elif fmt == "sharegpt":
        _check_messages(where, record["conversations"], key="conversations", role_key="from",
                        text_key="value", roles=_SHAREGPT_TO_CHAT)
    elif fmt == "completion":
        for key in ("prompt", "completion"):
            if not isinstance(record[key], str):
                raise BadInput(f"{where}: `{key}` is not a string")
    elif fmt == "text":
        if not isinstance(record["text"], str):
            raise BadInput(f"{where}: `text` is not a string")
        if not record["text"].strip():
            raise BadInput(f"{where}: `text` is empty")
    else:
        raise BadInput(f"{where}: not a fine-tuning record (expected `messages`, `conversations`, "
                       "`prompt` and `completion`, or `text`)")
    return fmt


def _read(path: Path) -> dict[str, list[_Record]]:
    """split -> validated records, all of one format (the first record's)."""
    out: dict[str, list[_Record]] = {}
    first: _Record | None = None
    for split, file in data_files(path).items():
        records = []
        for number, text in _lines(file):
            where = f"{file.name}:{number}"
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise BadInput(f"{where}: not valid JSON ({exc.msg})") from None
            record = _Record(file.name, number, _check(where, obj), obj)
            if first is None:
                first = record
            elif record.format != first.format:
                raise BadInput(f"{where}: a {record.format} record, but the data's first record "
                               f"({first.where()}) is {first.format}; use one format in all files")
            records.append(record)
        if not records:
            extra = " (delete it to carve a valid split off train)" if split == "valid" else ""
            raise BadInput(f"{file.name}: no records, the dataset is empty{extra}")
        out[split] = records
    return out


def read_records(path: Path) -> dict[str, list[dict]]:
    """split ("train"; "valid", "test" where given) -> its records, validated (BadInput "FILE:LINE: why")."""
    return {split: [r.data for r in records] for split, records in _read(path).items()}


def as_messages(record: dict) -> list[dict] | None:
    """A chat, ShareGPT or prompt/completion record as chat messages; None for a `text` record."""
    fmt = detect_format(record)
    if fmt == "chat":
        return [{"role": m["role"], "content": m["content"]} for m in record["messages"]]
    if fmt == "sharegpt":
        return [{"role": _SHAREGPT_TO_CHAT[m["from"]], "content": m["value"]}
                for m in record["conversations"]]
    if fmt == "completion":
        return [{"role": "user", "content": record["prompt"]},
                {"role": "assistant", "content": record["completion"]}]
    return None


def data_sha256(path: Path) -> str:
    """sha256 over the data files' bytes, in name order."""
    digest = hashlib.sha256()
    for file in sorted(data_files(path).values(), key=lambda f: f.name):
        digest.update(file.read_bytes())
    return digest.hexdigest()


# ---- rendering and masks ------------------------------------------------------------------------


def _has_chat_template(tokenizer) -> bool:
    has = getattr(tokenizer, "has_chat_template", None)  # mlx-lm's TokenizerWrapper
    if isinstance(has, bool):
        return has
    return getattr(tokenizer, "chat_template", None) is not None


def _no_template(fmt: str) -> BadInput:
    return BadInput(f"the base model has no chat template, so {fmt} records cannot be rendered; "
                    "write the data as `text` records (each trained on whole) or use a chat model")


def _ids(out: Any) -> list[int]:
    """apply_chat_template's result as a list of ids (a raw HF tokenizer may return a mapping)."""
    if hasattr(out, "keys") and "input_ids" in out:
        out = out["input_ids"]
    return [int(t) for t in out]


def _render(tokenizer, messages: list[dict], *, generation_prompt: bool, tools=None) -> list[int]:
    kwargs = {"add_generation_prompt": generation_prompt, "return_dict": False}
    if tools is not None:
        kwargs["tools"] = tools
    return _ids(tokenizer.apply_chat_template(messages, **kwargs))


def encode_prompt(tokenizer, messages: list[dict]) -> list[int]:
    """The chat template applied to MESSAGES plus the generation prompt (what a model answers from)."""
    if not _has_chat_template(tokenizer):
        raise _no_template("chat")
    return _render(tokenizer, messages, generation_prompt=True)


def _eos_ids(tokenizer) -> set[int]:
    ids = set(getattr(tokenizer, "eos_token_ids", None) or ())
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def _encode_text(tokenizer, text: str) -> tuple[list[int], list[bool]]:
    tokens = [int(t) for t in tokenizer.encode(text)]
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is not None and (not tokens or tokens[-1] != eos):
        tokens.append(eos)  # so the model learns where a document ends, as mlx-lm's TextDataset does
    return tokens, [False] + [True] * (len(tokens) - 1)


def _encode_chat(tokenizer, record: _Record, train_on_prompt: bool) -> tuple[list[int], list[bool]]:
    messages = as_messages(record.data)
    tools = record.data.get("tools") if record.format == "chat" else None
    try:
        tokens = _render(tokenizer, messages, generation_prompt=False, tools=tools)
        if train_on_prompt:
            return tokens, [False] + [True] * (len(tokens) - 1)
        mask = [False] * len(tokens)
        eos = _eos_ids(tokenizer)
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            # The turn's span: from after the conversation-so-far plus the assistant header to the
            # end of the conversation through this turn. Both renders must be prefixes of the whole
            # one, or the spans would point at the wrong tokens.
            before = _render(tokenizer, messages[:i], generation_prompt=True, tools=tools)
            through = _render(tokenizer, messages[: i + 1], generation_prompt=False, tools=tools)
            if not (len(before) <= len(through) <= len(tokens) and tokens[: len(through)] == through
                    and through[: len(before)] == before):
                raise BadInput(f"{record.where()}: the chat template renders this conversation differently "
                               f"turn by turn (at turn {i + 1}), so its assistant turns cannot be masked; "
                               "use --train-on-prompt to train on the whole conversation")
            start, end = len(before), len(through)
            # Keep the end-of-turn token, drop what the template writes after it (ChatML's newline):
            # generation stops at the end-of-turn token, so nothing after it is ever produced.
            ends = [k for k in range(start, end) if tokens[k] in eos]
            if ends:
                end = ends[-1] + 1
            for k in range(max(start, 1), end):
                mask[k] = True
        return tokens, mask
    except BadInput:
        raise
    except Exception as exc:  # a template's own refusal (jinja's raise_exception), in one line
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadInput(f"{record.where()}: the chat template cannot render this record ({why})") from None


def _encode(tokenizer, record: _Record, train_on_prompt: bool) -> Example:
    if record.format == "text":
        tokens, mask = _encode_text(tokenizer, record.data["text"])
    else:
        tokens, mask = _encode_chat(tokenizer, record, train_on_prompt)
    return Example(tuple(tokens), tuple(mask))


def _truncate(example: Example, max_seq_len: int) -> Example:
    if len(example.tokens) <= max_seq_len:
        return example
    return Example(example.tokens[:max_seq_len], example.mask[:max_seq_len])


def _carve(n: int, seed: int, fraction: float) -> list[int]:
    """Indices of train records to hold out as valid: seeded, at least 1, leaving at least 1."""
    if n < 2 or fraction <= 0:
        return []
    import numpy as np

    k = min(max(1, round(n * fraction)), n - 1)
    return sorted(int(i) for i in np.random.default_rng(seed).permutation(n)[:k])


def load_dataset(path: Path, tokenizer, *, max_seq_len: int, train_on_prompt: bool = False,
                 seed: int = 0, valid_fraction: float = 0.1) -> Dataset:
    """Read, validate, render and mask the data at PATH for TOKENIZER (mlx-lm's TokenizerWrapper)."""
    if max_seq_len < 2:
        raise BadInput(f"--max-seq-len must be at least 2, not {max_seq_len}")
    if not 0 <= valid_fraction < 1:
        raise BadInput(f"the valid fraction must be in [0, 1), not {valid_fraction}")
    path = Path(path)
    records = _read(path)
    fmt = records["train"][0].format
    if fmt != "text" and not _has_chat_template(tokenizer):
        raise _no_template(fmt)

    encoded = {split: [_encode(tokenizer, r, train_on_prompt) for r in recs]
               for split, recs in records.items()}
    every = [e for examples in encoded.values() for e in examples]
    longest = max(len(e.tokens) for e in every)
    truncated = sum(len(e.tokens) > max_seq_len for e in every)
    cut = {split: [_truncate(e, max_seq_len) for e in examples] for split, examples in encoded.items()}

    train, valid, carved = cut["train"], cut.get("valid"), False
    if valid is None:
        held = set(_carve(len(train), seed, valid_fraction))
        valid = [e for i, e in enumerate(train) if i in held]
        train = [e for i, e in enumerate(train) if i not in held]
        carved = bool(held)
    files = sorted(data_files(path).values(), key=lambda f: f.name)
    return Dataset(train=train, valid=valid, test=cut.get("test", []), format=fmt,
                   sha256=data_sha256(path), files=[f.name for f in files], truncated=truncated,
                   longest=longest, train_tokens=sum(len(e.tokens) for e in train), valid_carved=carved)
