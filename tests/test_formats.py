"""Import and export of other stacks' dumps: ETO / ShareGPT, AgentGym loss flags, OpenAI
messages; the ETO-era "put X in/on Y" maps to "move X to Y" and back on request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hsl_tools.cli import app
from hsl_tools.formats import export_records, import_file
from hsl_tools.records import Demo, DemoStep, RecordError, Trajectory, read_records

ETO_ITEM = {
    "id": "alfworld_7",
    "game_file": "data/json_2.1.1/valid_unseen/pick_and_place_simple-Mug-None-Desk-308/trial_1",
    "conversations": [
        {"from": "human", "value": "Interact with a household. Use put {obj} in/on {recep}."},
        {"from": "gpt", "value": "OK"},
        {"from": "human", "value": "You are in the middle of a room. You see a desk 1.\n\n"
                                   "Your task is to: put some mug on desk."},
        {"from": "gpt", "value": "Thought: The mug may be on the shelf.\nAction: go to shelf 1"},
        {"from": "human", "value": "Observation: On the shelf 1, you see a mug 2."},
        {"from": "gpt", "value": "Thought: Take it.\nAction: take mug 2 from shelf 1"},
        {"from": "human", "value": "Observation: You pick up the mug 2 from the shelf 1."},
        {"from": "gpt", "value": "Thought: Now place it.\nAction: put mug 2 in/on desk 1"},
    ]}


def write(path: Path, items: list) -> Path:
    path.write_text(json.dumps(items), encoding="utf-8")
    return path


def test_eto_item_imports_with_the_grammar_mapped(tmp_path: Path) -> None:
    (t,) = import_file(write(tmp_path / "eto.json", [ETO_ITEM]))
    assert (t.split, t.task_id) == ("unseen", "pick_and_place_simple-Mug-None-Desk-308/trial_1")
    assert t.instruction == "put some mug on desk"
    assert t.initial_observation == "You are in the middle of a room. You see a desk 1."
    assert [s.action for s in t.steps] == ["go to shelf 1", "take mug 2 from shelf 1",
                                           "move mug 2 to desk 1"]
    assert t.steps[0].observation == "On the shelf 1, you see a mug 2."
    assert t.steps[0].thought == "The mug may be on the shelf."
    assert t.meta["mapped_put"] == 1 and t.success
    Trajectory.model_validate_json(t.to_json())


def test_eto_round_trip_is_exact_with_legacy_put(tmp_path: Path) -> None:
    src = write(tmp_path / "eto.json", [ETO_ITEM])
    export_records(import_file(src), "eto", tmp_path / "back.json", legacy_put=True)
    assert json.loads((tmp_path / "back.json").read_text()) == [
        {"id": ETO_ITEM["id"], "conversations": ETO_ITEM["conversations"]}]
    export_records(import_file(src), "eto", tmp_path / "modern.json")
    last = json.loads((tmp_path / "modern.json").read_text())[0]["conversations"][-1]["value"]
    assert last.endswith("Action: move mug 2 to desk 1")


def test_the_shared_eto_sample_round_trips(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "eto" / "alfworld_sft_sample.json"
    trajectories = import_file(src)
    assert trajectories and all(t.steps and t.instruction for t in trajectories)
    export_records(trajectories, "eto", tmp_path / "back.json", legacy_put=True)
    original = json.loads(src.read_text())
    back = json.loads((tmp_path / "back.json").read_text())
    assert [i["conversations"] for i in back] == [i["conversations"] for i in original]


def demo() -> Demo:
    steps = [DemoStep(action="go to shelf 1", observation="On the shelf 1, you see a mug 2.",
                      relevant=True),
             DemoStep(action="look", observation="You are facing the shelf 1.", relevant=False),
             DemoStep(action="take mug 2 from shelf 1", observation="You pick up the mug 2 "
                      "from the shelf 1.", relevant=True)]
    return Demo(id="d1", source="hindsight", instruction="look at mug under the desklamp",
                initial_observation="You are in the middle of a room.", steps=steps)


def test_agentgym_loss_flags_are_the_relevance_masks(tmp_path: Path) -> None:
    export_records([demo()], "agentgym", tmp_path / "ag.jsonl")
    (item,) = [json.loads(line) for line in (tmp_path / "ag.jsonl").read_text().splitlines()]
    gpt = [m for m in item["conversations"] if m["from"] == "gpt"]
    assert [m["loss"] for m in gpt] == [False, True, False, True]  # "OK", then z_t
    assert all(not m["loss"] for m in item["conversations"] if m["from"] == "human")
    assert item["conversations"][-1]["from"] == "gpt"


def test_openai_messages_carry_weights_and_our_rendering(tmp_path: Path) -> None:
    from hsl_tools.chat import render

    export_records([demo()], "openai", tmp_path / "oa.jsonl")
    messages = json.loads((tmp_path / "oa.jsonl").read_text())["messages"]
    d = demo()
    expected = render(d.instruction, d.initial_observation, d.steps)[:-1]
    assert [{k: m[k] for k in ("role", "content")} for m in messages] == expected
    assert [m["weight"] for m in messages if m["role"] == "assistant"] == [1, 0, 1]


def test_bad_items_fail_in_one_line_naming_the_place(tmp_path: Path) -> None:
    bad = dict(ETO_ITEM, conversations=[*ETO_ITEM["conversations"][:3], {"from": "gpt"}])
    with pytest.raises(RecordError, match=r"bad\.json: item 1: conversations\.3: "):
        import_file(write(tmp_path / "bad.json", [ETO_ITEM, bad]))
    no_task = dict(ETO_ITEM, conversations=ETO_ITEM["conversations"][:2])
    with pytest.raises(RecordError, match="no user turn holds the task, as alfworld shows it"):
        import_file(write(tmp_path / "bad.json", [no_task]))


def test_cli_import_then_export(tmp_path: Path) -> None:
    runner = CliRunner()
    src = tmp_path / "dump.jsonl"
    src.write_text(json.dumps(ETO_ITEM) + "\n")
    result = runner.invoke(app, ["import", str(src), "--out", str(tmp_path / "t.jsonl")])
    assert result.exit_code == 0, result.output
    assert "1 'put X in/on Y' turns mapped" in " ".join(result.output.split())
    assert len(list(read_records(tmp_path / "t.jsonl", Trajectory))) == 1
    result = runner.invoke(app, ["export", str(tmp_path / "t.jsonl"), "-f", "openai",
                                 "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "o.jsonl").read_text())["messages"][0]["role"] == "system"
