"""The relabel and mask stages: JSONL in, JSONL out, resumable, failures kept aside.

relabel: trajectories -> one goal record per (trajectory, achieved goal), holding the prefix
up to S(k). mask: goal records -> demos with a relevance label z per action. Each stage runs
alone on any file of the right schema, so each can use a different relabeler.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hsl_tools.goals import Goal
from hsl_tools.progress import progress_bar
from hsl_tools.records import (
    Demo,
    DemoStep,
    FailureRecord,
    GoalRecord,
    StageOutput,
    Trajectory,
    read_records,
    write_records,
)
from hsl_tools.relabel.relabelers import Failure, Relabeler


@dataclass
class StageStats:
    inputs: int = 0
    resumed: int = 0
    outputs: int = 0
    empty: int = 0
    failures: int = 0
    seconds: float = 0.0
    per_type: Counter[str] = field(default_factory=Counter)


def _failures_path(out: Path) -> Path:
    return out.with_name(out.stem + ".failures.jsonl")


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _goal_type(goal: str) -> str:
    parsed = Goal.parse(goal)
    return str(parsed.type) if parsed else "other"


def relabel(inp: Path, out: Path, relabeler: Relabeler, prompt: str | None = None,
            only_failed_final: bool = False, chunk: int = 256, fresh: bool = False
            ) -> StageStats:
    """Name every goal each trajectory achieved. `only_failed_final` keeps, of failed
    trajectories only, the goal achieved last (the RelabelFailure ablation)."""
    trajectories = list(read_records(inp, Trajectory))
    if only_failed_final:
        trajectories = [t for t in trajectories if not t.success]
    stats = StageStats(inputs=len(trajectories))
    prompt_id = relabeler.prompt_id("goal_inference", prompt)
    failures: list[FailureRecord] = []
    started = time.perf_counter()
    with StageOutput(out, GoalRecord, key=lambda g: g.trajectory_id, fresh=fresh) as output:
        todo = [t for t in trajectories if t.id not in output.done]
        stats.resumed = len(trajectories) - len(todo)
        with progress_bar(f"relabel ({relabeler.spec})", total=len(trajectories)) as bar:
            bar.advance(stats.resumed)
            for batch in _chunks(todo, chunk):
                for t, result in zip(batch, relabeler.identify(batch, prompt), strict=True):
                    bar.advance()
                    if isinstance(result, Failure):
                        failures.append(FailureRecord(id=t.id, stage="relabel", raw=result.raw,
                                                      relabeler=relabeler.spec, prompt=prompt_id,
                                                      reason=result.reason))
                        continue
                    goals = result.goals[-1:] if only_failed_final else result.goals
                    if not goals:
                        output.skip(t.id)
                        stats.empty += 1
                    for goal, step in goals:
                        output.write(GoalRecord(
                            id=f"{t.id}#{goal}", trajectory_id=t.id, goal=goal, step=step,
                            relabeler=relabeler.spec, prompt=prompt_id,
                            trajectory=t.model_copy(update={"steps": t.steps[:step]}),
                            raw=result.raw))
                        stats.outputs += 1
                        stats.per_type[_goal_type(goal)] += 1
    write_records(_failures_path(out), failures)
    stats.failures, stats.seconds = len(failures), time.perf_counter() - started
    return stats


def mask(inp: Path, out: Path, relabeler: Relabeler, prompt: str | None = None,
         chunk: int = 256, fresh: bool = False) -> StageStats:
    """Label each action of each goal's prefix relevant (z = 1) or not, as a demo."""
    goals = list(read_records(inp, GoalRecord))
    stats = StageStats(inputs=len(goals))
    prompt_id = relabeler.prompt_id("action_relevance", prompt)
    failures: list[FailureRecord] = []
    started = time.perf_counter()
    with StageOutput(out, Demo, fresh=fresh) as output:
        todo = [g for g in goals if g.id not in output.done]
        stats.resumed = len(goals) - len(todo)
        with progress_bar(f"mask ({relabeler.spec})", total=len(goals)) as bar:
            bar.advance(stats.resumed)
            for batch in _chunks(todo, chunk):
                for g, result in zip(batch, relabeler.relevance(batch, prompt), strict=True):
                    bar.advance()
                    if isinstance(result, Failure):
                        failures.append(FailureRecord(id=g.id, stage="mask", raw=result.raw,
                                                      relabeler=relabeler.spec, prompt=prompt_id,
                                                      reason=result.reason))
                        continue
                    steps = [DemoStep(action=s.action, observation=s.observation,
                                      thought=s.thought, relevant=z, reason=why)
                             for s, (z, why) in zip(g.trajectory.steps, result.labels,
                                                    strict=True)]
                    output.write(Demo(
                        id=g.id, source="hindsight", instruction=g.goal,
                        initial_observation=g.trajectory.initial_observation, steps=steps,
                        relabeler=relabeler.spec, env=g.trajectory.env,
                        trajectory_id=g.trajectory_id, task_id=g.trajectory.task_id,
                        prompt=prompt_id))
                    stats.outputs += 1
                    stats.per_type[_goal_type(g.goal)] += 1
    write_records(_failures_path(out), failures)
    stats.failures, stats.seconds = len(failures), time.perf_counter() - started
    return stats
