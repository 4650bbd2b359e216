"""Shards: N parts of a stage, joined by `hsl merge`, equal one process's output as a set; merge
refuses parts that are not every shard of one stage made alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hsl_tools.cli import app
from hsl_tools.records import RecordError
from hsl_tools.shards import Shard, merge

runner = CliRunner()


def ok(*args: str | Path) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # as one line, however the terminal wrapped it


def lines(path: Path) -> list[str]:
    return sorted(path.read_text(encoding="utf-8").splitlines())


def sharded(tmp_path: Path, name: str, *args: str | Path, n: int = 2) -> list[Path]:
    """Run a stage as shards 1/n … n/n, each writing tmp_path/NAME-I.jsonl."""
    parts = [tmp_path / f"{name}-{i}.jsonl" for i in range(1, n + 1)]
    for i, part in enumerate(parts, 1):
        ok(*args, "--out", part, "--shard", f"{i}/{n}")
    return parts


def test_every_key_lands_in_exactly_one_shard() -> None:
    keys = [f"train/train-{i:05d}" for i in range(600)]
    shards = [Shard(i, 3) for i in (1, 2, 3)]
    owners = [[s for s in shards if s.holds(k)] for k in keys]
    assert all(len(o) == 1 for o in owners)
    sizes = [sum(o == [s] for o in owners) for s in shards]
    assert min(sizes) > 150  # a hash, not a range: balanced without knowing the keys
    assert Shard.parse("2/3") == shards[1] and str(shards[1]) == "2/3"
    for bad in ("0/2", "3/2", "2", "a/b", "1/0"):
        with pytest.raises(ValueError, match="want I/N"):
            Shard.parse(bad)


def test_shards_of_collect_relabel_and_mask_join_into_one_process_output(
        tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    whole.mkdir()
    ok("collect", "--policy", "random", "-n", "24", "--max-steps", "12", "--out",
       whole / "t.jsonl")
    ok("relabel", whole / "t.jsonl", "--out", whole / "g.jsonl")
    ok("mask", whole / "g.jsonl", "--out", whole / "d.jsonl")

    t = sharded(tmp_path, "t", "collect", "--policy", "random", "-n", "24", "--max-steps", "12",
                n=3)
    assert all(p.read_text() for p in t)  # every shard got some of the 24 tasks
    ok("merge", t[2], t[0], t[1], "--out", tmp_path / "t.jsonl")
    assert lines(tmp_path / "t.jsonl") == lines(whole / "t.jsonl")
    g = sharded(tmp_path, "g", "relabel", tmp_path / "t.jsonl")
    ok("merge", *g, "--out", tmp_path / "g.jsonl")
    assert lines(tmp_path / "g.jsonl") == lines(whole / "g.jsonl")
    assert lines(tmp_path / "g.jsonl.skipped") == lines(whole / "g.jsonl.skipped")
    d = sharded(tmp_path, "d", "mask", tmp_path / "g.jsonl")
    ok("merge", *d, "--out", tmp_path / "d.jsonl")
    assert lines(tmp_path / "d.jsonl") == lines(whole / "d.jsonl")
    # the joined output is one process's: that process resumes it with nothing left to do
    assert "0 new, 24 resumed" in ok("collect", "--policy", "random", "-n", "24", "--max-steps",
                                     "12", "--out", tmp_path / "t.jsonl")
    assert "0 new goals" in ok("relabel", tmp_path / "t.jsonl", "--out", tmp_path / "g.jsonl")


def test_eval_shards_join_into_the_whole_summary(tmp_path: Path) -> None:
    args = ["eval", "--policy", "random", "-n", "6", "--max-steps", "10"]
    ok(*args, "--out", tmp_path / "whole")
    for i in (1, 2):
        ok(*args, "--out", tmp_path / f"part{i}", "--shard", f"{i}/2")
    ok("merge", tmp_path / "part1" / "eval.jsonl", tmp_path / "part2" / "eval.jsonl",
       "--out", tmp_path / "all" / "eval.jsonl")
    assert "0 new, 12 resumed" in ok(*args, "--out", tmp_path / "all")
    summary = json.loads((tmp_path / "all" / "summary.json").read_text())
    assert summary == json.loads((tmp_path / "whole" / "summary.json").read_text())


def test_import_shards_join_into_the_whole_import(tmp_path: Path) -> None:
    ok("collect", "--policy", "expert", "-n", "10", "--out", tmp_path / "t.jsonl")
    ok("export", tmp_path / "t.jsonl", "--out", tmp_path / "dump.json")
    args = ["import", tmp_path / "dump.json", "--env", "household"]
    ok(*args, "--out", tmp_path / "whole.jsonl")
    parts = sharded(tmp_path, "part", *args)
    ok("merge", *parts, "--out", tmp_path / "joined.jsonl")
    assert lines(tmp_path / "joined.jsonl") == lines(tmp_path / "whole.jsonl")


def test_merge_refuses_parts_that_are_not_every_shard_of_one_stage(tmp_path: Path) -> None:
    args = ["collect", "--policy", "random", "-n", "8", "--max-steps", "5"]
    p1, p2, p3 = sharded(tmp_path, "p", *args, n=3)
    with pytest.raises(RecordError, match=r"shard 2/3 missing \(given: 1/3, 3/3\)"):
        merge([p1, p3], tmp_path / "out.jsonl")
    with pytest.raises(RecordError, match="shard 1/3 is also"):
        merge([p1, p2, p3, p1], tmp_path / "out.jsonl")
    seeded = tmp_path / "seeded.jsonl"
    ok(*args, "--seed", "1", "--shard", "2/3", "--out", seeded)
    with pytest.raises(RecordError, match=r"made by other settings than .* \(seed 0 -> 1\)"):
        merge([p1, seeded, p3], tmp_path / "out.jsonl")
    whole = tmp_path / "whole.jsonl"
    ok(*args, "--out", whole)
    with pytest.raises(RecordError, match="made without --shard"):
        merge([p1, whole], tmp_path / "out.jsonl")
    with p2.open("a", encoding="utf-8") as f:  # a record of shard 1 copied into shard 2
        f.write(p1.read_text().splitlines()[0] + "\n")
    with pytest.raises(RecordError, match="is also in"):
        merge([p1, p2, p3], tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()  # nothing half-written
    result = runner.invoke(app, ["merge", str(p1), str(tmp_path / "nope.jsonl"), "--out",
                                 str(tmp_path / "out.jsonl")])
    assert isinstance(result.exception, RecordError) and "nope.jsonl: missing" in \
        str(result.exception)
