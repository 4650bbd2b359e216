"""Policies and batched rollouts.

A policy maps a batch of running episodes (with their histories) to one action each.
`rollout` steps up to `batch_size` episodes in lockstep, asks the policy once per step for
all of them, and yields each trajectory as soon as its episode ends.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from typing import Protocol

from hsl_tools.envs.base import Environment, Episode
from hsl_tools.records import Step, Trajectory


class Policy(Protocol):
    name: str

    def act(self, episodes: list[Episode], histories: list[list[Step]]) -> list[str]: ...


class ExpertPolicy:
    """The environment's own expert (ground-truth demonstrations)."""

    name = "expert"

    def act(self, episodes: list[Episode], histories: list[list[Step]]) -> list[str]:
        return [e.expert_action() for e in episodes]


class RandomPolicy:
    """Uniform over admissible actions: the weakest agent, and a source of varied
    trajectories. Seeded per task and step, so a trajectory does not depend on batching."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def act(self, episodes: list[Episode], histories: list[list[Step]]) -> list[str]:
        return [random.Random(f"{self.seed}/{e.task_id}/{len(h)}").choice(e.admissible_actions())
                for e, h in zip(episodes, histories, strict=True)]


POLICIES = ("expert", "random")


def make_policy(spec: str, seed: int = 0) -> Policy:
    """A policy from its spec; unknown specs fail with the list of valid ones."""
    if spec == "expert":
        return ExpertPolicy()
    if spec == "random":
        return RandomPolicy(seed)
    raise ValueError(f"unknown policy {spec!r} (valid: {', '.join(POLICIES)})")


def rollout(env: Environment, task_ids: Iterable[str], policy: Policy, split: str,
            batch_size: int = 16) -> Iterator[Trajectory]:
    """Run the policy on each task; yields trajectories in the order episodes finish."""
    pending = iter(task_ids)
    active: list[tuple[Episode, list[Step]]] = []
    while True:
        while len(active) < batch_size and (tid := next(pending, None)) is not None:
            active.append((env.reset(tid), []))
        if not active:
            return
        actions = policy.act([e for e, _ in active], [h for _, h in active])
        still = []
        for (episode, history), action in zip(active, actions, strict=True):
            result = episode.step(action)
            history.append(Step(action=action, observation=result.observation))
            if result.done:
                yield _trajectory(env, episode, history, policy, split)
            else:
                still.append((episode, history))
        active = still


def _trajectory(env: Environment, episode: Episode, steps: list[Step], policy: Policy,
                split: str) -> Trajectory:
    return Trajectory(id=episode.task_id, env=env.name, split=split, task_id=episode.task_id,
                      instruction=episode.instruction, initial_observation=episode.observation,
                      steps=steps, success=episode.won, reward=float(episode.won),
                      policy=policy.name, meta=dict(episode.meta))
