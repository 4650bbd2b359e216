"""The rule relabeler: the paper's procedure, done in code over the trajectory's text.

Goal identification: track the text (`tracker`), and after each step list every template goal
that holds in what the agent has seen; a goal that held in the receptacles as first seen does
not count, and S(k) is the first step a goal holds. Action relevance: work backwards from the
goal to the steps that made it true (the object's pickup and the way to it, the search that
first found it, its transformation, its placement, the lamp) and mark the rest irrelevant.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from hsl_tools.envs.alfworld_family.goals import Goal, GoalType
from hsl_tools.envs.alfworld_family.tracker import Belief, track
from hsl_tools.records import Step

_TRANSFORM = {GoalType.CLEAN: ("clean", "clean"), GoalType.HEAT: ("heat", "hot"),
              GoalType.COOL: ("cool", "cool")}
_OPENABLE_WORDS = ("cabinet", "drawer", "fridge", "microwave", "safe")


def _kind(name: str) -> str:
    return name.rsplit(" ", 1)[0]


def holds(belief: Belief, contents: dict[str, list[str]] | None = None) -> set[Goal]:
    """Template goals that hold in a belief (or in given receptacle contents alone)."""
    goals: set[Goal] = set()
    for recep, objs in (contents if contents is not None else belief.contents).items():
        r = _kind(recep)
        counts = Counter(_kind(o) for o in objs if _kind(o) not in ("desklamp", "floorlamp"))
        for o in objs:
            kind = _kind(o)
            if kind in ("desklamp", "floorlamp"):
                continue
            goals.add(Goal(GoalType.PICK_AND_PLACE, kind, r))
            for goal_type, (_, state) in _TRANSFORM.items():
                if contents is None and o in getattr(belief, state):
                    goals.add(Goal(goal_type, kind, r))
        goals.update(Goal(GoalType.PICK_TWO, k, r) for k, n in counts.items() if n >= 2)
    if contents is None and belief.holding is not None and belief.location is not None \
            and belief.location in belief.lamps_on.values():
        goals.add(Goal.look(_kind(belief.holding)))
    return goals


def _pairs(steps: Sequence[Step]) -> list[tuple[str, str]]:
    return [(s.action, s.observation) for s in steps]


def identify_goals(steps: Sequence[Step]) -> dict[Goal, int]:
    """Every template goal the text shows achieved, with its first step S(k) (1-based)."""
    beliefs, _ = track(_pairs(steps))
    already = holds(beliefs[-1], beliefs[-1].known_initial())  # as the text first showed them
    first: dict[Goal, int] = {}
    for step, belief in enumerate(beliefs[1:], 1):
        for goal in sorted(holds(belief) - already):
            first.setdefault(goal, step)
    return first


def goal_choices(steps: Sequence[Step]) -> list[Goal]:
    """The goals a trajectory could have achieved, from its text: every template over the
    object types the agent held (each template needs the object in hand) and the receptacle
    types it saw (any lamp for looking)."""
    beliefs, _ = track(_pairs(steps))
    held = sorted({_kind(b.holding) for b in beliefs if b.holding is not None})
    seen = sorted({_kind(r) for b in beliefs for r in b.contents} |
                  {_kind(b.location) for b in beliefs if b.location is not None})
    return [Goal.look(o) for o in held] + [
        Goal(kind, o, r) for kind in GoalType if kind != GoalType.LOOK_IN_LIGHT
        for o in held for r in seen if r != o]


def _moved(observation: str) -> tuple[str, str] | None:
    m = re.match(r"You move the ([a-z]+ \d+) to the ([a-z]+ \d+)\.", observation)
    return (m[1], m[2]) if m else None


class _Marker:
    """Collects relevant steps (1-based) with a reason; the first reason given stays."""

    def __init__(self, steps: Sequence[Step], effects: list[str | None]) -> None:
        self.steps, self.effects = steps, effects
        self.reasons: dict[int, str] = {}

    def mark(self, step: int | None, reason: str) -> None:
        if step is not None:
            self.reasons.setdefault(step, reason)

    def last(self, before: int, pattern: str) -> int | None:
        """The last step before `before` whose action matches `pattern` and had an effect."""
        for i in range(before - 1, 0, -1):
            if self.effects[i - 1] is not None and re.fullmatch(pattern, self.steps[i - 1].action
                                                                .strip().lower()):
                return i
        return None

    def reach(self, recep: str, before: int, why: str) -> None:
        """The way to a receptacle: the last arrival there, and the opening that followed."""
        arrive = self.last(before, rf"go to {re.escape(recep)}")
        self.mark(arrive, f"goes to the {recep} {why}")
        if recep.startswith(_OPENABLE_WORDS):
            self.mark(self.last(before, rf"open {re.escape(recep)}"), f"opens the {recep} {why}")

    def search(self, until: int, what: str) -> None:
        """Exploration that found something: first visits and first openings up to `until`."""
        seen: set[str] = set()
        for i in range(1, until + 1):
            action = self.steps[i - 1].action.strip().lower()
            m = re.fullmatch(r"(go to|open) ([a-z]+ \d+)", action)
            if m and self.effects[i - 1] is not None and (m[1], m[2]) not in seen:
                seen.add((m[1], m[2]))
                self.mark(i, f"searches for the {what}")


def relevance(steps: Sequence[Step], goal: Goal) -> list[tuple[bool, str]]:
    """(relevant, reason) for each step of a prefix that ends where `goal` first holds."""
    beliefs, effects = track(_pairs(steps))
    end = len(steps)
    marker = _Marker(steps, effects)
    final = beliefs[-1]
    targets: list[str] = []
    lamp = None
    if goal.type is GoalType.LOOK_IN_LIGHT:
        if final.holding is not None:
            targets.append(final.holding)
        lamp = next((lp for lp, at in final.lamps_on.items() if at == final.location), None)
    else:
        moved = _moved(steps[-1].observation)
        if moved is not None:
            obj, recep = moved
            targets.append(obj)
            if goal.type is GoalType.PICK_TWO:
                # the other one: the latest object of the kind the agent moved into `recep`
                for i in range(end - 1, 0, -1):
                    other = _moved(steps[i - 1].observation)
                    if other and other[1] == recep and _kind(other[0]) == goal.obj \
                            and other[0] != obj and other[0] in final.contents.get(recep, []):
                        targets.append(other[0])
                        marker.mark(i, f"places the {other[0]}")
                        marker.reach(recep, i, "to place it")
                        break
            marker.mark(end, f"places the {obj}")
            marker.reach(recep, end, "to place it")
    for obj in targets:
        _object_chain(marker, obj, goal, end, final.first_seen.get(obj, 0))
    if lamp is not None:
        turned_on = marker.last(end + 1, rf"use {re.escape(lamp)}")
        marker.mark(turned_on, f"turns on the {lamp}")
        marker.reach(final.lamps_on[lamp], (turned_on or end) + 1, "where the lamp is")
        marker.mark(end if effects[-1] == "arrive" else None, "brings it under the lamp")
        marker.search(final.first_seen.get(lamp, 0), "desklamp")
    return [(i in marker.reasons, marker.reasons.get(i) or _idle_reason(steps[i - 1],
                                                                         effects[i - 1]))
            for i in range(1, end + 1)]


def _idle_reason(step: Step, effect: str | None) -> str:
    if step.observation.strip() == "Nothing happens.":
        return "no effect"
    return "changes nothing" if effect is None else "not needed for this goal"


def _object_chain(marker: _Marker, obj: str, goal: Goal, end: int, found_at: int) -> None:
    """Pickup of `obj`, the way to it, the search that found it, and its transformation."""
    pickup = marker.last(end + 1, rf"take {re.escape(obj)} from [a-z]+ \d+")
    if pickup is None:
        return
    source = marker.steps[pickup - 1].action.strip().lower().rsplit(" from ", 1)[1]
    marker.mark(pickup, f"picks up the {obj}")
    marker.reach(source, pickup, f"where the {obj} is")
    marker.search(found_at, obj)
    if goal.type in _TRANSFORM:
        verb = _TRANSFORM[goal.type][0]
        done = marker.last(end + 1, rf"{verb} {re.escape(obj)} with [a-z]+ \d+")
        if done is not None:
            appliance = marker.steps[done - 1].action.strip().lower().rsplit(" with ", 1)[1]
            marker.mark(done, f"{verb}s the {obj}")
            marker.reach(appliance, done, f"to {verb} it")
