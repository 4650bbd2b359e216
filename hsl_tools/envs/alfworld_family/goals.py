"""The six ALFWorld goal templates: one canonical form, the sentences games print, and a parser.

A goal names object and receptacle *types* ("mug", "cabinet"), never instances ("mug 1"):
any mug in any cabinet satisfies "put a mug in cabinet". The household world, the real
ALFWorld oracle and every relabeler meet on this one representation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

S = TypeVar("S")


class GoalType(StrEnum):
    """ALFWorld's task types, named as its game folders name them."""

    PICK_AND_PLACE = "pick_and_place"
    LOOK_IN_LIGHT = "look_at_obj_in_light"
    CLEAN = "pick_clean_then_place"
    HEAT = "pick_heat_then_place"
    COOL = "pick_cool_then_place"
    PICK_TWO = "pick_two_obj_and_place"


# Two sentences per template, as the games print them; the first is the canonical one.
TEMPLATES: dict[GoalType, tuple[str, str]] = {
    GoalType.PICK_AND_PLACE: ("put a {obj} in {recep}", "put some {obj} on {recep}"),
    GoalType.CLEAN: ("put a clean {obj} in {recep}", "clean some {obj} and put it in {recep}"),
    GoalType.HEAT: ("put a hot {obj} in {recep}", "heat some {obj} and put it in {recep}"),
    GoalType.COOL: ("put a cool {obj} in {recep}", "cool some {obj} and put it in {recep}"),
    GoalType.PICK_TWO: ("put two {obj} in {recep}", "find two {obj} and put them in {recep}"),
    GoalType.LOOK_IN_LIGHT: (
        "look at {obj} under the desklamp",
        "examine the {obj} with the desklamp",
    ),
}

_STATE_WORDS = {"clean": GoalType.CLEAN, "hot": GoalType.HEAT, "heated": GoalType.HEAT,
                "cool": GoalType.COOL, "cold": GoalType.COOL, "cooled": GoalType.COOL,
                "cleaned": GoalType.CLEAN}
_VERB_WORDS = {"clean": GoalType.CLEAN, "heat": GoalType.HEAT, "cool": GoalType.COOL,
               "chill": GoalType.COOL, "warm": GoalType.HEAT, "wash": GoalType.CLEAN}
_ART = r"(?:a|an|some|one|the)"
_PREP = r"(?:in|on|into|onto|inside|in/on)"
_W = r"([a-z]+)"
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(rf"^(?:put|place|move) (?:two|2) {_W} {_PREP} (?:the )?{_W}$"), "two"),
    (re.compile(rf"^find (?:two|2) {_W} and (?:put|place) them {_PREP} (?:the )?{_W}$"), "two"),
    (re.compile(rf"^(?:look at|examine|inspect) (?:{_ART} )?{_W} (?:under|with|using) "
                rf"(?:the |a )?desklamp$"), "look"),
    (re.compile(rf"^{_W} {_ART} {_W} and (?:put|place) it {_PREP} (?:the )?{_W}$"), "verb"),
    (re.compile(rf"^(?:put|place|move) {_ART} {_W} {_W} {_PREP} (?:the )?{_W}$"), "state"),
    (re.compile(rf"^(?:put|place|move) {_ART} {_W} {_PREP} (?:the )?{_W}$"), "plain"),
]


@dataclass(frozen=True, order=True)
class Goal:
    """One template goal over types; `recep` is "desklamp" for look-in-light goals."""

    type: GoalType
    obj: str
    recep: str

    def text(self, variant: int = 0) -> str:
        """The goal as a game prints it; variant 0 is the canonical sentence."""
        return TEMPLATES[self.type][variant].format(obj=self.obj, recep=self.recep)

    def __str__(self) -> str:
        return self.text()

    @classmethod
    def look(cls, obj: str) -> Goal:
        return cls(GoalType.LOOK_IN_LIGHT, obj, "desklamp")

    @classmethod
    def parse(cls, sentence: str) -> Goal | None:
        """Map a goal sentence (either template form, ids, case or a final period allowed)
        onto its canonical goal; None when it fits no template."""
        s = strip_ids(sentence.strip().lower().rstrip(".").strip())
        s = re.sub(r"\s+", " ", s)
        for pattern, kind in _PATTERNS:
            m = pattern.match(s)
            if not m:
                continue
            if kind == "two":
                return cls(GoalType.PICK_TWO, m[1], m[2])
            if kind == "look":
                return cls.look(m[1])
            if kind == "verb" and m[1] in _VERB_WORDS:
                return cls(_VERB_WORDS[m[1]], m[2], m[3])
            if kind == "state" and m[1] in _STATE_WORDS:
                return cls(_STATE_WORDS[m[1]], m[2], m[3])
            if kind == "plain":
                return cls(GoalType.PICK_AND_PLACE, m[1], m[2])
        return None


def strip_ids(text: str) -> str:
    """Drop instance numbers: "mug 1 in cabinet 12" -> "mug in cabinet"."""
    return re.sub(r"(?<=[a-z]) \d+\b", "", text)


def first_achieved(states: Sequence[S], satisfied: Callable[[S], Iterable[Goal]]
                   ) -> dict[Goal, int]:
    """Goals that hold at some step but not in states[0], each with its first step (1-based).
    A goal true from the start was not achieved by the agent, whatever happens after."""
    before = set(satisfied(states[0]))
    first: dict[Goal, int] = {}
    for step, state in enumerate(states[1:], 1):
        for goal in sorted(set(satisfied(state)) - before):
            first.setdefault(goal, step)
    return first
