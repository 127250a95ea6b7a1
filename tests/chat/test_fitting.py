"""Fitting a conversation to a model's context window (`chat/fitting.py`), with a counter of one
token per word so every number below can be worked out by hand."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from llamafarm.chat.fitting import fit, split
from llamafarm.chat.providers.base import Measure, Message, ToolCall, estimate_tokens
from llamafarm.errors import BadRequest
from llamafarm.rag.stores.base import Hit


def words(text: str) -> int:
    return len(text.split())


# Each message costs its words + 1; the frame costs 2.
MEASURE = Measure(window=100, count=words, per_message=1, frame=2)


def render(hits: Sequence[Hit]) -> str:
    return " ".join(hit.text for hit in hits)


def hit(name: str, size: int, score: float) -> Hit:
    return Hit(id=name, text=" ".join([name] * size), metadata={}, score=score)


def turn(number: int, size: int = 9) -> list[Message]:
    """A user message and its answer, each `size` words (so `size + 1` tokens)."""
    return [
        Message("user", " ".join([f"q{number}"] * size)),
        Message("assistant", " ".join([f"a{number}"] * size)),
    ]


def test_a_conversation_that_fits_is_kept_whole() -> None:
    talk = [*turn(1), *turn(2), Message("user", "and now?")]
    fitted = fit(
        system=[Message("system", "be brief")],
        conversation=talk,
        hits=[],
        render=render,
        measure=MEASURE,
        answer_tokens=10,
    )
    assert fitted.messages == [Message("system", "be brief"), *talk]
    assert (fitted.dropped_turns, fitted.dropped_chunks, fitted.dropped) == (0, 0, False)
    # system 3 + four messages of 10 + the question 3, and the frame
    assert fitted.prompt_tokens == 3 + 40 + 3 + 2
    assert fitted.window == 100


def test_the_oldest_whole_turns_go_first_and_the_system_prompt_and_question_stay() -> None:
    talk = [*turn(1), *turn(2), *turn(3), *turn(4), Message("user", "last one")]
    fitted = fit(
        system=[Message("system", "be brief")],
        conversation=talk,
        hits=[],
        render=render,
        measure=MEASURE,
        answer_tokens=40,
    )
    # room: 100 - 40 - 2 = 58; system 3 + question 3 = 6; each turn 20: two turns fit (46)
    assert fitted.messages == [Message("system", "be brief"), *turn(3), *turn(4), talk[-1]]
    assert fitted.dropped_turns == 2
    assert fitted.header() == "turns=2; chunks=0"
    assert fitted.prompt_tokens <= 100 - 40


def test_a_turn_that_does_not_fit_is_dropped_whole_with_everything_older() -> None:
    # the newest earlier turn is too big for the room left; an older small one is not kept
    # in its place (the history the model sees is always its most recent part)
    talk = [*turn(1, size=2), *turn(2, size=40), Message("user", "so?")]
    fitted = fit(
        system=[], conversation=talk, hits=[], render=render, measure=MEASURE, answer_tokens=20
    )
    assert fitted.messages == [talk[-1]]
    assert fitted.dropped_turns == 2


def test_tool_calls_and_results_stay_with_the_question_they_answer() -> None:
    call = ToolCall(id="c1", name="lookup", arguments='{"q": "x"}')
    old = [
        Message("user", "find x"),
        Message("assistant", "", tool_calls=(call,)),
        Message("tool", "x is " + "y " * 30, tool_call_id="c1"),
        Message("assistant", "x is y"),
    ]
    recent = turn(2)
    talk = [*old, *recent, Message("user", "thanks")]
    pinned, turns, current = split(talk)
    assert (pinned, turns, current) == ([], [old, recent], [talk[-1]])
    fitted = fit(
        system=[], conversation=talk, hits=[], render=render, measure=MEASURE, answer_tokens=50
    )
    # room 48: the recent turn (20) and the question (2) fit; the tool turn (~45) does not,
    # and no part of it is kept: never a tool result without its call
    assert fitted.messages == [*recent, talk[-1]]
    assert not any(m.role == "tool" or m.tool_calls for m in fitted.messages)


def test_the_current_turn_keeps_this_completions_tool_results() -> None:
    call = ToolCall(id="c1", name="lookup", arguments="{}")
    current = [
        Message("user", "find x"),
        Message("assistant", "", tool_calls=(call,)),
        Message("tool", "found", tool_call_id="c1"),
    ]
    talk = [*turn(1, size=60), *current]
    fitted = fit(
        system=[], conversation=talk, hits=[], render=render, measure=MEASURE, answer_tokens=10
    )
    assert fitted.messages == current
    assert fitted.dropped_turns == 1


def test_a_clients_system_message_is_kept_in_its_place() -> None:
    talk = [Message("system", "client rules"), *turn(1, size=60), Message("user", "go")]
    fitted = fit(
        system=[], conversation=talk, hits=[], render=render, measure=MEASURE, answer_tokens=10
    )
    assert fitted.messages == [talk[0], talk[-1]]


def test_retrieved_context_is_capped_at_its_share_lowest_scores_dropped_first() -> None:
    hits = [hit("best", 10, 0.9), hit("worst", 10, 0.1), hit("good", 10, 0.5)]
    fitted = fit(
        system=[],
        conversation=[Message("user", "question")],
        hits=hits,
        render=render,
        measure=MEASURE,
        answer_tokens=18,
        rag_share=0.3,
    )
    # room 100 - 18 - 2 = 80, share 24 tokens: two chunks (20 words + 1) fit, three do not
    assert fitted.hits == (hits[0], hits[2])  # in their order, the lowest score gone
    assert fitted.dropped_chunks == 1
    assert fitted.messages[0] == Message("system", render([hits[0], hits[2]]))
    assert fitted.header() == "turns=0; chunks=1"


def test_retrieved_context_never_pushes_out_the_question() -> None:
    hits = [hit("a", 30, 0.9), hit("b", 30, 0.8)]
    question = Message("user", " ".join(["w"] * 40))
    fitted = fit(
        system=[],
        conversation=[question],
        hits=hits,
        render=render,
        measure=MEASURE,
        answer_tokens=20,
        rag_share=1.0,
    )
    # room 78, question 41: 37 left, one chunk of 31 fits
    assert fitted.hits == (hits[0],)
    assert fitted.messages == [Message("system", render([hits[0]])), question]


def test_history_makes_room_for_context_within_its_share() -> None:
    hits = [hit("doc", 20, 0.9)]
    talk = [*turn(1), *turn(2), *turn(3), Message("user", "q")]
    fitted = fit(
        system=[],
        conversation=talk,
        hits=hits,
        render=render,
        measure=MEASURE,
        answer_tokens=30,
    )
    # room 68, share 27: the chunk (21) is kept, then the question (2), then two turns (40)
    assert fitted.hits == (hits[0],)
    assert fitted.messages == [Message("system", render(hits)), *turn(2), *turn(3), talk[-1]]
    assert (fitted.dropped_turns, fitted.dropped_chunks) == (1, 0)


def test_a_message_that_alone_cannot_fit_is_a_400_naming_its_tokens_and_the_window() -> None:
    question = Message("user", " ".join(["w"] * 80))
    with pytest.raises(BadRequest) as caught:
        fit(
            system=[],
            conversation=[*turn(1), question],
            hits=[],
            render=render,
            measure=MEASURE,
            answer_tokens=30,
        )
    assert "81 tokens" in caught.value.detail
    assert "window of 100 tokens" in caught.value.detail


def test_the_answers_room_is_at_most_half_the_window() -> None:
    # max_tokens larger than the window still leaves half of it to the prompt
    question = Message("user", " ".join(["w"] * 40))
    fitted = fit(
        system=[],
        conversation=[question],
        hits=[],
        render=render,
        measure=MEASURE,
        answer_tokens=4096,
    )
    assert fitted.messages == [question]


def test_each_text_is_counted_once() -> None:
    counted: list[str] = []

    def counting(text: str) -> int:
        counted.append(text)
        return words(text)

    talk = [*turn(1), *turn(2), Message("user", "q")]
    fit(
        system=[],
        conversation=talk,
        hits=[],
        render=render,
        measure=Measure(window=1000, count=counting),
        answer_tokens=10,
    )
    assert len(counted) == len(set(counted))


def test_the_estimate_counts_a_token_per_three_bytes_rounded_up() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 2
    assert estimate_tokens("é" * 3) == 2  # 6 bytes
