"""A relabel is a claim: where the environment can replay a trajectory, check it.

The environment's oracle replays the trajectory (or reads the truth stored with it) and says
which goals it achieved and from which step; a named goal passes only if the trajectory
replays as recorded, the goal is achieved, and it holds by its step S(k). A goal naming
objects the trajectory never showed is refused before that. Where the environment cannot
replay (a foreign dump without its game files, an environment with no goal oracle), goals are
kept as the relabeler gave them and counted as unverified, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hsl_tools.envs.base import EnvError, Environment, make_env
from hsl_tools.records import Trajectory


@dataclass
class Verdict:
    """`reason` is None when the goal is verified or cannot be (then `unverified` says why)."""

    reason: str | None = None
    unverified: str | None = None


@dataclass
class Verifier:
    """Checks goals against each environment's oracle; environments are made once."""

    envs: dict[str, Environment] = field(default_factory=dict)
    unverified: dict[str, int] = field(default_factory=dict)  # why not -> goals

    def _env(self, name: str) -> Environment:
        if name not in self.envs:
            self.envs[name] = make_env(name)
        return self.envs[name]

    def _truth(self, env: Environment, trajectory: Trajectory) -> dict[str, int] | str:
        """Canonical goal -> first step, or why the trajectory cannot be checked."""
        try:
            return {str(goal): step for goal, step in env.oracle(trajectory).items()}
        except ValueError as e:  # a replay that does not match the record
            return f"the trajectory does not replay as recorded: {e}"

    def check(self, trajectory: Trajectory, goals: list[tuple[str, int]]) -> list[Verdict]:
        """A verdict for each (goal, S(k)) named for one trajectory."""
        env = self._env(trajectory.env)
        try:
            truth: dict[str, int] | str = self._truth(env, trajectory)
        except EnvError as e:
            why = str(e)
            self.unverified[why] = self.unverified.get(why, 0) + len(goals)
            return [Verdict(unverified=why) for _ in goals]
        verdicts = []
        for goal, step in goals:
            ungrounded = env.ungrounded(goal, trajectory)
            canonical = env.canonical_goal(goal)
            if ungrounded:
                verdicts.append(Verdict(ungrounded))
            elif isinstance(truth, str):
                verdicts.append(Verdict(truth))
            elif canonical not in truth:
                verdicts.append(Verdict(f"the environment shows {goal!r} never achieved"))
            elif truth[canonical] > step:
                verdicts.append(Verdict(f"{goal!r} holds from step {truth[canonical]}, not by "
                                        f"step {step}"))
            else:
                verdicts.append(Verdict())
        return verdicts
