"""A relabel is a claim the environment checks: a forged observation and a goal the
trajectory never reached produce no demo, and the failures file says why."""

from __future__ import annotations

from pathlib import Path

from hsl_tools.agent import RandomPolicy, rollout
from hsl_tools.envs.household import Household
from hsl_tools.records import (
    Demo,
    FailureRecord,
    GoalRecord,
    Trajectory,
    read_records,
    write_records,
)
from hsl_tools.relabel.relabelers import RuleRelabeler
from hsl_tools.relabel.stages import mask, relabel


def _played(household: Household, n: int = 12) -> list[Trajectory]:
    tasks = household.task_ids("seen", n)
    return list(rollout(household, tasks, RandomPolicy(5), "seen"))


def test_a_forged_observation_mints_no_goal_and_no_demo(household: Household,
                                                         tmp_path: Path) -> None:
    played = _played(household)
    forged = played[0].model_copy(deep=True)
    forged.steps[0].observation = "You move the goldbar 1 to the safe 1."
    trajectories = tmp_path / "t.jsonl"
    write_records(trajectories, [forged, *played[1:]])
    goals = tmp_path / "g.jsonl"
    stats = relabel(trajectories, goals, RuleRelabeler())
    named = [g for g in read_records(goals, GoalRecord)]
    assert named and all(g.trajectory_id != forged.id for g in named)  # the others pass
    refuted = [f for f in read_records(tmp_path / "g.failures.jsonl", FailureRecord)
               if f.id.startswith(f"{forged.id}#")]
    assert refuted and stats.rejected == len(refuted)
    assert any("goldbar" in f.id for f in refuted)  # the rules believed the forged line
    assert all("does not replay as recorded" in f.reason for f in refuted)


def test_a_goal_the_trajectory_never_reached_becomes_no_demo(household: Household,
                                                              tmp_path: Path) -> None:
    played = _played(household)
    t = played[0]
    true_goals = tmp_path / "true.jsonl"
    write_records(tmp_path / "t.jsonl", played)
    relabel(tmp_path / "t.jsonl", true_goals, RuleRelabeler())
    real = list(read_records(true_goals, GoalRecord))
    step = len(t.steps)
    forged = [GoalRecord(id=f"{t.id}#gold", trajectory_id=t.id, goal="put a goldbar in safe",
                         step=step, relabeler="someone", trajectory=t),
              GoalRecord(id=f"{t.id}#late", trajectory_id=t.id, goal=real[0].goal, step=1,
                         relabeler="someone",
                         trajectory=next(x for x in played if x.id == real[0].trajectory_id))]
    assert real[0].step > 1  # nothing holds after a single step of random play
    goals = tmp_path / "g.jsonl"
    write_records(goals, [*forged, *real])
    demos = tmp_path / "d.jsonl"
    stats = mask(goals, demos, RuleRelabeler())
    made = {d.id for d in read_records(demos, Demo)}
    assert made == {g.id for g in real}
    reasons = {f.id: f.reason for f in read_records(tmp_path / "d.failures.jsonl",
                                                     FailureRecord)}
    assert "never showed: goldbar, safe" in reasons[f"{t.id}#gold"]
    assert "not by step 1" in reasons[f"{t.id}#late"] and stats.rejected == 2
