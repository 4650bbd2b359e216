"""Relabel accuracy against the environment's oracle: precision and recall of the goals named,
and how often S(k) is exactly the true step, overall and per goal type."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from rich.table import Table

from hsl_tools.envs.base import make_env
from hsl_tools.goals import Goal
from hsl_tools.records import GoalRecord, Trajectory
from hsl_tools.relabel.relabelers import Relabeler


def check(trajectories: Iterable[Trajectory], goals: Iterable[GoalRecord]) -> dict:
    """Compare relabeled goals with the oracle on every trajectory (those with no goal too)."""
    named: dict[str, dict[Goal | str, int]] = defaultdict(dict)
    for g in goals:
        named[g.trajectory_id][Goal.parse(g.goal) or g.goal] = g.step
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict(tp=0, fp=0, fn=0, exact=0))
    envs: dict = {}
    seen = set()
    for t in trajectories:
        seen.add(t.id)
        env = envs.setdefault(t.env, make_env(t.env))
        truth = env.oracle(t)
        got = named.get(t.id, {})
        for goal, step in got.items():
            kind = str(goal.type) if isinstance(goal, Goal) else "not a template"
            if goal in truth:
                counts[kind]["tp"] += 1
                counts[kind]["exact"] += truth[goal] == step
            else:
                counts[kind]["fp"] += 1
        for goal in truth.keys() - got.keys():
            counts[str(goal.type)]["fn"] += 1
    missing = named.keys() - seen
    if missing:
        raise ValueError(f"goal records name trajectories not in the trajectories file: "
                         f"{', '.join(sorted(missing)[:3])}")
    total = {k: sum(c[k] for c in counts.values()) for k in ("tp", "fp", "fn", "exact")}
    return {"trajectories": len(seen), "overall": rates(total),
            "per_type": {kind: rates(c) for kind, c in sorted(counts.items())}}


def check_relabeler(trajectories: list[Trajectory], relabeler: Relabeler) -> dict:
    """Relabel trajectories in memory and check the goals against the oracle."""
    found = relabeler.identify(trajectories, None)
    return check(trajectories, (
        GoalRecord(id=f"{t.id}#{goal}", trajectory_id=t.id, goal=goal, step=step,
                   relabeler=relabeler.spec, trajectory=t)
        for t, result in zip(trajectories, found, strict=True) for goal, step in result.goals))


def rates(c: dict[str, int]) -> dict[str, float]:
    named, true = c["tp"] + c["fp"], c["tp"] + c["fn"]
    return {**c, "precision": c["tp"] / named if named else 1.0,
            "recall": c["tp"] / true if true else 1.0,
            "step_exact": c["exact"] / c["tp"] if c["tp"] else 1.0}


def check_table(report: dict, title: str) -> Table:
    table = Table(title=title)
    for column in ("goal type", "named", "true", "precision", "recall", "S(k) exact"):
        table.add_column(column, justify="left" if column == "goal type" else "right")
    rows = list(report["per_type"].items()) + [("all", report["overall"])]
    for kind, r in rows:
        table.add_row(kind, str(r["tp"] + r["fp"]), str(r["tp"] + r["fn"]),
                      f"{r['precision']:.1%}", f"{r['recall']:.1%}", f"{r['step_exact']:.1%}",
                      style="bold" if kind == "all" else None)
    return table
