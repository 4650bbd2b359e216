"""Benchmark: real ALFWorld rollouts in env steps per second, with textworld as shipped in
spawned workers ("before") and with its parses memoized in workers forked from a forkserver
(envs/alfworld/memo.py and worker.py, "after"), side by side in one run.

A random policy (all time is the game's) and the tiny model from scratch (its tokenizer
learned from 40 ALFWorld episodes; greedy), batch 8 and 16, on the first 16 `seen` games at
T = 40. Each line splits the wall time into the policy's share and the rest (game loads and
steps in the workers, pipes). Needs the alfworld extra and $ALFWORLD_DATA.

Run: just bench   (or: python benchmarks/bench_alfworld.py [-n 16])
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from hsl_tools.agent import Decision, Policy, RandomPolicy, make_policy, rollout
from hsl_tools.envs.alfworld import Alfworld
from hsl_tools.envs.base import Environment, Episode
from hsl_tools.records import Step


class Timed:
    """A policy that keeps the seconds it spends deciding (not awaiting a game's reset)."""

    def __init__(self, policy: Policy) -> None:
        self.policy, self.name, self.seconds = policy, policy.name, 0.0

    def settings(self) -> dict:
        return self.policy.settings()

    def act(self, env: Environment, episodes: list[Episode], histories: list[list[Step]]
            ) -> list[Decision]:
        _ = [e.observation for e in episodes]  # a new game's reset is the game's time
        started = time.perf_counter()
        decisions = self.policy.act(env, episodes, histories)
        self.seconds += time.perf_counter() - started
        return decisions


def measure(env: Alfworld, games: list[str], policy: Policy, batch_size: int) -> str:
    timed = Timed(policy)
    started = time.perf_counter()
    steps = sum(len(t.steps) for t in rollout(env, games, timed, "seen", batch_size))
    seconds = time.perf_counter() - started
    return (f"{steps / seconds:6.1f} env steps/s ({steps} steps, {seconds:5.1f} s: policy "
            f"{timed.seconds:5.1f} s, games {seconds - timed.seconds:5.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=16, help="seen games per line")
    n = parser.parse_args().n
    # torch only here: each game worker imports this script again, as `hsl` (light) it is
    import torch

    from hsl_tools.init_model import build_scratch

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "tiny"
        build_scratch(model, env="alfworld", episodes=40)
        policies = {"random": lambda: RandomPolicy(0),
                    "tiny": lambda: make_policy(f"hf:{model}", "alfworld")}
        print(f"ALFWorld rollouts, {n} seen games, T = 40, torch threads "
              f"{torch.get_num_threads()}")
        for name, policy in policies.items():
            for batch_size in (8, 16):
                for fast in (False, True):
                    env = Alfworld(fast=fast)
                    try:
                        line = measure(env, env.task_ids("seen", n), policy(), batch_size)
                    finally:
                        env.close()
                    print(f"  {name:6} batch {batch_size:2} {'after ' if fast else 'before'}: "
                          f"{line}", flush=True)


if __name__ == "__main__":
    main()
