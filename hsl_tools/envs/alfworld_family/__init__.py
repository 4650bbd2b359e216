"""What the household world and real ALFWorld share: the agent's action grammar and task
message, their splits for training and evaluation, the reply budget and the prompt family."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from hsl_tools.envs.alfworld_family import rules
from hsl_tools.envs.alfworld_family.goals import TEMPLATES, Goal
from hsl_tools.envs.base import OracleJudge
from hsl_tools.records import Step, Trajectory

# our split names -> ALFWorld's folders, as ETO and the paper use them
SPLIT_FOLDERS = {"train": "train", "seen": "valid_seen", "unseen": "valid_unseen"}
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
    # one action ("move soapbottle 2 to countertop 1" is about 10 tokens): recipes and
    # `hsl eval` decode alike; a ReAct reply gets more (chat.reply_budget)
    reply_tokens = 24
    system = SYSTEM
    no_effect = "Nothing happens."  # what the game says to an action that changed nothing
    max_goals = None  # a trajectory can achieve many goals
    goal_chars = 80  # "put a clean mug in coffeemachine" and the like
    live_episodes: int | None = None  # the household world plays in-process: no limit

    def close(self) -> None:
        """Nothing held (ALFWorld, which holds game workers, gives them back)."""

    # -- the goal space: the six templates over object and receptacle types
    @staticmethod
    def canonical_goal(text: str) -> str | None:
        """A goal sentence in its canonical template form; None outside the templates."""
        goal = Goal.parse(text)
        return None if goal is None else str(goal)

    @staticmethod
    def goal_type(text: str) -> str:
        goal = Goal.parse(text)
        return str(goal.type) if goal else "other"

    @staticmethod
    def goal_forms() -> str:
        """The goal templates as a relabeling prompt lists them."""
        return "\n".join(f"- {a.format(obj='X', recep='Y')}  (or: "
                         f"{b.format(obj='X', recep='Y')})" for a, b in TEMPLATES.values())

    @staticmethod
    def ungrounded(goal: str, trajectory: Trajectory) -> str | None:
        """Why a goal cannot be this trajectory's: outside the templates, or naming an object
        or receptacle type it never showed; None when it could be."""
        parsed = Goal.parse(goal)
        if parsed is None:
            return f"not a template goal: {goal!r}"
        text = " ".join([trajectory.initial_observation,
                         *(s.observation for s in trajectory.steps)]).lower()
        missing = [w for w in dict.fromkeys((parsed.obj, parsed.recep))
                   if not re.search(rf"\b{re.escape(w)}\b", text)]
        return f"{goal!r} names what the trajectory never showed: {', '.join(missing)}" \
            if missing else None

    @staticmethod
    def goal_choices(trajectory: Trajectory) -> list[str]:
        """Every goal the trajectory could have achieved (a grounded relabeler's choices)."""
        return [str(g) for g in rules.goal_choices(trajectory.steps)]

    # -- the rule relabeler (the paper's procedure over the trajectory's text)
    @staticmethod
    def rule_goals(steps: Sequence[Step]) -> list[tuple[str, int]]:
        """Every template goal the text shows achieved, with S(k), by step then text."""
        return sorted(((str(g), s) for g, s in rules.identify_goals(steps).items()),
                      key=lambda gs: (gs[1], gs[0]))

    @staticmethod
    def rule_relevance(steps: Sequence[Step], goal: str) -> list[tuple[bool, str]]:
        """Which actions made `goal` true; ValueError for a sentence outside the templates."""
        parsed = Goal.parse(goal)
        if parsed is None:
            raise ValueError(f"not a template goal: {goal!r}")
        return rules.relevance(steps, parsed)

    def judge(self, trajectory: Trajectory) -> OracleJudge:
        """The oracle's goals, replayed from the trajectory (see `oracle`)."""
        return OracleJudge(self, {str(goal): step
                                  for goal, step in self.oracle(trajectory).items()})

    def oracle(self, trajectory: Trajectory) -> dict[Goal, int]:
        """Every template goal the trajectory achieved, with the first step it held."""
        raise NotImplementedError

    def outcome(self, trajectory: Trajectory) -> str:
        return self.outcome_given(trajectory, self.oracle(trajectory))

    @staticmethod
    def brief(observation: str) -> str:
        """Observations are short: a relabeler's prompt shows them whole."""
        return observation

    @staticmethod
    def restated(observation: str, instruction: str, goal: str) -> str:
        """Observations do not show the task: unchanged."""
        return observation

    @staticmethod
    def outcome_given(trajectory: Trajectory, achieved: Mapping[Any, int]) -> str:
        """What an evaluation episode came to: won; failed but achieved a goal with the task's
        own object (the instruction half followed); failed achieving another goal; or failed
        achieving nothing."""
        if trajectory.success:
            return "won"
        if not achieved:
            return "nothing"
        task = Goal.parse(trajectory.instruction)
        return "same object" if task and any(g.obj == task.obj for g in achieved) \
            else "other goal"

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
