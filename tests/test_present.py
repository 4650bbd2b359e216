"""What the command line prints: tables and panels read as a user sees them."""

from __future__ import annotations

from collections import Counter

from rich.console import Console

from hsl_tools.present import demo_panel, outcome_table
from hsl_tools.records import Demo, DemoStep


def shown(renderable: object, width: int = 80) -> str:
    console = Console(record=True, width=width)
    console.print(renderable)
    return console.export_text()


def test_a_relabeled_demo_shows_which_actions_carry_the_loss() -> None:
    demo = Demo(id="d", source="hindsight", instruction="put a mug in fridge",
                initial_observation="You are in the middle of a room.",
                steps=[DemoStep(action="go to desk 1", observation="...", relevant=False),
                       DemoStep(action="take mug 1 from desk 1", observation="...")])
    text = shown(demo_panel(demo), width=100)
    assert "1 of 2 actions needed" in text
    assert "go to desk 1   (masked: no loss)" in text
    assert "take mug 1 from desk 1" in text
    assert "take mug 1 from desk 1   (masked" not in text


def test_a_narrow_table_keeps_its_title_on_one_line() -> None:
    """One outcome column made a table narrower than its title, which then wrapped (and a
    user grepping a log for it found nothing)."""
    title = "what the evaluation episodes came to (oracle)"
    text = shown(outcome_table({"SFT": Counter(nothing=6)}, title))
    assert title in text
    assert "6 (100%)" in text
