"""Benchmark: training throughput of the tiny model (tokens/s, SFT and HSL steps).

Run: just bench   (or: python benchmarks/bench_train.py)
Tokens are the demos' tokens (prompt included, padding not), as `train.jsonl` counts them, so
a padded pass and unpadded passes over the same demos compare by time.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hsl_tools.agent import ExpertPolicy, RandomPolicy, rollout
from hsl_tools.envs.household import Household
from hsl_tools.init_model import build_scratch
from hsl_tools.records import Demo, read_records, write_records
from hsl_tools.relabel.relabelers import RuleRelabeler
from hsl_tools.relabel.stages import mask, relabel
from hsl_tools.train.data import from_trajectory
from hsl_tools.train.loop import TrainConfig, train


def main() -> None:
    env = Household()
    expert = [from_trajectory(t, "ground_truth") for t in
              rollout(env, env.task_ids("train", 64), ExpertPolicy(), "train")]
    weak = list(rollout(env, env.task_ids("train", 200), RandomPolicy(0), "train", 64))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_records(folder / "weak.jsonl", weak)
        relabel(folder / "weak.jsonl", folder / "goals.jsonl", RuleRelabeler())
        mask(folder / "goals.jsonl", folder / "demos.jsonl", RuleRelabeler())
        hindsight = list(read_records(folder / "demos.jsonl", Demo))
        build_scratch(Path(tmp) / "m", "tiny")
        for objective in ("sft", "hsl"):
            rates = {}
            for accum in (1, "auto"):  # auto on CPU: one demo per pass, so no padding at all
                out = Path(tmp) / f"{objective}-{accum}"
                train(str(Path(tmp) / "m"), out, TrainConfig(objective=objective, steps=8,
                                                             batch_size=16, grad_accum=accum,
                                                             lr=1e-3), expert, hindsight)
                lines = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
                lines = lines[2:]  # the first steps warm up
                rates[accum] = sum(m["tokens"] for m in lines) / sum(m["seconds"] for m in lines)
                print(f"train {objective}, tiny model, batch 16 per source, grad_accum "
                      f"{accum:>4}: {rates[accum]:8.0f} tokens/s")
            print(f"train {objective}: grad_accum auto runs {rates['auto'] / rates[1]:.2f}x the "
                  "tokens/s of one padded pass")


if __name__ == "__main__":
    main()
