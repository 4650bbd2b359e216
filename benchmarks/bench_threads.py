"""Benchmark: SFT tokens/s of the tiny model by torch thread setting, on quiet cores and on
cores that other jobs keep busy, side by side in one run: why `just` gives torch one thread.

Each setting trains in a fresh process (OpenMP reads its environment once, at load): one
thread; all cores with OpenMP's default waiting (threads spin at every barrier a while, then
sleep); all cores with OMP_WAIT_POLICY=PASSIVE (they sleep at once). "Busy" runs the same
beside one pure-Python spinning process per core, as another job on a shared machine.
Measured on 2 cores (2026-12-06, 10 steps): quiet 3888 / 5487 / 3275 tokens/s, busy
2460 / 897 / 2826: all cores are 1.4x one thread when quiet and 2.7x slower when not, and
sleeping at once saves them from collapse but gains nothing over one thread.

Run: just bench   (or: python benchmarks/bench_threads.py [--steps 10])
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SETTINGS = {"1 thread": {"OMP_NUM_THREADS": "1"},
            "all cores": {},
            "all cores, passive": {"OMP_WAIT_POLICY": "PASSIVE"}}


def child(folder: Path, steps: int) -> None:
    """Train in this process and print tokens/s over the steps after the first."""
    from hsl_tools.records import Demo, read_records
    from hsl_tools.train.loop import TrainConfig, train

    demos = list(read_records(folder / "demos.jsonl", Demo))
    out = folder / f"out-{os.getpid()}"
    train(str(folder / "m"), out, TrainConfig(objective="sft", steps=steps, batch_size=16,
                                              grad_accum="auto", lr=1e-3), demos, [])
    lines = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()][1:]
    print(sum(m["tokens"] for m in lines) / sum(m["seconds"] for m in lines))


def measure(folder: Path, steps: int, env: dict[str, str]) -> float:
    variables = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",
                                                                   "OMP_WAIT_POLICY")}
    done = subprocess.run([sys.executable, __file__, "--child", str(folder), "--steps",
                           str(steps)], env={**variables, **env}, capture_output=True,
                          text=True, check=True)
    return float(done.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.steps)

    from hsl_tools.agent import ExpertPolicy, rollout
    from hsl_tools.envs.household import Household
    from hsl_tools.init_model import build_scratch
    from hsl_tools.records import write_records
    from hsl_tools.train.data import from_trajectory

    env = Household()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_records(folder / "demos.jsonl", [
            from_trajectory(t, "ground_truth")
            for t in rollout(env, env.task_ids("train", 64), ExpertPolicy(), "train")])
        build_scratch(folder / "m", "tiny")
        for load in ("quiet", "busy"):
            spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                        for _ in range(cores if load == "busy" else 0)]
            try:
                for name, env_vars in SETTINGS.items():
                    rate = measure(folder, args.steps, env_vars)
                    print(f"threads: SFT, tiny model, {cores} cores {load:5}, {name:20}: "
                          f"{rate:7.0f} tokens/s", flush=True)
            finally:
                for spinner in spinners:
                    spinner.kill()


if __name__ == "__main__":
    main()
