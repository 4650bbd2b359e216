"""The collect stage: roll a policy out over tasks into a resumable trajectories file."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hsl_tools.agent import Policy, ReplayPolicy, rollout
from hsl_tools.envs.base import Environment, check_split
from hsl_tools.progress import progress_bar
from hsl_tools.records import StageOutput, Trajectory
from hsl_tools.shards import Shard, mark, shard_work


@dataclass
class CollectStats:
    total: int = 0
    new: int = 0
    resumed: int = 0
    wins: int = 0
    steps: int = 0
    seconds: float = 0.0

    def line(self, out: Path) -> str:
        rate = (f"success {self.wins / self.new:.1%}, mean {self.steps / self.new:.1f} steps, "
                if self.new else "")
        return (f"wrote {self.total} trajectories to {out} ({rate}{self.new} new, "
                f"{self.resumed} resumed, {self.seconds:.1f} s)")


def collect_made_by(env: Environment, policy: Policy) -> dict[str, Any]:
    """What makes a collect's trajectories (its OUT.made-by.json): another policy, setting or
    episode length makes others."""
    return {"stage": "collect", "env": env.name, "max_steps": env.max_steps,
            "policy": policy.name, **policy.settings()}


def work_for(env: Environment, policy: Policy, split: str | None, n: int | None
             ) -> list[tuple[str, list[str]]]:
    """The (split, task ids) a collect plays: the first `n` tasks of `split` (the train split
    by default); a replay with no split given plays its dump's own tasks."""
    if isinstance(policy, ReplayPolicy) and split is None:
        return [(s, ids[:n]) for s, ids in policy.work.items()]
    split = split or env.train_split
    return [(split, env.task_ids(split, n))]


def collect(out: Path, env: Environment, work: list[tuple[str, list[str]]], policy: Policy,
            batch_size: int = 16, fresh: bool = False, shard: Shard | None = None
            ) -> CollectStats:
    """Run `policy` on each (split, task ids) of `work` (those of `shard` only, if given);
    tasks already in OUT are skipped."""
    for split, _ in work:
        check_split(env, split)
    work = shard_work(work, shard)
    stats = CollectStats(total=sum(len(ids) for _, ids in work))
    started = time.perf_counter()
    with StageOutput(out, Trajectory, key=lambda t: f"{t.split}/{t.task_id}",
                     fresh=fresh, made_by=mark(collect_made_by(env, policy), shard)) as output:
        stats.resumed = output.resumed
        with progress_bar(f"{policy.name} on {env.name}", total=stats.total) as bar:
            for split, task_ids in work:
                todo = [t for t in task_ids if f"{split}/{t}" not in output.done]
                bar.skip(len(task_ids) - len(todo))
                for trajectory in rollout(env, todo, policy, split, batch_size):
                    output.write(trajectory)
                    stats.new += 1
                    stats.wins += trajectory.success
                    stats.steps += len(trajectory.steps)
                    bar.advance()
    stats.seconds = time.perf_counter() - started
    return stats
