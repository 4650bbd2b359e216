"""What the household world and real ALFWorld share: the agent's action grammar and task
message, their splits for training and evaluation, the reply budget and the prompt family."""

from __future__ import annotations

from typing import Any

from hsl_tools.envs.alfworld.games import SPLIT_FOLDERS
from hsl_tools.goals import TEMPLATES

TASK_MARK = "Your task is to:"
_SPLIT_OF_FOLDER = {folder: split for split, folder in SPLIT_FOLDERS.items()}

SYSTEM = """You act in a household to finish a task. Each turn, reply with one action; \
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


class AlfworldFamily:
    """The agent side of ALFWorld-style environments (a base class: no state)."""

    train_split = "train"
    eval_splits: tuple[str, ...] = ("seen", "unseen")
    prompt_family = "alfworld"
    graded = False  # the reward is the win
    reply_tokens = 48  # one action; a ReAct reply gets more (see chat.reply_budget)
    system = SYSTEM

    @staticmethod
    def goal_sentences() -> list[str]:
        """Every goal template in both its forms (text a tokenizer should know)."""
        return [f"{first}\n{second}" for first, second in TEMPLATES.values()]

    @staticmethod
    def task_message(instruction: str, initial_observation: str) -> str:
        return f"{initial_observation}\n\n{TASK_MARK} {instruction}"

    @staticmethod
    def task_of(message: str) -> tuple[str, str] | None:
        """(instruction, initial observation) from a dump's user turn; None if it holds no
        task."""
        observation, mark, task = message.partition(TASK_MARK)
        return (task.strip().rstrip("."), observation.strip()) if mark else None

    @staticmethod
    def dump_task(instruction: str, initial_observation: str) -> str:
        """The task turn as ETO's dumps write it (with a final period)."""
        return f"{initial_observation}\n\n{TASK_MARK} {instruction}."

    @staticmethod
    def imported_task(item: dict[str, Any], default_split: str) -> tuple[str, str]:
        """(split, task id) of a dump's item: ETO names the game file
        ("data/json_2.1.1/train/<task>/<trial>")."""
        game = str(item.get("game_file") or "")
        parts = [p for p in game.split("/") if p]
        for i, part in enumerate(parts):
            if part in _SPLIT_OF_FOLDER and len(parts) > i + 2:
                return _SPLIT_OF_FOLDER[part], "/".join(parts[i + 1:i + 3])
        return default_split, str(item.get("id", item.get("item_id", "")))
