"""Fine-tuning data: what a user's JSONL becomes (tokens and loss masks), and every way it is refused.

The tokenizer is the tiny Llama checkpoint's (a real BPE with a ChatML template), loaded the way
mlx-lm loads it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from edgeai.converters.finetune.data import encode_prompt, load_dataset, read_records
from edgeai.errors import BadInput

EXAMPLE = Path(__file__).resolve().parents[3] / "converters" / "finetune" / "examples" / "edgeai-facts"
CHAT = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
MULTI = {"messages": [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Which key sets the chat threads?"},
    {"role": "assistant", "content": "The `chat_threads` key."},
    {"role": "user", "content": "In which file?"},
    {"role": "assistant", "content": "In config.toml."},
]}


@pytest.fixture(scope="module")
def tokenizer(tiny_models):
    tokenizer_utils = pytest.importorskip("mlx_lm.tokenizer_utils")
    return tokenizer_utils.load(Path(tiny_models("llama")))


@pytest.fixture(scope="module")
def plain_tokenizer(tiny_models, tmp_path_factory):
    """The same tokenizer with its chat template removed: a base model's."""
    tokenizer_utils = pytest.importorskip("mlx_lm.tokenizer_utils")
    dest = tmp_path_factory.mktemp("plain")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(Path(tiny_models("llama")) / name, dest / name)
    config = json.loads((dest / "tokenizer_config.json").read_text())
    del config["chat_template"]
    (dest / "tokenizer_config.json").write_text(json.dumps(config))
    return tokenizer_utils.load(dest)


