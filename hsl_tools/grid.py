"""A grid of recipe runs: one base recipe, named cells that change some of its settings, and
seeds. Each (cell, seed) is an ordinary resumable run in DIR/<cell>-s<seed>, so a killed grid
continues where it stopped. Cells whose runs would start identically (same model, demos, SFT
and evaluation settings, same seed) share one SFT: it is trained once and copied.

    base = "household-tiny.toml"    # relative to the grid file
    dir = "runs/grid"
    seeds = [42, 123, 2026]
    [common]                         # changes every cell shares
    hsl = { iterations = 20 }
    [cells.p25]                      # each table is merged over the base recipe
    sft = { demos = 100 }
    [cells.p25-nomask]
    sft = { demos = 100 }
    hsl = { mask = false }
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
import tomllib
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, ValidationError
from rich.console import Console

from hsl_tools.iterate import run_recipe
from hsl_tools.recipe import Recipe, finished, validated, write_recipe
from hsl_tools.records import first_error
from hsl_tools.run_dir import SHARED_START


class GridFailed(Exception):
    """Some runs of a parallel grid raised; the others finished."""


class Grid(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base: str
    dir: str
    seeds: list[int] = [42]
    common: dict[str, dict[str, Any]] = {}  # merged over the base before each cell's changes
    cells: dict[str, dict[str, dict[str, Any]]]


def load_grid(path: Path) -> tuple[Grid, dict[str, Recipe]]:
    """The grid and every (cell, seed) recipe by run name; errors name the cell and field."""
    try:
        grid = Grid.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except ValidationError as e:
        raise ValueError(f"{path}: {first_error(e)}") from None
    base = tomllib.loads((path.parent / grid.base).read_text(encoding="utf-8"))
    recipes = {}
    for cell, changes in grid.cells.items():
        for seed in grid.seeds:
            name = f"{cell}-s{seed}"
            data = {section: dict(values) for section, values in base.items()}
            for section, values in [*grid.common.items(), *changes.items()]:
                data.setdefault(section, {}).update(values)
            data["run"].update(dir=str(Path(grid.dir) / name), seed=seed)
            recipes[name] = validated(data, f"{path}: cells.{cell}")
    return grid, recipes


def select(recipes: dict[str, Recipe], only: list[str] | None,
           seeds: list[int] | None = None) -> dict[str, Recipe]:
    """The runs whose name starts with one of `only` and whose seed is one of `seeds` (either
    filter left out passes every run)."""
    return {name: r for name, r in recipes.items()
            if (not only or any(name.startswith(o) for o in only))
            and (not seeds or r.run.seed in seeds)}


def start_key(recipe: Recipe) -> str:
    """Everything that decides a run's SFT checkpoint and its evaluation."""
    r = recipe.run
    return json.dumps([r.env, r.seed, r.max_steps, recipe.model.model_dump(),
                       recipe.sft.model_dump(), recipe.eval.model_dump(exclude={"every"})],
                      sort_keys=True)


def run_grid(path: Path, console: Console, only: list[str] | None = None,
             jobs: int = 1, seeds: list[int] | None = None) -> list[Path]:
    """Run every (cell, seed) of the grid, `jobs` stages at a time, sharing SFT stages: one
    run per distinct start trains and evaluates its SFT, which is copied to the runs that
    start alike. Returns the run dirs."""
    chosen = select(load_grid(path)[1], only, seeds)
    groups: dict[str, list[str]] = {}
    for name, recipe in chosen.items():
        groups.setdefault(start_key(recipe), []).append(name)
    failed = _run_all(chosen, list(groups.values()), jobs, console)
    if failed:
        raise GridFailed(f"{len(failed)} run(s) failed: {', '.join(failed)}; run the grid "
                         "again to resume them")
    return [Path(r.run.dir) for r in chosen.values()]


def copy_start(donor: Path, recipe: Recipe) -> None:
    """Hand a finished SFT stage (model, demos, checkpoint, its evaluation) to another run,
    with its recipe.json, so that `hsl report` reads it as a run before it starts. Each item
    is copied beside its place and renamed in, so a killed copy leaves no half. What made the
    outputs (`*.made-by.json`, naming the donor's checkpoint path) stays behind: the receiving
    run adopts them as its own."""
    run = recipe.folder.path
    write_recipe(recipe)
    if run == donor or recipe.folder.sft.done:
        return
    for item in SHARED_START:
        source, target = donor / item, run / item
        if not source.exists():
            continue
        partial = run / f"{item}.partial"
        for stale in (partial, target):
            if stale.is_dir():
                shutil.rmtree(stale)
            else:
                stale.unlink(missing_ok=True)
        if source.is_dir():
            shutil.copytree(source, partial, ignore=shutil.ignore_patterns("*.made-by.json"))
        else:
            shutil.copy2(source, partial)
        partial.rename(target)


def episodes_after_sft(recipe: Recipe) -> int:
    """Episodes a run plays past its SFT stage (HSL collection, DPO's pair tasks): the bulk
    of its time, which orders the longest runs first (evaluations are alike across a grid)."""
    h, d = recipe.hsl, recipe.dpo
    hsl = 0 if h.data == "none" else h.iterations * h.collect
    dpo = (d.tasks or recipe.sft.demos) if d.steps else 0
    return hsl + dpo


