"""The VLM path (#15, acceptance 3): images reach a llama.cpp model through llama.cpp's `mtmd`,
inside edgeai's own decode path (runtime/llamacpp_mtmd.py).

The model is a tiny llama-arch text model plus a LLaVA-1.5-style projector with random weights,
both written here with the `gguf` package (edgeai_testing/tiny_vlm.py); no VLM weights install
offline. Proved: an image becomes an mtmd image chunk of 16 positions that mtmd evaluates into
the context (the sequence advances by exactly those); the logits the model answers from differ
between two images and are identical for the same image; the KV prefix is reused up to a
changed image and never across it; stop mid-prefill leaves a cache the next turn reuses
correctly; a model without a projector reports `vision=False`; bad projector files and images
are one-line `BadInput`s.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from edgeai.errors import BadInput
from edgeai.types import Chunk, GenParams, LoadOptions, Message, ModelSpec

pytest.importorskip("llama_cpp")
pytest.importorskip("PIL")

from edgeai_testing.tiny_vlm import (  # noqa: E402
    IMAGE_TOKENS,
    build_projector,
    build_text_model,
    write_png,
)

GREEDY_ONE = GenParams(max_tokens=1, temperature=0)
STEP = 4  # prompt tokens per prefill step: small, so evaluation calls are countable


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("vlm")
    return {"text": build_text_model(d / "text.gguf"), "mmproj": build_projector(d / "mmproj.gguf"),
            "a": write_png(d / "a.png", (200, 30, 30)),
            "b": write_png(d / "b.png", (30, 30, 200), stripe=(255, 255, 0)),
            "a_copy": write_png(d / "a_copy.png", (200, 30, 30)),
            "dir": d}


def _load(files, mmproj: str | None):
    from edgeai.runtime.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend()
    backend.load(ModelSpec(id="tiny-vlm", artifacts={"gguf": files["text"]}),
                 LoadOptions(n_ctx=512, n_threads=1, prefill_step=STEP, mmproj_path=mmproj))
    return backend


@pytest.fixture(scope="module")
def vlm(files):
    backend = _load(files, str(files["mmproj"]))
    yield backend
    backend.close()


def _ask(image, text: str = "what is in this picture?") -> list[Message]:
    return [Message("user", text, images=(image,))]


def _answer_logits(backend, messages) -> tuple[np.ndarray, int]:
    """The logits the first reply token is sampled from, and the evaluation calls the prefill made."""
    chunks = list(backend.stream(messages, GREEDY_ONE))
    calls = sum(1 for c in chunks if c == Chunk())  # the loop yields one empty chunk per prefill call
    return backend._require().logits_row(-1), calls


def test_an_image_becomes_an_mtmd_image_chunk_that_mtmd_evaluates_into_the_sequence(vlm, files):
    media = vlm.media_prompt(_ask(files["a"]))
    try:
        kinds = [(s.end - s.start, s.chunk is not None) for s in media.segments]
        assert [k for k in kinds if k[1]] == [(IMAGE_TOKENS, True)]  # one image chunk: 16 positions
        assert kinds[0][1] is False and kinds[-1][1] is False  # template text around it
        image = next(s for s in media.segments if s.chunk is not None)
        assert len(image.key) == 64 and set(media.tokens[image.start:image.end]) == {
            -1 - int(image.key[:7], 16)}  # the positions carry the image's hash
        seqs = vlm._require()
        seqs.truncate(0, 0)
        seqs.append(0, media.tokens[:image.start])
        n_past = vlm._projector.eval_image(seqs.ctx, image.chunk, image.start, 0, seqs.n_batch)
        assert n_past == image.start + IMAGE_TOKENS  # mtmd returned 0 and advanced by the image's tokens
    finally:
        media.close()
        vlm.clear_state()
    list(vlm.stream(_ask(files["a"]), GREEDY_ONE))
    assert vlm.seq_length(0) == len(media.tokens)  # the whole prompt, image included, is in the cache


def test_the_model_answers_from_different_logits_for_a_different_image(vlm, files):
    vlm.clear_state()
    a, _ = _answer_logits(vlm, _ask(files["a"]))
    vlm.clear_state()
    b, _ = _answer_logits(vlm, _ask(files["b"]))
    vlm.clear_state()
    a_again, _ = _answer_logits(vlm, _ask(files["a"]))
    assert np.abs(a - b).max() > 0.1  # measured 3.46 (mean 0.92; greedy token 7 vs 162)
    assert np.array_equal(a, a_again)
    vlm.clear_state()
    text_only, _ = _answer_logits(vlm, [Message("user", "what is in this picture?")])
    assert text_only.shape == a.shape and not np.allclose(text_only, a)


def test_prefix_reuse_keeps_text_and_an_unchanged_image_but_never_crosses_a_changed_one(vlm, files):
    vlm.clear_state()
    fresh_a, calls_fresh = _answer_logits(vlm, _ask(files["a"]))
    same, calls_same = _answer_logits(vlm, _ask(files["a_copy"]))  # same bytes, another file
    assert calls_same == 1 and np.array_equal(same, fresh_a)  # only the last token re-evaluated
    after_a, calls_changed = _answer_logits(vlm, _ask(files["b"]))
    vlm.clear_state()
    fresh_b, calls_b = _answer_logits(vlm, _ask(files["b"]))
    assert np.array_equal(after_a, fresh_b)  # nothing of image A leaked into B's answer
    # the text before the image (2 steps of STEP tokens) was kept; the image and what follows not
    assert calls_changed == calls_b - 2 and calls_fresh == calls_b
    follow_up = [*_ask(files["b"]), Message("assistant", "a picture"), Message("user", "and now?")]
    turn_two, calls_turn_two = _answer_logits(vlm, follow_up)
    vlm.clear_state()
    turn_two_fresh, calls_turn_two_fresh = _answer_logits(vlm, follow_up)
    assert calls_turn_two < calls_turn_two_fresh - 1  # the image was not evaluated again
    assert np.allclose(turn_two, turn_two_fresh, atol=1e-4)


def test_a_stream_closed_mid_prefill_leaves_a_cache_the_next_turn_reuses_correctly(vlm, files):
    vlm.clear_state()
    stream = vlm.stream(_ask(files["b"], "x" * 40), GREEDY_ONE)
    for _ in range(4):  # text, the image, then a little of the text after it
        assert next(stream) == Chunk()
    stream.close()
    partial = vlm.seq_length(0)
    assert 0 < partial < len(vlm.media_prompt(_ask(files["b"], "x" * 40)).tokens)
    resumed, _ = _answer_logits(vlm, _ask(files["b"], "x" * 40))
    vlm.clear_state()
    fresh, _ = _answer_logits(vlm, _ask(files["b"], "x" * 40))
    assert np.allclose(resumed, fresh, atol=1e-4)


def test_a_saved_cache_with_an_image_resumes_without_evaluating_it_again(vlm, files, tmp_path):
    vlm.clear_state()
    fresh, _ = _answer_logits(vlm, _ask(files["a"]))
    assert vlm.save_state(tmp_path / "kv.bin") > 0
    vlm.clear_state()
    assert vlm.restore_state(tmp_path / "kv.bin") == vlm.seq_length(0) > IMAGE_TOKENS
    resumed, calls = _answer_logits(vlm, _ask(files["a"]))
    assert calls == 1 and np.allclose(resumed, fresh, atol=1e-4)
    changed, _ = _answer_logits(vlm, _ask(files["b"]))
    vlm.clear_state()
    assert np.array_equal(changed, _answer_logits(vlm, _ask(files["b"]))[0])


def test_load_model_takes_the_projector(files, settings):
    from edgeai.runtime.loader import load_model

    backend, _ = load_model(settings, str(files["text"]), "llamacpp", mmproj=str(files["mmproj"]))
    try:
        assert backend.capabilities.vision is True
    finally:
        backend.close()
    with pytest.raises(BadInput, match="--mmproj"):
        load_model(settings, "echo", "echo", mmproj=str(files["mmproj"]))


def test_prompt_tokens_count_the_image_positions_and_the_batched_path_refuses_images(vlm, files):
    text_only = vlm.prompt_tokens([Message("user", "what is in this picture?")])
    with_image = vlm.prompt_tokens(_ask(files["a"]))
    assert sum(1 for t in with_image if t < 0) == IMAGE_TOKENS
    # + the newline after the marker, and the word-start mark SentencePiece gives the text chunk
    # after the image (mtmd tokenizes each text chunk on its own)
    assert len(with_image) == len(text_only) + IMAGE_TOKENS + 2
    with pytest.raises(BadInput, match="one conversation at a time"):
        vlm.plan(_ask(files["a"]), GREEDY_ONE)


def test_without_a_projector_the_backend_cannot_see(files):
    backend = _load(files, None)
    try:
        assert backend.capabilities.vision is False
    finally:
        backend.close()


@pytest.mark.skipif(importlib.util.find_spec("edgeai.vision.route") is None,
                    reason="edgeai/vision/route.py (image routing) is another engineer's, not in yet")
def test_the_same_call_routes_through_ocr_without_a_projector(files, vlm):
    from edgeai.vision.route import route_images

    backend = _load(files, None)
    try:
        routed, labels = route_images(_ask(files["a"]), backend.capabilities)
        assert not any(m.images for m in routed) and labels != ["VLM"]  # described, not dropped
        assert routed[0].content != _ask(files["a"])[0].content
        assert list(backend.stream(routed, GREEDY_ONE))[-1].finish_reason is not None
        kept, labels = route_images(_ask(files["a"]), vlm.capabilities)
        assert kept[0].images == (files["a"],) and labels == ["VLM"]
    finally:
        backend.close()


def test_the_mmproj_switch_is_carried_and_vision_reported(vlm):
    assert vlm.capabilities.vision is True and vlm.capabilities.chat_template is True


@pytest.mark.parametrize("case", ["missing", "garbage", "text-model", "wrong-width"])
def test_a_bad_projector_file_is_one_line(files, case):
    d = files["dir"]
    path = {"missing": d / "nope.gguf", "text-model": files["text"]}.get(case)
    if case == "garbage":
        path = d / "garbage.gguf"
        path.write_bytes(b"not a gguf at all" * 10)
    elif case == "wrong-width":
        path = d / "wide.gguf"
        if not path.exists():
            build_projector(path, text_embd=32)  # the text model is 64 wide
    with pytest.raises(BadInput) as err:
        _load(files, str(path))
    assert "\n" not in str(err.value) and err.value.exit_code == 2


def test_a_corrupt_image_is_one_line(vlm, files):
    bad = files["dir"] / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    with pytest.raises(BadInput) as err:
        vlm.stream(_ask(bad), GREEDY_ONE)
    assert "\n" not in str(err.value)
