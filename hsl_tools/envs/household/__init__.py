"""The embedded household world: ALFWorld's text, grammar and six goal templates, procedurally
generated from a seed, with a searching expert and a ground-truth oracle. Needs no data.
"""

from __future__ import annotations

from typing import Any

from hsl_tools.envs.alfworld_family import AlfworldFamily
from hsl_tools.envs.alfworld_family.goals import Goal
from hsl_tools.envs.base import StepResult, check_split
from hsl_tools.envs.household.expert import Expert
from hsl_tools.envs.household.oracle import achieved, satisfied
from hsl_tools.envs.household.tasks import SPLIT_SIZES, Task, make_task, task_id
from hsl_tools.envs.household.world import WELCOME, Snapshot
from hsl_tools.records import Trajectory


class HouseholdEpisode:
    """One task being played; keeps every true state for the oracle."""

    def __init__(self, task: Task, max_steps: int) -> None:
        self.task = task
        self.task_id = task.id
        self.max_steps = max_steps
        self.world = task.new_world()
        self.instruction = task.instruction
        self.observation = f"{WELCOME}\n\n{self.world.overview()}"
        self.meta: dict[str, Any] = {"goal_type": str(task.goal.type), "goal": task.goal.text(),
                                     "room": task.layout.room, "layout": task.layout_index}
        self.states: list[Snapshot] = [self.world.snapshot()]
        self.done = self.won = False
        self._expert: Expert | None = None

    def step(self, action: str) -> StepResult:
        if self.done:
            raise RuntimeError(f"episode {self.task_id} is over")
        observation = self.world.apply(action)
        self.states.append(self.world.snapshot())
        self.won = self.task.goal in satisfied(self.states[-1])
        self.done = self.won or len(self.states) - 1 >= self.max_steps
        return StepResult(observation, self.done, self.won)

    @property
    def reward(self) -> float:
        return float(self.won)

    def expert_action(self, variant: str | None = None) -> str:
        if variant is not None:
            raise ValueError(f"the household world has one expert (no variant {variant!r})")
        if self._expert is None:
            self._expert = Expert(self.task.goal, self.world)
        return self._expert.next_action(self.world)

    def admissible_actions(self) -> list[str]:
        return self.world.admissible()


class Household(AlfworldFamily):
    """The household environment: splits `train`, `seen`, `unseen`; T = 40 by default."""

    name = "household"
    splits = tuple(SPLIT_SIZES)

    def __init__(self, max_steps: int = 40) -> None:
        self.max_steps = max_steps

    def task_ids(self, split: str, n: int | None = None) -> list[str]:
        """The first `n` task ids of a split (all of it by default)."""
        check_split(self, split)
        size = SPLIT_SIZES[split]
        if n is not None and n > size:
            raise ValueError(f"split {split!r} has {size} tasks, asked for {n}")
        return [task_id(split, i) for i in range(size if n is None else n)]

    def reset(self, task_id: str) -> HouseholdEpisode:
        return HouseholdEpisode(make_task(task_id), self.max_steps)

    def replay(self, trajectory: Trajectory) -> HouseholdEpisode:
        """Play a recorded trajectory again, checking that every observation matches."""
        episode = HouseholdEpisode(make_task(trajectory.task_id), max_steps=len(trajectory.steps))
        for i, step in enumerate(trajectory.steps, 1):
            observation = episode.world.apply(step.action)
            episode.states.append(episode.world.snapshot())
            if observation != step.observation:
                raise ValueError(f"trajectory {trajectory.id}: step {i} does not replay "
                                 f"(recorded {step.observation!r}, got {observation!r})")
        return episode

    def oracle(self, trajectory: Trajectory) -> dict[Goal, int]:
        return achieved(self.replay(trajectory).states)
