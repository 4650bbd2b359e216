"""Read an ALFWorld-style trajectory's text and track what the agent could know after each
step: where it is, what it holds, what it has seen in each receptacle, which objects it has
cleaned, heated or cooled, and which lamps it switched on.

No hidden state is used: this is the text-only procedure a careful reader (or the LLM
relabeler) follows. It serves the rule relabeler on the household world and real ALFWorld.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_NAME = r"([a-z]+ \d+)"
_LIST = re.compile(r"you see (.*?)\.?$")
_ITEM = re.compile(r"(?:a|an) ([a-z]+ \d+)")


def _listed(text: str) -> list[str]:
    m = _LIST.search(text)
    return [] if m is None or m[1] == "nothing" else _ITEM.findall(m[1])


@dataclass
class Belief:
    """What the text has shown so far; `first_seen` maps objects to the step they appeared."""

    location: str | None = None
    holding: str | None = None
    contents: dict[str, list[str]] = field(default_factory=dict)
    clean: set[str] = field(default_factory=set)
    hot: set[str] = field(default_factory=set)
    cool: set[str] = field(default_factory=set)
    lamps_on: dict[str, str] = field(default_factory=dict)  # lamp -> receptacle it stands on
    initial: dict[str, list[str]] = field(default_factory=dict)  # contents before any change
    first_seen: dict[str, int] = field(default_factory=dict)
    # receptacles changed before their contents were ever shown: (taken from, put in) them
    unseen_changes: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)

    def copy(self) -> Belief:
        return Belief(self.location, self.holding, {r: list(o) for r, o in self.contents.items()},
                      set(self.clean), set(self.hot), set(self.cool), dict(self.lamps_on),
                      self.initial, self.first_seen, self.unseen_changes)

    def _see(self, recep: str, objects: list[str], step: int) -> None:
        self.contents[recep] = objects
        if recep not in self.initial:
            # the first full view: what the agent took out was there, what it put in was not
            taken, put = self.unseen_changes.pop(recep, ([], []))
            self.initial[recep] = [o for o in objects if o not in put] + taken
        for o in objects:
            self.first_seen.setdefault(o, step)

    def known_initial(self) -> dict[str, list[str]]:
        """Contents before any change, as far as the text shows them: first full views, and
        for receptacles never shown whole, the objects taken out of them."""
        return {**{r: taken for r, (taken, _) in self.unseen_changes.items()}, **self.initial}

    def _change(self, recep: str, taken: str | None = None, put: str | None = None) -> None:
        """Record a take or a put; a receptacle never shown keeps it for its first view."""
        if recep not in self.initial:
            changes = self.unseen_changes.setdefault(recep, ([], []))
            if taken is not None and taken not in changes[1]:
                changes[0].append(taken)  # it was there from the start
            if put is not None:
                changes[1].append(put)
        contents = self.contents.setdefault(recep, [])
        if taken is not None and taken in contents:
            contents.remove(taken)
        if put is not None and put not in contents:  # stacked receptacles may list it already
            contents.append(put)

    def apply(self, step: int, action: str, observation: str) -> str | None:
        """Update from one step; returns the kind of effect the observation shows (or None)."""
        obs, act = observation.strip(), re.sub(r"\s+", " ", action.strip().lower())
        if m := re.match(rf"You arrive at {_NAME}\.", obs):
            self.location = m[1]
            if "you see" in obs:
                self._see(m[1], _listed(obs), step)
            return "arrive"
        if m := re.match(rf"You open the {_NAME}\.", obs):
            self._see(m[1], _listed(obs), step)
            return "open"
        if re.match(rf"You close the {_NAME}\.", obs):
            return "close"
        if m := re.match(rf"You pick up the {_NAME} from the {_NAME}\.", obs):
            obj, recep = m[1], m[2]
            self._change(recep, taken=obj)
            self.first_seen.setdefault(obj, step)
            self.holding = obj
            return "take"
        if m := re.match(rf"You move the {_NAME} to the {_NAME}\.", obs):
            obj, recep = m[1], m[2]
            self._change(recep, put=obj)
            self.holding = None
            return "move"
        if m := re.match(rf"You (clean|heat|cool) the {_NAME} using the {_NAME}\.", obs):
            verb, obj = m[1], m[2]
            if verb == "clean":
                self.clean.add(obj)
            elif verb == "heat":
                self.hot.add(obj)
                self.cool.discard(obj)
            else:
                self.cool.add(obj)
                self.hot.discard(obj)
            return verb
        if m := re.match(rf"You turn (on|off) the {_NAME}\.", obs):
            if m[1] == "on" and self.location is not None:
                self.lamps_on[m[2]] = self.location
            else:
                self.lamps_on.pop(m[2], None)
            return "toggle"
        if re.match(r"(On the |The [a-z]+ \d+ is open\. In it)", obs) and act.startswith("examine"):
            target = act.removeprefix("examine ").strip()
            if "you see" in obs:
                self._see(target, _listed(obs), step)
            return None
        return None


def track(steps: list[tuple[str, str]]) -> tuple[list[Belief], list[str | None]]:
    """Beliefs before the first action (index 0) and after each step, and each step's effect."""
    belief = Belief()
    beliefs, effects = [belief.copy()], []
    for i, (action, observation) in enumerate(steps, 1):
        effects.append(belief.apply(i, action, observation))
        beliefs.append(belief.copy())
    return beliefs, effects
