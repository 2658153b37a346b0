"""A fact stated only in a heading is answered and cited in the chat (issue 17, item 5), on the
real default model through the chat engine, greedy."""

from __future__ import annotations

import pytest
from edgeai_testing.meaning_corpus import build_meaning_corpus

from edgeai.chat.turn import begin_turn, run_turn
from edgeai.rag import api
from edgeai.runtime.loaded import LoadedModel
from edgeai.types import GenParams, ModelSpec

pytestmark = pytest.mark.model


def test_a_fact_only_in_a_heading_is_answered_and_cited(db, settings, tmp_path, llama_backend,
                                                        default_gguf):
    # seven files: retrieval (top passages), not the whole-document strategy
    api.ingest(settings, "care", [build_meaning_corpus(tmp_path, with_licenses=False)])
    model = LoadedModel(llama_backend, ModelSpec(id="default", artifacts={"gguf": default_gguf}), "default")
    conv = db.update_settings(db.create_conversation("t").id, rag={"collection": "care"})
    turn = begin_turn(db, conv, "How long is the Aurelis K7 warranty?", model)
    contexts = []
    out = run_turn(turn, model, GenParams(temperature=0, max_tokens=80), settings,
                   on_context=contexts.append, save_state=False)
    assert out.status == "done", out.error
    assert "two years" in out.text.lower(), out.text
    assert contexts[-1]["strategy"] == "retrieval"
    cited = [s for s in (out.rag or {}).get("sources", []) if s.get("cited")]
    assert any("Warranty — two years from delivery" in (s.get("heading") or "") for s in cited), out
