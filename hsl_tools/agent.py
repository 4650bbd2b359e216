"""Policies and batched rollouts.

A policy maps a batch of running episodes (with their histories) to one decision each.
`rollout` steps up to `batch_size` episodes in lockstep, asks the policy once per step for
all of them (one batched generation for a model), and yields each trajectory as soon as its
episode ends; finished episodes make room for new ones.

History rule for models: the prompt holds the system message, the task with the initial
observation, and as many of the most recent steps as fit in the model's context together with
`max_new_tokens`; older steps are dropped, `LLMPolicy.drop` at a time, and the prompt says how
many.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from hsl_tools.chat import parse_reply, render, reply_budget
from hsl_tools.envs.base import Environment, Episode, step_all
from hsl_tools.llm.base import ChatModel, Conversation, GenerationParams, make_chat_model
from hsl_tools.records import RecordError, Step, Trajectory, read_records


class Decision(NamedTuple):
    action: str | None  # None: the policy has nothing more to do; the episode ends here
    thought: str | None = None


class Policy(Protocol):
    name: str

    def settings(self) -> dict[str, Any]:
        """The options that change what the policy does (recorded beside its outputs)."""
        ...

    def act(self, env: Environment, episodes: list[Episode], histories: list[list[Step]]
            ) -> list[Decision]: ...


class ExpertPolicy:
    """The environment's own expert (ground-truth demonstrations); `variant` names one of
    several where the environment has them (ALFWorld: walkthrough, handcoded)."""

    def __init__(self, variant: str | None = None) -> None:
        self.variant = variant
        self.name = "expert" if variant is None else f"expert:{variant}"

    def settings(self) -> dict[str, Any]:
        return {}

    def act(self, env: Environment, episodes: list[Episode], histories: list[list[Step]]
            ) -> list[Decision]:
        return [Decision(e.expert_action(self.variant)) for e in episodes]


class RandomPolicy:
    """Uniform over admissible actions: the weakest agent, and a source of varied
    trajectories. Seeded per task and step, so a trajectory does not depend on batching."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def settings(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def act(self, env: Environment, episodes: list[Episode], histories: list[list[Step]]
            ) -> list[Decision]:
        return [Decision(random.Random(f"{self.seed}/{e.task_id}/{len(h)}").choice(
            e.admissible_actions())) for e, h in zip(episodes, histories, strict=True)]


class LLMPolicy:
    """A chat model acting: one batched generation per step for all running episodes.
    A reply with no parseable action is still sent (stripped) and costs a step; the
    environment answers "Nothing happens." as ETO's setup does."""

    # Steps dropped at a time once a history outgrows the context: a prompt that lost its
    # oldest step at every step would change from the task message on, and the model would
    # recompute the whole history each step instead of reusing its cached states.
    drop = 4

    def __init__(self, model: ChatModel, params: GenerationParams | None = None,
                 react: bool = False) -> None:
        self.model = model
        self.name = model.spec
        self.react = react
        self.params = params

    def settings(self) -> dict[str, Any]:
        return {"react": self.react,
                "generation": None if self.params is None else asdict(self.params)}

    def generation(self, env: Environment) -> GenerationParams:
        """The policy's settings: as given, else greedy with the environment's reply budget."""
        return self.params or generation_params(env.name, self.react)

    def prompt(self, env: Environment, episode: Episode, history: list[Step]) -> Conversation:
        """The chat for the next action, dropping the oldest steps, `drop` at a time, if it
        would not fit."""
        limit = getattr(self.model, "context_length", None)
        budget = None if limit is None else limit - self.generation(env).max_new_tokens
        for omitted in [*range(0, len(history), self.drop), len(history)]:
            conversation = render(episode.instruction, episode.observation, history[omitted:],
                                  self.react, omitted, env.name)
            # A byte-level token is at least one character, so short text fits for sure.
            if budget is None or sum(len(m["content"]) + 16 for m in conversation) <= budget \
                    or self.model.count_tokens(conversation) <= budget:
                return conversation
        return conversation

    def act(self, env: Environment, episodes: list[Episode], histories: list[list[Step]]
            ) -> list[Decision]:
        prompts = [self.prompt(env, e, h) for e, h in zip(episodes, histories, strict=True)]
        decisions = []
        sessions = [e.task_id for e in episodes]
        for reply in self.model.generate(prompts, self.generation(env), sessions):
            thought, action = parse_reply(reply)
            decisions.append(Decision(action or reply.strip()[:200], thought))
        return decisions


