"""The relabel and mask stages: JSONL in, JSONL out, resumable, failures kept aside.

relabel: trajectories -> one goal record per (trajectory, achieved goal), holding the prefix
up to S(k). mask: goal records -> demos with a relevance label z per action. Each stage runs
alone on any file of the right schema, so each can use a different relabeler.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hsl_tools.envs.base import env_class
from hsl_tools.progress import progress_bar
from hsl_tools.records import (
    Demo,
    DemoStep,
    FailureRecord,
    GoalRecord,
    Record,
    StageOutput,
    Trajectory,
    read_records,
    write_records,
)
from hsl_tools.relabel.relabelers import Failure, Goals, Relabeler, Relevance


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


def relabel(inp: Path, out: Path, relabeler: Relabeler, prompt: str | None = None,
            only_failed_final: bool = False, chunk: int = 256, fresh: bool = False
            ) -> StageStats:
    """Name every goal each trajectory achieved. `only_failed_final` keeps, of failed
    trajectories only, the goal achieved last (the RelabelFailure ablation)."""
    trajectories = list(read_records(inp, Trajectory))
    if only_failed_final:
        trajectories = [t for t in trajectories if not t.success]
    prompt_id = relabeler.prompt_id("goal_inference", prompt)

    def emit(t: Trajectory, result: Goals) -> list[tuple[GoalRecord, str]]:
        goals = result.goals[-1:] if only_failed_final else result.goals
        return [(GoalRecord(id=f"{t.id}#{goal}", trajectory_id=t.id, goal=goal, step=step,
                            relabeler=relabeler.spec, prompt=prompt_id, raw=result.raw,
                            trajectory=t.model_copy(update={"steps": t.steps[:step]})),
                 env_class(t.env).goal_type(goal))
                for goal, step in goals]

    return _run("relabel", trajectories, out, GoalRecord, lambda g: g.trajectory_id, relabeler,
                prompt_id, lambda batch: relabeler.identify(batch, prompt), emit, chunk, fresh,
                {"only_failed_final": only_failed_final}, per_input=True)


def mask(inp: Path, out: Path, relabeler: Relabeler, prompt: str | None = None,
         chunk: int = 256, fresh: bool = False) -> StageStats:
    """Label each action of each goal's prefix relevant (z = 1) or not, as a demo."""
    prompt_id = relabeler.prompt_id("action_relevance", prompt)

    def emit(g: GoalRecord, result: Relevance) -> list[tuple[Demo, str]]:
        steps = [DemoStep(action=s.action, observation=s.observation, thought=s.thought,
                          relevant=z, reason=why)
                 for s, (z, why) in zip(g.trajectory.steps, result.labels, strict=True)]
        return [(Demo(id=g.id, source="hindsight", instruction=g.goal, steps=steps,
                      initial_observation=g.trajectory.initial_observation,
                      relabeler=relabeler.spec, prompt=prompt_id, env=g.trajectory.env,
                      trajectory_id=g.trajectory_id, task_id=g.trajectory.task_id),
                 env_class(g.trajectory.env).goal_type(g.goal))]

    return _run("mask", list(read_records(inp, GoalRecord)), out, Demo, lambda d: d.id,
                relabeler, prompt_id, lambda batch: relabeler.relevance(batch, prompt), emit,
                chunk, fresh, {})


def _run(stage: Literal["relabel", "mask"], items: list[Any], out: Path,
         model: type[Record], out_key: Callable[[Any], str], relabeler: Relabeler,
         prompt_id: str | None, call: Callable[[list[Any]], list[Any]],
         emit: Callable[[Any, Any], list[tuple[Record, str]]], chunk: int, fresh: bool,
         options: dict[str, Any], per_input: bool = False) -> StageStats:
    """Feed items not yet done to the relabeler in chunks; write what `emit` makes of each
    answer (records, each with its goal type), mark inputs done that yield nothing (or, with
    `per_input`, every input once all its records are written), and keep failures aside.
    `options` are the stage's settings that change its records (kept beside the output)."""
    stats = StageStats(inputs=len(items))
    failures: list[FailureRecord] = []
    started = time.perf_counter()
    made_by = {"stage": stage, "relabeler": relabeler.spec, "prompt": prompt_id, **options}
    with StageOutput(out, model, key=out_key, fresh=fresh, made_by=made_by,
                     per_input=per_input) as output:
        todo = [x for x in items if x.id not in output.done]
        stats.resumed = len(items) - len(todo)
        with progress_bar(f"{stage} ({relabeler.spec})", total=len(items)) as bar:
            bar.advance(stats.resumed)
            for batch in _chunks(todo, chunk):
                for item, result in zip(batch, call(batch), strict=True):
                    bar.advance()
                    if isinstance(result, Failure):
                        failures.append(FailureRecord(
                            id=item.id, stage=stage, raw=result.raw, reason=result.reason,
                            relabeler=relabeler.spec, prompt=prompt_id))
                        continue
                    records = emit(item, result)
                    stats.empty += not records
                    for record, goal_type in records:
                        output.write(record)
                        stats.outputs += 1
                        stats.per_type[goal_type] += 1
                    if per_input or not records:
                        output.mark_done(item.id)
    write_records(_failures_path(out), failures)
    stats.failures, stats.seconds = len(failures), time.perf_counter() - started
    return stats
