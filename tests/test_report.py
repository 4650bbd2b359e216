"""`hsl report` on small real runs: folders laid out as `hsl iterate` leaves them, filled by
the expert, a random policy and the rule relabeler on the household world (no training: the
report only reads files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from hsl_tools.agent import ExpertPolicy, RandomPolicy
from hsl_tools.collect import collect
from hsl_tools.envs.alfworld_family.goals import Goal, GoalType
from hsl_tools.envs.household import Household
from hsl_tools.evaluate import evaluate
from hsl_tools.recipe import Recipe
from hsl_tools.records import Trajectory, read_records, write_json
from hsl_tools.relabel.relabelers import RuleRelabeler
from hsl_tools.relabel.stages import mask, relabel
from hsl_tools.report import update_report, write_report
from hsl_tools.report.markdown import markdown
from hsl_tools.report.runs import Point, RunData, load_runs

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


def test_a_graded_report_shows_the_score_by_seed_and_its_paired_change() -> None:
    """WebShop gives partial credit: where nothing is won, the score is what tells methods
    apart, seed by seed and against each seed's own SFT."""
    def point(method: str, seed: int, reward: float) -> Point:
        cells = {"all": {"episodes": 200.0, "success": 0.0, "mean_steps": 9.0,
                         "mean_reward": reward}}
        return Point(method=method, demos=400, seed=seed, run=f"{method}-s{seed}",
                     summary={"test": cells}, env="webshop")

    data = RunData(points=[point("SFT", 42, 0.159), point("SFT", 123, 0.144),
                           point("SFT+HSL", 42, 0.184), point("SFT+HSL", 123, 0.197)])
    text = markdown(data)
    assert "## Score and success by method" in text
    assert "| SFT+HSL | 400 | 18.4 | 19.7 |" in text.split("## Score by seed")[1]
    assert "| SFT+HSL | 400 | 0.0 | 0.0 |" in text.split("## Success by seed")[1]
    paired = text.split("## Score change from each run's own SFT")[1]
    assert "| SFT+HSL, 400 demos | +3.9 ± 2.0 (n=2) |" in paired  # 2.5 and 5.3 points


def test_a_graded_report_pairs_rewards_goal_by_goal_on_the_seeds_that_kept_them() -> None:
    def point(method: str, seed: int, rewards: dict[str, float]) -> Point:
        mean = sum(rewards.values()) / len(rewards) if rewards else 0.1
        cells = {"all": {"episodes": 20.0, "success": 0.0, "mean_steps": 9.0,
                         "mean_reward": mean}}
        return Point(method=method, demos=400, seed=seed, run=f"{method}-s{seed}",
                     summary={"test": cells}, env="webshop",
                     rewards={"test": rewards} if rewards else {})

    sft = {f"g{i}": 0.1 * (i % 5) for i in range(20)}
    better = {g: r + 0.2 for g, r in sft.items()} | {"g0": 0.0}  # g0 alike: left out
    data = RunData(points=[point("SFT", 42, {}), point("SFT+HSL", 42, {}),  # an older archive
                           point("SFT", 2026, sft), point("SFT+HSL", 2026, better),
                           point("SFT (same steps)", 2026, dict(sft))])
    section = markdown(data).split("goal by goal")[1]
    row = next(line for line in section.splitlines() if line.startswith("| SFT+HSL"))
    # 19 of the 20 goals gained 20 points, one none: +19.0 on average, far from chance
    assert row.startswith("| SFT+HSL, 400 demos | SFT (seed 2026) | +19.0 over 20 goals, p = ")
    assert float(row.split("p = ")[1].split()[0]) < 0.001
    same = next(line for line in section.splitlines() if line.startswith("| SFT (same"))
    assert "+0.0 over 20 goals, p = 1.00" in same


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


def test_small_p_values_keep_a_significant_digit() -> None:
    from hsl_tools.report.stats import fisher_exact, p_text

    assert p_text(fisher_exact(28, 402, 8, 402)) == "0.0009"  # not "0.00"
    assert p_text(fisher_exact(3, 4, 1, 4)) == "0.49" and p_text(1.0) == "1.00"


def test_report_compares_wins_with_what_each_method_starts_from(runs: list[Path]) -> None:
    """Seeds pooled: wins of SFT+HSL (the expert at the end) against its SFT (expert on one
    seed, random play on the other), of an ablation against full HSL, and of SFT+HSL on few
    demos against SFT on the most."""
    from hsl_tools.report.stats import fisher_exact, p_text

    text = markdown(load_runs(runs, oracle=False))
    sft = [json.loads((r / "eval-sft" / "summary.json").read_text())["summary"]["seen"]["all"]
           for r in runs if r.name.startswith("d4-mTrue")]
    won = round(sum(c["success"] * c["episodes"] for c in sft))
    assert 6 <= won < 12
    assert f"| SFT+HSL, 4 demos | SFT | 12/12 vs {won}/12, p = " \
        f"{p_text(fisher_exact(12, 12, won, 12))} |" in text
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

    from hsl_tools.records import Step, write_records
    from hsl_tools.report.runs import rollout_counts
    from hsl_tools.run_dir import Iteration

    episode = next(read_records(runs[0] / "iter-001" / "agent.jsonl", Trajectory))
    idle = Step(action="take moon from sky", observation="Nothing happens.")
    write_records(tmp_path / "agent.jsonl",
                  [episode, episode.model_copy(update={"steps": [idle, *episode.steps]})])
    assert rollout_counts(Iteration(tmp_path, 1)) == {
        "episodes": 2, "steps": 2 * len(episode.steps) + 1, "nothing": 1,
        "won": 2 * episode.success}


def test_report_refuses_folders_that_are_not_runs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no recipe.json"):
        write_report([tmp_path], tmp_path / "out")
