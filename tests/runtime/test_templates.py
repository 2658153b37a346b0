import pytest

from edgeai.errors import BadInput
from edgeai.runtime import templates
from edgeai.types import Message

CHAT = [Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello!"),
        Message("user", "Bye")]


def test_chatml_renders_every_turn_and_opens_the_reply():
    text = templates.render("chatml", CHAT)
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    assert text.endswith("<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n")


def test_gemma_folds_the_system_prompt_into_the_first_user_turn():
    text = templates.render("gemma", CHAT, bos_token="<bos>")
    assert text.startswith("<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n")
    assert "<start_of_turn>model\nHello!<end_of_turn>\n" in text
    assert text.endswith("<start_of_turn>model\n")
    assert "system" not in text


def test_llama3_template():
    text = templates.render("llama3", CHAT[1:2], bos_token="<|begin_of_text|>")
    assert text == ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                    "<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_architectures_without_a_template_get_an_explicit_one():
    assert templates.template_for_arch("gemma3") == "gemma"
    assert templates.template_for_arch("qwen2") == "chatml"
    assert templates.template_for_arch("mamba") is None


def test_a_template_that_raises_becomes_a_clear_error():
    source = "{% if messages[0].role != 'user' %}{{ raise_exception('must start with user') }}{% endif %}"
    with pytest.raises(BadInput, match="must start with user"):
        templates.render(source, [Message("assistant", "x")])


def test_a_template_that_does_not_parse_is_bad_input():
    with pytest.raises(BadInput, match="does not parse"):
        templates.render("{% for %}", [Message("user", "x")])
