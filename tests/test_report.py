"""`hsl report` on small real runs: folders laid out as `hsl iterate` leaves them, filled by
the expert, a random policy and the rule relabeler on the household world (no training: the
report only reads files)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from rich.console import Console
from typer.testing import CliRunner

from hsl_tools.agent import ExpertPolicy, RandomPolicy
from hsl_tools.cli import app
from hsl_tools.collect import collect
from hsl_tools.envs.alfworld_family.goals import Goal, GoalType
from hsl_tools.envs.household import Household
from hsl_tools.evaluate import evaluate
from hsl_tools.grid import (
    GridFailed,
    Schedule,
    Stage,
    _copy_start,
    episodes_after_sft,
    load_grid,
    run_grid,
    select,
    share_cores,
)
from hsl_tools.recipe import Recipe, finished
from hsl_tools.records import Trajectory, read_records, write_json
from hsl_tools.relabel.relabelers import RuleRelabeler
from hsl_tools.relabel.stages import mask, relabel
from hsl_tools.report import update_report, write_report
from hsl_tools.report.markdown import markdown
from hsl_tools.report.runs import load_runs
from hsl_tools.run_lock import exclusive
from hsl_tools.run_status import run_status

if TYPE_CHECKING:
    from hsl_tools.envs.household import Household


def fake_run(root: Path, household: Household, demos: int, seed: int, mask_: bool = True) -> Path:
    recipe = Recipe.model_validate({"run": {"dir": str(root / f"d{demos}-m{mask_}-s{seed}"),
                                            "seed": seed},
                                    "sft": {"demos": demos},
                                    "hsl": {"iterations": 1, "mask": mask_}})
    run = Path(recipe.run.dir)
    write_json(run / "recipe.json", {"methods": recipe.methods(), **recipe.model_dump()})
    collect(run / "expert.jsonl", household, [("train", household.task_ids("train", demos))],
            ExpertPolicy())
    # success rates that differ between seeds, so means and stds are not trivially 0
    evaluate(household, ExpertPolicy() if seed == 1 else RandomPolicy(seed), ["seen", "unseen"],
             6, run / "eval-sft")
    evaluate(household, ExpertPolicy(), ["seen", "unseen"], 6, run / "eval-final")
    it = run / "iter-001"
    collect(it / "agent.jsonl", household, [("train", household.task_ids("train", 12))],
            RandomPolicy(seed))
    relabel(it / "agent.jsonl", it / "goals.jsonl", RuleRelabeler())
    mask(it / "goals.jsonl", it / "demos.jsonl", RuleRelabeler())
    (it / "done").write_text("")
    return run


@pytest.fixture(scope="module")
def runs(household: Household, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("runs")
    return [fake_run(root, household, demos, seed, mask_)
            for demos, mask_ in ((4, True), (8, True), (4, False)) for seed in (1, 2)]


def test_report_writes_the_table_and_every_plot(runs: list[Path], tmp_path: Path) -> None:
    files = write_report(runs, tmp_path / "out")
    names = {f.name for f in files}
    assert names == {"report.md", "success.png", "ablations.png", "goal_types.png",
                     "relabel_accuracy.png", "iterations.png", "runs.json"}
    for f in files:
        assert f.stat().st_size > 1000
        if f.suffix == ".png":
            assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (tmp_path / "out" / "report.md").read_text()
    for method in ("| SFT | 4 |", "| SFT+HSL | 8 |", "| SFT+HSL NoMask | 4 |"):
        assert method in text


def test_a_report_reads_an_earlier_reports_runs_json_in_place_of_the_folders(
        runs: list[Path], tmp_path: Path) -> None:
    """runs.json keeps every run's share of the report (oracle views included), so runs whose
    folders are gone pool with runs still on disk; a run read twice counts once."""
    write_report(runs[:4], tmp_path / "first")
    whole = markdown(load_runs(runs))
    assert markdown(load_runs([tmp_path / "first" / "runs.json", *runs[4:]])) == whole
    # the folders again after the archive: each replaces its record, nothing counts twice
    assert markdown(load_runs([tmp_path / "first" / "runs.json", *runs])) == whole
    assert markdown(load_runs(runs[:4])) != whole
    # what `hsl grid --report` does: each part of a grid adds to the report already there
    update_report(runs[:4], tmp_path / "grown")
    update_report(runs[3:], tmp_path / "grown")
    assert (tmp_path / "grown" / "report.md").read_text() == whole
    (tmp_path / "bad.json").write_text('{"schema": "hsl.report-runs/1", "runs": {"x": {}}}')
    with pytest.raises(ValueError, match=r"bad.json: runs.x.dir: Field required"):
        load_runs([tmp_path / "bad.json"])


def test_report_numbers_are_the_runs_means(runs: list[Path]) -> None:
    import json
    import statistics

    data = load_runs(runs, oracle=False)
    sft4 = [json.loads((r / "eval-sft" / "summary.json").read_text())["summary"]["unseen"]
            ["all"]["success"] for r in runs if r.name.startswith("d4-mTrue")]
    # the NoMask runs carry the same SFT (same budget and seed): counted once
    row = next(line for line in markdown(data).splitlines() if line.startswith("| SFT | 4 |"))
    mean, std = statistics.fmean(sft4), statistics.stdev(sft4)
    assert std > 0
    assert f"{100 * mean:.1f} ± {100 * std:.1f} (n=2)" in row
    # and seed by seed: the spread behind the ±
    seen4 = [json.loads((r / "eval-sft" / "summary.json").read_text())["summary"]["seen"]
             ["all"]["success"] for r in runs if r.name.startswith("d4-mTrue")]
    by_seed = markdown(data).split("## Success by seed")[1]
    assert "| SFT | 4 | " + " | ".join(f"{100 * s:.1f} / {100 * u:.1f}" for s, u in
                                       zip(seen4, sft4, strict=True)) + " |" in by_seed
    # the paired change: each run's final minus its own SFT
    final4 = [json.loads((r / "eval-final" / "summary.json").read_text())["summary"]["unseen"]
              ["all"]["success"] for r in runs if r.name.startswith("d4-mTrue")]
    assert data.gains["SFT+HSL, 4 demos"]["unseen"] == pytest.approx(
        [f - s for f, s in zip(final4, sft4, strict=True)])


def test_report_checks_relabels_against_the_oracle(runs: list[Path]) -> None:
    data = load_runs(runs)
    total = sum(c["tp"] + c["fn"] for c in data.relabel_counts.values())
    assert total > 0 and sum(c["fp"] for c in data.relabel_counts.values()) <= total // 20
    assert sum(data.relabeled_types.values()) > 0 and sum(data.gt_types.values()) == 4 * 4 + 8 * 2


def test_report_sorts_evaluation_episodes_by_what_they_achieved(runs: list[Path]) -> None:
    data = load_runs(runs)
    # seed 1's SFT is the expert, seed 2's a random policy; every final is the expert
    sft = data.outcomes["SFT, 4 demos"]
    assert sum(sft.values()) == 2 * 2 * 6 and sft["won"] >= 12 and sft["won"] < 24
    assert data.outcomes["SFT+HSL, 4 demos"] == {"won": 24}
    assert "| SFT, 4 demos | 24 |" in markdown(data)
    failed = next(t for r in runs for t in read_records(r / "eval-sft" / "eval.jsonl", Trajectory)
                  if not t.success and Goal.parse(t.instruction))
    task = Goal.parse(failed.instruction)
    other = "apple" if task.obj != "apple" else "mug"
    outcome = Household.outcome_given
    assert outcome(failed, {}) == "nothing"
    assert outcome(failed, {Goal(GoalType.PICK_AND_PLACE, task.obj, "nowhere"): 3}) \
        == "same object"
    assert outcome(failed, {Goal(GoalType.PICK_AND_PLACE, other, task.recep): 3}) == \
        "other goal"


def test_fisher_exact_matches_the_textbook_values() -> None:
    from hsl_tools.report.stats import fisher_exact

    assert fisher_exact(3, 4, 1, 4) == pytest.approx(0.4857, abs=1e-4)  # the tea-tasting table
    assert fisher_exact(5, 5, 0, 5) == pytest.approx(2 / 252)  # only it and its mirror
    assert fisher_exact(23, 274, 13, 274) == pytest.approx(fisher_exact(13, 274, 23, 274))
    assert fisher_exact(7, 100, 7, 100) == 1.0 and fisher_exact(0, 10, 0, 10) == 1.0


def test_report_compares_wins_with_what_each_method_starts_from(runs: list[Path]) -> None:
    """Seeds pooled: wins of SFT+HSL (the expert at the end) against its SFT (expert on one
    seed, random play on the other), of an ablation against full HSL, and of SFT+HSL on few
    demos against SFT on the most."""
    from hsl_tools.report.stats import fisher_exact

    text = markdown(load_runs(runs, oracle=False))
    sft = [json.loads((r / "eval-sft" / "summary.json").read_text())["summary"]["seen"]["all"]
           for r in runs if r.name.startswith("d4-mTrue")]
    won = round(sum(c["success"] * c["episodes"] for c in sft))
    assert 6 <= won < 12
    assert f"| SFT+HSL, 4 demos | SFT | 12/12 vs {won}/12, p = " \
        f"{fisher_exact(12, 12, won, 12):.2f} |" in text
    assert "| SFT+HSL NoMask, 4 demos | SFT+HSL | 12/12 vs 12/12, p = 1.00 |" in text
    assert "| SFT+HSL, 4 demos | SFT, 8 demos |" in text
    assert "| SFT, 4 demos |" not in text.split("## Wins")[1].split("##")[0]


def test_wins_compare_only_the_seeds_both_sides_ran(runs: list[Path]) -> None:
    """SFT on 8 demos ran seed 1 alone: SFT+HSL on 4 demos is held against it on seed 1 only
    (the seed is named); at its own budget, where both ran seeds 1 and 2, nothing is named."""
    one_seed = [r for r in runs if not r.name.startswith("d8-") or r.name.endswith("-s1")]
    text = markdown(load_runs(one_seed, oracle=False))
    assert "| SFT+HSL, 4 demos | SFT, 8 demos (seed 1) | 6/6 vs 6/6, p = 1.00 |" in text
    assert "| SFT+HSL, 4 demos | SFT | 12/12 vs " in text


def test_report_counts_the_hsl_rollouts_by_ten_iterations(runs: list[Path]) -> None:
    """Pooled over the runs of a method: episodes, wins, steps without effect, named goals."""
    from hsl_tools.records import GoalRecord

    data = load_runs(runs, oracle=False)
    mine = [r for r in runs if r.name.startswith("d4-mTrue")]
    episodes = [t for r in mine for t in read_records(r / "iter-001" / "agent.jsonl", Trajectory)]
    goals = sum(1 for r in mine for _ in read_records(r / "iter-001" / "goals.jsonl", GoalRecord))
    won, steps = sum(t.success for t in episodes), sum(len(t.steps) for t in episodes)
    assert goals > 0  # random play reaches goals it was not given
    assert data.rollouts[("SFT+HSL, 4 demos", 1)] == {
        "episodes": 24, "won": won, "steps": steps, "nothing": 0, "goals": goals, "last": 1}
    assert f"| SFT+HSL, 4 demos | 1–1 | 24 | {100 * won / 24:.1f} % | {goals / 24:.2f} | " \
        "0.0 % |" in markdown(data)  # the random policy takes only valid actions


def test_rollout_counts_include_steps_that_had_no_effect(runs: list[Path], tmp_path: Path
                                                         ) -> None:
    from collections import Counter

    from hsl_tools.records import Step, write_records
    from hsl_tools.report.runs import _add_rollouts
    from hsl_tools.run_dir import Iteration

    episode = next(read_records(runs[0] / "iter-001" / "agent.jsonl", Trajectory))
    idle = Step(action="take moon from sky", observation="Nothing happens.")
    write_records(tmp_path / "agent.jsonl",
                  [episode, episode.model_copy(update={"steps": [idle, *episode.steps]})])
    counts: Counter[str] = Counter()
    _add_rollouts(counts, Iteration(tmp_path, 1))
    assert counts == {"episodes": 2, "steps": 2 * len(episode.steps) + 1, "nothing": 1,
                      "won": 2 * episode.success}


def test_report_refuses_folders_that_are_not_runs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no recipe.json"):
        write_report([tmp_path], tmp_path / "out")


def test_grid_cells_and_seeds_make_recipes(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text('[run]\ndir = "x"\n[sft]\ndemos = 400\n')
    (tmp_path / "grid.toml").write_text(
        'base = "base.toml"\ndir = "runs/g"\nseeds = [1, 2]\n'
        '[common]\nhsl = { iterations = 3, lam = 0.5 }\n'
        '[cells.p25]\nsft = { demos = 100 }\n'
        '[cells.p25-nomask]\nsft = { demos = 100 }\nhsl = { mask = false, iterations = 2 }\n')
    _, recipes = load_grid(tmp_path / "grid.toml")
    assert list(recipes) == ["p25-s1", "p25-s2", "p25-nomask-s1", "p25-nomask-s2"]
    r = recipes["p25-nomask-s2"]
    assert (r.run.dir, r.run.seed, r.sft.demos, r.hsl.mask) == ("runs/g/p25-nomask-s2", 2, 100,
                                                                False)
    # [common] applies to every cell; a cell's own value wins
    assert (r.hsl.lam, r.hsl.iterations, recipes["p25-s1"].hsl.iterations) == (0.5, 2, 3)
    assert r.methods()["eval-final"] == "SFT+HSL NoMask"
    # --only picks by name prefix, --seed by seed; together, both must hold
    assert list(select(recipes, None, [2])) == ["p25-s2", "p25-nomask-s2"]
    assert list(select(recipes, ["p25-nomask"], [1])) == ["p25-nomask-s1"]
    assert list(select(recipes, ["p25"], None)) == list(recipes)
    (tmp_path / "grid.toml").write_text('base = "base.toml"\ndir = "g"\n'
                                        '[cells.bad]\nhsl = { lamda = 0.5 }\n')
    with pytest.raises(ValueError, match=r"cells.bad: hsl.lamda"):
        load_grid(tmp_path / "grid.toml")
    # evaluation on whole splits: "all" (TOML has no null to unset a base's n)
    (tmp_path / "grid.toml").write_text('base = "base.toml"\ndir = "g"\n'
                                        '[cells.a]\neval = { n = "all" }\n'
                                        '[cells.b]\neval = { n = 5 }\n')
    _, recipes = load_grid(tmp_path / "grid.toml")
    assert (recipes["a-s42"].eval.tasks(), recipes["b-s42"].eval.tasks()) == (None, 5)
    (tmp_path / "grid.toml").write_text('base = "base.toml"\ndir = "g"\n'
                                        '[cells.bad]\neval = { n = "most" }\n')
    with pytest.raises(ValueError, match=r"cells.bad: eval.n"):
        load_grid(tmp_path / "grid.toml")
    # a micro-batch count that does not divide the batch fails when the grid loads
    (tmp_path / "grid.toml").write_text('base = "base.toml"\ndir = "g"\n[cells.bad]\n'
                                        'sft = { batch_size = 16, grad_accum = 3 }\n')
    with pytest.raises(ValueError, match=r"cells.bad: sft: .*grad_accum 3 does not divide "
                                         r"batch_size 16"):
        load_grid(tmp_path / "grid.toml")


def test_grid_with_jobs_trains_each_shared_sft_once(tmp_path: Path) -> None:
    """A real (tiny) grid in two worker processes: cells that start alike get the same SFT
    checkpoint, a cell with other demos trains its own, every run reaches its end, and one
    that fails is named at the end without stopping the others."""
    (tmp_path / "base.toml").write_text(
        '[run]\ndir = "x"\nmax_steps = 6\n[model]\nbatch_size = 8\n'
        '[sft]\ndemos = 8\nsteps = 2\nbatch_size = 4\n'
        '[hsl]\niterations = 1\ncollect = 4\nsteps = 1\nbatch_size = 4\n'
        '[eval]\nn = 2\nbatch_size = 4\n')
    (tmp_path / "grid.toml").write_text(
        f'base = "base.toml"\ndir = "{tmp_path / "runs"}"\nseeds = [1]\n'
        '[cells.d]\nrun = { env = "nowhere" }\n'
        '[cells.a]\n[cells.b]\nhsl = { mask = false }\n'
        '[cells.c]\nsft = { demos = 4 }\nhsl = { iterations = 0 }\n')
    with pytest.raises(GridFailed, match=r"1 run\(s\) failed: d-s1;"):
        run_grid(tmp_path / "grid.toml", Console(quiet=True), jobs=2)
    assert "nowhere" in (tmp_path / "runs" / "d-s1" / "grid.log").read_text()  # the traceback
    a, b, c = (tmp_path / "runs" / f"{x}-s1" for x in "abc")
    # in this process too, the failing run is named and the runs after it go on (c redoes its
    # lost last evaluation); finished runs are left alone
    (c / "eval-sft" / "summary.json").unlink()
    console = Console(record=True, width=100)
    with pytest.raises(GridFailed, match=r"1 run\(s\) failed: d-s1;"):
        run_grid(tmp_path / "grid.toml", console, only=["d", "c", "a"], jobs=1)
    text = console.export_text()
    assert "1 run(s) already finished: a-s1" in text
    assert "2 SFT stage(s) and 2 run(s) to go, 1 at a time" in text  # c and d
    assert "c-s1 SFT" in text and (c / "eval-sft" / "summary.json").exists()
    assert "c-s1 run" not in text  # no HSL iterations: its SFT stage finished it
    weights = {r: (r / "sft" / "model.safetensors").read_bytes() for r in (a, b, c)}
    assert weights[a] == weights[b] != weights[c]
    assert (a / "eval-final" / "summary.json").exists()
    assert (b / "eval-final" / "summary.json").exists()
    assert not (c / "eval-final").exists()  # no HSL iterations: SFT is its last stage
    # b was handed a's model and SFT: it built and trained nothing itself
    assert "built tiny model" in (a / "grid.log").read_text()
    assert "built tiny model" not in (b / "grid.log").read_text()


def test_grid_jobs_share_out_the_cores() -> None:
    assert share_cores(jobs=9, runs=27, cores=16) == (9, 1)
    assert share_cores(jobs=2, runs=1, cores=2) == (1, 2)  # one SFT: it gets both cores
    assert share_cores(jobs=4, runs=2, cores=16) == (2, 8)


def test_grid_starts_its_longest_runs_first() -> None:
    """On the shipped grid: HSL+DPO (640 + 256 episodes after SFT) first, then the HSL runs
    in their cells' order, DPO alone, and last the control, which plays no episode."""
    _, recipes = load_grid(Path(__file__).parents[1] / "recipes" / "grid-household.toml")
    chosen = select(recipes, None, [42])
    schedule = Schedule([], {n: episodes_after_sft(r) for n, r in chosen.items()})
    schedule.release(list(chosen))
    order = [stage.run for stage in iter(schedule.next, None)]
    assert order == ["p100-s42", "p25-s42", "p50-s42", "p25-nomask-s42", "p25-uniweight-s42",
                     "p25-relabelfailure-s42", "p25-selfimit-s42", "p100-dpo-s42",
                     "p25-samesteps-s42"]
    assert [episodes_after_sft(recipes[n]) for n in ("p100-s42", "p25-s42", "p100-dpo-s42",
                                                     "p25-samesteps-s42")] == [896, 640, 256, 0]


