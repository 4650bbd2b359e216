"""The relabel and mask stages: JSONL in, JSONL out, resumable, failures kept aside.

relabel: trajectories -> one goal record per (trajectory, achieved goal), holding the prefix
up to S(k). mask: goal records -> demos with a relevance label z per action. Each stage runs
alone on any file of the right schema, so each can use a different relabeler.
"""

from __future__ import annotations

import json
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
    read_unique,
    write_records,
)
from hsl_tools.relabel.relabelers import Failure, Goals, Relabeler, Relevance
from hsl_tools.relabel.verify import Verifier
from hsl_tools.shards import Shard, mark, of_shard


@dataclass
class StageStats:
    inputs: int = 0
    resumed: int = 0
    outputs: int = 0
    empty: int = 0
    failures: int = 0
    rejected: int = 0  # goals the environment refuted (in the failures file, with the reason)
    seconds: float = 0.0
    per_type: Counter[str] = field(default_factory=Counter)
    unverified: dict[str, int] = field(default_factory=dict)  # why not checkable -> goals


def failures_path(out: Path) -> Path:
    """Where a stage writing OUT puts the items that failed and the goals refuted, with why."""
    return out.with_name(out.stem + ".failures.jsonl")


def _replies_path(out: Path) -> Path:
    return out.with_name(out.stem + ".replies.jsonl")


Emitted = tuple[Record, str, str | None]  # a record, its goal type, why it is refuted (or None)


def _one_env(inp: Path, envs: list[str]) -> str:
    """The one environment of an input's records (one prompt version per output)."""
    found = sorted(set(envs))
    if len(found) > 1:
        raise ValueError(f"{inp}: records of several environments ({', '.join(found)}): "
                         "relabel each environment's records apart")
    return found[0] if found else "household"


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def relabel(inp: Path, out: Path, relabeler: Relabeler, prompt: str | None = None,
            only_failed_final: bool = False, chunk: int = 256, fresh: bool = False,
            shard: Shard | None = None) -> StageStats:
    """Name every goal each trajectory achieved (of `shard`'s trajectories, if given).
    `only_failed_final` keeps, of failed trajectories only, the goal achieved last (the
    RelabelFailure ablation)."""
    trajectories = of_shard(read_unique(inp, Trajectory), shard)
    if only_failed_final:
        trajectories = [t for t in trajectories if not t.success]
    prompt_id = relabeler.prompt_id("goal_inference", prompt,
                                    _one_env(inp, [t.env for t in trajectories]))
    verifier = Verifier()

    def emit(t: Trajectory, result: Goals) -> list[Emitted]:
        goals = result.goals[-1:] if only_failed_final else result.goals
        verdicts = verifier.check(t, goals)
        return [(GoalRecord(id=f"{t.id}#{goal}", trajectory_id=t.id, goal=goal, step=step,
                            relabeler=relabeler.spec, prompt=prompt_id, raw=result.raw,
                            trajectory=t.model_copy(update={"steps": t.steps[:step]})),
                 env_class(t.env).goal_type(goal), verdict.reason)
                for (goal, step), verdict in zip(goals, verdicts, strict=True)]

    return _run("relabel", trajectories, out, GoalRecord, lambda g: g.trajectory_id, relabeler,
                prompt_id, lambda batch: relabeler.identify(batch, prompt), emit, chunk, fresh,
                mark({"only_failed_final": only_failed_final}, shard), verifier, per_input=True)


