"""The command line: collect writes valid records, resumes, and fails in one clear line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import said
from hsl_tools.cli import COMMANDS, app
from hsl_tools.records import Trajectory, read_records

runner = CliRunner()


def hsl(*args: str) -> subprocess.CompletedProcess:
    """The real console entry point, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "hsl_tools.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_collect_expert_writes_successful_trajectories(tmp_path: Path) -> None:
    out = tmp_path / "demos.jsonl"
    result = runner.invoke(app, ["collect", "--split", "train", "-n", "12", "--out", str(out)])
    assert result.exit_code == 0, result.output
    trajectories = list(read_records(out, Trajectory))
    assert [t.task_id for t in sorted(trajectories, key=lambda t: t.task_id)] == [
        f"train-{i:05d}" for i in range(12)]
    assert all(t.success and t.reward == 1.0 and t.policy == "expert" for t in trajectories)
    assert all("Your task is to" not in t.initial_observation for t in trajectories)
    assert "12 new" in said(result.output)


def test_collect_resumes_without_redoing_finished_tasks(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    assert runner.invoke(app, ["collect", "--policy", "random", "-n", "4", "--out",
                               str(out)]).exit_code == 0
    # Mark the finished records: a redo would lose the mark.
    lines = [json.loads(line) | {"mark": i} for i, line in enumerate(out.read_text().splitlines())]
    out.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = runner.invoke(app, ["collect", "--policy", "random", "-n", "6", "--out", str(out)])
    assert result.exit_code == 0 and "2 new, 4 resumed" in said(result.output)
    records = list(read_records(out, Trajectory))
    assert len(records) == 6
    assert sorted(r.model_extra.get("mark", -1) for r in records) == [-1, -1, 0, 1, 2, 3]


@pytest.mark.parametrize(("args", "valid"), [
    (["--env", "nowhere"], "valid: household"),
    (["--split", "test"], "valid: train, seen, unseen"),
    (["--policy", "genius"], "valid: expert, expert:VARIANT, random"),
])
def test_unknown_names_fail_in_one_line_listing_valid_ones(tmp_path: Path, args: list[str],
                                                           valid: str) -> None:
    result = hsl("collect", *args, "-n", "1", "--out", str(tmp_path / "x.jsonl"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and valid in result.stderr
    assert not (tmp_path / "x.jsonl").exists()


def test_bad_input_file_fails_naming_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"schema": "hsl.trajectory/1", "id": "x"}\n')
    result = hsl("show", str(path))
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"error: {path}:1: env: Field required")
    assert len(result.stderr.strip().splitlines()) == 1


def test_show_lists_oracle_goals(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    runner.invoke(app, ["collect", "-n", "1", "--out", str(out)])
    result = runner.invoke(app, ["show", str(out), "--oracle"])
    goal = next(read_records(out, Trajectory)).meta["goal"]
    assert result.exit_code == 0 and "achieved (oracle)" in said(result.output)
    assert goal in said(result.output)


def test_show_achieving_skips_trajectories_without_goals(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    runner.invoke(app, ["collect", "--policy", "random", "-n", "30", "--out", str(out)])
    result = runner.invoke(app, ["show", str(out), "--achieving", "--limit", "30"])
    assert result.exit_code == 0
    shown = result.output.count("achieved (oracle)")
    assert 0 < shown < 30 and "achieved (oracle): nothing" not in said(result.output)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_explains_itself_at_80_columns(command: str) -> None:
    """Help text is shown as written (a "[default: …]" is not taken for markup), flags show no
    type, and every option's whole name fits."""
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output and "BOOLEAN" not in result.output
    assert all(len(line) <= 80 for line in result.output.splitlines()), result.output
    if command == "collect":
        assert "[default: the environment's: 40, WebShop 10]" in said(result.output)
        assert "--react / --no-react" in result.output
