"""One error path for the whole command line: bad input, an unusable output, a bad run folder
each end in one short line naming the file (and line and field where there is one), never a
traceback, never markup-mangled, never a secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hsl_tools.errors import LIMIT, one_line
from hsl_tools.records import GoalRecord, Trajectory, read_records, write_records


def hsl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The real console entry point, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "hsl_tools.cli", *args], capture_output=True,
                          text=True, timeout=120, env=env)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()  # progress lines may come first
    errors = [x for x in lines if x.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    return errors[0]


@pytest.fixture
def trajectories(tmp_path: Path) -> Path:
    path = tmp_path / "t.jsonl"
    assert hsl("collect", "--policy", "random", "-n", "3", "--out", str(path)).returncode == 0
    return path


def test_a_folder_given_as_input_is_named(tmp_path: Path) -> None:
    line = one_error_line(hsl("relabel", str(tmp_path), "--out", str(tmp_path / "g.jsonl")))
    assert f"{tmp_path}: is a folder, not a file" in line


def test_an_output_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    line = one_error_line(hsl("collect", "-n", "1", "--out", str(blocker / "t.jsonl")))
    assert f"{blocker}: File exists" in line  # mkdir meets a file where the folder goes


def test_bytes_that_are_not_utf8_name_their_line(trajectories: Path) -> None:
    lines = trajectories.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b"You", b"Y\xffou", 1)
    trajectories.write_bytes(b"".join(lines))
    line = one_error_line(hsl("relabel", str(trajectories), "--out",
                              str(trajectories.with_name("g.jsonl"))))
    assert f"{trajectories}:2: not UTF-8 text (byte 0xff" in line


def test_brackets_in_a_message_are_printed_as_they_are(tmp_path: Path) -> None:
    line = one_error_line(hsl("show", str(tmp_path / "run[bold]3.jsonl")))
    assert "run[bold]3.jsonl: no such file" in line


def test_a_goal_record_whose_prefix_misses_its_step_is_refused_at_its_line(
        trajectories: Path, tmp_path: Path) -> None:
    t = next(read_records(trajectories, Trajectory))
    record = GoalRecord.model_construct(
        id="x#g", trajectory_id=t.id, goal="put a mug in sinkbasin", step=1, relabeler="rules",
        trajectory=t.model_copy(update={"steps": []}))
    goals = tmp_path / "goals.jsonl"
    goals.write_text(json.dumps(record.model_dump(by_alias=True, mode="json")) + "\n")
    line = one_error_line(hsl("mask", str(goals), "--out", str(tmp_path / "d.jsonl")))
    assert f"{goals}:1: (record): step S(k) = 1, but the trajectory prefix " \
           "holds 0 steps" in line


def test_a_run_folder_with_a_bad_recipe_or_summary_names_the_file(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "eval-sft").mkdir(parents=True)
    recipe = {"run": {"dir": str(run), "seed": 1}, "sft": {"demos": 4}, "hsl": {"iterations": 1}}
    (run / "recipe.json").write_text(json.dumps(recipe))
    line = one_error_line(hsl("report", str(run), "--out", str(tmp_path / "r")))
    assert f"{run / 'recipe.json'}: methods: Field required" in line
    (run / "recipe.json").write_text(json.dumps({**recipe, "methods": {"eval-sft": "SFT"}}))
    (run / "eval-sft" / "summary.json").write_text('{"summary": ')
    line = one_error_line(hsl("report", str(run), "--out", str(tmp_path / "r")))
    assert f"{run / 'eval-sft' / 'summary.json'}:1: invalid JSON" in line


def test_a_huge_observation_in_an_error_stays_a_short_line(trajectories: Path) -> None:
    records = list(read_records(trajectories, Trajectory))
    records[0].steps[0].observation = "forged " * 200_000  # ~1.4 MB: does not replay
    write_records(trajectories, records)
    line = one_error_line(hsl("show", str(trajectories), "--oracle"))
    assert "does not replay" in line and len(line) <= LIMIT + len("error: ")


def test_secrets_never_reach_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "k3y-that-is-secret")
    error = ValueError("401 from server: {'detail': 'bad key k3y-that-is-secret', "
                       "'headers': {'Authorization': 'Bearer abc.def-123'}} sk-abcdefghijkl")
    line = one_line(error)
    assert "k3y-that-is-secret" not in line and "abc.def-123" not in line
    assert "sk-abcdefghijkl" not in line and "***" in line


def test_repeated_ids_are_refused_at_their_line(trajectories: Path, tmp_path: Path) -> None:
    lines = trajectories.read_text().splitlines(keepends=True)
    trajectories.write_text("".join(lines + lines[:1]))
    line = one_error_line(hsl("relabel", str(trajectories), "--out", str(tmp_path / "g.jsonl")))
    first = next(read_records(trajectories, Trajectory)).id
    assert f"{trajectories}:4: id: {first!r} repeats line 1" in line
    dump = tmp_path / "dump.jsonl"
    item = {"id": "x", "conversations": [{"from": "human", "value": "Hi.\nYour task is to: "
                                          "put a mug in sinkbasin."}]}
    dump.write_text(json.dumps(item) + "\n" + json.dumps(item) + "\n")
    line = one_error_line(hsl("import", str(dump), "--out", str(tmp_path / "i.jsonl")))
    assert f"{dump}:2: id: 'x' repeats {dump}:1" in line


def test_an_empty_input_is_said(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = hsl("relabel", str(empty), "--out", str(tmp_path / "g.jsonl"))
    assert result.returncode == 0 and f"warning: {empty} holds no records" in result.stderr


def test_a_local_model_path_that_does_not_exist_fails_at_once(tmp_path: Path) -> None:
    """`runs/nope` beside a `runs/` folder is a path, never a hub name to retry online."""
    (tmp_path / "runs").mkdir()
    demos = tmp_path / "d.jsonl"
    demos.write_text("")
    result = subprocess.run([sys.executable, "-m", "hsl_tools.cli", "train", "-m", "runs/nope",
                             "-o", "out", "-d", str(demos)], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    line = one_error_line(result)
    assert "cannot load model: runs/nope: no such folder" in line


def test_progress_off_a_terminal_is_plain_lines(tmp_path: Path) -> None:
    """Under nohup or into a log a bar draws nothing: the stage writes count, rate and time."""
    result = subprocess.run([sys.executable, "-m", "hsl_tools.cli", "collect", "-n", "5",
                             "--out", str(tmp_path / "t.jsonl")], capture_output=True,
                            text=True, timeout=120, env={**os.environ,
                                                         "HSL_PROGRESS_EVERY": "0"})
    assert result.returncode == 0
    lines = result.stderr.strip().splitlines()
    assert [x.split(",")[0] for x in lines] == [f"expert on household: {i}/5"
                                                 for i in range(1, 6)]
    assert all("/s" in x and "elapsed" in x for x in lines)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB filesystem (tmpfs, mounted as root, as CI and the developers run); a clean
    skip where mounting is not allowed. Unmounted afterwards."""
    disk = tmp_path / "small"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_is_one_line_and_the_old_output_survives(small_disk: Path,
                                                             tiny_model: Path) -> None:
    out = small_disk / "t.jsonl"
    assert hsl("collect", "-n", "3", "--out", str(out)).returncode == 0
    before = out.read_bytes()
    line = one_error_line(hsl("collect", "-n", "300", "--out", str(out), "--fresh"))
    assert "No space left on device" in line
    assert out.read_bytes() == before
    # the killed run's partial output fills the disk: a training there cannot log its step
    demos = small_disk.parent / "d.jsonl"
    demos.write_bytes(before)
    line = one_error_line(hsl("train", "-m", str(tiny_model), "-o", str(small_disk / "ckpt"),
                              "-d", str(demos), "--steps", "1", "--batch-size", "2"))
    assert f"{small_disk / 'ckpt' / 'train.jsonl'}: No space left on device" in line
    out.with_name(out.name + ".partial").unlink()  # room for the log, not for the weights
    line = one_error_line(hsl("train", "-m", str(tiny_model), "-o", str(small_disk / "ckpt"),
                              "-d", str(demos), "--steps", "1", "--batch-size", "2", "--fresh"))
    assert f"{small_disk / 'ckpt'}: cannot write the checkpoint" in line