def test_grid_starts_a_run_as_soon_as_its_own_sft_is_there() -> None:
    """Three SFT stages on two workers: the group with most work trains first, and its runs
    start while another group's SFT is still training, not after every SFT."""
    work = {"a": 640, "a-2": 640, "b": 896, "b-dpo": 256, "c": 640}
    schedule = Schedule([["c"], ["b", "b-dpo"], ["a", "a-2"]], work)
    first, second = schedule.next(), schedule.next()
    assert (first.run, first.until_sft, first.group) == ("a", True, ["a", "a-2"])
    assert (second.run, second.until_sft) == ("b", True)
    schedule.release(first.group)  # a's SFT is done, b's still trains
    third = schedule.next()
    assert (third.run, third.until_sft) == ("c", True)  # SFT stages first: each unlocks runs
    assert [s.run for s in iter(schedule.next, None)] == ["a", "a-2"]  # b still trains
    assert schedule.next() is None and schedule.startable() == 0
    schedule.release(second.group)
    assert schedule.startable() == 2 and schedule.next() == Stage("b", False, ["b"])


def test_a_run_is_finished_when_its_last_evaluation_is_written(tmp_path: Path) -> None:
    recipe = Recipe.model_validate({"run": {"dir": str(tmp_path)}, "hsl": {"iterations": 2},
                                    "dpo": {"steps": 5}})
    write_json(tmp_path / "eval-final" / "summary.json", {})
    assert not finished(recipe)  # DPO comes after the HSL iterations
    write_json(tmp_path / "eval-dpo" / "summary.json", {})
    assert finished(recipe)
    write_json(tmp_path / "eval-sft" / "summary.json", {})
    assert finished(recipe, until_sft=True)


