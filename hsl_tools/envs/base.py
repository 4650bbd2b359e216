"""The environment protocol every stage speaks, and the registry that names environments.

An `Environment` knows its splits and tasks and starts episodes; an `Episode` is one running
task. Episodes are separate objects so that rollouts can step many of them in lockstep.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol, runtime_checkable

from hsl_tools.records import Trajectory


class EnvError(RuntimeError):
    """An environment cannot run here; the one-line message says why and how to fix it."""


@dataclass
class StepResult:
    observation: str
    done: bool
    won: bool
    info: dict[str, Any] = field(default_factory=dict)


class Episode(Protocol):
    task_id: str
    instruction: str
    observation: str  # the initial observation, without the instruction
    meta: dict[str, Any]  # goal type and the like, copied into the trajectory record
    done: bool
    won: bool
    reward: float  # the episode's reward so far (1.0 for a win where the env has no other)

    def step(self, action: str) -> StepResult: ...

    def expert_action(self, variant: str | None = None) -> str:
        """The expert's next action; `variant` picks one where an environment has several
        (environments without an expert raise)."""
        ...

    def admissible_actions(self) -> list[str]: ...


@runtime_checkable
class RemoteEpisode(Protocol):
    """An episode that runs elsewhere (a worker process): a step is sent, then received."""

    def send(self, action: str) -> None: ...

    def receive(self) -> StepResult: ...


def step_all(episodes: Sequence[Episode], actions: Sequence[str]) -> list[StepResult]:
    """Step each episode once. Remote episodes all get their action before any answer is
    awaited, so a batch of them steps in parallel."""
    pairs = list(zip(episodes, actions, strict=True))
    for episode, action in pairs:
        if isinstance(episode, RemoteEpisode):
            episode.send(action)
    return [e.receive() if isinstance(e, RemoteEpisode) else e.step(a) for e, a in pairs]


class Judge(Protocol):
    """What one trajectory achieved, as its environment tells it."""

    achieved: dict[str, int]  # each goal achieved (in words) -> the first step it held

    def judge(self, goal: str) -> tuple[str, int] | str:
        """(the achieved goal a named goal is, the first step it held), or why the named
        goal does not hold."""
        ...

    def measures(self, goal: str) -> dict[str, float]:
        """Numbers about a named goal worth averaging (WebShop: its reward and parts)."""
        ...


@dataclass
class OracleJudge:
    """A judge from an oracle that lists every goal achieved (canonical text -> first step)."""

    env: Environment
    achieved: dict[str, int]

    def judge(self, goal: str) -> tuple[str, int] | str:
        canonical = self.env.canonical_goal(goal)
        if canonical not in self.achieved:
            return f"the environment shows {goal!r} never achieved"
        return canonical, self.achieved[canonical]

    def measures(self, goal: str) -> dict[str, float]:
        return {}


class Environment(Protocol):
    """An environment owns what is its own; stages ask it instead of importing its code."""

    name: str
    splits: tuple[str, ...]
    train_split: str  # where demos and HSL rollouts come from
    eval_splits: tuple[str, ...]  # what success is measured on
    max_steps: int
    prompt_family: str  # prompts/<family>/… for LLM relabelers
    graded: bool  # rewards give partial credit (a score beside success), not just the win
    reply_tokens: int  # new tokens for one agent reply
    system: str  # the agent's system prompt: the action grammar
    live_episodes: int | None  # episodes it can hold at once (None: no limit)

    @staticmethod
    def task_message(instruction: str, initial_observation: str) -> str:
        """The first user message of an episode."""
        ...

    def task_ids(self, split: str, n: int | None = None) -> list[str]: ...

    def reset(self, task_id: str) -> Episode: ...

    @staticmethod
    def canonical_goal(text: str) -> str | None:
        """A goal sentence in the environment's canonical form; None outside its goal space."""
        ...

    @staticmethod
    def goal_type(text: str) -> str: ...

    @staticmethod
    def ungrounded(goal: str, trajectory: Trajectory) -> str | None:
        """Why a goal cannot be this trajectory's by its text alone; None when it could be."""
        ...

    @staticmethod
    def goal_choices(trajectory: Trajectory) -> list[str] | None:
        """Every goal a trajectory could have achieved, by its text (a grounded relabeler's
        choices); None where goals are free text."""
        ...

    def goal_sentences(self) -> list[str]:
        """Text of the environment's goal space that a tokenizer built for it should know."""
        ...

    max_goals: int | None  # goals one trajectory can achieve (None: no limit)
    goal_chars: int  # the longest goal sentence a relabeler may write

    def judge(self, trajectory: Trajectory) -> Judge:
        """What a trajectory achieved, to check named goals against: EnvError where it
        cannot be told here, ValueError where the trajectory does not replay as recorded."""
        ...

    def outcome(self, trajectory: Trajectory) -> str:
        """What an evaluation episode came to, in a few words (for reports)."""
        ...

    @staticmethod
    def brief(observation: str) -> str:
        """An observation as a relabeler's prompt shows it (long pages shortened)."""
        ...

    def close(self) -> None:
        """Give back what the environment holds (worker processes); it may be used again."""
        ...

    @staticmethod
    def restated(observation: str, instruction: str, goal: str) -> str:
        """An observation as it would read had the task been `goal` (WebShop's pages show
        the instruction; other environments' observations do not)."""
        ...


ENVIRONMENTS = {"household": "hsl_tools.envs.household:Household",
                "alfworld": "hsl_tools.envs.alfworld:Alfworld",
                "webshop": "hsl_tools.envs.webshop:WebShop"}


@cache
def env_class(name: str) -> type[Environment]:
    """An environment's class by name (its class attributes answer without loading data);
    an unknown name fails with the list of known ones."""
    if name not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {name!r} (valid: {', '.join(ENVIRONMENTS)})")
    module, cls = ENVIRONMENTS[name].split(":")
    return getattr(importlib.import_module(module), cls)


class Environments(dict[str, Environment]):
    """Environments by name, each made (with its defaults) the first time it is asked for;
    as a context manager, each is closed at the end (ALFWorld's worker processes)."""

    def __missing__(self, name: str) -> Environment:
        env = self[name] = make_env(name)
        return env

    def __enter__(self) -> Environments:
        return self

    def __exit__(self, *exc: object) -> None:
        for env in self.values():
            env.close()
        self.clear()


def make_env(name: str, **options: Any) -> Environment:
    """An environment by name, with its options (unset ones take the environment's default)."""
    return env_class(name)(**{k: v for k, v in options.items() if v is not None})


def check_split(env: Environment, split: str) -> None:
    if split not in env.splits:
        raise ValueError(f"unknown split {split!r} for {env.name} (valid: {', '.join(env.splits)})")


def serve_env(name: str, host: str, port: int, seed: int = 0) -> None:
    """`hsl serve-env`: serve environment `name` on AgentGym's env-server protocol until
    interrupted (an environment serves itself where it has a `serve`)."""
    env = make_env(name)
    serve = getattr(env, "serve", None)
    if serve is None:
        raise ValueError(f"{name} has no server (serve-env serves an environment with a "
                         "`serve` method: webshop)")
    serve(host, port, seed)
