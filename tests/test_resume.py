"""Resume that cannot lie: an output records what made it and is never resumed by anything
else, and a relabel killed between two goals of one trajectory loses and duplicates none."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hsl_tools.records import GoalRecord, read_records
from hsl_tools.relabel.relabelers import RuleRelabeler
from hsl_tools.relabel.stages import relabel


def hsl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hsl_tools.cli", *args], capture_output=True,
                          text=True, timeout=300)


def test_another_relabeler_never_resumes_an_output(tmp_path: Path, tiny_model: Path) -> None:
    trajectories, goals = tmp_path / "t.jsonl", tmp_path / "g.jsonl"
    assert hsl("collect", "--policy", "random", "-n", "6", "--out", str(trajectories)
               ).returncode == 0
    assert hsl("relabel", str(trajectories), "--out", str(goals)).returncode == 0
    before = goals.read_text()
    result = hsl("relabel", str(trajectories), "--relabeler", f"hf:{tiny_model}", "--out",
                 str(goals))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"relabeler 'rules' -> 'hf:{tiny_model}'" in result.stderr
    assert "--fresh" in result.stderr and goals.read_text() == before
    # the same relabeler resumes (nothing new to do), and --fresh redoes it
    again = hsl("relabel", str(trajectories), "--out", str(goals))
    assert again.returncode == 0 and "0 new" in again.stdout


def test_another_policy_never_resumes_a_collection(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    assert hsl("collect", "-n", "3", "--out", str(out)).returncode == 0
    result = hsl("collect", "--policy", "random", "-n", "3", "--out", str(out))
    assert result.returncode == 2 and "policy 'expert' -> 'random'" in result.stderr
    fresh = hsl("collect", "--policy", "random", "-n", "3", "--out", str(out), "--fresh")
    assert fresh.returncode == 0 and "3 new" in fresh.stdout


def test_a_relabel_killed_between_two_goals_of_a_trajectory_loses_none(
        tmp_path: Path) -> None:
    trajectories = tmp_path / "t.jsonl"
    assert hsl("collect", "--split", "seen", "--policy", "random", "-n", "40", "--out",
               str(trajectories)).returncode == 0
    whole = tmp_path / "whole.jsonl"
    relabel(trajectories, whole, RuleRelabeler())
    goals = list(read_records(whole, GoalRecord))
    many = next(t for t in dict.fromkeys(g.trajectory_id for g in goals)
                if sum(g.trajectory_id == t for g in goals) >= 2)
    # a kill after the first goal of `many` was written, before its second: the partial file
    # holds the trajectories finished before it, and that one goal
    cut = goals.index(next(g for g in goals if g.trajectory_id == many)) + 1
    out = tmp_path / "g.jsonl"
    relabel(trajectories, out, RuleRelabeler(), chunk=1)  # writes the log and made-by
    done_before = [g.trajectory_id for g in goals[:cut - 1]]
    out.unlink()
    out.with_name(out.name + ".partial").write_text(
        "".join(g.to_json() + "\n" for g in goals[:cut]))
    out.with_name(out.name + ".skipped").write_text("".join(
        f"{t}\n" for t in dict.fromkeys(done_before)))
    stats = relabel(trajectories, out, RuleRelabeler())
    assert stats.resumed == len(set(done_before)) and stats.empty > 0
    resumed = [g.id for g in read_records(out, GoalRecord)]
    assert sorted(resumed) == sorted(g.id for g in goals) and len(set(resumed)) == len(resumed)


def test_training_into_a_checkpoint_is_refused_without_resume_or_fresh(
        tmp_path: Path, tiny_model: Path) -> None:
    demos, out = tmp_path / "expert.jsonl", tmp_path / "ckpt"
    assert hsl("collect", "-n", "2", "--out", str(demos)).returncode == 0
    args = ("train", "-m", str(tiny_model), "-o", str(out), "-d", str(demos), "--steps", "1",
            "--batch-size", "2")
    assert hsl(*args).returncode == 0
    before = (out / "model.safetensors").read_bytes()
    refused = hsl(*args, "--lr", "1e-3")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"{out} holds a checkpoint (step 1): --resume continues it, --fresh replaces it" \
        in " ".join(refused.stderr.split())
    assert (out / "model.safetensors").read_bytes() == before
    assert hsl(*args, "--lr", "1e-3", "--fresh").returncode == 0
    assert (out / "model.safetensors").read_bytes() != before
