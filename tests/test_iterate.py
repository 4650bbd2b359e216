"""`hsl iterate` end to end on the embedded default: SFT, then HSL iterations with the tiny
model and the rule relabeler; every stage's file exists and validates, the buffer and the
checkpoint move, a killed run resumes as an uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import torch
from typer.testing import CliRunner

from conftest import changed, said
from hsl_tools.cli import app
from hsl_tools.records import Demo, GoalRecord, Trajectory, read_records

if TYPE_CHECKING:
    from hsl_tools.collect import CollectStats
    from hsl_tools.envs.base import Environment
    from hsl_tools.envs.household import Household

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "household-tiny.toml"


def two_iterations(run: Path) -> list[str]:
    """`hsl iterate` arguments for a tiny run: SFT, then two HSL iterations, in seconds."""
    settings = {"run.dir": f'"{run}"', "run.max_steps": 8, "sft.demos": 12, "sft.steps": 3,
                "sft.batch_size": 4, "hsl.iterations": 2, "hsl.collect": 6, "hsl.steps": 2,
                "hsl.batch_size": 4, "hsl.capacity": 5, "eval.n": 2, "eval.every": 1,
                "eval.batch_size": 4, "hsl.temperature": 1.5, "model.batch_size": 4}
    return ["iterate", str(RECIPE)] + [a for k, v in settings.items()
                                       for a in ("--set", f"{k}={v}")]


def killed_after_two_episodes(monkeypatch: pytest.MonkeyPatch, iteration: str | None = None
                              ) -> None:
    """Make the loop's `collect` play the first two tasks of an iteration's rollout (of
    `iteration` only, e.g. "iter-002", if given) and then raise as if the process were killed;
    later calls, once its agent.jsonl exists, go through."""
    from hsl_tools import iterate

    real = iterate.collect

    def collect(out: Path, env: Environment, work: list[tuple[str, list[str]]], *args: Any,
                **kwargs: Any) -> CollectStats:
        if (iteration is None or out.parent.name == iteration) and not out.exists():
            [(split, tasks)] = work
            real(out, env, [(split, tasks[:2])], *args, **kwargs)
            raise KeyboardInterrupt
        return real(out, env, work, *args, **kwargs)

    monkeypatch.setattr(iterate, "collect", collect)


def test_two_hsl_iterations(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = two_iterations(run)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    # beyond success, what HSL did: each evaluation's episodes by outcome, each iteration's yield
    assert "what the evaluation episodes came to" in said(result.output)
    assert "HSL iterations: the agent's rollouts, relabeled" in said(result.output)
    for i in (1, 2):
        it = run / f"iter-{i:03d}"
        assert len(list(read_records(it / "agent.jsonl", Trajectory))) == 6
        list(read_records(it / "goals.jsonl", GoalRecord))
        list(read_records(it / "demos.jsonl", Demo))
        assert (it / "done").exists()
    # only the newest iteration keeps its checkpoint
    assert not (run / "iter-001" / "ckpt").exists()
    assert (run / "iter-002" / "ckpt" / "trainer_state.json").exists()
    assert changed(run / "sft", run / "model0")
    assert changed(run / "iter-002" / "ckpt", run / "sft")
    # the iterations continue SFT's optimizer: AdamW has taken 3 + 2 + 2 steps
    optimizer = torch.load(run / "iter-002" / "ckpt" / "optimizer.pt", weights_only=True)
    assert int(optimizer["state"][0]["step"]) == 3 + 2 + 2
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["iteration"] for m in lines] == [1, 2]
    buffer = list(read_records(run / "buffer.jsonl", Demo))
    assert len(buffer) == min(5, sum(m["new_demos"] for m in lines))
    assert "eval" in lines[0] and (run / "eval-final" / "summary.json").exists()
    train_log = (run / "iter-002" / "ckpt" / "train.jsonl").read_text().splitlines()
    assert len(train_log) == 2 and all("loss" in json.loads(x) for x in train_log)
    # run again: everything is done, nothing is redone
    before = (run / "metrics.jsonl").read_text()
    assert CliRunner().invoke(app, args).exit_code == 0
    assert (run / "metrics.jsonl").read_text() == before
    # `hsl eval` of the final checkpoint plays the recipe's final evaluation again, step for
    # step: both decode as one function says
    again = tmp_path / "again"
    result = CliRunner().invoke(app, ["eval", "--policy", f"hf:{run / 'iter-002' / 'ckpt'}",
                                      "-n", "2", "--max-steps", "8", "--batch-size", "4",
                                      "--out", str(again)])
    assert result.exit_code == 0, result.output

    def episodes(folder: Path) -> dict[tuple[str, str], list[str]]:
        return {(t.split, t.task_id): [s.action for s in t.steps]
                for t in read_records(folder / "eval.jsonl", Trajectory)}

    assert episodes(again) == episodes(run / "eval-final") and len(episodes(again)) == 4


def test_runs_take_their_expert_demos_from_a_file_they_share(tmp_path: Path,
                                                             household: Household) -> None:
    """sft.expert: a run's ground truth is the shared file's trajectories of the first
    `sft.demos` train tasks, in task order, as if the expert had played them now; a run that
    needs more plays only the missing tasks into the file; a file another policy made is
    refused, not taken as expert demos."""
    source = tmp_path / "expert-train.jsonl"
    assert CliRunner().invoke(app, ["collect", "--policy", "expert", "--split", "train", "-n",
                                    "12", "--out", str(source)]).exit_code == 0
    # the file's order is not the task order (a batched collect writes as games end)
    lines = source.read_text().splitlines()[::-1]
    source.write_text("\n".join(lines) + "\n")

    def run(name: str, demos: int, expert: Path = source) -> Any:
        return CliRunner().invoke(app, two_iterations(tmp_path / name) + [
            "--set", f'sft.expert="{expert}"', "--set", f"sft.demos={demos}",
            "--set", "hsl.iterations=0", "--set", "run.max_steps=40"])  # as the file's

    def taken(name: str) -> list[str]:
        return [t.to_json() for t in read_records(tmp_path / name / "expert.jsonl", Trajectory)]

    result = run("eight", 8)
    assert result.exit_code == 0, result.output
    assert "taken from" in result.output and "new" not in result.output  # nothing played
    by_task = {json.loads(line)["task_id"]: line for line in lines}
    assert taken("eight") == [by_task[t] for t in household.task_ids("train", 8)]
    assert (tmp_path / "eight" / "sft" / "done").exists()

    result = run("twenty", 20)
    assert result.exit_code == 0, result.output
    assert "8 new, 12 resumed" in said(result.output)
    grown = source.read_text().splitlines()
    assert grown[:12] == lines and len(grown) == 20
    by_task = {json.loads(line)["task_id"]: line for line in grown}
    assert taken("twenty") == [by_task[t] for t in household.task_ids("train", 20)]

    other = tmp_path / "random.jsonl"
    CliRunner().invoke(app, ["collect", "--policy", "random", "-n", "4", "--out", str(other)])
    result = run("random", 4, other)  # a RecordError: `hsl` prints it as one line
    assert "made by other settings" in str(result.exception), result.output
    assert not (tmp_path / "random" / "expert.jsonl").exists()


@pytest.mark.slow
def test_a_run_killed_mid_rollout_ends_as_an_uninterrupted_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same recipe and seed on one machine give the same run, killed and resumed or not: the
    resumed rollout plays the rest of its episodes in other batches and must sample them as
    before (what "same seeds, same numbers" in docs/RESULTS.md rests on)."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert CliRunner().invoke(app, two_iterations(straight)).exit_code == 0
    killed_after_two_episodes(monkeypatch, "iter-002")
    assert CliRunner().invoke(app, two_iterations(killed)).exit_code == 130  # as for Ctrl-C
    assert len((killed / "iter-002" / "agent.jsonl").read_text().splitlines()) == 2
    result = CliRunner().invoke(app, two_iterations(killed))
    assert result.exit_code == 0, result.output

    def lines(run: Path, name: str) -> list[dict]:
        found = [json.loads(x) for x in (run / name).read_text().splitlines()]  # policy: the path
        return [{k: v for k, v in x.items() if k not in ("tokens_per_s", "policy")}
                for x in found]

    for name in ("iter-002/agent.jsonl", "buffer.jsonl", "metrics.jsonl"):
        assert lines(killed, name) == lines(straight, name), name
    assert not changed(killed / "iter-002" / "ckpt", straight / "iter-002" / "ckpt")


def test_the_same_steps_control_trains_on_ground_truth_only(tmp_path: Path, tiny_model: Path,
                                                            household: Household) -> None:
    """hsl.data = "none": no rollouts, no buffer, the same optimisation steps on the ground
    truth alone (the control that tells HSL's data from its extra steps)."""
    from hsl_tools.iterate import run_iteration
    from hsl_tools.recipe import Recipe
    from hsl_tools.train.data import load_demos

    CliRunner().invoke(app, ["collect", "-n", "4", "--out", str(tmp_path / "expert.jsonl")])
    recipe = Recipe.model_validate({"run": {"dir": str(tmp_path)}, "hsl": {
        "iterations": 1, "data": "none", "steps": 2, "batch_size": 2}})
    assert recipe.methods()["eval-final"] == "SFT (same steps)"
    line = run_iteration(recipe, household, recipe.folder, recipe.folder.iteration(1), tiny_model,
                      load_demos(tmp_path / "expert.jsonl"))
    assert (line["trajectories"], line["new_demos"], line["buffer"]) == (0, 0, 0)
    log = [json.loads(x) for x in
           (tmp_path / "iter-001" / "ckpt" / "train.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all("loss_hsl" not in m for m in log)
    assert not (tmp_path / "buffer.jsonl").exists()


def test_a_resumed_iteration_counts_the_episodes_played_before_the_kill(
        tmp_path: Path, tiny_model: Path, household: Household,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An iteration's success rate is over all its rollouts, the killed attempt's too. The
    policy is a stand-in that plays random, then (resumed) as the expert, so that some
    episodes are won; it keeps one name, as the resumed output must be the same policy's."""
    from hsl_tools import iterate
    from hsl_tools.agent import make_policy
    from hsl_tools.recipe import Recipe
    from hsl_tools.train.data import load_demos

    class StandIn:
        name = "stand-in"

        def __init__(self, spec: str) -> None:
            self.inner = make_policy(spec)

        def settings(self) -> dict:
            return {}

        def act(self, *args: object) -> list:
            return self.inner.act(*args)

    CliRunner().invoke(app, ["collect", "-n", "4", "--out", str(tmp_path / "expert.jsonl")])
    recipe = Recipe.model_validate({"run": {"dir": str(tmp_path)}, "hsl": {
        "iterations": 1, "collect": 6, "steps": 1, "batch_size": 2}})
    attempt = (household, recipe.folder, recipe.folder.iteration(1), tiny_model,
               load_demos(tmp_path / "expert.jsonl"))
    killed_after_two_episodes(monkeypatch)
    monkeypatch.setattr(iterate, "make_policy", lambda spec, *a, **kw: StandIn("random"))
    with pytest.raises(KeyboardInterrupt):
        iterate.run_iteration(recipe, *attempt)
    lost = list(read_records(tmp_path / "iter-001" / "agent.jsonl", Trajectory))
    assert len(lost) == 2 and not any(t.success for t in lost)
    monkeypatch.setattr(iterate, "make_policy", lambda spec, *a, **kw: StandIn("expert"))
    line = iterate.run_iteration(recipe, *attempt)
    assert line["trajectories"] == 6 and line["success"] == pytest.approx(4 / 6)
