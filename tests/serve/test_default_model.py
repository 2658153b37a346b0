"""`edgeai serve` on the real default model (Qwen2.5-Coder-0.5B through llama.cpp), with the
official OpenAI client: streaming, JSON schema, a forced tool call, logprobs, embeddings that
rank like `rag query`, continuous batching, a client that leaves, and kill -9 with --store."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time

import httpx
import pytest
from edgeai_testing.serve import serve_command, serving

from edgeai.config import Settings

openai = pytest.importorskip("openai")
pytestmark = pytest.mark.model

MODEL = "qwen2.5-coder-0.5b-instruct"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city.",
    "parameters": {"type": "object", "required": ["city", "unit"],
                   "properties": {"city": {"type": "string"},
                                  "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}}}}
PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}


@pytest.fixture(scope="module")
def batched_backend(default_gguf):
    """The default model with 4 sequences of 1024 tokens in one context (what --parallel 4 loads)."""
    from edgeai.runtime.llamacpp import LlamaCppBackend
    from edgeai.types import LoadOptions, ModelSpec

    backend = LlamaCppBackend()
    backend.load(ModelSpec(id="qwen2.5-coder-0.5b-instruct", artifacts={"gguf": default_gguf}),
                 LoadOptions(n_ctx=4 * 1024, n_seq=4, n_threads=2))
    yield backend
    backend.close()


@pytest.fixture
def server(batched_backend, edgeai_home):
    with serving(batched_backend, Settings(home=edgeai_home), model_id=MODEL,
                 window=1024) as served:
        yield served


def api(served):
    return openai.OpenAI(base_url=served.url, api_key="none", max_retries=0, timeout=120)


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_a_streamed_and_a_whole_completion(server):
    client = api(server)
    whole = client.chat.completions.create(model=MODEL, temperature=0, max_tokens=24,
                                           messages=ask("What is the capital of France? One word."))
    assert "Paris" in whole.choices[0].message.content
    parts = list(client.chat.completions.create(model=MODEL, temperature=0, max_tokens=24,
                                                stream=True, stream_options={"include_usage": True},
                                                messages=ask("What is the capital of France? One word.")))
    assert "Paris" in "".join(p.choices[0].delta.content or "" for p in parts if p.choices)
    assert parts[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def test_a_json_schema_reply_validates(server):
    jsonschema = pytest.importorskip("jsonschema")
    reply = api(server).chat.completions.create(
        model=MODEL, temperature=0, max_tokens=60,
        messages=ask("Invent a person and describe them."),
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}})
    jsonschema.validate(json.loads(reply.choices[0].message.content), PERSON)


def test_tool_choice_required_returns_a_valid_tool_call(server):
    jsonschema = pytest.importorskip("jsonschema")
    reply = api(server).chat.completions.create(
        model=MODEL, temperature=0, max_tokens=80, tools=[WEATHER],
        tool_choice="required", messages=ask("How warm is it in Oslo right now?"))
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, WEATHER["function"]["parameters"])
    assert "oslo" in arguments["city"].lower()
    streamed = list(api(server).chat.completions.create(
        model=MODEL, temperature=0, max_tokens=80, tools=[WEATHER], stream=True,
        tool_choice="required", messages=ask("How warm is it in Oslo right now?")))
    calls = [c for p in streamed if p.choices for c in p.choices[0].delta.tool_calls or ()]
    assert [c.function.name for c in calls] == ["get_weather"]
    assert json.loads(calls[0].function.arguments) == arguments
    assert streamed[-1].choices[0].finish_reason == "tool_calls"


def test_logprobs_cover_every_token_of_the_reply(server):
    reply = api(server).chat.completions.create(model=MODEL, temperature=0, max_tokens=12,
                                                logprobs=True, top_logprobs=3, messages=ask("Say hello."))
    content = reply.choices[0].logprobs.content
    assert "".join(e.token for e in content) == reply.choices[0].message.content
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].logprob >= entry.logprob - 1e-6  # greedy: the chosen is the best


def test_embeddings_rank_the_corpus_as_rag_query_does(server, edgeai_home, tmp_path):
    np = pytest.importorskip("numpy")
    pytest.importorskip("tokenizers")
    from edgeai_testing.corpus import QUESTIONS, build_corpus

    from edgeai.rag import api as rag_api
    from edgeai.rag.store import Collection, collection_path

    settings = Settings(home=edgeai_home)
    corpus = build_corpus(tmp_path / "docs")
    rag_api.ingest(settings, "docs", [corpus.root])
    with Collection.open(collection_path(settings, "docs"), None, create=False) as collection:
        ids, matrix = collection.matrix()
        files = {c.id: c.file for c in collection.chunks(list(ids))}
    questions = [q.question for q in QUESTIONS]
    data = api(server).embeddings.create(model="minilm", input=questions).data
    agree = 0
    for question, item in zip(questions, data, strict=True):
        vector = np.asarray(item.embedding, dtype=np.float32)
        assert abs(float(np.linalg.norm(vector)) - 1) < 1e-3
        by_api = files[int(ids[int(np.argmax(matrix @ vector))])]
        by_rag = rag_api.search(settings, "docs", question, k=1)[0].file
        agree += by_api == by_rag
    assert agree >= 0.9 * len(questions), f"top file agreed on {agree} of {len(questions)} questions"


def test_four_clients_decode_together(server):
    results: list[str] = []

    def one(i: int) -> None:
        reply = api(server).chat.completions.create(model=MODEL, max_tokens=24, temperature=0,
                                                    messages=ask(f"Count from {i} to {i + 5}."))
        results.append(reply.choices[0].message.content)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(results)
    metrics = httpx.get(f"{server.root}/metrics", timeout=10).text
    values = dict(line.rsplit(" ", 1) for line in metrics.splitlines()
                  if line.startswith("edgeai_batch_size_"))
    assert float(values["edgeai_batch_size_sum"]) / float(values["edgeai_batch_size_count"]) > 1


def test_a_client_killed_mid_stream_frees_its_sequence(default_gguf, edgeai_home):
    """With one sequence, the next request can only start once the first one's is freed."""
    from edgeai.runtime.llamacpp import LlamaCppBackend
    from edgeai.types import LoadOptions, ModelSpec

    backend = LlamaCppBackend()
    backend.load(ModelSpec(id="qwen2.5-coder-0.5b-instruct", artifacts={"gguf": default_gguf}),
                 LoadOptions(n_ctx=2048, n_seq=1, n_threads=2))
    try:
        with serving(backend, Settings(home=edgeai_home), model_id=MODEL,
                     window=2048) as served:
            body = {"model": MODEL, "stream": True, "max_tokens": 1500,
                    "ignore_eos": True, "messages": ask("Write a very long story.")}
            with httpx.stream("POST", f"{served.url}/chat/completions", json=body, timeout=60) as reply:
                for i, _ in enumerate(reply.iter_lines()):
                    if i == 6:
                        break  # the connection closes here, ~1400 tokens (a minute) before the end
            start = time.perf_counter()
            again = api(served).chat.completions.create(model=MODEL, max_tokens=4,
                                                        messages=ask("Say yes."), timeout=30)
            assert again.choices[0].message.content
            assert time.perf_counter() - start < 30
    finally:
        backend.close()