def test_status_follows_a_run_through_its_stages(tmp_path: Path) -> None:
    """`hsl grid --status` reads each stage off the files a run leaves, in the run's order."""
    (tmp_path / "base.toml").write_text('[run]\ndir = "x"\n[sft]\ndemos = 8\nsteps = 6\n'
                                        '[hsl]\niterations = 2\n[dpo]\nsteps = 5\n')
    (tmp_path / "grid.toml").write_text(
        f'base = "base.toml"\ndir = "{tmp_path / "g"}"\nseeds = [1]\n[cells.a]\n[cells.b]\n'
        'hsl = { iterations = 0 }\ndpo = { steps = 0 }\n')
    recipe = load_grid(tmp_path / "grid.toml")[1]["a-s1"]
    run = Path(recipe.run.dir)

    clock = iter(range(0, 10_000, 120))  # each file written two minutes after the last

    def write(path: str, steps: int = 0) -> None:
        (run / path).parent.mkdir(parents=True, exist_ok=True)
        if path.endswith("summary.json"):
            write_json(run / path, {"summary": {"seen": {"all": {"success": steps / 8}},
                                                "unseen": {"all": {"success": 0.0}}}})
        else:  # training steps of 90 s, one paused for an hour, and a line being written
            (run / path).write_text("".join(
                json.dumps({"step": s, "seconds": 3600.0 if s == 2 else 90.0}) + "\n"
                for s in range(1, steps + 1)) + '{"step": 9')
        now = next(clock)
        os.utime(run / path, (now, now))

    stages = [(lambda: None, ("not started", "", "")),
              (lambda: write("sft/train.jsonl", 4), ("SFT", "4/6 steps, ~3 min left", "")),
              (lambda: write("sft/done"), ("SFT evaluation", "", "")),
              (lambda: write("eval-sft/summary.json", 1),
               ("SFT done", "", "eval-sft: seen 12.5%, unseen 0.0%")),
              (lambda: write("iter-001/agent.jsonl"), ("HSL", "0/2 iterations", "eval-sft")),
              (lambda: write("iter-001/done"),
               ("HSL", "1/2 iterations, ~4 min left", "eval-sft")),
              (lambda: write("iter-002/done"), ("final evaluation", "", "eval-sft")),
              (lambda: write("eval-final/summary.json", 2), ("HSL done", "", "eval-final")),
              (lambda: write("dpo/agent.jsonl"), ("DPO", "rollouts", "eval-final")),
              (lambda: write("dpo/ckpt/train.jsonl", 3),
               ("DPO", "3/5 steps, ~3 min left", "eval-final")),
              (lambda: write("dpo/done"), ("DPO evaluation", "", "eval-final")),
              (lambda: write("eval-dpo/summary.json", 3),
               ("done", "", "eval-dpo: seen 37.5%, unseen 0.0%"))]
    with exclusive(run):  # as the process that runs it would
        for step, (stage, progress, evaluation) in stages:
            step()
            status = run_status(recipe)
            assert (status.stage, status.progress) == (stage, progress)
            assert status.evaluation.startswith(evaluation) and bool(status.evaluation) == bool(
                evaluation)
    result = CliRunner().invoke(app, ["grid", str(tmp_path / "grid.toml"), "--status"],
                                terminal_width=120)
    assert result.exit_code == 0, result.output
    assert re.search(r"a-s1 +done +eval-dpo: seen 37.5%", result.output)
    assert re.search(r"b-s1 +not started", result.output)
    assert "1 of 2 run(s) done" in result.output
    assert not (tmp_path / "g" / "b-s1").exists()  # looking wrote nothing
    # the same run mid-stage with no process holding it (the grid stopped, or was killed)
    for path in ("eval-dpo/summary.json", "dpo/done"):
        (run / path).unlink()
    assert run_status(recipe).progress == "3/5 steps, ~3 min left, not running"


