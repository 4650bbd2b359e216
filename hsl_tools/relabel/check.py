"""Relabel accuracy as the environment judges it: precision and recall of the goals named,
and how often S(k) is exactly the true step, overall and per goal type."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from hsl_tools.envs.base import Environments, env_class
from hsl_tools.records import GoalRecord, Trajectory
from hsl_tools.relabel.relabelers import Goals, Relabeler


def check(trajectories: Iterable[Trajectory], goals: Iterable[GoalRecord]) -> dict:
    """Compare relabeled goals with what the environment's judge says each trajectory
    achieved (those with no goal too): a named goal is right when it holds (in the goal space,
    or, on WebShop, when the purchase scores 1.0 for it), recall counts the achieved goals
    named. Measures the environment has about each named goal are averaged."""
    named: dict[str, dict[str, int]] = defaultdict(dict)
    outside: dict[str, int] = defaultdict(int)  # goals named outside the goal space
    for g in goals:
        canonical = env_class(g.trajectory.env).canonical_goal(g.goal)
        if canonical is None:
            outside[g.trajectory_id] += 1
        else:
            named[g.trajectory_id][canonical] = g.step
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict(tp=0, fp=0, fn=0, exact=0))
    measures: dict[str, list[float]] = defaultdict(list)
    seen = set()
    with Environments() as envs:
        for t in trajectories:
            seen.add(t.id)
            env = envs[t.env]
            counts["not in the goal space"]["fp"] += outside.get(t.id, 0)
            try:
                judge = env.judge(t)
            except ValueError:  # its goals cannot be right: the record is not what happened
                counts["trajectory does not replay"]["fp"] += len(named.get(t.id, {}))
                continue
            found = set()
            for goal, step in named.get(t.id, {}).items():
                kind = env.goal_type(goal)
                verdict = judge.judge(goal)
                for name, value in judge.measures(goal).items():
                    measures[name].append(value)
                if isinstance(verdict, str):
                    counts[kind]["fp"] += 1
                    continue
                if verdict[0] not in found:  # two names for one achieved goal count once
                    counts[kind]["tp"] += 1
                    counts[kind]["exact"] += verdict[1] == step
                    found.add(verdict[0])
                else:
                    counts[kind]["fp"] += 1
            for goal in judge.achieved.keys() - found:
                counts[env.goal_type(goal)]["fn"] += 1
    counts = {kind: c for kind, c in counts.items() if any(c.values())}
    missing = (named.keys() | outside.keys()) - seen
    if missing:
        raise ValueError(f"goal records name trajectories not in the trajectories file: "
                         f"{', '.join(sorted(missing)[:3])}")
    total = {k: sum(c[k] for c in counts.values()) for k in ("tp", "fp", "fn", "exact")}
    return {"trajectories": len(seen), "overall": rates(total),
            "per_type": {kind: rates(c) for kind, c in sorted(counts.items())},
            "measures": {name: sum(v) / len(v) for name, v in measures.items()}}


def check_relabeler(trajectories: list[Trajectory], relabeler: Relabeler) -> dict:
    """Relabel trajectories in memory and check the goals as the environment judges them (a
    reply that never read names nothing)."""
    found = relabeler.identify(trajectories, None)
    return check(trajectories, (
        GoalRecord(id=f"{t.id}#{goal}", trajectory_id=t.id, goal=goal, step=step,
                   relabeler=relabeler.spec, trajectory=t)
        for t, result in zip(trajectories, found, strict=True) if isinstance(result, Goals)
        for goal, step in result.goals))


def rates(c: dict[str, int]) -> dict[str, float | None]:
    """Precision, recall and exact-S(k) rate; None where nothing was there to count (no goal
    named, none achieved): a relabeler that names nothing is not 100 % precise."""
    named, true = c["tp"] + c["fp"], c["tp"] + c["fn"]
    return {**c, "precision": c["tp"] / named if named else None,
            "recall": c["tp"] / true if true else None,
            "step_exact": c["exact"] / c["tp"] if c["tp"] else None}
