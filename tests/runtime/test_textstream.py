from edgeai.runtime.textstream import TextStream


def feed_all(stream: TextStream, pieces: list[str]) -> tuple[str, str]:
    answer, reasoning = "", ""
    for piece in pieces:
        a, r = stream.feed(piece)
        answer, reasoning = answer + a, reasoning + r
        if stream.stopped:
            break
    a, r = stream.flush()
    return answer + a, reasoning + r


def test_stop_sequence_split_across_pieces_is_never_shown():
    stream = TextStream(stop=("END",))
    shown = []
    for piece in ["Hello E", "N", "D world"]:
        shown.append(stream.feed(piece)[0])
    assert "".join(shown) == "Hello "
    assert stream.stopped


def test_text_that_only_looks_like_a_stop_start_is_released():
    stream = TextStream(stop=("STOP",))
    assert feed_all(stream, ["ST", "ART here"]) == ("START here", "")
    assert not stream.stopped


def test_think_block_goes_to_reasoning_even_when_tags_are_split():
    answer, reasoning = feed_all(TextStream(), ["<th", "ink>plan ", "it</thi", "nk>\n\nThe answer"])
    assert reasoning == "plan it"
    assert answer == "The answer"


def test_prompt_that_opened_a_think_block_starts_in_reasoning():
    answer, reasoning = feed_all(TextStream(in_reasoning=True), ["hmm", "</think>", "Paris."])
    assert (answer, reasoning) == ("Paris.", "hmm")


def test_think_tag_inside_an_answer_stays_text():
    answer, reasoning = feed_all(TextStream(), ["Use ", "<think> tags", " like this"])
    assert answer == "Use <think> tags like this" and reasoning == ""
