"""Render trajectories for a person: the instruction, each action and what followed."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from hsl_tools.envs.base import Environments, env_class
from hsl_tools.records import Trajectory, read_records


def print_trajectory(console: Console, trajectory: Trajectory,
                     achieved: Mapping[Any, int] | None = None) -> None:
    """One panel per trajectory; with `achieved`, the goals it reached and their steps."""
    body = Text()
    body.append(env_class(trajectory.env).task_message(trajectory.instruction,
                                                       trajectory.initial_observation) + "\n",
                style="bold")
    for i, step in enumerate(trajectory.steps, 1):
        body.append(f"{i:>3} > {step.action}\n", style="cyan")
        body.append(f"      {step.observation}\n")
    if achieved is not None:
        body.append("achieved (oracle): ", style="bold")
        body.append(", ".join(f"{goal} @ step {step}" for goal, step in
                              sorted(achieved.items(), key=lambda kv: kv[1])) or "nothing")
    outcome = "[green]success[/]" if trajectory.success else "[red]failure[/]"
    console.print(Panel(body, title=f"{trajectory.id} · {trajectory.policy} · {outcome}",
                        title_align="left"))


def show_file(console: Console, path: Path, limit: int, oracle: bool = False,
              achieving: bool = False) -> None:
    """`hsl show`: the first `limit` trajectories of PATH (with `achieving`, of those that
    achieved some goal), each with the goals it achieved where `oracle` or `achieving`."""
    shown = 0
    with Environments() as envs:
        for trajectory in read_records(path, Trajectory):
            if shown >= limit:
                break
            goals = envs[trajectory.env].judge(trajectory).achieved if oracle or achieving \
                else None
            if achieving and not goals:
                continue
            print_trajectory(console, trajectory, goals)
            shown += 1
