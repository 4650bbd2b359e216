"""Ground truth from the game's own facts: which template goals hold, and when each was first
achieved. The same contract as the household oracle, so `relabel-check` judges real ALFWorld.

The definitions follow the games' PDDL goals: an object of the type in a receptacle of the
type (plus isClean / isHot / isCool for the state templates); two distinct objects of the type
in one receptacle; an object of the type held while a switched-on desklamp stands in a
receptacle at the agent's location.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from hsl_tools.envs.alfworld_family.goals import Goal, GoalType, first_achieved, strip_ids

# The predicates the oracle reads; the worker sends only these.
PREDICATES = frozenset({"inreceptacle", "holds", "isclean", "ishot", "iscool", "istoggled",
                        "atlocation", "receptacleatlocation"})
Fact = tuple[str, ...]  # (predicate, argument names...), e.g. ("holds", "agent1", "mug 1")
_STATES = {"isclean": GoalType.CLEAN, "ishot": GoalType.HEAT, "iscool": GoalType.COOL}
_LAMPS = ("desklamp",)


def satisfied(facts: Iterable[Fact]) -> frozenset[Goal]:
    """Every template goal that holds given one step's facts."""
    by_pred: dict[str, list[tuple[str, ...]]] = defaultdict(list)
    for name, *args in facts:
        by_pred[name].append(tuple(args))
    states = {(pred, args[0]) for pred in _STATES for args in by_pred[pred]}
    goals: set[Goal] = set()
    per_receptacle: Counter[tuple[str, str]] = Counter()
    for obj, recep in by_pred["inreceptacle"]:
        o, r = strip_ids(obj), strip_ids(recep)
        if o in _LAMPS:
            continue
        goals.add(Goal(GoalType.PICK_AND_PLACE, o, r))
        goals.update(Goal(kind, o, r) for pred, kind in _STATES.items() if (pred, obj) in states)
        per_receptacle[(o, recep)] += 1
    goals.update(Goal(GoalType.PICK_TWO, o, strip_ids(recep))
                 for (o, recep), n in per_receptacle.items() if n >= 2)
    here = {loc for _, loc in by_pred["atlocation"]}
    receptacles_here = {r for r, loc in by_pred["receptacleatlocation"] if loc in here}
    lit = {lamp for (lamp,) in by_pred["istoggled"] if strip_ids(lamp) in _LAMPS}
    if any(obj in lit and recep in receptacles_here for obj, recep in by_pred["inreceptacle"]):
        goals.update(Goal.look(strip_ids(obj)) for _, obj in by_pred["holds"])
    return frozenset(goals)


def achieved(steps: Sequence[Iterable[Fact]]) -> dict[Goal, int]:
    """Goals that became true after the initial facts (steps[0]), each with its first step."""
    return first_achieved(steps, satisfied)
