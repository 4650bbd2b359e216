"""Render trajectories for a person: the instruction, each action and what followed."""

from __future__ import annotations

from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from hsl_tools.goals import Goal
from hsl_tools.records import Trajectory


def print_trajectory(console: Console, trajectory: Trajectory,
                     achieved: dict[Goal, int] | None = None) -> None:
    """One panel per trajectory; with `achieved`, the goals it reached and their steps."""
    body = Text()
    body.append(trajectory.initial_observation + "\n", style="dim")
    body.append(f"Your task is to: {trajectory.instruction}\n", style="bold")
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
