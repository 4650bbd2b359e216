"""Killed and resumed, a stage ends as if never interrupted: `collect`, `relabel`, `mask` and
`train` are each killed (SIGKILL, the whole process group) 20 times at random points of their
work, rerun after every kill, and their final output is compared with an uninterrupted run's,
record for record (training: loss for loss and weight for weight)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

KILLS = 20


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "hsl_tools.cli", *args]


def _run(*args: str) -> float:
    """Run to the end; returns the seconds it took."""
    started = time.monotonic()
    result = subprocess.run(_command(*args), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return time.monotonic() - started


def _killed_until_done(args: tuple[str, ...], watch: Path, total: int, seed: int) -> int:
    """Run the command and kill it each time `watch` (its partial output, or the training log)
    has grown past everything written before by a random share of 1/KILLS of the `total`
    bytes a whole run writes, then rerun; after KILLS kills, let it finish. So every kill lands
    mid-work, at a random point; returns the kills that landed while it ran."""
    rng = random.Random(seed)
    kills, high = 0, 0
    while kills < KILLS:
        target = high + int(rng.uniform(0.2, 1.0) * total / KILLS)
        process = subprocess.Popen(_command(*args), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, start_new_session=True)
        while process.poll() is None:
            size = watch.stat().st_size if watch.exists() else 0
            if size >= target:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                kills += 1
                high = max(high, size)
                break
            time.sleep(0.005)
        else:
            assert process.returncode == 0, process.stderr.read() if process.stderr else ""
            break  # it finished first
    _run(*args)
    return kills


def _partial(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def _records(path: Path) -> list[str]:
    return sorted(path.read_text(encoding="utf-8").splitlines())


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("kill") / "whole-t.jsonl"
    _run("collect", "--policy", "random", "-n", "800", "--out", str(path))
    return path


def test_collect_killed_20_times_ends_as_one_run(played: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    kills = _killed_until_done(("collect", "--policy", "random", "-n", "800", "--out",
                                str(out)), _partial(out), played.stat().st_size, seed=1)
    assert kills == KILLS
    assert _records(out) == _records(played)


@pytest.mark.parametrize("stage", ["relabel", "mask"])
def test_relabel_and_mask_killed_20_times_end_as_one_run(stage: str, played: Path,
                                                         tmp_path: Path) -> None:
    goals = tmp_path / "whole-g.jsonl"
    _run("relabel", str(played), "--out", str(goals), "--chunk", "8")
    source = played if stage == "relabel" else goals
    whole = tmp_path / "whole-out.jsonl"
    if stage == "mask":
        _run("mask", str(goals), "--out", str(whole), "--chunk", "8")
    else:
        whole = goals
    out = tmp_path / "out.jsonl"
    kills = _killed_until_done((stage, str(source), "--out", str(out), "--chunk", "8"),
                               _partial(out), whole.stat().st_size,
                               seed=2 if stage == "relabel" else 3)
    assert kills == KILLS
    assert _records(out) == _records(whole)


def test_train_killed_20_times_ends_as_one_run(tiny_model: Path, tmp_path: Path) -> None:
    demos = tmp_path / "expert.jsonl"
    _run("collect", "-n", "8", "--out", str(demos))
    args = ("train", "-m", str(tiny_model), "-d", str(demos), "--steps", "32", "--batch-size",
            "4", "--lr", "1e-3", "--save-every", "2", "--resume")
    _run(*args, "-o", str(tmp_path / "whole"))
    log_size = (tmp_path / "whole" / "train.jsonl").stat().st_size
    kills = _killed_until_done((*args, "-o", str(tmp_path / "ckpt")),
                               tmp_path / "ckpt" / "train.jsonl", log_size, seed=4)
    assert kills == KILLS

    def log(folder: str) -> list[dict]:
        return [json.loads(x) for x in (tmp_path / folder / "train.jsonl").read_text()
                .splitlines()]

    resumed, whole = log("ckpt"), log("whole")
    assert [x["step"] for x in resumed] == list(range(1, 33))
    assert [x["tokens"] for x in resumed] == [x["tokens"] for x in whole]
    assert [x["loss"] for x in resumed] == pytest.approx([x["loss"] for x in whole], rel=1e-5)
    a, b = (load_file(tmp_path / f / "model.safetensors") for f in ("ckpt", "whole"))
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
