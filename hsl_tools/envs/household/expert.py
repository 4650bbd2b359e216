"""The household expert: searches like a person who knows where things usually are.

It does not peek into closed or unvisited receptacles: it visits receptacles in the order
the object usually lives in them (the catalogue's spawn order), opens what is closed, takes
the first suitable object it sees, transforms it at the right appliance, and puts it in the
first receptacle of the goal's type. Its demos therefore show a search a policy can learn,
not teleportation to a hidden object.
"""

from __future__ import annotations

from hsl_tools.envs.alfworld_family.goals import Goal, GoalType
from hsl_tools.envs.household.catalog import DESKLAMP, GOAL_VERB, LAMP_HOSTS, TRANSFORMS
from hsl_tools.envs.household.world import World, kind_of


def _number(name: str) -> int:
    return int(name.rsplit(" ", 1)[1])


def search_order(receptacles: list[str], likely: tuple[str, ...]) -> list[str]:
    """Receptacles of the likeliest types first, then the rest; lower numbers first."""
    rank = {t: i for i, t in enumerate(likely)}
    return sorted(receptacles, key=lambda r: (rank.get(kind_of(r), len(rank)), kind_of(r),
                                              _number(r)))


class Expert:
    """Plans one action at a time from what it has seen so far of the world."""

    def __init__(self, goal: Goal, world: World) -> None:
        self.goal = goal
        self.visited: set[str] = set()
        self.order = search_order(world.receptacles, world.kinds[goal.obj].spawn)
        self.lamp_order = search_order(world.receptacles, LAMP_HOSTS)
        of_type = [r for r in world.receptacles if kind_of(r) == goal.recep]
        self.target = min(of_type, key=_number) if of_type else None

    def next_action(self, w: World) -> str:
        if w.location is not None and w.is_visible(w.location):
            self.visited.add(w.location)
        if w.holding is None:
            return self._fetch(w)
        held, g = w.holding, self.goal
        if g.type in GOAL_VERB:
            verb = GOAL_VERB[g.type]
            appliance_type, state = TRANSFORMS[verb]
            if held not in getattr(w, state):
                appliance = min((r for r in w.receptacles if kind_of(r) == appliance_type),
                                key=_number)
                if w.location != appliance:
                    return f"go to {appliance}"
                return f"{verb} {held} with {appliance}"
        if g.type is GoalType.LOOK_IN_LIGHT:
            host = next((r for r in self.lamp_order if r in self.visited
                         and any(kind_of(o) == DESKLAMP for o in w.contents[r])), None)
            if host is None:
                return self._explore(w, self.lamp_order)
            if w.location != host:
                return f"go to {host}"
            lamp = next(o for o in w.contents[host] if kind_of(o) == DESKLAMP)
            return f"use {lamp}"
        assert self.target is not None
        if w.location != self.target:
            return f"go to {self.target}"
        if not w.is_visible(self.target):
            return f"open {self.target}"
        return f"move {held} to {self.target}"

    def _fetch(self, w: World) -> str:
        """Take a suitable object seen already, or look further for one."""
        for r in self.order:
            if r not in self.visited or not w.is_visible(r):
                continue
            if self.goal.type is GoalType.PICK_TWO and r == self.target:
                continue  # the first of the two already lies there
            obj = next((o for o in w.contents[r] if kind_of(o) == self.goal.obj), None)
            if obj is not None:
                return f"take {obj} from {r}" if w.location == r else f"go to {r}"
        return self._explore(w, self.order)

    def _explore(self, w: World, order: list[str]) -> str:
        if w.location is not None and not w.is_visible(w.location):
            return f"open {w.location}"
        nxt = next((r for r in order if r not in self.visited), None)
        return f"go to {nxt}" if nxt is not None else "look"
