"""Data-parallel training: two processes (`accelerate launch --multi_gpu --num_processes 2`, DDP
over gloo on a machine without GPUs) take the same steps as one process at the same global
batch, for SFT, HSL and DPO: the same losses and weights to rounding, because both draw the
same batch and each process trains on its share. (`accelerate launch --cpu` starts N
processes only through mpirun, which is not here.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from hsl_tools.cli import app

ACCELERATE = Path(sys.executable).with_name("accelerate")


def run(command: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


def log(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / "train.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["sft", "hsl", "dpo"])
def test_two_processes_take_the_steps_of_one(tmp_path: Path, tiny_model: Path,
                                              objective: str) -> None:
    runner = CliRunner()
    expert, agent = tmp_path / "expert.jsonl", tmp_path / "agent.jsonl"
    for args in (["--policy", "expert", "-n", "8", "--out", str(expert)],
                 ["--policy", "random", "-n", "8", "--max-steps", "10", "--out", str(agent)]):
        assert runner.invoke(app, ["collect", *args]).exit_code == 0
    assert runner.invoke(app, ["relabel", str(agent), "--out", str(tmp_path / "g.jsonl")]
                         ).exit_code == 0
    assert runner.invoke(app, ["mask", str(tmp_path / "g.jsonl"), "--out",
                               str(tmp_path / "buffer.jsonl")]).exit_code == 0
    args = ["train", "-m", str(tiny_model), "-d", str(expert), "--objective", objective,
            "--steps", "3", "--batch-size", "4", "--lr", "1e-3"]
    args += {"sft": [], "hsl": ["--buffer", str(tmp_path / "buffer.jsonl")],
             "dpo": ["--rejected", str(agent)]}[objective]
    one, two = tmp_path / "one", tmp_path / "two"
    run([sys.executable, "-m", "hsl_tools.cli", *args, "-o", str(one)])
    run([str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "hsl_tools.cli", *args,
         "-o", str(two)])
    alone, shared = log(one), log(two)
    assert [m["processes"] for m in alone] == [1] * 3
    assert [m["processes"] for m in shared] == [2] * 3
    for a, b in zip(alone, shared, strict=True):
        assert a["tokens"] == b["tokens"]  # the same demos, split between the two
        # step 1 starts from the same weights: its losses differ only in summation order;
        # later steps start from weights that differ in their last bits, which training
        # amplifies (DPO at this learning rate most: 1.2e-3 measured at step 3)
        rel = 1e-5 if a["step"] == 1 else 5e-3
        for key in a.keys() & {"loss", "loss_sft", "loss_hsl", "pair_accuracy"}:
            assert b[key] == pytest.approx(a[key], rel=rel, abs=1e-6), (a["step"], key)
    assert alone[-1]["loss"] != alone[0]["loss"]  # it trained
    # summed in another order, gradients differ in their last bits, and Adam, which scales
    # every gradient to about lr, makes that visible in weights whose gradient is near zero;
    # so the gradients (Adam's first moments) and the updates are compared as wholes
    start = load_file(tiny_model / "model.safetensors")
    wa, wb = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    update_a = torch.cat([(wa[k] - start[k]).flatten() for k in wa])
    update_b = torch.cat([(wb[k] - start[k]).flatten() for k in wa])
    assert (update_a - update_b).norm() < 1e-2 * update_a.norm()
    ma, mb = (torch.load(d / "optimizer.pt", weights_only=True)["state"] for d in (one, two))
    moment_a = torch.cat([ma[i]["exp_avg"].flatten() for i in sorted(ma)])
    moment_b = torch.cat([mb[i]["exp_avg"].flatten() for i in sorted(ma)])
    assert (moment_a - moment_b).norm() < 1e-3 * moment_a.norm()  # measured: 2.5e-4


def test_micro_batches_must_be_shared_evenly() -> None:
    from hsl_tools.train.config import TrainConfig

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert TrainConfig(batch_size=8).passes(cpu, 2) == 8  # one demo a pass, four each
    assert TrainConfig(batch_size=8).passes(gpu, 4) == 4  # one micro-batch each
    with pytest.raises(ValueError, match="cannot be shared by 2 processes"):
        TrainConfig(batch_size=8, grad_accum="1").passes(cpu, 2)
    with pytest.raises(ValueError, match="cannot be shared by 3 processes"):
        TrainConfig(batch_size=8).passes(cpu, 3)


def test_the_fsdp_config_is_one_accelerate_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """recipes/accelerate-fsdp-8gpu.yaml as `accelerate launch --config_file` reads it: eight
    FSDP2 processes in bf16, and the plugin each process would build from it validates. (No
    GPU here: the launch itself is for the machines that have them.)"""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env

    config = Path(__file__).resolve().parents[1] / "recipes" / "accelerate-fsdp-8gpu.yaml"
    args = launch_command_parser().parse_args(["--config_file", str(config), "train.py"])
    args, _, _ = _validate_launch_command(args)
    assert (args.use_fsdp, args.num_processes, args.mixed_precision) == (True, 8, "bf16")
    for key, value in prepare_multi_gpu_env(args).items():
        monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert plugin.transformer_cls_names_to_wrap == ["LlamaDecoderLayer"]
