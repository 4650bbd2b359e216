"""One renderer from trajectory to chat, shared by rollouts and training so they never drift.

A conversation is: a system message with the action grammar, a user message with the initial
observation and the task, then one assistant message per action and one user message per
observation. With ReAct the assistant writes "Thought: ...\\nAction: ...".
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from hsl_tools.llm.base import Conversation
from hsl_tools.records import Step

SYSTEM_ALFWORLD = """You act in a household to finish a task. Each turn, reply with one action; \
the next message tells you what happened.
Actions:
go to RECEPTACLE
open RECEPTACLE / close RECEPTACLE
take OBJECT from RECEPTACLE
move OBJECT to RECEPTACLE
clean OBJECT with RECEPTACLE / heat OBJECT with RECEPTACLE / cool OBJECT with RECEPTACLE
use OBJECT
examine OBJECT / examine RECEPTACLE
look / inventory
Use the exact names you see, such as "mug 1" or "cabinet 3". \
"Nothing happens." means the action had no effect."""

REACT_SUFFIX = "\nReply as:\nThought: your reasoning\nAction: your action"


def system_prompt(react: bool = False) -> str:
    return SYSTEM_ALFWORLD + (REACT_SUFFIX if react else "")


def task_message(instruction: str, initial_observation: str) -> str:
    return f"{initial_observation}\n\nYour task is to: {instruction}"


def assistant_message(step: Step, react: bool) -> str:
    if react:
        return f"Thought: {step.thought or 'I act.'}\nAction: {step.action}"
    return step.action


def render(instruction: str, initial_observation: str, steps: Sequence[Step],
           react: bool = False, omitted: int = 0) -> Conversation:
    """The chat for a trajectory; `omitted` earlier steps are summarised in one line."""
    conversation = [{"role": "system", "content": system_prompt(react)},
                    {"role": "user", "content": task_message(instruction, initial_observation)}]
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
