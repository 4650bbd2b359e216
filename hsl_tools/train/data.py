"""Demos to train on, from demo files or trajectory files, and the FIFO hindsight buffer D'."""

from __future__ import annotations

import json
from pathlib import Path

from hsl_tools.records import (
    Demo,
    DemoStep,
    RecordError,
    Trajectory,
    read_records,
    write_records,
)


def from_trajectory(t: Trajectory, source: str) -> Demo:
    """A whole trajectory under its own instruction, every action relevant."""
    return Demo(id=t.id, source=source, instruction=t.instruction,
                initial_observation=t.initial_observation, env=t.env, trajectory_id=t.id,
                steps=[DemoStep(action=s.action, observation=s.observation, thought=s.thought)
                       for s in t.steps], task_id=t.task_id)


def schema_of(path: Path) -> str:
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    return json.loads(line).get("schema", "")
                except (json.JSONDecodeError, AttributeError):
                    raise RecordError(f"{path}:{lineno}: not a JSON object") from None
    return ""


def load_demos(path: Path, source: str = "ground_truth") -> list[Demo]:
    """Demos from a demo file, or from the successful trajectories of a trajectory file
    (labelled `source`: ground_truth for expert runs, self_imitation for the agent's own)."""
    if schema_of(path) == Trajectory.SCHEMA:
        return [from_trajectory(t, source) for t in read_records(path, Trajectory) if t.success]
    return list(read_records(path, Demo))


def failed_trajectories(path: Path) -> list[Trajectory]:
    return [t for t in read_records(path, Trajectory) if not t.success]


def push(buffer: Path, demos: list[Demo], capacity: int = 100) -> list[Demo]:
    """Append demos to the FIFO buffer file and keep its newest `capacity`; returns them.
    A demo already in the buffer (same id) moves to the back instead of appearing twice."""
    old = list(read_records(buffer, Demo)) if buffer.exists() else []
    new_ids = {d.id for d in demos}
    kept = ([d for d in old if d.id not in new_ids] + demos)[-capacity:] if capacity else []
    write_records(buffer, kept)
    return kept


def hindsight_buffer(buffer: Path, add: list[Path], capacity: int = 100) -> list[Demo]:
    """The buffer D' after pushing each file of `add` into it (hindsight demos; or
    trajectories, whose successes enter as self-imitation demos); [] for a new buffer."""
    kept = list(read_records(buffer, Demo)) if buffer.exists() and not add else []
    for path in add:
        kept = push(buffer, load_demos(path, "self_imitation"), capacity)
    return kept