def share_cores(jobs: int, runs: int, cores: int) -> tuple[int, int]:
    """(runs at a time, torch threads each): fewer runs than jobs (a stage of few shared
    SFTs) share out all the cores rather than leave some idle."""
    at_once = max(1, min(jobs, runs))
    return at_once, max(1, cores // at_once)


class Stage(NamedTuple):
    """A stage of a grid: a run's SFT stage alone (for every run of `group`), or a run."""

    run: str
    until_sft: bool
    group: list[str]  # the runs that wait for it


class Schedule:
    """Which stage of a grid starts next. SFT stages go first (each unlocks runs), the group
    with the most work after SFT first; then the runs whose SFT is there, longest first. A run
    starts as soon as its own SFT is there, so no worker idles until every SFT is done, and a
    long run does not start last to keep one worker busy after the others are done."""

    def __init__(self, groups: list[list[str]], work: dict[str, int]) -> None:
        self.work = work  # episodes after SFT, by run (`episodes_after_sft`)
        self.stages = sorted(groups, key=lambda g: -sum(work[n] for n in g))
        self.ready: list[str] = []

    def release(self, runs: list[str]) -> None:
        """Runs whose SFT is there: they can start."""
        self.ready += runs

    def startable(self) -> int:
        """How many stages could start now."""
        return len(self.stages) + len(self.ready)

    def next(self) -> Stage | None:
        """The stage to start now, or None while none can."""
        if self.stages:
            group = self.stages.pop(0)
            return Stage(group[0], True, group)
        if self.ready:
            name = max(self.ready, key=self.work.__getitem__)  # the first of the longest
            self.ready.remove(name)
            return Stage(name, False, [name])
        return None


def _run_all(recipes: dict[str, Recipe], groups: list[list[str]], jobs: int,
             console: Console) -> list[str]:
    """Run the grid's stages as `Schedule` orders them, `jobs` at a time in worker processes
    (each writing to its run's grid.log), or here with jobs = 1; returns the failed runs."""
    def unlock(group: list[str]) -> list[str]:
        """Hand a finished SFT stage to its group; returns the runs with work left."""
        for name in group:
            copy_start(Path(recipes[group[0]].run.dir), recipes[name])
        return [n for n in group if not finished(recipes[n])]

    trained = [g for g in groups if finished(recipes[g[0]], until_sft=True)]
    schedule = Schedule([g for g in groups if g not in trained],
                        {n: episodes_after_sft(r) for n, r in recipes.items()})
    done: list[str] = []
    for group in trained:
        left = unlock(group)
        schedule.release(left)
        done += [n for n in group if n not in left]
    if done:  # a resumed grid: they take no worker and no share of the cores
        console.print(f"{len(done)} run(s) already finished: {', '.join(done)}")
    console.print(f"{len(schedule.stages)} SFT stage(s) and "
                  f"{len(schedule.ready) + sum(map(len, schedule.stages))} run(s) to go, "
                  f"{max(1, jobs)} at a time" + (", each logging to RUN/grid.log" * (jobs > 1)))
    failed: list[str] = []
    # spawn: a forked child of a process that touched CUDA or OpenMP can hang
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) \
        if jobs > 1 else None
    running: dict[Future[float], Stage] = {}
    try:
        while True:
            while len(running) < max(1, jobs) and (stage := schedule.next()):
                # what can run now shares out the cores (a lone SFT stage gets them all)
                threads = share_cores(jobs, len(running) + 1 + schedule.startable(),
                                      os.cpu_count() or 1)[1]
                running[_start(pool, recipes[stage.run], stage.until_sft, threads,
                               console)] = stage
            if not running:
                return failed
            ended, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in ended:
                stage = running.pop(future)
                what = f"{stage.run} {'SFT' if stage.until_sft else 'run'}"
                where = f" (log in {recipes[stage.run].folder.grid_log})" * bool(pool)
                try:
                    seconds = future.result()
                except Exception as e:  # the others go on; a re-run resumes the failed ones
                    failed += stage.group  # a failed SFT: its runs wait for a re-run
                    console.print(f"[red]{what} failed[/]: {e}{where}")
                    continue
                console.print(f"{what}: {seconds:.0f} s{where}")
                if stage.until_sft:
                    schedule.release(unlock(stage.group))
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)


def _start(pool: ProcessPoolExecutor | None, recipe: Recipe, until_sft: bool, threads: int,
           console: Console) -> Future[float]:
    """Start a stage in a worker, or run it here (no pool), output to the console."""
    if pool:
        return pool.submit(_run_in_worker, recipe.model_dump(), until_sft, threads)
    future: Future[float] = Future()
    console.rule(f"[bold]{Path(recipe.run.dir).name}[/] {'SFT' if until_sft else 'run'}")
    began = time.perf_counter()
    try:
        run_recipe(recipe, console, until_sft)
        future.set_result(time.perf_counter() - began)
    except Exception as e:
        console.print_exception()
        future.set_exception(e)
    return future


def _run_in_worker(recipe: dict[str, Any], until_sft: bool, threads: int) -> float:
    """One run in a worker process, its output appended to RUN/grid.log; returns seconds."""
    import torch

    torch.set_num_threads(threads)
    parsed = Recipe.model_validate(recipe)
    log = parsed.folder.grid_log
    log.parent.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    with log.open("a", encoding="utf-8") as f, redirect_stdout(f), redirect_stderr(f):
        console = Console(file=f, width=100)
        try:
            run_recipe(parsed, console, until_sft)
        except Exception:  # the traceback goes to the run's log; the parent names the run
            console.print_exception()
            raise
    return time.perf_counter() - began