def test_a_shared_sft_replaces_what_a_killed_copy_left(tmp_path: Path) -> None:
    donor, run = tmp_path / "donor", tmp_path / "run"
    recipe = Recipe.model_validate({"run": {"dir": str(run), "seed": 7}, "sft": {"demos": 8}})
    for path in ("model0/config.json", "sft/done", "sft/model.safetensors"):
        (donor / path).parent.mkdir(parents=True, exist_ok=True)
        (donor / path).write_text(path)
    (donor / "expert.jsonl").write_text("")
    write_json(donor / "eval-sft" / "summary.json",
               {"summary": {"seen": {"all": {"success": 0.25}}}})
    # what a copy killed halfway left: a half-copied folder and a half-moved one, no `done`
    for path in ("sft.partial/model.safetensors", "sft/stale.bin"):
        (run / path).parent.mkdir(parents=True, exist_ok=True)
        (run / path).write_text("half")
    _copy_start(donor, recipe)
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()) == [
        "eval-sft/summary.json", "expert.jsonl", "model0/config.json", "recipe.json",
        "sft/done", "sft/model.safetensors"]
    assert (run / "sft" / "model.safetensors").read_text() == "sft/model.safetensors"
    # before the run starts, the report already reads it: its SFT, at its demos and seed
    point, = load_runs([run], oracle=False).points
    assert (point.method, point.demos, point.seed, point.summary["seen"]["all"]["success"]) \
        == ("SFT", 8, 7, 0.25)
