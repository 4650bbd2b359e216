"""Benchmark: rollouts whose histories outgrow the model's context, the oldest steps dropped one
at a time against `LLMPolicy.drop` at a time, and the batch's prefill padded to its longest row
against grouped by length (`hf.prefill_groups`), side by side in one run (WebShop, where ten
steps of result pages pass the tiny model's 4096 positions).

The same `test` goals are played both ways by the random policy (an untrained model's babble
never leaves the search page, so its histories stay short), while an untrained WebShop tiny
model is prompted with each step's history and generates its reply as a policy would. Counted:
the prompt tokens the model had to compute (each prompt less the states the hf backend kept of
its episode's last call, by the backend's own count) and the wall time of the rollouts. The
random policy's histories are shorter than a trained agent's (whose ten steps of result pages
passed 4096 tokens), so the model is given a shorter context (--context, 2048) to cut them.

Run: just bench   (or: python benchmarks/bench_history.py [--episodes 10]; needs WEBSHOP_DATA)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from unittest.mock import patch

from hsl_tools.agent import Decision, LLMPolicy, RandomPolicy, rollout
from hsl_tools.envs.base import Environment, Episode, make_env
from hsl_tools.init_model import build_scratch
from hsl_tools.llm import hf
from hsl_tools.llm.hf import HFChatModel
from hsl_tools.records import Step


class Driven(LLMPolicy):
    """The model prompted and generating as a policy with this `drop`, while the random policy
    picks the actions; counts the prompt tokens it computed and those it was sent."""

    def __init__(self, model: HFChatModel, drop: int) -> None:
        super().__init__(model)
        self.model: HFChatModel = model
        self.drop, self.driver = drop, RandomPolicy(0)
        self.computed = self.sent = 0

    def act(self, env: Environment, episodes: list[Episode], histories: list[list[Step]]
            ) -> list[Decision]:
        prompts = [self.prompt(env, e, h) for e, h in zip(episodes, histories, strict=True)]
        for episode, prompt in zip(episodes, prompts, strict=True):
            ids = self.model.prompt_ids(prompt)
            self.computed += len(ids) - self.model.cache.reusable(episode.task_id, ids)
            self.sent += len(ids)
        self.model.generate(prompts, self.generation(env), [e.task_id for e in episodes])
        return self.driver.act(env, episodes, histories)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--context", type=int, default=2048)
    args = parser.parse_args()
    if not os.environ.get("WEBSHOP_DATA"):
        print("bench_history: skipped (set WEBSHOP_DATA, see recipes/webshop-tiny.toml)")
        return
    env = make_env("webshop")
    goals = env.task_ids("test", args.episodes)
    with tempfile.TemporaryDirectory() as tmp:
        build_scratch(Path(tmp) / "m", "tiny", env="webshop")
        model = HFChatModel(str(Path(tmp) / "m"))
        model.context_length = args.context
        one_group = lambda lengths: [list(range(len(lengths)))]  # noqa: E731
        for drop, grouped in ((1, True), (LLMPolicy.drop, False), (LLMPolicy.drop, True)):
            policy = Driven(model, drop)
            started = time.perf_counter()
            # ungrouped: every row padded to the batch's longest prefill, as before grouping
            with patch.object(hf, "prefill_groups", hf.prefill_groups if grouped else one_group):
                steps = sum(len(t.steps) for t in rollout(env, goals, policy, "test",
                                                          len(goals)))
            seconds = time.perf_counter() - started
            print(f"history: webshop, {len(goals)} episodes, {steps} steps, context "
                  f"{args.context}, drop {drop}, prefill {'grouped' if grouped else 'padded'}: "
                  f"{policy.computed} of {policy.sent} prompt tokens computed, {seconds:.1f} s",
                  flush=True)


if __name__ == "__main__":
    main()
