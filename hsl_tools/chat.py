"""One renderer from trajectory to chat, shared by rollouts and training so they never drift.

A conversation is: a system message with the environment's action grammar, a user message
with the task as the environment shows it, then one assistant message per action and one user
message per observation. With ReAct the assistant writes "Thought: ...\\nAction: ...".
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from hsl_tools.envs.base import env_class
from hsl_tools.llm.base import Conversation
from hsl_tools.records import Step

REACT_SUFFIX = "\nReply as:\nThought: your reasoning\nAction: your action"


def system_prompt(react: bool = False, env: str = "household") -> str:
    """The environment's own instructions to the agent (its action grammar)."""
    return env_class(env).system + (REACT_SUFFIX if react else "")


def task_message(instruction: str, initial_observation: str, env: str = "household") -> str:
    """The first user message: the task as the environment shows it."""
    return env_class(env).task_message(instruction, initial_observation)


def reply_budget(env: str = "household", react: bool = False) -> int:
    """New tokens for one agent reply: the environment's budget, more for a ReAct thought."""
    return env_class(env).reply_tokens + (80 if react else 0)


def assistant_message(step: Step, react: bool) -> str:
    if react:
        return f"Thought: {step.thought or 'I act.'}\nAction: {step.action}"
    return step.action


def render(instruction: str, initial_observation: str, steps: Sequence[Step],
           react: bool = False, omitted: int = 0, env: str = "household") -> Conversation:
    """The chat for a trajectory in environment `env`; `omitted` earlier steps are summarised
    in one line."""
    conversation = [{"role": "system", "content": system_prompt(react, env)},
                    {"role": "user", "content": task_message(instruction, initial_observation,
                                                             env)}]
    if omitted:
        conversation[1]["content"] += f"\n\n[{omitted} earlier steps omitted]"
    for step in steps:
        conversation.append({"role": "assistant", "content": assistant_message(step, react)})
        conversation.append({"role": "user", "content": step.observation})
    return conversation


_ACTION = re.compile(r"action\s*:\s*(.*)", re.IGNORECASE)
_THOUGHT = re.compile(r"thought\s*:\s*(.*?)(?:\n\s*action\s*:|$)", re.IGNORECASE | re.DOTALL)


def parse_reply(reply: str) -> tuple[str | None, str | None]:
    """(thought, action) from a model reply: "Action: x" wins, else the first non-empty line;
    quotes, backticks, a leading "> " and a final period are stripped. None when empty."""
    thought_match = _THOUGHT.search(reply)
    thought = thought_match[1].strip() or None if thought_match else None
    action_match = _ACTION.search(reply)
    if action_match:
        line = action_match[1]
    elif thought_match:
        line = ""
    else:
        line = next((ln for ln in reply.splitlines() if ln.strip()), "")
    action = line.strip().strip("`'\"").removeprefix("> ").strip().rstrip(".").strip()
    action = re.sub(r"\s+", " ", action)
    return thought, action or None
