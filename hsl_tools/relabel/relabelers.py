"""Relabelers: who names the achieved goals and the relevant actions.

`rules` follows the procedure in code (`rules.py`); an LLM relabeler (`hf:`, `vllm:`,
`openai:` specs) is asked with a versioned prompt, one batched call per round over every item
still unanswered. A reply must parse and validate (a JSON schema is handed to backends that
take one; otherwise the JSON is dug out of the text); items that still fail after the bounded
retries come back as `Failure`s, never as a crash and never dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, Field, ValidationError, create_model
from tenacity import Retrying, retry_if_result, stop_after_attempt

from hsl_tools.envs.base import env_class
from hsl_tools.llm.base import (
    ChatModel,
    Conversation,
    CountsTokens,
    GenerationParams,
    make_chat_model,
)
from hsl_tools.records import GoalRecord, Trajectory, first_error
from hsl_tools.relabel.prompts import load_prompt, numbered


@dataclass
class Failure:
    raw: str
    reason: str


@dataclass
class Goals:
    """Achieved goals of one trajectory as (goal text, S(k)), and the reply they came from."""

    goals: list[tuple[str, int]]
    raw: str | None = None


@dataclass
class Relevance:
    labels: list[tuple[bool, str]]
    raw: str | None = None


class Relabeler(Protocol):
    spec: str

    def prompt_id(self, task: str, prompt: str | None, env: str) -> str | None:
        """The exact prompt version used for a task in an environment (`family/task@vN`),
        None without one."""
        ...

    def identify(self, trajectories: Sequence[Trajectory], prompt: str | None
                 ) -> list[Goals | Failure]: ...

    def relevance(self, goals: Sequence[GoalRecord], prompt: str | None
                  ) -> list[Relevance | Failure]: ...


def _rules(env: str) -> Any:
    """The environment whose rule relabeler reads this record; one line if it has none."""
    kind = env_class(env)
    if not hasattr(kind, "rule_goals"):
        raise ValueError(f"{env} has no rule relabeler yet: use an LLM relabeler (hf:PATH, "
                         "vllm:PATH_OR_NAME, openai:URL#MODEL)")
    return kind


class RuleRelabeler:
    """The environment's own text procedure (`rule_goals`, `rule_relevance`); needs no model."""

    spec = "rules"

    def prompt_id(self, task: str, prompt: str | None, env: str) -> str | None:
        return None

    def identify(self, trajectories: Sequence[Trajectory], prompt: str | None
                 ) -> list[Goals | Failure]:
        return [Goals(_rules(t.env).rule_goals(t.steps)) for t in trajectories]

    def relevance(self, goals: Sequence[GoalRecord], prompt: str | None
                  ) -> list[Relevance | Failure]:
        out: list[Relevance | Failure] = []
        for g in goals:
            rules = _rules(g.trajectory.env)
            try:
                out.append(Relevance(rules.rule_relevance(g.trajectory.steps, g.goal)))
            except ValueError as e:
                out.append(Failure("", str(e)))
        return out


class _GoalItem(BaseModel):
    goal: str
    step: int


# Length bounds go into the JSON schema too, so a constrained decoder must close its strings
# and lists instead of rambling past the token budget into invalid JSON.
class GoalReply(BaseModel):
    """What goal inference must return (`goal_reply` bounds each goal's length)."""

    reasoning: str = Field("", max_length=400)
    # required: a small model under a schema where `goals` may be left out closes the object
    # after its reasoning, naming nothing (SmolLM2 on WebShop: 100 of 100 replies)
    goals: list[_GoalItem] = Field(max_length=16)


@cache
def goal_reply(goal_chars: int, choices: tuple[str, ...] | None = None) -> type[GoalReply]:
    """GoalReply with goals at most `goal_chars` long (an environment's longest goal), or,
    grounded, each one of `choices` (none to choose from: no goal)."""
    goal: Any = (str, Field(max_length=goal_chars)) if choices is None else \
        (Literal[choices] if choices else str, ...)
    item = create_model("GoalItem", __base__=_GoalItem, goal=goal)
    return create_model("GoalReply", __base__=GoalReply,
                        goals=(list[item], Field(max_length=16 if choices != () else 0)))


class _Label(BaseModel):
    step: int
    relevant: bool
    reason: str = Field("", max_length=120)


class RelevanceReply(BaseModel):
    """What action relevance must return."""

    labels: list[_Label]


