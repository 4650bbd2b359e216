"""Real ALFWorld (the `alfworld` extra): its text games under `$ALFWORLD_DATA`, played in worker
processes, with the stored walkthrough and alfworld's handcoded expert, and a fact oracle.

Splits as ETO and the paper use them: `train` (3553 games), `seen` (valid_seen, 140) and
`unseen` (valid_unseen, 134); T = 40; success is the game's own `won`.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from hsl_tools.envs.alfworld import games
from hsl_tools.envs.alfworld.facts import Fact, achieved
from hsl_tools.envs.alfworld.worker import GameWorker, Payload, WorkerError, WorkerPool
from hsl_tools.envs.alfworld_family import TASK_MARK, AlfworldFamily
from hsl_tools.envs.alfworld_family.goals import Goal
from hsl_tools.envs.base import EnvError, StepResult, check_split
from hsl_tools.records import Trajectory

EXPERTS = ("walkthrough", "handcoded")


class AlfworldEpisode:
    """One game in a worker. The reset is sent at once and awaited on first use, and a step can
    be sent and received apart (`send` / `receive`), so a batch of games runs in parallel.
    When the episode ends, the goals the facts show achieved go to `meta["oracle"]`."""

    def __init__(self, env: Alfworld, split: str, task_id: str) -> None:
        self.env, self.task_id, self.max_steps = env, task_id, env.max_steps
        path = games.game_file(split, task_id)
        self.worker: GameWorker | None = env.pool.acquire()
        self.worker.send("load", str(path))
        self._state: Payload | None = None
        self.facts: list[list[Fact]] = []
        self.actions: list[str] = []
        self.done = self.won = False

    @property
    def state(self) -> Payload:
        """The game's latest state (the first use awaits the reset)."""
        if self._state is None:
            self._state = self._receive()
            intro, _, task = self._state["feedback"].partition(f"\n\n{TASK_MARK} ")
            if not task:
                raise WorkerError(f"{self.task_id}: no '{TASK_MARK}' in the first "
                                  f"observation")
            goal = Goal.parse(task)
            self._start = (task.strip().rstrip("."), intro.strip(), self._state["walkthrough"],
                           {"game": self.task_id, "goal_type": str(goal.type) if goal else
                            "unknown", "goal": goal.text() if goal else None})
        return self._state

    def _started(self) -> tuple[str, str, list[str], dict[str, Any]]:
        """Instruction, observation, walkthrough and meta, once the reset has arrived."""
        self.state  # noqa: B018 - awaits the reset
        return self._start

    @property
    def instruction(self) -> str:
        return self._started()[0]

    @property
    def observation(self) -> str:
        return self._started()[1]

    @property
    def walkthrough(self) -> list[str]:
        return self._started()[2]

    @property
    def meta(self) -> dict[str, Any]:
        return self._started()[3]

    def _receive(self) -> Payload:
        assert self.worker is not None
        payload = self.worker.receive()
        self.facts.append(payload["facts"])
        return payload

    def send(self, action: str) -> None:
        if self.done:
            raise RuntimeError(f"episode {self.task_id} is over")
        self._started()
        assert self.worker is not None
        self.worker.send("step", action)
        self.actions.append(action)

    def receive(self) -> StepResult:
        self._state = self._receive()
        self.won = self._state["won"]
        self.done = self.won or len(self.actions) >= self.max_steps
        if self.done:
            self.meta["oracle"] = {g.text(): s for g, s in achieved(self.facts).items()}
            self.close()
        return StepResult(self._state["feedback"].strip(), self.done, self.won)

    def step(self, action: str) -> StepResult:
        self.send(action)
        return self.receive()

    @property
    def reward(self) -> float:
        return float(self.won)

    def expert_action(self, variant: str | None = None) -> str:
        """The stored walkthrough while the episode follows it, else (or with variant
        "handcoded") alfworld's handcoded expert, which reads the game's state."""
        if variant not in (None, *EXPERTS):
            raise ValueError(f"unknown ALFWorld expert {variant!r} (valid: {', '.join(EXPERTS)})")
        k = len(self.actions)
        if variant != "handcoded" and self.actions == self.walkthrough[:k] \
                and k < len(self.walkthrough):
            return self.walkthrough[k]
        return (self.state["plan"] or ["look"])[0]

    def admissible_actions(self) -> list[str]:
        return self.state["admissible"]

    def close(self) -> None:
        """Give the worker back (an episode abandoned midway does this too)."""
        if self.worker is not None:
            self.env.pool.release(self.worker)
            self.worker = None


class Alfworld(AlfworldFamily):
    """The ALFWorld text environment; needs `pip install hsl-tools[alfworld]` and the data."""

    name = "alfworld"
    splits = tuple(games.SPLIT_FOLDERS)
    # a live episode holds a game worker process, which grows to ~100 MB: the expert's batch
    # of 256 ran a 24 GB machine out of memory. Two a GiB of memory keep them under a fifth
    # of it (47 on a 24 GB machine: more than the 32 the recipes' model rollouts batch)
    live_episodes = max(8, 2 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**30)

    def __init__(self, max_steps: int = 40, max_loads: int = 25, fast: bool = True) -> None:
        self.max_steps = max_steps
        self.pool = WorkerPool(max_loads, fast)
        self._splits: dict[str, str] = {}

    @staticmethod
    def check_installed() -> None:
        """Fail before any worker starts, saying how to fix it (a stored oracle needs neither
        the package nor the data, so this runs only when games are played)."""
        if importlib.util.find_spec("textworld") is None or \
                importlib.util.find_spec("alfworld") is None:
            raise EnvError("the alfworld environment needs the alfworld package: "
                           "pip install 'hsl-tools[alfworld]'")
        games.data_root()

    def task_ids(self, split: str, n: int | None = None) -> list[str]:
        check_split(self, split)
        ids = games.task_ids(split)
        if n is not None and n > len(ids):
            raise ValueError(f"split {split!r} has {len(ids)} games, asked for {n}")
        self._splits.update((t, split) for t in ids[:n])
        return list(ids[:n])

    def reset(self, task_id: str) -> AlfworldEpisode:
        self.check_installed()
        split = self._splits.get(task_id) or games.split_of(task_id)
        return AlfworldEpisode(self, split, task_id)

    def oracle(self, trajectory: Trajectory) -> dict[Goal, int]:
        """From the facts seen while the trajectory was collected, or by replaying it."""
        stored = trajectory.meta.get("oracle")
        if stored is None:
            stored = self._replay(trajectory).meta["oracle"] if trajectory.steps else {}
        return {goal: step for text, step in stored.items() if (goal := Goal.parse(text))}

    def _replay(self, trajectory: Trajectory) -> AlfworldEpisode:
        """Play a trajectory's actions again; the episode ends with its oracle in `meta`."""
        episode = self.reset(trajectory.task_id)
        episode.max_steps = len(trajectory.steps)
        for step in trajectory.steps:
            if episode.step(step.action).done:
                break
        return episode

    def close(self) -> None:
        self.pool.close()
