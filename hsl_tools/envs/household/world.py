"""The household's state and its dynamics: one action in, ALFWorld's exact text out.

The state is plain data (what is where, what is open, held, clean, hot, cool, switched on);
`apply` is the only thing that changes it. `snapshot` freezes it for the oracle.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hsl_tools.envs.household.catalog import DESKLAMP, OPENABLE, TRANSFORMS, ObjectKind

NOTHING = "Nothing happens."
WELCOME = "-= Welcome to TextWorld, ALFRED! =-"


def kind_of(name: str) -> str:
    """Type of an instance name: "butterknife 2" -> "butterknife"."""
    return name.rsplit(" ", 1)[0]


def listing(names: list[str]) -> str:
    """ALFWorld's list: "nothing", "a pen 1", "a pen 1, and a cd 2", "a x 1, a y 2, and a z 3"."""
    items = [f"a {n}" for n in names]
    if not items:
        return "nothing"
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + ", and " + items[-1]


@dataclass(frozen=True)
class Snapshot:
    """The true state after a step, frozen: what the oracle reads."""

    placements: frozenset[tuple[str, str]]  # (object, receptacle)
    holding: str | None
    location: str | None
    clean: frozenset[str]
    hot: frozenset[str]
    cool: frozenset[str]
    lit: frozenset[str]  # receptacles on which a switched-on lamp stands


