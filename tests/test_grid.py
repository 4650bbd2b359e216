"""`hsl grid`: cells and seeds make recipes, runs that share an SFT train it once, jobs share
the cores and start longest first, a shared start is copied whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from hsl_tools.grid import (
    GridFailed,
    Schedule,
    Stage,
    copy_start,
    episodes_after_sft,
    load_grid,
    run_grid,
    select,
    share_cores,
)
from hsl_tools.recipe import Recipe
from hsl_tools.records import write_json
from hsl_tools.report.runs import load_runs


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
    copy_start(donor, recipe)
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()) == [
        "eval-sft/summary.json", "expert.jsonl", "model0/config.json", "recipe.json",
        "sft/done", "sft/model.safetensors"]
    assert (run / "sft" / "model.safetensors").read_text() == "sft/model.safetensors"
    # before the run starts, the report already reads it: its SFT, at its demos and seed
    point, = load_runs([run], oracle=False).points
    assert (point.method, point.demos, point.seed, point.summary["seen"]["all"]["success"]) \
        == ("SFT", 8, 7, 0.25)
