"""Think blocks split from answers (whole and streamed), and prompt placeholders."""

from __future__ import annotations

import pytest

from llamafarm.chat.prompts import render
from llamafarm.chat.thinking import ThinkSplitter, split
from llamafarm.errors import BadRequest

TEXT = "<think>15% of 85 is 85 x 0.15.</think>It is **12.75**."


def test_a_whole_answer_splits() -> None:
    assert split(TEXT) == ("It is **12.75**.", "15% of 85 is 85 x 0.15.")
    assert split("plain answer") == ("plain answer", "")
    assert split("reasoning first</think>answer") == ("answer", "reasoning first")
    assert split("<think>never closed") == ("", "never closed")


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 100])
def test_streamed_pieces_split_the_same_at_any_boundary(size: int) -> None:
    splitter = ThinkSplitter()
    shown = [splitter.feed(TEXT[i : i + size]) for i in range(0, len(TEXT), size)]
    shown.append(splitter.finish())
    assert "".join(shown) == "It is **12.75**."
    assert splitter.thought == "15% of 85 is 85 x 0.15."
    assert not any("<" in piece and "think" in piece for piece in shown)


def test_a_lone_angle_bracket_is_not_held_forever() -> None:
    splitter = ThinkSplitter()
    assert splitter.feed("a < b") == "a < b"
    assert splitter.feed(" and <th") == " and "
    assert splitter.feed("ree>") == "<three>"
    assert splitter.finish() == ""


def test_placeholders() -> None:
    assert render("Hi {{name}}!", {"name": "Ada"}) == "Hi Ada!"
    assert render("Be {{tone | brief and kind}}.", {}) == "Be brief and kind."
    assert render("Be {{ tone|x }}.", {"tone": "formal"}) == "Be formal."
    with pytest.raises(BadRequest, match="'company'"):
        render("Work for {{company}}.", {})


@pytest.mark.parametrize("size", [1, 4, 100])
def test_a_block_opened_in_the_prompt_is_held_until_it_closes(size: int) -> None:
    text = "Let me think.</think>The answer."
    splitter = ThinkSplitter(tentative=True)
    shown = "".join(splitter.feed(text[i : i + size]) for i in range(0, len(text), size))
    assert shown + splitter.finish() == "The answer."
    assert splitter.thought == "Let me think."

    plain = ThinkSplitter(tentative=True)
    assert plain.feed("No thinking here.") == ""
    assert plain.finish() == "No thinking here."
    tagged = ThinkSplitter(tentative=True)
    assert tagged.feed("<think>a</think>b") + tagged.finish() == "b"
    assert tagged.thought == "a"


def test_pieces_without_a_tag_inside_a_block_are_thinking() -> None:
    splitter = ThinkSplitter()
    assert splitter.feed("<think>") == ""
    assert splitter.feed("weighing it") == ""  # no "<": passed on whole, to the thinking
    assert splitter.feed("</think>yes") == "yes"
    assert splitter.feed(" indeed") == " indeed"
    assert splitter.thought == "weighing it"
