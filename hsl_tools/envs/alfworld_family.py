"""What the household world and real ALFWorld share: the agent's action grammar and task
message, their splits for training and evaluation, the reply budget and the prompt family."""

from __future__ import annotations

from hsl_tools.goals import TEMPLATES

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
        return f"{initial_observation}\n\nYour task is to: {instruction}"
