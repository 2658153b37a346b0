"""`edgeai serve --mmproj` (#15) as a user runs it, on a tiny VLM (edgeai_testing/tiny_vlm.py)
through the real llama.cpp and mtmd: an `image_url` part reaches the model itself ("VLM") while
the server keeps batching text requests on its other sequences; a request with images runs
alone once the batch has finished, and the text conversations after it are answered as before
(no prefix reused from the sequence the image used); logprobs with an image are a 400; a bad
--mmproj stops the command with one line."""

from __future__ import annotations

import base64
import threading

import httpx
import pytest
from edgeai_testing.serve import serve_command

pytest.importorskip("llama_cpp")
pytest.importorskip("PIL")

from edgeai_testing.tiny_vlm import build_projector, build_text_model, write_png  # noqa: E402


@pytest.fixture(scope="module")
def vlm(tmp_path_factory):
    d = tmp_path_factory.mktemp("vlm")
    return {"text": build_text_model(d / "text.gguf"), "mmproj": build_projector(d / "mmproj.gguf"),
            "image": write_png(d / "a.png", (200, 30, 30), stripe=(255, 255, 0))}


def ask(served, messages, **extra) -> httpx.Response:
    return httpx.post(f"{served.url}/chat/completions", timeout=60, json={
        "model": "text.gguf", "messages": messages, "max_tokens": 12, "temperature": 0, **extra})


def test_images_reach_the_model_and_text_requests_still_batch(vlm):
    url = "data:image/png;base64," + base64.b64encode(vlm["image"].read_bytes()).decode()
    with_image = [{"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                               {"type": "image_url", "image_url": {"url": url}}]}]
    texts = [[{"role": "user", "content": f"hello number {i}"}] for i in range(3)]
    with serve_command("--model", str(vlm["text"]), "--mmproj", str(vlm["mmproj"]), "--parallel", "2",
                       "--draft", "off") as served:
        before = [ask(served, m).json()["choices"][0]["message"]["content"] for m in texts]
        replies: dict[int, httpx.Response] = {}
        threads = [threading.Thread(target=lambda i=i: replies.update({i: ask(served, texts[i])}))
                   for i in range(3)]
        for thread in threads:
            thread.start()
        seen = ask(served, with_image)
        for thread in threads:
            thread.join()
        assert seen.status_code == 200, seen.text
        assert seen.json()["images"] == ["VLM"] and seen.json()["usage"]["completion_tokens"] == 12
        again = ask(served, with_image).json()
        assert again["choices"][0]["message"]["content"] == seen.json()["choices"][0]["message"]["content"]
        # greedy text replies are the same whether they ran beside the image request or after it
        assert [replies[i].json()["choices"][0]["message"]["content"] for i in range(3)] == before
        assert [ask(served, m).json()["choices"][0]["message"]["content"] for m in texts] == before
        refused = ask(served, with_image, logprobs=True)
        assert refused.status_code == 400 and "logprobs" in refused.json()["error"]["message"]
        served.process.terminate()
        assert "images go to the model" in served.process.stderr.read()


def test_a_job_with_images_runs_alone_and_leaves_no_prefix_to_reuse(vlm):
    """Three jobs at once on two sequences: a text job, one with an image, the text job's prompt
    again. The image job starts after the text job's last token; the third waits behind it (first
    come, first served) and, though the text job's tokens were on the sequence the image used,
    gets the text job's own greedy reply (its prefix was not reused from a sequence that now
    holds the image conversation)."""
    from edgeai.runtime.llamacpp import LlamaCppBackend
    from edgeai.serve.batcher import Batcher, Job
    from edgeai.types import GenParams, LoadOptions, Message, ModelSpec

    backend = LlamaCppBackend()
    backend.load(ModelSpec(id="tiny-vlm", artifacts={"gguf": vlm["text"]}),
                 LoadOptions(n_ctx=1024, n_threads=1, n_seq=2, mmproj_path=str(vlm["mmproj"])))
    batcher = Batcher(backend, window=512)
    greedy = GenParams(max_tokens=64, temperature=0)
    question = [Message("user", "hello there, tell me a story")]
    jobs = {"text": question, "image": [Message("user", "what is this?", images=(vlm["image"],))],
            "again": question}
    events: list[tuple[str, str]] = []
    replies = {name: [] for name in jobs}
    done = threading.Event()

    def deliver(name):
        def hear(event):
            assert event.error is None, event.error
            if not replies[name]:
                events.append((name, "first"))
            replies[name].append(event.chunk.text)
            if event.chunk.finish_reason:
                events.append((name, "done"))
                if sum(kind == "done" for _, kind in events) == len(jobs):
                    done.set()
        return hear

    try:
        for name, prompt in jobs.items():
            batcher.submit(batcher.prepare(Job(prompt, greedy, deliver(name))))
        assert done.wait(120)
    finally:
        batcher.close()
        backend.close()
    at = {event: i for i, event in enumerate(events)}
    assert at["text", "done"] < at["image", "first"] and at["image", "done"] < at["again", "first"], events
    assert "".join(replies["again"]) == "".join(replies["text"])


def test_a_bad_mmproj_stops_serve_with_one_line(cli, vlm):
    result = cli("serve", "--port", "0", "--model", str(vlm["text"]), "--mmproj", str(vlm["image"]))
    err = result.stderr.decode()
    assert result.returncode == 2 and "Traceback" not in err, err
    assert err.startswith("edgeai: error: a.png is not a GGUF file") and len(err.strip().splitlines()) <= 2
