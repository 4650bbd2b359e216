"""Success rates from episodes: per split and per goal type, mean steps and reward."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel

from hsl_tools.agent import Policy
from hsl_tools.collect import CollectStats, collect
from hsl_tools.envs.base import Environment
from hsl_tools.records import RecordError, Trajectory, read_json, read_records, write_json
from hsl_tools.shards import Shard, shard_work


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


# an evaluation folder (`hsl eval --out`, a run's eval-*): its episodes and their summary
EPISODES, SUMMARY = "eval.jsonl", "summary.json"


def default_folder(policy: str) -> Path:
    """Where `hsl eval` writes without --out: runs/eval/<the policy spec, made a name>."""
    return Path("runs/eval") / re.sub(r"[^A-Za-z0-9._-]+", "-", policy).strip("-")


def evaluated(folder: Path) -> bool:
    """Whether the evaluation in FOLDER has finished (its summary is written last)."""
    return (folder / SUMMARY).exists()


def read_summary(folder: Path) -> dict | None:
    """The summary `evaluate` wrote to FOLDER/summary.json; None before it has finished."""
    path = folder / SUMMARY
    if not path.exists():
        return None
    document = read_json(path)
    if not isinstance(document, dict) or not isinstance(document.get("summary"), dict):
        raise RecordError(f"{path}: summary: missing (not a summary.json of hsl eval?)")
    return document["summary"]


def evaluate(env: Environment, policy: Policy, splits: list[str], n: int | None, out: Path,
             batch_size: int = 16, fresh: bool = False, shard: Shard | None = None
             ) -> tuple[dict, CollectStats]:
    """Run the policy on the first `n` tasks of each split (of `shard`'s, if given);
    OUT/eval.jsonl holds the episodes (resumable) and OUT/summary.json the summary, which is
    returned."""
    work = shard_work([(s, env.task_ids(s, n)) for s in splits], shard)
    stats = collect(out / EPISODES, env, work, policy, batch_size, fresh, shard)
    wanted = {(s, t) for s, ids in work for t in ids}
    summary = summarize(t for t in read_records(out / EPISODES, Trajectory)
                        if (t.split, t.task_id) in wanted)
    write_json(out / SUMMARY, {"policy": policy.name, "env": env.name,
                                      "summary": summary})
    return summary, stats
