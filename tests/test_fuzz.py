"""No traceback, ever: every stage that reads JSONL is fed real records mutated at random (a
field dropped, retyped, emptied or blown up, a line cut short, bytes that are not UTF-8, a line
repeated), and may only end as the command line ends an expected failure (the exceptions its
`main` turns into one line) or succeed. 300 mutated files per stage, eight stages."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from hsl_tools.agent import RandomPolicy, rollout
from hsl_tools.envs.base import EnvError, make_env
from hsl_tools.envs.household import Household
from hsl_tools.formats import export_records, import_file
from hsl_tools.records import Demo, GoalRecord, RecordError, Trajectory, read_records
from hsl_tools.relabel.check import check
from hsl_tools.relabel.relabelers import RuleRelabeler
from hsl_tools.relabel.stages import mask, relabel
from hsl_tools.report.runs import read_run
from hsl_tools.run_lock import FolderInUse
from hsl_tools.show import print_trajectory
from hsl_tools.train.data import load_demos

EXPECTED = (RecordError, ValueError, OSError, EnvError, FolderInUse)  # what `hsl` prints
EXAMPLES = 300

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
                    | st.text(max_size=20), lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside a JSON document."""
    found = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _paths(v, (*prefix, i))
    return found


@st.composite
def mutated(draw: st.DrawFn, records: list[dict]) -> bytes:
    """A JSONL file of `records` with one of them broken in one way."""
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    i = draw(st.integers(0, len(records) - 1))
    kind = draw(st.sampled_from(["drop", "retype", "huge", "cut", "bytes", "repeat", "empty"]))
    if kind == "cut":
        lines[i] = lines[i][:draw(st.integers(0, len(lines[i]) - 1))]
    elif kind == "repeat":
        lines.append(lines[i])
    elif kind == "empty":
        lines = []
    elif kind == "bytes":
        raw = [line.encode() for line in lines]
        at = draw(st.integers(0, len(raw[i])))
        raw[i] = raw[i][:at] + b"\xff\xfe" + raw[i][at:]
        return b"\n".join(raw) + b"\n"
    else:
        record = json.loads(lines[i])
        path = draw(st.sampled_from(_paths(record)[1:]))
        *parents, last = path
        holder = record
        for p in parents:
            holder = holder[p]
        if kind == "drop":
            holder.pop(last) if isinstance(holder, dict) else holder.pop(last)
        elif kind == "retype":
            holder[last] = draw(JSON)
        else:
            holder[last] = "x" * 200_000
        lines[i] = json.dumps(record, ensure_ascii=False)
    return ("\n".join(lines) + "\n").encode()


RUNS: list[int] = [0]  # mutated files fed to a stage in the current test


def survives(stage: Callable[[], object]) -> None:
    """The stage succeeds or fails as the command line expects; anything else propagates."""
    RUNS[0] += 1
    try:
        stage()
    except EXPECTED:
        pass


@pytest.fixture(autouse=True)
def _counted() -> Iterator[None]:
    """Each fuzz test really feeds EXAMPLES mutated files to its stage."""
    RUNS[0] = 0
    yield
    assert RUNS[0] >= EXAMPLES


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    household = Household(max_steps=12)
    folder = tmp_path_factory.mktemp("seeds")
    played = list(rollout(household, household.task_ids("seen", 12), RandomPolicy(3), "seen"))
    (folder / "t.jsonl").write_text("".join(t.to_json() + "\n" for t in played))
    relabel(folder / "t.jsonl", folder / "g.jsonl", RuleRelabeler())
    mask(folder / "g.jsonl", folder / "d.jsonl", RuleRelabeler())
    goals = list(read_records(folder / "g.jsonl", GoalRecord))[:4]
    assert goals, "random play achieved no goal to fuzz"
    export_records(played[:3], "eto", folder / "eto.json")
    conversations = json.loads((folder / "eto.json").read_text())
    return {"trajectory": [json.loads(t.to_json()) for t in played[:4]],
            "goal": [json.loads(g.to_json()) for g in goals],
            "demo": [json.loads(d.to_json()) for d in read_records(folder / "d.jsonl", Demo)][:4],
            "conversation": conversations}


FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])


def _file(tmp_path: Path, data: bytes, name: str = "in.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    for leftover in tmp_path.glob("out*"):
        leftover.unlink()
    return path


@pytest.mark.parametrize("stage", ["relabel", "show", "relabel-check", "export"])
def test_stages_reading_trajectories_never_crash(stage: str, seeds: dict, tmp_path: Path
                                                 ) -> None:
    quiet = Console(file=open("/dev/null", "w"))  # noqa: SIM115 - lives as long as the test
    env = make_env("household")

    @FUZZ
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        path = _file(tmp_path, data.draw(mutated(seeds["trajectory"])))
        if stage == "relabel":
            survives(lambda: relabel(path, tmp_path / "out.jsonl", RuleRelabeler(), fresh=True))
        elif stage == "show":
            survives(lambda: [print_trajectory(quiet, t, env.oracle(t))
                              for t in read_records(path, Trajectory)])
        elif stage == "relabel-check":
            survives(lambda: check(list(read_records(path, Trajectory)), []))
        else:
            survives(lambda: export_records(list(read_records(path, Trajectory)), "agentgym",
                                            tmp_path / "out.json"))

    run()


@pytest.mark.parametrize("stage", ["mask", "train"])
def test_stages_reading_goals_and_demos_never_crash(stage: str, seeds: dict, tmp_path: Path
                                                     ) -> None:
    @FUZZ
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        if stage == "mask":
            path = _file(tmp_path, data.draw(mutated(seeds["goal"])))
            survives(lambda: mask(path, tmp_path / "out.jsonl", RuleRelabeler(), fresh=True))
        else:
            path = _file(tmp_path, data.draw(mutated(seeds["demo"])))
            survives(lambda: load_demos(path))

    run()


def test_import_never_crashes(seeds: dict, tmp_path: Path) -> None:
    @FUZZ
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        path = _file(tmp_path, data.draw(mutated(seeds["conversation"])))
        survives(lambda: import_file(path, "alfworld"))

    run()


def test_report_never_crashes_on_a_mutated_run_folder(tmp_path: Path) -> None:
    recipe = {"run": {"dir": str(tmp_path), "seed": 1, "env": "household"},
              "sft": {"demos": 4}, "hsl": {"iterations": 1}, "methods": {"eval-sft": "SFT"}}
    summary = {"policy": "p", "env": "household",
               "summary": {"seen": {"all": {"episodes": 2, "success": 0.5, "mean_steps": 3.0,
                                            "mean_reward": 0.5}}}}
    (tmp_path / "eval-sft").mkdir()

    @FUZZ
    @given(data=st.data(), which=st.sampled_from(["recipe", "summary"]))
    def run(data: st.DataObject, which: str) -> None:
        good = {"recipe": recipe, "summary": summary}
        broken = data.draw(mutated([good[which]])).rstrip(b"\n")
        (tmp_path / "recipe.json").write_bytes(
            broken if which == "recipe" else json.dumps(recipe).encode())
        (tmp_path / "eval-sft" / "summary.json").write_bytes(
            broken if which == "summary" else json.dumps(summary).encode())
        survives(lambda: read_run(tmp_path, oracle=False))

    run()
