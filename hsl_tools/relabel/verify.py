"""A relabel is a claim: where the environment can replay a trajectory, check it.

The environment's judge replays the trajectory (or reads the truth stored with it) and says
which goals it achieved and from which step (WebShop: whether the purchase scores 1.0 for the
goal); a named goal passes only if the trajectory replays as recorded, the goal is achieved,
and it holds by its step S(k). A goal naming objects the trajectory never showed is refused
before that. Where the environment cannot replay (a foreign dump without its game files,
WebShop without its data), goals are kept as the relabeler gave them and counted as
unverified, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hsl_tools.envs.base import EnvError, Environments, Judge
from hsl_tools.records import Trajectory


@dataclass
class Verdict:
    """`reason` is None when the goal is verified or cannot be (then `unverified` says why)."""

    reason: str | None = None
    unverified: str | None = None


@dataclass
class Verifier:
    """Checks goals against each environment's judge; environments are made once."""

    envs: Environments = field(default_factory=Environments)
    unverified: dict[str, int] = field(default_factory=dict)  # why not -> goals

    def check(self, trajectory: Trajectory, goals: list[tuple[str, int]]) -> list[Verdict]:
        """A verdict for each (goal, S(k)) named for one trajectory."""
        env = self.envs[trajectory.env]
        try:
            judge: Judge | str = env.judge(trajectory)
        except EnvError as e:
            why = str(e)
            self.unverified[why] = self.unverified.get(why, 0) + len(goals)
            return [Verdict(unverified=why) for _ in goals]
        except ValueError as e:
            judge = f"the trajectory does not replay as recorded: {e}"
        verdicts = []
        for goal, step in goals:
            found = env.ungrounded(goal, trajectory) or (
                judge if isinstance(judge, str) else judge.judge(goal))
            if isinstance(found, str):
                verdicts.append(Verdict(found))
            elif found[1] > step:
                verdicts.append(Verdict(f"{goal!r} holds from step {found[1]}, not by "
                                        f"step {step}"))
            else:
                verdicts.append(Verdict())
        return verdicts