def extract_json(text: str) -> Any:
    """The JSON in a reply: the whole text, a fenced block, or the outermost {...} / [...]."""
    candidates = [text.strip()]
    candidates += re.findall(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    for opener, closer in ("{}", "[]"):
        start, end = text.find(opener), text.rfind(closer)
        if 0 <= start < end:
            candidates.append(text[start:end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            continue
    raise ValueError("no JSON found in the reply")


M = TypeVar("M", bound=BaseModel)


def parse_reply(text: str, model: type[M]) -> M:
    """Validate a reply against a schema; ValueError with a short reason otherwise."""
    try:
        return model.model_validate(extract_json(text))
    except ValidationError as e:
        raise ValueError(first_error(e)) from None


T = TypeVar("T")
R = TypeVar("R")


def _episode(t: Trajectory) -> dict[str, str]:
    """A trajectory's fields, rendered the same for both tasks: with prompts that open alike
    (v2), a goal's relevance prompt repeats its identification prompt up to the goal's step."""
    env = env_class(t.env)
    return {"templates": env.goal_forms(), "instruction": t.instruction,
            "initial_observation": t.initial_observation,
            "trajectory": numbered(t.steps, env.brief)}


class LLMRelabeler:
    """A chat model with versioned prompts; `attempts` rounds, the later ones sampled warmer.
    Each record is asked in its own environment's prompt family, under its own schema."""

    def __init__(self, model: ChatModel, attempts: int = 2, max_new_tokens: int = 1024,
                 retry_temperature: float = 0.7, grounded: bool = False) -> None:
        # a grounded relabeler is another relabeler: its records and resumes say so
        self.model, self.spec, self.grounded = model, model.spec + "+grounded" * grounded, \
            grounded
        self.attempts, self.retry_temperature = attempts, retry_temperature
        self.params = GenerationParams(max_new_tokens=max_new_tokens)

    def prompt_id(self, task: str, prompt: str | None, env: str) -> str | None:
        return load_prompt(prompt or f"{env_class(env).prompt_family}/{task}").id

    def identify(self, trajectories: Sequence[Trajectory], prompt: str | None
                 ) -> list[Goals | Failure]:
        def ask(t: Trajectory) -> Conversation:
            family = env_class(t.env).prompt_family
            return load_prompt(prompt or f"{family}/goal_inference").render(**_episode(t))

        def read(t: Trajectory, text: str) -> Goals:
            env = env_class(t.env)
            reply = parse_reply(text, schema(t))
            first: dict[str, int] = {}
            for item in reply.goals:
                if not 1 <= item.step <= len(t.steps):
                    raise ValueError(f"goal {item.goal!r}: step {item.step} is outside "
                                     f"1..{len(t.steps)}")
                goal = env.canonical_goal(item.goal)
                if goal is not None:  # a sentence outside the goal space is not a goal
                    first[goal] = min(item.step, first.get(goal, item.step))
            goals = sorted(first.items(), key=lambda gs: (gs[1], gs[0]))
            return Goals(goals[:env.max_goals], text)  # WebShop: one purchase at most

        def schema(t: Trajectory) -> type[GoalReply]:
            env = env_class(t.env)
            choices = env.goal_choices(t) if self.grounded else None
            return goal_reply(env.goal_chars, None if choices is None else tuple(choices))

        return self._rounds(trajectories, ask, read, schema)

    def relevance(self, goals: Sequence[GoalRecord], prompt: str | None
                  ) -> list[Relevance | Failure]:
        def ask(g: GoalRecord) -> Conversation:
            family = env_class(g.trajectory.env).prompt_family
            return load_prompt(prompt or f"{family}/action_relevance").render(
                goal=g.goal, n_steps=len(g.trajectory.steps), **_episode(g.trajectory))

        def read(g: GoalRecord, text: str) -> Relevance:
            labels = sorted(parse_reply(text, RelevanceReply).labels, key=lambda lb: lb.step)
            steps, n = [lb.step for lb in labels], len(g.trajectory.steps)
            if steps != list(range(1, n + 1)):
                raise ValueError(f"labels for steps {steps}, want one for each of 1..{n}")
            return Relevance([(lb.relevant, lb.reason) for lb in labels], text)

        return self._rounds(goals, ask, read, lambda g: RelevanceReply)

    def _rounds(self, items: Sequence[T], ask: Callable[[T], Conversation],
                read: Callable[[T, str], R], schema: Callable[[T], type[BaseModel]]
                ) -> list[R | Failure]:
        """Ask for every item at once; re-ask, warmer, only those whose reply did not read."""
        results: dict[int, R | Failure] = {}
        pending = [i for i in range(len(items)) if not self._too_long(ask(items[i]), results, i)]
        rounds = 0

        def one_round() -> list[int]:
            nonlocal rounds
            rounds += 1
            schemas = [schema(items[i]).model_json_schema() for i in pending] \
                if self.model.supports_json_schema else None
            params = self.params.but(json_schema=schemas, seed=self.params.seed + rounds,
                                     temperature=0.0 if rounds == 1 else self.retry_temperature)
            replies = self.model.generate([ask(items[i]) for i in pending], params)
            still = []
            for i, text in zip(pending, replies, strict=True):
                try:
                    results[i] = read(items[i], text)
                except ValueError as e:
                    results[i] = Failure(text, str(e))
                    still.append(i)
            pending[:] = still
            return still

        if pending:
            Retrying(stop=stop_after_attempt(self.attempts), retry=retry_if_result(bool),
                     retry_error_callback=lambda state: state.outcome.result())(one_round)
        return [results[i] for i in range(len(items))]

    def _too_long(self, conversation: Conversation, results: dict[int, Any], i: int) -> bool:
        """A prompt past the model's context fails alone (the engine would fail the batch)."""
        if not isinstance(self.model, CountsTokens):
            return False
        n = self.model.count_tokens(conversation)
        if n < self.model.context_length:
            return False
        results[i] = Failure("", f"the prompt is {n} tokens, more than the relabeler's context "
                                 f"of {self.model.context_length}")
        return True


def make_relabeler(spec: str, attempts: int = 2, max_new_tokens: int = 1024,
                   grounded: bool = False) -> Relabeler:
    """`rules`, or a chat-model spec (`hf:…`, `vllm:…`, `openai:…`); `grounded` holds an LLM
    to the goals each trajectory could have achieved."""
    if spec == "rules":
        return RuleRelabeler()
    if ":" not in spec:
        raise ValueError(f"unknown relabeler {spec!r} (valid: rules, hf:PATH, vllm:PATH_OR_NAME, "
                         "openai:URL#MODEL)")
    return LLMRelabeler(make_chat_model(spec), attempts, max_new_tokens, grounded=grounded)