def test_kill_9_loses_no_stored_conversation(edgeai_home):
    with serve_command("--store", "--ctx", "1024", "--parallel", "2") as served:
        client = api(served)
        done = client.chat.completions.create(model=MODEL, temperature=0, max_tokens=8,
                                              messages=ask("Name a colour."))
        follow = [*ask("Name a colour."), {"role": "assistant", "content": done.choices[0].message.content},
                  *ask("And another one?")]
        client.chat.completions.create(model=MODEL, max_tokens=8, messages=follow)
        stream = client.chat.completions.create(model=MODEL, max_tokens=500, stream=True,
                                                messages=ask("A story."), extra_body={"ignore_eos": True})
        next(iter(stream))
        os.kill(served.process.pid, signal.SIGKILL)  # mid-reply
        served.process.wait(timeout=10)
    db = sqlite3.connect(edgeai_home / "chat.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = db.execute("SELECT c.title, m.role, m.content FROM messages m JOIN conversations c "
                          "ON c.id = m.conversation_id ORDER BY m.id").fetchall()
    finally:
        db.close()
    assert [r[1] for r in rows] == ["user", "assistant", "user", "assistant"]  # one conversation, continued
    assert rows[0][0] == "Name a colour." and rows[1][2] == done.choices[0].message.content


def test_the_readmes_curl_examples_work_as_written(server):
    """Every `curl` line of the README's Serve section, against this server instead of :8000."""
    import re
    import subprocess
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Serve", 1)[1].split("\n## ", 1)[0]
    commands = [line for line in section.splitlines() if line.startswith("curl ")]
    assert len(commands) >= 4
    for command in commands:
        run = subprocess.run(["bash", "-c", command.replace("http://127.0.0.1:8000", server.root)],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, (command, run.stderr)
        if "stream" in command and '"stream": true' in command:
            events = [json.loads(x[6:]) for x in run.stdout.splitlines() if x.startswith("data: {")]
            assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events).strip()
            assert run.stdout.rstrip().endswith("data: [DONE]")
        else:
            body = json.loads(run.stdout)
            assert "error" not in body, (command, body)
            assert re.search(r"\w", json.dumps(body))


def test_a_short_request_is_not_kept_behind_a_long_prompt(batched_backend, edgeai_home):
    """A long document arrives first; a short question right after still gets its answer first:
    the prompt slices of a step go to the shortest prompts (and the document keeps reading)."""
    from edgeai_testing.corpus import PDF_PAGES

    document = " ".join(text for _, text in PDF_PAGES) * 3
    with serving(batched_backend, Settings(home=edgeai_home), model_id=MODEL, window=1024) as served:
        firsts: dict[str, float] = {}

        def ask_and_time(name: str, text: str) -> None:
            stream = api(served).chat.completions.create(model=MODEL, max_tokens=8, stream=True,
                                                         messages=ask(text))
            for part in stream:
                if part.choices and part.choices[0].delta.content:
                    firsts.setdefault(name, time.perf_counter())

        long = threading.Thread(target=ask_and_time, args=("long", f"Summarize: {document[:3000]}"))
        long.start()
        time.sleep(0.3)  # the document is being read when the question comes
        ask_and_time("short", "Say yes.")
        long.join()
    assert firsts["short"] < firsts["long"]