def jsonl(path: Path, *records) -> Path:
    """Write RECORDS (dicts, or raw str lines) as JSONL to PATH."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def spans(tokenizer, example) -> list[str]:
    """The decoded runs of consecutive target tokens."""
    runs, run = [], []
    for token, target in zip(example.tokens, example.mask, strict=True):
        if target:
            run.append(token)
        elif run:
            runs, run = runs + [run], []
    return [tokenizer.decode(r) for r in runs + ([run] if run else [])]


# ---- what the data becomes ----------------------------------------------------------------------


def test_every_assistant_turn_of_a_multi_turn_record_is_learned_with_its_end_marker(tokenizer, tmp_path):
    data = load_dataset(jsonl(tmp_path / "d.jsonl", MULTI, CHAT), tokenizer, max_seq_len=512)
    multi = next(e for e in data.train + data.valid if len(e.tokens) > 30)
    assert spans(tokenizer, multi) == ["The `chat_threads` key.<|im_end|>", "In config.toml.<|im_end|>"]
    whole = tokenizer.decode(list(multi.tokens))
    assert "Be brief." in whole and "In which file?" in whole  # the prompts are there, just not targets


def test_the_shipped_example_dataset_learns_exactly_its_answers(tokenizer):
    data = load_dataset(EXAMPLE, tokenizer, max_seq_len=512)
    assert (data.format, len(data.train), len(data.valid), len(data.test)) == ("chat", 38, 12, 5)
    assert not data.valid_carved and data.truncated == 0
    assert data.files == ["test.jsonl", "train.jsonl", "valid.jsonl"]
    records = read_records(EXAMPLE)
    for record, example in zip(records["train"], data.train, strict=True):
        answers = [m["content"] + "<|im_end|>" for m in record["messages"] if m["role"] == "assistant"]
        assert spans(tokenizer, example) == answers
    assert data.train_tokens == sum(len(e.tokens) for e in data.train)


def test_train_on_prompt_makes_every_token_but_the_first_a_target(tokenizer, tmp_path):
    data = load_dataset(jsonl(tmp_path / "d.jsonl", MULTI, MULTI), tokenizer, max_seq_len=512,
                        train_on_prompt=True)
    for example in data.train + data.valid:
        assert example.mask == (False,) + (True,) * (len(example.tokens) - 1)


def test_sharegpt_and_completion_records_become_the_same_chat(tokenizer, tmp_path):
    chat = load_dataset(jsonl(tmp_path / "c.jsonl", MULTI, CHAT), tokenizer, max_seq_len=512, seed=1)
    sharegpt = {"conversations": [{"from": {"user": "human", "assistant": "gpt"}.get(m["role"], m["role"]),
                                   "value": m["content"]} for m in MULTI["messages"]]}
    mixed_speakers = {"conversations": [{"from": "user", "value": "Hi"},
                                        {"from": "assistant", "value": "Hello!"}]}
    share = load_dataset(jsonl(tmp_path / "s.jsonl", sharegpt, mixed_speakers), tokenizer, max_seq_len=512,
                         seed=1)
    assert share.format == "sharegpt"
    assert (share.train, share.valid) == (chat.train, chat.valid)
    completion = load_dataset(jsonl(tmp_path / "p.jsonl", {"prompt": "Hi", "completion": "Hello!"}),
                              tokenizer, max_seq_len=512)
    assert completion.format == "completion"
    assert completion.train == [e for e in chat.train + chat.valid if len(e.tokens) < 30]


def test_text_records_are_trained_on_whole_and_end_with_eos_without_a_template(plain_tokenizer, tmp_path):
    data = load_dataset(jsonl(tmp_path / "t.jsonl", {"text": "edgeai runs models on the edge."}),
                        plain_tokenizer, max_seq_len=512)
    (example,) = data.train
    assert data.format == "text"
    assert data.valid == [] and not data.valid_carved  # one record: nothing to carve, the caller copes
    assert example.tokens[-1] == plain_tokenizer.eos_token_id
    assert example.mask == (False,) + (True,) * (len(example.tokens) - 1)
    assert plain_tokenizer.decode(list(example.tokens[:-1])) == "edgeai runs models on the edge."


def test_chat_data_on_a_base_without_a_template_is_refused_naming_text_records(plain_tokenizer, tmp_path):
    with pytest.raises(BadInput, match=r"base model has no chat template.*`text` records"):
        load_dataset(jsonl(tmp_path / "d.jsonl", CHAT), plain_tokenizer, max_seq_len=512)


def test_long_records_are_truncated_and_counted_not_refused(tokenizer, tmp_path):
    long = {"messages": [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "ok"}]}
    data = load_dataset(jsonl(tmp_path / "d.jsonl", long, CHAT, CHAT, long), tokenizer, max_seq_len=64)
    assert data.truncated == 2 and data.longest > 200
    assert all(len(e.tokens) == len(e.mask) <= 64 for e in data.train + data.valid)


def test_a_seeded_valid_split_is_carved_when_none_is_given(tokenizer, tmp_path):
    path = jsonl(tmp_path / "d.jsonl", *({"text": f"record number {i}"} for i in range(20)))
    first = load_dataset(path, tokenizer, max_seq_len=64, seed=7, valid_fraction=0.2)
    again = load_dataset(path, tokenizer, max_seq_len=64, seed=7, valid_fraction=0.2)
    other = load_dataset(path, tokenizer, max_seq_len=64, seed=8, valid_fraction=0.2)
    assert first.valid_carved and (len(first.train), len(first.valid)) == (16, 4)
    assert (first.train, first.valid) == (again.train, again.valid)
    assert first.valid != other.valid
    assert sorted(first.train + first.valid, key=lambda e: e.tokens) == \
        sorted(other.train + other.valid, key=lambda e: e.tokens)

    two = load_dataset(jsonl(tmp_path / "two.jsonl", CHAT, MULTI), tokenizer, max_seq_len=512)
    assert two.valid_carved and (len(two.train), len(two.valid)) == (1, 1)  # at least one each


def test_the_data_hash_covers_every_file_in_name_order(tokenizer, tmp_path):
    jsonl(tmp_path / "data" / "train.jsonl", CHAT, MULTI)
    jsonl(tmp_path / "data" / "valid.jsonl", CHAT)
    data = load_dataset(tmp_path / "data", tokenizer, max_seq_len=512)
    expected = hashlib.sha256((tmp_path / "data" / "train.jsonl").read_bytes()
                              + (tmp_path / "data" / "valid.jsonl").read_bytes()).hexdigest()
    assert data.sha256 == expected and not data.valid_carved and len(data.valid) == 1
    jsonl(tmp_path / "data" / "valid.jsonl", MULTI)
    assert load_dataset(tmp_path / "data", tokenizer, max_seq_len=512).sha256 != expected


def test_encode_prompt_ends_with_the_assistant_header(tokenizer):
    tokens = encode_prompt(tokenizer, MULTI["messages"][:2])
    assert tokenizer.decode(tokens).endswith(
        "Which key sets the chat threads?<|im_end|>\n<|im_start|>assistant\n")


def test_a_template_that_is_not_prefix_consistent_is_refused_not_masked_wrongly(tiny_models, tmp_path):
    tokenizer_utils = pytest.importorskip("mlx_lm.tokenizer_utils")
    tokenizer = tokenizer_utils.load(Path(tiny_models("llama")))  # a copy of its own to change
    # the turn count up front changes with every turn, so no rendering is a prefix of the next
    tokenizer.chat_template = ("{{ messages | length }} turns\n{% for m in messages %}{{ m['role'] }}: "
                               "{{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}assistant: {% endif %}")
    path = jsonl(tmp_path / "d.jsonl", CHAT)
    with pytest.raises(BadInput, match=r"^d\.jsonl:1: the chat template renders this conversation diff"):
        load_dataset(path, tokenizer, max_seq_len=512)
    assert load_dataset(path, tokenizer, max_seq_len=512, train_on_prompt=True).train  # the way out works


# ---- what is refused, each in one line naming the file and line --------------------------------

MESSAGE = {"role": "user", "content": "Hi"}
BAD = [
    ([CHAT, '{"messages": [{"role": "user" "content": "x"}]}'],
     "train.jsonl:2: not valid JSON (Expecting ',' delimiter)"),
    ([CHAT, "", CHAT, "{"],  # blank lines are skipped but still counted
     "train.jsonl:4: not valid JSON (Expecting property name enclosed in double quotes)"),
    ([CHAT, {"text": "plain"}],
     "train.jsonl:2: a text record, but the data's first record (train.jsonl:1) is chat; "
     "use one format in all files"),
    (["", "   "], "train.jsonl: no records, the dataset is empty"),
    ([{"messages": [MESSAGE, MESSAGE]}], "train.jsonl:1: no assistant turn to learn from"),
    ([{"messages": [MESSAGE, {"role": "bot", "content": "x"}]}],
     "train.jsonl:1: turn 2 has unknown role 'bot' (expected one of system, user, assistant)"),
    ([{"messages": [{"role": "user", "content": ["x"]}, {"role": "assistant", "content": "y"}]}],
     "train.jsonl:1: turn 1's `content` is not a string"),
    ([{"messages": []}], "train.jsonl:1: `messages` must be a non-empty list of turns"),
    ([{"conversations": [{"from": "human", "value": "x"}, {"from": "robot", "value": "y"}]}],
     "train.jsonl:1: turn 2 has unknown from 'robot' (expected one of system, human, user, gpt, assistant)"),
    ([{"conversations": [{"from": "human", "value": "x"}]}],
     "train.jsonl:1: no assistant turn to learn from"),
    ([{"prompt": "x", "completion": 3}], "train.jsonl:1: `completion` is not a string"),
    ([{"text": ""}], "train.jsonl:1: `text` is empty"),
    (["[1, 2]"], "train.jsonl:1: not a JSON object"),
    ([{"input": "x", "output": "y"}], "train.jsonl:1: not a fine-tuning record (expected `messages`, "
     "`conversations`, `prompt` and `completion`, or `text`)"),
]


@pytest.mark.parametrize(("lines", "message"), BAD, ids=[m.split(": ", 1)[1][:30] for _, m in BAD])
def test_bad_records_are_refused_with_their_line(tmp_path, lines, message):
    path = jsonl(tmp_path / "data" / "train.jsonl", *lines)
    for given in (path, path.parent):  # the file itself, or its folder
        with pytest.raises(BadInput) as caught:
            read_records(given)
        assert caught.value.message == message


def test_bytes_that_are_not_utf8_name_their_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(json.dumps(CHAT).encode() + b'\n{"text": "caf\xe9"}\n')
    with pytest.raises(BadInput) as caught:
        read_records(path)
    assert caught.value.message == "train.jsonl:2: not UTF-8 (byte 0xe9 at column 14)"


def test_a_format_differing_in_another_file_names_that_file(tmp_path):
    jsonl(tmp_path / "train.jsonl", CHAT)
    jsonl(tmp_path / "valid.jsonl", CHAT, {"prompt": "x", "completion": "y"})
    with pytest.raises(BadInput) as caught:
        read_records(tmp_path)
    assert caught.value.message == ("valid.jsonl:2: a completion record, but the data's first record "
                                    "(train.jsonl:1) is chat; use one format in all files")


def test_missing_data_is_refused(tmp_path):
    with pytest.raises(BadInput, match=r"^data not found: .*nope\.jsonl$"):
        read_records(tmp_path / "nope.jsonl")
    jsonl(tmp_path / "valid.jsonl", CHAT)
    with pytest.raises(BadInput, match=r"has no train\.jsonl"):
        read_records(tmp_path)


def test_load_dataset_refuses_with_the_same_line(tokenizer, tmp_path):
    path = jsonl(tmp_path / "train.jsonl", CHAT, CHAT, '{"messages": oops}')
    with pytest.raises(BadInput) as caught:
        load_dataset(path, tokenizer, max_seq_len=512)
    assert caught.value.message.startswith("train.jsonl:3: not valid JSON")
    assert "\n" not in caught.value.message


def test_blank_lines_and_a_bom_are_skipped_and_records_come_back_per_split(tmp_path):
    (tmp_path / "train.jsonl").write_bytes(b"\xef\xbb\xbf" + json.dumps(CHAT).encode() + b"\r\n\n  \n"
                                           + json.dumps(MULTI).encode())
    jsonl(tmp_path / "test.jsonl", CHAT)
    assert read_records(tmp_path) == {"train": [CHAT, MULTI], "test": [CHAT]}
