"""Ground truth: which template goals a sequence of true states achieved, and when.

Reads only the true state (never the text), so it can judge any relabeler. A goal counts
as achieved when it does not hold before the first action and holds at some later step;
its step S(k) is the first such step, whatever happens after.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from hsl_tools.envs.alfworld_family.goals import Goal, GoalType, first_achieved
from hsl_tools.envs.household.catalog import DESKLAMP, GOAL_VERB, TRANSFORMS
from hsl_tools.envs.household.world import Snapshot, kind_of

_STATE_GOALS = [(goal_type, TRANSFORMS[verb][1]) for goal_type, verb in GOAL_VERB.items()]


def satisfied(state: Snapshot) -> frozenset[Goal]:
    """Every template goal that holds in one state."""
    goals: set[Goal] = set()
    per_receptacle: Counter[tuple[str, str]] = Counter()
    for obj, recep in state.placements:
        o, r = kind_of(obj), kind_of(recep)
        if o == DESKLAMP:
            continue
        goals.add(Goal(GoalType.PICK_AND_PLACE, o, r))
        for goal_type, attr in _STATE_GOALS:
            if obj in getattr(state, attr):
                goals.add(Goal(goal_type, o, r))
        per_receptacle[(o, recep)] += 1
    goals.update(Goal(GoalType.PICK_TWO, o, kind_of(recep))
                 for (o, recep), n in per_receptacle.items() if n >= 2)
    if state.holding is not None and state.location in state.lit:
        goals.add(Goal.look(kind_of(state.holding)))
    return frozenset(goals)


def achieved(states: Sequence[Snapshot]) -> dict[Goal, int]:
    """Goals that became true after states[0], each with the first step (1-based) it held."""
    return first_achieved(states, satisfied)