class ReplayPolicy:
    """Plays each recorded trajectory of a dump again in its own task, to its last action:
    what the environment shows now is recorded (re-scoring a foreign dump, or checking one
    implementation of an environment against another)."""

    def __init__(self, dump: Path) -> None:
        self.name = f"replay:{dump}"
        self.actions: dict[str, list[str]] = {}
        self.work: dict[str, list[str]] = {}  # split -> task ids, in the dump's order
        for t in read_records(dump, Trajectory):
            if t.task_id in self.actions:
                raise RecordError(f"{dump}: task {t.task_id} appears twice; a replay plays "
                                  "each task once")
            self.actions[t.task_id] = [s.action for s in t.steps]
            self.work.setdefault(t.split, []).append(t.task_id)

    def settings(self) -> dict[str, Any]:
        return {}

    def act(self, env: Environment, episodes: list[Episode], histories: list[list[Step]]
            ) -> list[Decision]:
        decisions = []
        for e, h in zip(episodes, histories, strict=True):
            recorded = self.actions.get(e.task_id)
            if recorded is None:
                raise ValueError(f"{self.name}: the dump has no trajectory for task {e.task_id}")
            decisions.append(Decision(recorded[len(h)] if len(h) < len(recorded) else None))
        return decisions


POLICIES = ("expert", "expert:VARIANT", "random", "replay:DUMP", "hf:PATH",
            "vllm:PATH_OR_NAME", "openai:URL#MODEL")


def generation_params(env: str, react: bool = False, temperature: float = 0.0, seed: int = 0
                      ) -> GenerationParams:
    """How a model policy decodes in `env`: the one place that decides it, so `hsl eval`, a
    recipe's evaluations and its rollouts decode a checkpoint alike."""
    return GenerationParams(max_new_tokens=reply_budget(env, react), temperature=temperature,
                            seed=seed)


def make_policy(spec: str, env: str = "household", temperature: float = 0.0, seed: int = 0,
                react: bool = False) -> Policy:
    """A policy from its spec (a model decodes as `generation_params` says); unknown specs
    fail with the list of valid ones."""
    if spec == "expert" or spec.startswith("expert:"):
        return ExpertPolicy(spec.partition(":")[2] or None)
    if spec == "random":
        return RandomPolicy(seed)
    if spec.startswith("replay:"):
        return ReplayPolicy(Path(spec.partition(":")[2]))
    if ":" in spec:
        return LLMPolicy(make_chat_model(spec), generation_params(env, react, temperature, seed),
                         react)
    raise ValueError(f"unknown policy {spec!r} (valid: {', '.join(POLICIES)})")


def rollout(env: Environment, task_ids: Iterable[str], policy: Policy, split: str,
            batch_size: int = 16) -> Iterator[Trajectory]:
    """Run the policy on each task; yields trajectories in the order episodes finish. At most
    `batch_size` episodes are live at once, and no more than the environment can hold."""
    batch_size = min(batch_size, env.live_episodes or batch_size)
    pending = iter(task_ids)
    active: list[tuple[Episode, list[Step]]] = []
    while True:
        while len(active) < batch_size and (tid := next(pending, None)) is not None:
            active.append((env.reset(tid), []))
        if not active:
            return
        decisions = policy.act(env, [e for e, _ in active], [h for _, h in active])
        acting = [(e, h, d) for (e, h), d in zip(active, decisions, strict=True)
                  if d.action is not None]
        for (episode, history), decision in zip(active, decisions, strict=True):
            if decision.action is None:
                yield _trajectory(env, episode, history, policy, split)
        results = step_all([e for e, _, _ in acting], [d.action for _, _, d in acting])
        still = []
        for (episode, history, decision), result in zip(acting, results, strict=True):
            history.append(Step(action=decision.action, observation=result.observation,
                                thought=decision.thought))
            if result.done:
                yield _trajectory(env, episode, history, policy, split)
            else:
                still.append((episode, history))
        active = still


def _trajectory(env: Environment, episode: Episode, steps: list[Step], policy: Policy,
                split: str) -> Trajectory:
    return Trajectory(id=episode.task_id, env=env.name, split=split, task_id=episode.task_id,
                      instruction=episode.instruction, initial_observation=episode.observation,
                      steps=steps, success=episode.won, reward=episode.reward,
                      policy=policy.name, meta=dict(episode.meta))
