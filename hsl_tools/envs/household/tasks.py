"""Tasks of the household world: layouts, splits, and a task fully determined by its id.

A task id is `<split>-<index>` ("train-00042"). Everything about the task (room, objects and
where they lie, the instructed goal and its wording) follows from a hash of the id, so the same
id gives the same task on every machine. Splits follow ALFWorld's: `seen` poses new tasks in
the layouts of `train`; `unseen` uses layouts that never occur in `train` and instructs
object/receptacle pairs that `train` never instructs. Every task is checked solvable: the
expert must win it within the step budget, or the next candidate from the same id is drawn.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from functools import cache, lru_cache

from hsl_tools.envs.alfworld_family.goals import Goal, GoalType
from hsl_tools.envs.household.catalog import (
    DESKLAMP,
    GOAL_VERB,
    LAMP_HOSTS,
    OBJECTS,
    ROOM_GOALS,
    ROOMS,
    TRANSFORMS,
    ObjectKind,
)
from hsl_tools.envs.household.expert import Expert
from hsl_tools.envs.household.oracle import satisfied
from hsl_tools.envs.household.world import World, kind_of

WORLD_VERSION = "household/1"
SPLIT_SIZES = {"train": 3553, "seen": 140, "unseen": 134}
LAYOUTS = {"seen": 40, "unseen": 12}  # train and seen share the "seen" pool
ROOM_ORDER = tuple(ROOMS)
SOLVE_BUDGET = 40  # the expert must win within this many steps


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("/".join(map(str, (WORLD_VERSION, *parts))).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def held_out(obj: str, recep: str) -> bool:
    """Whether an instructed object/receptacle pair belongs to `unseen` only (about 1 in 4)."""
    return hashlib.sha256(f"{obj}/{recep}".encode()).digest()[0] % 4 == 0


@dataclass(frozen=True)
class Layout:
    room: str
    receptacles: tuple[str, ...]  # display order
    lamp_host: str | None
    fingerprint: tuple[str, tuple[tuple[str, int], ...]]


@cache
def layout(pool: str, index: int) -> Layout:
    """Layout `index` of a pool ("seen" or "unseen"); unseen ones never equal a seen one."""
    room = ROOM_ORDER[index % len(ROOM_ORDER)]
    for attempt in range(1000):
        rng = _rng("layout", pool, index, attempt)
        counts = {t: rng.randint(lo, hi) for t, (lo, hi) in ROOMS[room].items()}
        fingerprint = (room, tuple(sorted((t, c) for t, c in counts.items() if c)))
        if pool == "unseen" and fingerprint in _seen_fingerprints():
            continue
        types = [t for t in counts if counts[t]]
        rng.shuffle(types)
        receptacles = tuple(f"{t} {i}" for t in types for i in range(counts[t], 0, -1))
        hosts = [r for r in receptacles if kind_of(r) in LAMP_HOSTS]
        lamp_host = rng.choice(sorted(hosts)) if GoalType.LOOK_IN_LIGHT in ROOM_GOALS[room] \
            else None
        return Layout(room, receptacles, lamp_host, fingerprint)
    raise RuntimeError(f"no layout for {pool} {index}")  # pragma: no cover


@cache
def _seen_fingerprints() -> frozenset:
    return frozenset(layout("seen", i).fingerprint for i in range(LAYOUTS["seen"]))


@dataclass(frozen=True)
class Task:
    """One household task: where everything starts and what to do."""

    id: str
    split: str
    layout_index: int
    layout: Layout
    placements: tuple[tuple[str, str], ...]  # (object, receptacle), in listing order
    goal: Goal
    variant: int  # which of the template's two sentences the instruction uses

    @property
    def instruction(self) -> str:
        return self.goal.text(self.variant)

    def new_world(self) -> World:
        contents: dict[str, list[str]] = {r: [] for r in self.layout.receptacles}
        for obj, recep in self.placements:
            contents[recep].append(obj)
        return World(receptacles=list(self.layout.receptacles), contents=contents,
                     kinds=OBJECTS[self.layout.room])


def parse_task_id(task_id: str) -> tuple[str, int]:
    m = re.fullmatch(r"(train|seen|unseen)-(\d+)", task_id)
    if not m or int(m[2]) >= SPLIT_SIZES[m[1]]:
        sizes = ", ".join(f"{s}-0..{n - 1}" for s, n in SPLIT_SIZES.items())
        raise ValueError(f"unknown household task id {task_id!r} (valid: {sizes})")
    return m[1], int(m[2])


def task_id(split: str, index: int) -> str:
    return f"{split}-{index:05d}"


@lru_cache(maxsize=8192)
def make_task(tid: str) -> Task:
    """The task behind an id: the first candidate drawn from the id that the expert solves."""
    split, _ = parse_task_id(tid)
    pool = "unseen" if split == "unseen" else "seen"
    for attempt in range(1000):
        task = _candidate(tid, split, pool, _rng("task", tid, attempt))
        if task is not None and solves(task):
            return task
    raise RuntimeError(f"no solvable task for {tid}")  # pragma: no cover


def _candidate(tid: str, split: str, pool: str, rng: random.Random) -> Task | None:
    goal_type = rng.choice(list(GoalType))
    indices = [i for i in range(LAYOUTS[pool])
               if goal_type in ROOM_GOALS[ROOM_ORDER[i % len(ROOM_ORDER)]]]
    index = rng.choice(indices)
    lay = layout(pool, index)
    kinds = OBJECTS[lay.room]
    present = sorted({kind_of(r) for r in lay.receptacles})
    pairs = [(o, r) for o, k in kinds.items() for r in present
             if _poses(goal_type, k, r) and held_out(o, r) == (split == "unseen")]
    if goal_type is GoalType.LOOK_IN_LIGHT:
        pairs = [(o, DESKLAMP) for o in kinds if held_out(o, DESKLAMP) == (split == "unseen")]
    if not pairs:
        return None
    obj, recep = rng.choice(pairs)
    goal = Goal(goal_type, obj, recep)
    # The goal's objects first (two for pick-two, sometimes a spare), then distractors.
    n_goal = (2 if goal_type is GoalType.PICK_TWO else 1) + (rng.random() < 0.3)
    names = [obj] * n_goal + [rng.choice(sorted(kinds)) for _ in range(rng.randint(7, 12))]
    rng.shuffle(names)
    numbered: dict[str, int] = {}
    placements = []
    if lay.lamp_host is not None:
        placements.append((f"{DESKLAMP} 1", lay.lamp_host))
    for kind in names:
        numbered[kind] = numbered.get(kind, 0) + 1
        spots = [r for r in lay.receptacles if kind_of(r) in kinds[kind].spawn]
        placements.append((f"{kind} {numbered[kind]}", rng.choice(spots or lay.receptacles)))
    task = Task(tid, split, index, lay, tuple(placements), goal, rng.randint(0, 1))
    if goal in satisfied(task.new_world().snapshot()):
        return None  # already done before the first action: not a task
    return task


def _poses(goal_type: GoalType, kind: ObjectKind, recep: str) -> bool:
    """Whether "<goal_type> this kind of object into this receptacle type" makes a task."""
    if not kind.fits(recep):
        return False
    if goal_type in GOAL_VERB:
        verb = GOAL_VERB[goal_type]
        return recep != TRANSFORMS[verb][0] and getattr(kind, verb)
    return True


def solves(task: Task, budget: int = SOLVE_BUDGET) -> bool:
    """Whether the expert wins the task within `budget` steps."""
    world = task.new_world()
    expert = Expert(task.goal, world)
    for _ in range(budget):
        world.apply(expert.next_action(world))
        if task.goal in satisfied(world.snapshot()):
            return True
    return False