@dataclass
class World:
    """Mutable state of one episode's room."""

    receptacles: list[str]  # display order
    contents: dict[str, list[str]]
    kinds: dict[str, ObjectKind]  # object type -> affordances in this room
    opened: set[str] = field(default_factory=set)
    location: str | None = None
    holding: str | None = None
    clean: set[str] = field(default_factory=set)
    hot: set[str] = field(default_factory=set)
    cool: set[str] = field(default_factory=set)
    lamps_on: set[str] = field(default_factory=set)

    # --- queries -------------------------------------------------------------------------
    def is_openable(self, recep: str) -> bool:
        return kind_of(recep) in OPENABLE

    def is_visible(self, recep: str) -> bool:
        """Whether a receptacle's contents can be seen (and reached)."""
        return not self.is_openable(recep) or recep in self.opened

    def where(self, obj: str) -> str | None:
        for recep, objs in self.contents.items():
            if obj in objs:
                return recep
        return None

    def objects(self) -> list[str]:
        return [o for objs in self.contents.values() for o in objs] + (
            [self.holding] if self.holding else [])

    def lamp_here(self) -> str | None:
        if self.location is None:
            return None
        return next((o for o in self.contents[self.location] if kind_of(o) == DESKLAMP), None)

    def snapshot(self) -> Snapshot:
        lit = frozenset(r for r, objs in self.contents.items()
                        if any(o in self.lamps_on for o in objs))
        return Snapshot(
            placements=frozenset((o, r) for r, objs in self.contents.items() for o in objs),
            holding=self.holding, location=self.location, clean=frozenset(self.clean),
            hot=frozenset(self.hot), cool=frozenset(self.cool), lit=lit)

    def admissible(self) -> list[str]:
        """Actions that would change something or show something, as ALFWorld lists them."""
        here, held = self.location, self.holding
        acts = [f"go to {r}" for r in self.receptacles if r != here]
        if here is not None:
            if self.is_openable(here):
                acts.append(f"{'close' if here in self.opened else 'open'} {here}")
            if self.is_visible(here):
                if held is None:
                    acts += [f"take {o} from {here}" for o in self.contents[here]
                             if kind_of(o) != DESKLAMP]
                elif self.kinds[kind_of(held)].fits(kind_of(here)):
                    acts.append(f"move {held} to {here}")
            if held is not None:
                kind = self.kinds[kind_of(held)]
                acts += [f"{verb} {held} with {here}" for verb, (appliance, _) in TRANSFORMS.items()
                         if kind_of(here) == appliance and getattr(kind, verb)]
            lamp = self.lamp_here()
            if lamp is not None:
                acts.append(f"use {lamp}")
            acts.append(f"examine {here}")
        if held is not None:
            acts.append(f"examine {held}")
        return acts + ["inventory", "look"]

    # --- text ----------------------------------------------------------------------------
    def overview(self) -> str:
        """The room as the first observation shows it."""
        return ("You are in the middle of a room. Looking quickly around you, you see "
                f"{listing(self.receptacles)}.")

    def describe(self, recep: str) -> str:
        """What examining (or arriving at) a receptacle shows."""
        if self.is_openable(recep):
            if recep not in self.opened:
                return f"The {recep} is closed."
            return f"The {recep} is open. In it, you see {listing(self.contents[recep])}."
        return f"On the {recep}, you see {listing(self.contents[recep])}."

    def describe_object(self, obj: str) -> str:
        if kind_of(obj) == DESKLAMP:
            return f"This {obj} is {'on' if obj in self.lamps_on else 'off'}."
        hot, cool, clean = obj in self.hot, obj in self.cool, obj in self.clean
        word = ("hot and clean" if hot and clean else "cool and clean" if cool and clean
                else "hot" if hot else "cold" if cool else "clean" if clean else None)
        if word is None:
            return f"There's nothing special about {obj}."
        return f"This is a {word} {obj}."

    # --- dynamics ------------------------------------------------------------------------
    def apply(self, action: str) -> str:
        """Carry out one action and return the observation; invalid ones change nothing."""
        a = re.sub(r"\s+", " ", action.strip().lower())
        for pattern, handler in _ACTIONS:
            m = pattern.fullmatch(a)
            if m:
                return handler(self, *m.groups()) or NOTHING
        return NOTHING

    def _goto(self, recep: str) -> str | None:
        if recep not in self.contents or recep == self.location:
            return None
        self.location = recep
        return f"You arrive at {recep}. {self.describe(recep)}"

    def _open(self, recep: str) -> str | None:
        if recep != self.location or not self.is_openable(recep) or recep in self.opened:
            return None
        self.opened.add(recep)
        return f"You open the {recep}. {self.describe(recep)}"

    def _close(self, recep: str) -> str | None:
        if recep != self.location or not self.is_openable(recep) or recep not in self.opened:
            return None
        self.opened.discard(recep)
        return f"You close the {recep}."

    def _take(self, obj: str, recep: str) -> str | None:
        if (recep != self.location or self.holding is not None or not self.is_visible(recep)
                or obj not in self.contents[recep] or kind_of(obj) == DESKLAMP):
            return None
        self.contents[recep].remove(obj)
        self.holding = obj
        return f"You pick up the {obj} from the {recep}."

    def _move(self, obj: str, recep: str) -> str | None:
        if (obj != self.holding or recep != self.location or not self.is_visible(recep)
                or not self.kinds[kind_of(obj)].fits(kind_of(recep))):
            return None
        self.contents[recep].append(obj)
        self.holding = None
        return f"You move the {obj} to the {recep}."

    def _transform(self, verb: str, obj: str, recep: str) -> str | None:
        if (obj != self.holding or recep != self.location
                or kind_of(recep) != TRANSFORMS[verb][0]
                or not getattr(self.kinds[kind_of(obj)], verb)):
            return None
        if verb == "clean":
            self.clean.add(obj)
        else:  # heating undoes cooling and the other way round, as in ALFWorld
            gained, lost = (self.hot, self.cool) if verb == "heat" else (self.cool, self.hot)
            gained.add(obj)
            lost.discard(obj)
        return f"You {verb} the {obj} using the {recep}."

    def _use(self, obj: str) -> str | None:
        if kind_of(obj) != DESKLAMP or self.location is None:
            return None
        if obj not in self.contents[self.location]:
            return None
        if obj in self.lamps_on:
            self.lamps_on.discard(obj)
            return f"You turn off the {obj}."
        self.lamps_on.add(obj)
        return f"You turn on the {obj}."

    def _examine(self, target: str) -> str | None:
        if target == self.location:
            return self.describe(target)
        if target == self.holding or (self.location is not None and self.is_visible(
                self.location) and target in self.contents[self.location]):
            return self.describe_object(target)
        return None

    def _look(self) -> str:
        if self.location is None:
            return self.overview()
        return f"You are facing the {self.location}. Next to it, you see nothing."

    def _inventory(self) -> str:
        if self.holding is None:
            return "You are not carrying anything."
        return f"You are carrying: a {self.holding}."


_N = r"([a-z]+ \d+)"
_ACTIONS = [
    (re.compile(rf"go to {_N}"), World._goto),
    (re.compile(rf"open {_N}"), World._open),
    (re.compile(rf"close {_N}"), World._close),
    (re.compile(rf"take {_N} from {_N}"), World._take),
    (re.compile(rf"move {_N} to {_N}"), World._move),
    (re.compile(rf"(clean|heat|cool) {_N} with {_N}"), World._transform),
    (re.compile(rf"use {_N}"), World._use),
    (re.compile(rf"examine {_N}"), World._examine),
    (re.compile(r"look"), World._look),
    (re.compile(r"inventory"), World._inventory),
]