def mask(inp: Path, out: Path, relabeler: Relabeler, prompt: str | None = None,
         chunk: int = 256, fresh: bool = False, shard: Shard | None = None) -> StageStats:
    """Label each action of each goal's prefix relevant (z = 1) or not, as a demo (of
    `shard`'s goal records, if given)."""
    goals = of_shard(read_unique(inp, GoalRecord), shard)
    prompt_id = relabeler.prompt_id("action_relevance", prompt,
                                    _one_env(inp, [g.trajectory.env for g in goals]))
    verifier = Verifier()

    def emit(g: GoalRecord, result: Relevance) -> list[Emitted]:
        t = g.trajectory
        env = env_class(t.env)

        def restated(observation: str) -> str:  # as the pages would read for the goal
            return env.restated(observation, t.instruction, g.goal)

        steps = [DemoStep(action=s.action, observation=restated(s.observation),
                          thought=s.thought, relevant=z, reason=why)
                 for s, (z, why) in zip(t.steps, result.labels, strict=True)]
        [verdict] = verifier.check(t, [(g.goal, g.step)])
        return [(Demo(id=g.id, source="hindsight", instruction=g.goal, steps=steps,
                      initial_observation=restated(t.initial_observation),
                      relabeler=relabeler.spec, prompt=prompt_id, env=g.trajectory.env,
                      trajectory_id=g.trajectory_id, task_id=g.trajectory.task_id),
                 env.goal_type(g.goal), verdict.reason)]

    return _run("mask", goals, out, Demo, lambda d: d.id,
                relabeler, prompt_id, lambda batch: relabeler.relevance(batch, prompt), emit,
                chunk, fresh, mark({}, shard), verifier)


def _run(stage: Literal["relabel", "mask"], items: list[Any], out: Path,
         model: type[Record], out_key: Callable[[Any], str], relabeler: Relabeler,
         prompt_id: str | None, call: Callable[[list[Any]], list[Any]],
         emit: Callable[[Any, Any], list[Emitted]], chunk: int, fresh: bool,
         options: dict[str, Any], verifier: Verifier, per_input: bool = False) -> StageStats:
    """Feed items not yet done to the relabeler in chunks; write what `emit` makes of each
    answer (records the environment does not refute), mark inputs done that yield nothing
    (or, with `per_input`, every input once all its records are written), keep failures and
    refuted records aside, and every reply in OUT.replies.jsonl. `options` are the stage's
    settings that change its records (kept beside the output)."""
    stats = StageStats(inputs=len(items))
    failures: list[FailureRecord] = []
    started = time.perf_counter()
    made_by = {"stage": stage, "relabeler": relabeler.spec, "prompt": prompt_id, **options}
    with StageOutput(out, model, key=out_key, fresh=fresh, made_by=made_by,
                     per_input=per_input) as output, \
            _replies_path(out).open("w" if fresh else "a", encoding="utf-8") as replies:
        todo = [x for x in items if x.id not in output.done]
        stats.resumed = len(items) - len(todo)
        with progress_bar(f"{stage} ({relabeler.spec})", total=len(items)) as bar:
            bar.skip(stats.resumed)
            for batch in _chunks(todo, chunk):
                for item, result in zip(batch, call(batch), strict=True):
                    bar.advance()
                    if isinstance(result, Failure):
                        failures.append(FailureRecord(
                            id=item.id, stage=stage, raw=result.raw, reason=result.reason,
                            relabeler=relabeler.spec, prompt=prompt_id))
                        continue
                    if result.raw is not None:
                        replies.write(json.dumps({"id": item.id, "stage": stage, "relabeler":
                                                  relabeler.spec, "prompt": prompt_id,
                                                  "raw": result.raw}, ensure_ascii=False) + "\n")
                        replies.flush()
                    written = 0
                    for record, goal_type, refuted in emit(item, result):
                        if refuted is not None:
                            failures.append(FailureRecord(
                                id=record.id, stage=stage, raw=result.raw or "",
                                reason=refuted, relabeler=relabeler.spec, prompt=prompt_id))
                            stats.rejected += 1
                            continue
                        output.write(record)
                        written += 1
                        stats.per_type[goal_type] += 1
                    stats.outputs += written
                    stats.empty += not written
                    if per_input or not written:
                        output.mark_done(item.id)
    write_records(failures_path(out), failures)
    stats.failures = len(failures) - stats.rejected
    stats.seconds = time.perf_counter() - started
    stats.unverified = dict(verifier.unverified)
    return stats
