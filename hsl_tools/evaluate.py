"""Success rates from episodes: per split and per goal type, mean steps and reward."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from pydantic import BaseModel
from rich.table import Table

from hsl_tools.records import Trajectory


class Cell(BaseModel):
    """Aggregate over a group of episodes."""

    episodes: int = 0
    successes: int = 0
    steps: int = 0
    reward: float = 0.0

    def add(self, t: Trajectory) -> None:
        self.episodes += 1
        self.successes += t.success
        self.steps += len(t.steps)
        self.reward += t.reward

    @property
    def success_rate(self) -> float:
        return self.successes / self.episodes if self.episodes else 0.0

    def as_dict(self) -> dict[str, float]:
        n = self.episodes or 1
        return {"episodes": self.episodes, "success": self.success_rate,
                "mean_steps": self.steps / n, "mean_reward": self.reward / n}


def summarize(trajectories: Iterable[Trajectory]) -> dict[str, dict[str, dict[str, float]]]:
    """{split: {"all" | goal type: {episodes, success, mean_steps, mean_reward}}}."""
    cells: dict[str, dict[str, Cell]] = defaultdict(lambda: defaultdict(Cell))
    for t in trajectories:
        cells[t.split]["all"].add(t)
        cells[t.split][str(t.meta.get("goal_type", "unknown"))].add(t)
    return {split: {group: cell.as_dict() for group, cell in sorted(groups.items())}
            for split, groups in cells.items()}


def summary_table(summary: dict[str, dict[str, dict[str, float]]], title: str) -> Table:
    """Rows: goal types (then all); columns: success per split, with episode counts."""
    table = Table(title=title)
    table.add_column("goal type")
    splits = list(summary)
    for split in splits:
        table.add_column(f"{split} success", justify="right")
        table.add_column(f"{split} steps", justify="right")
    groups = sorted({g for s in splits for g in summary[s]} - {"all"}) + ["all"]
    for group in groups:
        row = [group]
        for split in splits:
            cell = summary[split].get(group)
            row += ([f"{cell['success']:.1%} of {cell['episodes']:.0f}",
                     f"{cell['mean_steps']:.1f}"] if cell else ["", ""])
        table.add_row(*row, style="bold" if group == "all" else None)
    return table
