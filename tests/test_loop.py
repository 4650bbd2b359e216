"""End to end on the embedded default: SFT, then two HSL iterations with the tiny model and the
rule relabeler; every stage's file exists and validates, the buffer and the checkpoint move."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from hsl_tools.cli import app
from hsl_tools.grid import load_grid
from hsl_tools.recipe import load_recipe
from hsl_tools.records import Demo, GoalRecord, Trajectory, read_records

if TYPE_CHECKING:
    from hsl_tools.collect import CollectStats
    from hsl_tools.envs.base import Environment
    from hsl_tools.envs.household import Household

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
RECIPE = RECIPES / "household-tiny.toml"


def weights(folder: Path) -> dict:
    return load_file(folder / "model.safetensors")


def changed(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return any(not wa[k].equal(wb[k]) for k in wa)


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


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_recipe_validates_and_its_header_says_how_to_run_it(path: Path) -> None:
    """A typo in a shipped recipe (unknown keys are refused) fails here, not hours into a run."""
    header = path.read_text(encoding="utf-8").split("\n\n")[0]
    assert re.search(r"^# Run[^:]*: +(just|hsl) ", header, re.M), path.name
    if path.name.startswith("grid-"):
        grid, recipes = load_grid(path)
        assert len(recipes) == len(grid.cells) * len(grid.seeds)
    else:
        assert load_recipe(path).run.dir.startswith("runs/")


def test_two_hsl_iterations(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = two_iterations(run)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    # beyond success, what HSL did: each evaluation's episodes by outcome, each iteration's yield
    assert "what the evaluation episodes came to" in result.output
    assert "HSL iterations: the agent's rollouts, relabeled" in result.output
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
    assert "8 new, 12 resumed" in result.output
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


def test_train_resumes_from_its_checkpoint(tmp_path: Path, tiny_model: Path) -> None:
    runner = CliRunner()
    demos = tmp_path / "expert.jsonl"
    assert runner.invoke(app, ["collect", "-n", "6", "--out", str(demos)]).exit_code == 0
    out = tmp_path / "ckpt"
    base = ["train", "-m", str(tiny_model), "-o", str(out), "-d", str(demos),
            "--batch-size", "2", "--lr", "1e-3"]
    assert runner.invoke(app, base + ["--steps", "2"]).exit_code == 0
    first = weights(out)
    result = runner.invoke(app, base + ["--steps", "4", "--resume"])
    assert result.exit_code == 0, result.output
    steps = [json.loads(x)["step"] for x in (out / "train.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    assert json.loads((out / "trainer_state.json").read_text())["step"] == 4
    assert any(not first[k].equal(v) for k, v in weights(out).items())


def test_lora_saves_merged_weights_or_an_adapter(tmp_path: Path, tiny_model: Path) -> None:
    from transformers import AutoModelForCausalLM

    runner = CliRunner()
    demos = tmp_path / "expert.jsonl"
    assert runner.invoke(app, ["collect", "-n", "4", "--out", str(demos)]).exit_code == 0
    base = ["train", "-m", str(tiny_model), "-d", str(demos), "--batch-size", "2",
            "--lr", "1e-2", "--steps", "2", "--lora-r", "4"]
    assert runner.invoke(app, base + ["-o", str(tmp_path / "merged")]).exit_code == 0
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert changed(tmp_path / "merged", tiny_model)
    assert merged.num_parameters() == AutoModelForCausalLM.from_pretrained(
        tiny_model).num_parameters()
    result = runner.invoke(app, base + ["-o", str(tmp_path / "adapter"), "--no-merge"])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 4 and not (tmp_path / "adapter" / "model.safetensors").exists()


def test_dpo_trains_on_expert_vs_failed_pairs(tmp_path: Path, tiny_model: Path) -> None:
    runner = CliRunner()
    expert, agent = tmp_path / "expert.jsonl", tmp_path / "agent.jsonl"
    assert runner.invoke(app, ["collect", "-n", "4", "--out", str(expert)]).exit_code == 0
    assert runner.invoke(app, ["collect", "-n", "4", "--policy", "random", "--max-steps", "6",
                               "--out", str(agent)]).exit_code == 0
    out = tmp_path / "dpo"
    result = runner.invoke(app, ["train", "-m", str(tiny_model), "-o", str(out), "-d",
                                 str(expert), "--objective", "dpo", "--rejected", str(agent),
                                 "--steps", "2", "--batch-size", "2", "--lr", "1e-3"])
    assert result.exit_code == 0, result.output
    first, second = map(json.loads, (out / "train.jsonl").read_text().splitlines())
    assert first["loss"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference at step 1
    assert first["logp_chosen_drift"] == first["logp_rejected_drift"] == 0.0
    # one step later the policy has moved, chosen up relative to rejected
    assert second["logp_chosen_drift"] > second["logp_rejected_drift"]
    assert second["pair_accuracy"] == 1.0 and second["loss"] < first["loss"]
    assert changed(out, tiny_model)
    no_pairs = runner.invoke(app, ["train", "-m", str(tiny_model), "-o", str(tmp_path / "x"),
                                   "-d", str(expert), "--objective", "dpo", "--rejected",
                                   str(expert), "--steps", "1"])
    assert no_pairs.exit_code != 0 and "DPO needs failed agent trajectories" in str(
        no_pairs.exception)


def test_the_same_steps_control_trains_on_ground_truth_only(tmp_path: Path, tiny_model: Path,
                                                            household: Household) -> None:
    """hsl.data = "none": no rollouts, no buffer, the same optimisation steps on the ground
    truth alone (the control that tells HSL's data from its extra steps)."""
    from hsl_tools.iterate import _iteration
    from hsl_tools.recipe import Recipe
    from hsl_tools.train.data import load_demos

    CliRunner().invoke(app, ["collect", "-n", "4", "--out", str(tmp_path / "expert.jsonl")])
    recipe = Recipe.model_validate({"run": {"dir": str(tmp_path)}, "hsl": {
        "iterations": 1, "data": "none", "steps": 2, "batch_size": 2}})
    assert recipe.methods()["eval-final"] == "SFT (same steps)"
    line = _iteration(recipe, household, recipe.folder, recipe.folder.iteration(1), tiny_model,
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
        iterate._iteration(recipe, *attempt)
    lost = list(read_records(tmp_path / "iter-001" / "agent.jsonl", Trajectory))
    assert len(lost) == 2 and not any(t.success for t in lost)
    monkeypatch.setattr(iterate, "make_policy", lambda spec, *a, **kw: StandIn("expert"))
    line = iterate._iteration(recipe, *attempt)
    assert line["trajectories"] == 6 and line["success"] == pytest.approx(4 / 6)


def test_a_killed_training_resumes_from_its_last_checkpoint(
        tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hsl_tools.train import loop
    from hsl_tools.train.data import load_demos

    CliRunner().invoke(app, ["collect", "-n", "4", "--out", str(tmp_path / "expert.jsonl")])
    demos = load_demos(tmp_path / "expert.jsonl")
    config = loop.TrainConfig(steps=5, batch_size=2, lr=1e-3, save_every=2)
    real = loop.learning_rate

    def killed_at_step_4(config: loop.TrainConfig, step: int, total: int) -> float:
        if step == 4:
            raise KeyboardInterrupt  # as if the process were killed here
        return real(config, step, total)

    monkeypatch.setattr(loop, "learning_rate", killed_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        loop.train(str(tiny_model), tmp_path / "ckpt", config, demos)
    assert json.loads((tmp_path / "ckpt" / "trainer_state.json").read_text())["step"] == 2
    monkeypatch.setattr(loop, "learning_rate", real)
    loop.train(str(tiny_model), tmp_path / "ckpt", config, demos, resume=True)
    log = [json.loads(x) for x in (tmp_path / "ckpt" / "train.jsonl").read_text().splitlines()]
    assert [x["step"] for x in log] == [1, 2, 3, 4, 5]  # step 3 was redone, and logged once
    assert json.loads((tmp_path / "ckpt" / "trainer_state.json").read_text())["step"] == 5
    # the same run as one never killed: the same batches, so the same losses to rounding
    loop.train(str(tiny_model), tmp_path / "whole", config, demos)
    whole = [json.loads(x) for x in (tmp_path / "whole" / "train.jsonl").read_text().splitlines()]
    assert [x["tokens"] for x in log] == [x["tokens"] for x in whole]
    assert [x["loss"] for x in log] == pytest.approx([x["loss"] for x in whole], rel=1e-5)


@pytest.mark.parametrize("objective", ["sft", "hsl", "dpo"])
def test_grad_accum_changes_the_passes_not_the_step(tmp_path: Path, tiny_model: Path,
                                                   objective: str) -> None:
    """One demo per pass (grad_accum = batch size, what "auto" picks on a CPU) trains on the
    demos one padded pass would: step by step the same tokens and, to rounding, the same
    losses, so the two differ in speed only."""
    from hsl_tools.train import loop
    from hsl_tools.train.data import load_demos

    runner = CliRunner()
    expert, agent = tmp_path / "expert.jsonl", tmp_path / "agent.jsonl"
    assert runner.invoke(app, ["collect", "-n", "6", "--out", str(expert)]).exit_code == 0
    assert runner.invoke(app, ["collect", "-n", "6", "--policy", "random", "--max-steps", "6",
                               "--out", str(agent)]).exit_code == 0
    demos = load_demos(expert)
    logs = []
    for accum in (1, 4):
        out = tmp_path / f"accum-{accum}"
        config = loop.TrainConfig(objective=objective, steps=3, batch_size=4, grad_accum=accum,
                                  lr=1e-3, bf16=False)
        loop.train(str(tiny_model), out, config, demos, buffer=demos[:3],
                   rejected=list(read_records(agent, Trajectory)), reference=str(tiny_model))
        logs.append([json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()])
    whole, one_by_one = logs
    assert [m["tokens"] for m in whole] == [m["tokens"] for m in one_by_one]
    assert [m["loss"] for m in whole] == pytest.approx([m["loss"] for m in one_by_one],
                                                       rel=1e-4)
    assert len({m["loss"] for m in whole}) == 3  # the steps moved the model


def test_auto_grad_accum_is_one_demo_per_pass_on_cpu_only() -> None:
    from hsl_tools.train.config import TrainConfig, train_config

    auto = TrainConfig(batch_size=16, grad_accum="auto")
    assert auto.passes(torch.device("cpu")) == 16
    assert auto.passes(torch.device("cuda")) == 1
    assert train_config(batch_size=16, grad_accum="4").passes(torch.device("cpu")) == 4
    for bad, why in ((3, "grad_accum 3 does not divide batch_size 16"),
                     (0, "grad_accum: want auto or a whole number above 0, not 0"),
                     ("many", "grad_accum: want auto or a whole number above 0, not 'many'")):
        with pytest.raises(ValueError, match=why):
            train_config(batch_size=16, grad_accum=bad)


def test_a_training_config_names_every_bad_setting_at_once() -> None:
    """litgpt's way: one run of the command shows all that must change, unknown keys too."""
    from hsl_tools.train.config import train_config

    with pytest.raises(ValueError) as e:
        train_config(objective="ppo", lr=-1, schedule="linear", batch_sise=8)
    message = str(e.value)
    for field in ("objective", "lr", "schedule", "batch_sise"):
        assert f"{field}:" in message, message


def test_a_second_process_on_a_run_folder_is_refused(tmp_path: Path) -> None:
    """While one process runs a folder, `hsl iterate` on it stops before writing anything and
    names the holder; a holder killed with SIGKILL leaves no lock behind."""
    import os
    import subprocess
    import sys

    from hsl_tools.run_lock import FolderInUse, exclusive, holder

    run = tmp_path / "run"
    with exclusive(run):
        result = CliRunner().invoke(app, two_iterations(run))
        assert isinstance(result.exception, FolderInUse)
        assert f"{run} is in use by another hsl process (pid {os.getpid()})" in str(
            result.exception)
    assert [p.name for p in run.iterdir()] == [".lock"]
    killed = ("import os, sys\nfrom pathlib import Path\nfrom hsl_tools.run_lock import "
              "exclusive\nwith exclusive(Path(sys.argv[1])):\n    os.kill(os.getpid(), 9)\n")
    assert subprocess.run([sys.executable, "-c", killed, str(run)]).returncode == -9
    assert (run / ".lock").read_text().strip() and holder(run) is None  # its pid, dead
    with exclusive(run):  # the dead holder's lock went with it
        assert holder(run) == os.getpid()
    assert holder(run) is None


def test_one_process_may_train_in_both_precisions(tmp_path: Path, tiny_model: Path,
                                                  household: Household) -> None:
    """Accelerate refuses a second precision in one process; training in bf16 and then in
    fp32 (a test suite, a notebook) gets a fresh accelerator state for each, and each step
    really runs in its precision: the first step's loss (same weights, same batch) differs
    by bf16's rounding, not more."""
    from hsl_tools.agent import make_policy, rollout
    from hsl_tools.train.config import TrainConfig
    from hsl_tools.train.data import from_trajectory
    from hsl_tools.train.loop import train

    demos = [from_trajectory(t, "ground_truth") for t in rollout(
        household, household.task_ids("train", 4), make_policy("expert"), "train")]
    losses = {}
    for bf16 in (True, False, True):
        config = TrainConfig(steps=1, batch_size=2, bf16=bf16, seed=3)
        metrics = train(str(tiny_model), tmp_path / f"ckpt-{bf16}", config, demos, fresh=True)
        losses.setdefault(bf16, []).append(metrics["loss"])
    assert losses[True][0] == losses[True][1]  # bf16 again after fp32: the same step
    assert losses[True][0] != losses[False][0]
    assert losses[True][0] == pytest.approx(losses[False][0], rel=0.02)
