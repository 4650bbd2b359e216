"""Records: validation errors name file, line and field; writes are atomic; stages resume."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from hsl_tools.records import (
    Demo,
    RecordError,
    StageOutput,
    Trajectory,
    read_records,
    write_records,
)


def traj(i: int, **extra) -> Trajectory:
    return Trajectory(id=f"t{i}", env="household", split="train", task_id=f"train-{i:05d}",
                      instruction="put a mug in fridge", initial_observation="You are in ...",
                      steps=[{"action": "look", "observation": "Nothing happens."}], **extra)


def test_unknown_fields_survive_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    record = traj(0, source_tool={"name": "eto", "version": 3})
    record.steps[0].__pydantic_extra__["loss"] = True
    write_records(path, [record])
    line = json.loads(path.read_text())
    assert line["schema"] == "hsl.trajectory/1"
    assert line["source_tool"] == {"name": "eto", "version": 3}
    assert line["steps"][0]["loss"] is True
    again = next(read_records(path, Trajectory))
    write_records(path, [again])
    assert json.loads(path.read_text()) == line


def test_bad_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(traj(0).to_json() + "\n\n{not json\n")
    with pytest.raises(RecordError, match=rf"^{path}:3: invalid JSON"):
        list(read_records(path, Trajectory))


def test_missing_field_names_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    bad = traj(1).model_dump(by_alias=True)
    del bad["steps"][0]["observation"]
    path.write_text(traj(0).to_json() + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(RecordError) as e:
        list(read_records(path, Trajectory))
    assert str(e.value) == f"{path}:2: steps.0.observation: Field required"


def test_wrong_schema_tag_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(traj(0).to_json() + "\n")
    with pytest.raises(RecordError, match=r":1: schema: "):
        list(read_records(path, Demo))


def test_failing_write_leaves_previous_file_intact(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    write_records(path, [traj(0), traj(1)])
    before = path.read_bytes()

    def broken() -> Iterator[Trajectory]:
        yield traj(2)
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_records(path, broken())
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.jsonl"]


def test_killed_stage_keeps_old_output_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    write_records(path, [traj(0)])
    good = path.read_bytes()
    with pytest.raises(KeyboardInterrupt), StageOutput(path, Trajectory) as out:
        assert out.done == {"t0"}
        out.write(traj(1))
        raise KeyboardInterrupt
    assert path.read_bytes() == good  # the half-done run replaced nothing
    # the partial file ends mid-line, as after a kill during a write
    with (tmp_path / "out.jsonl.partial").open("a") as f:
        f.write('{"schema": "hsl.traj')
    with StageOutput(path, Trajectory) as out:
        assert out.done == {"t0", "t1"} and out.resumed == 2
        out.write(traj(2))
    assert [t.id for t in read_records(path, Trajectory)] == ["t0", "t1", "t2"]
    assert not (tmp_path / "out.jsonl.partial").exists()


def test_fresh_output_ignores_previous_records(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    write_records(path, [traj(0)])
    with StageOutput(path, Trajectory, fresh=True) as out:
        assert out.done == set()
        out.write(traj(5))
    assert [t.id for t in read_records(path, Trajectory)] == ["t5"]
