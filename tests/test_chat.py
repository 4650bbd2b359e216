"""The chat renderer and the reply parser shared by rollouts and training."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hsl_tools.chat import parse_reply, render
from hsl_tools.records import Step


@pytest.mark.parametrize(("reply", "thought", "action"), [
    ("go to cabinet 1", None, "go to cabinet 1"),
    ("Action: open drawer 2", None, "open drawer 2"),
    ("Thought: the mug may be here.\nAction: go to  countertop 1.", "the mug may be here.",
     "go to countertop 1"),
    ("  \n> take mug 1 from sinkbasin 1\nextra line", None, "take mug 1 from sinkbasin 1"),
    ('"move mug 1 to cabinet 2"', None, "move mug 1 to cabinet 2"),
    ("`look`", None, "look"),
    ("ACTION:inventory", None, "inventory"),
    ("Thought: I am lost.", "I am lost.", None),
    ("", None, None),
])
def test_parse_reply_is_tolerant(reply: str, thought: str | None, action: str | None) -> None:
    assert parse_reply(reply) == (thought, action)


@given(st.text())
def test_parse_reply_never_raises(reply: str) -> None:
    thought, action = parse_reply(reply)
    assert action is None or (action and "\n" not in action)


def test_render_alternates_actions_and_observations() -> None:
    steps = [Step(action="go to fridge 1", observation="You arrive at fridge 1.",
                  thought="cold things live here")]
    plain = render("put a mug in fridge", "You are in the middle of a room.", steps)
    assert [m["role"] for m in plain] == ["system", "user", "assistant", "user"]
    assert plain[1]["content"].endswith("Your task is to: put a mug in fridge")
    assert plain[2]["content"] == "go to fridge 1"
    react = render("put a mug in fridge", "You are in the middle of a room.", steps, react=True)
    assert react[2]["content"] == "Thought: cold things live here\nAction: go to fridge 1"
    assert parse_reply(react[2]["content"]) == ("cold things live here", "go to fridge 1")

