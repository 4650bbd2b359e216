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
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from rich.console import Console

from hsl_tools.iterate import Recipe, finished, run_recipe, write_recipe
from hsl_tools.records import first_error

# what a run holds once its SFT stage is done, and can be handed to a run that starts alike;
# "sft" last: its `done` marker tells a resumed run the whole stage is there
SHARED_START = ("model0", "expert.jsonl", "eval-sft", "sft")


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
            try:
                recipes[name] = Recipe.model_validate(data)
            except ValidationError as e:
                raise ValueError(f"{path}: cells.{cell}: {first_error(e)}") from None
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
    """Run every (cell, seed) of the grid, `jobs` runs at a time, sharing SFT stages: first
    one run per distinct start trains and evaluates its SFT, which is copied to the runs that
    start alike, then every run goes to its end. Returns the run dirs."""
    chosen = select(load_grid(path)[1], only, seeds)
    groups: dict[str, list[str]] = {}
    for name, recipe in chosen.items():
        groups.setdefault(start_key(recipe), []).append(name)
    failed = _run_all({names[0]: chosen[names[0]] for names in groups.values()}, True, jobs,
                      console)
    ready = {}
    for first, *rest in groups.values():
        if first in failed:  # its SFT stage failed: the runs that share it wait for a re-run
            failed += rest
            continue
        for name in [first, *rest]:
            _copy_start(Path(chosen[first].run.dir), chosen[name])
            ready[name] = chosen[name]
    failed += _run_all(ready, False, jobs, console)
    if failed:
        raise GridFailed(f"{len(failed)} run(s) failed: {', '.join(failed)}; run the grid "
                         "again to resume them")
    return [Path(r.run.dir) for r in chosen.values()]


def _copy_start(donor: Path, recipe: Recipe) -> None:
    """Hand a finished SFT stage (model, demos, checkpoint, its evaluation) to another run,
    with its recipe.json, so that `hsl report` reads it as a run before it starts. Each item
    is copied beside its place and renamed in, so a killed copy leaves no half."""
    run = Path(recipe.run.dir)
    write_recipe(recipe)
    if run == donor or (run / "sft" / "done").exists():
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
            shutil.copytree(source, partial)
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


def longest_first(recipes: dict[str, Recipe]) -> dict[str, Recipe]:
    """The runs by episodes after SFT, most first (ties keep their order): a long run that
    started last would keep one worker busy long after the others finished."""
    return dict(sorted(recipes.items(), key=lambda kv: -episodes_after_sft(kv[1])))


def share_cores(jobs: int, runs: int, cores: int) -> tuple[int, int]:
    """(runs at a time, torch threads each): fewer runs than jobs (a stage of few shared
    SFTs) share out all the cores rather than leave some idle."""
    at_once = max(1, min(jobs, runs))
    return at_once, max(1, cores // at_once)


def _run_all(recipes: dict[str, Recipe], until_sft: bool, jobs: int, console: Console
             ) -> list[str]:
    """Run recipes in this process (jobs = 1, output to the console) or in `jobs` worker
    processes, each writing to its run's grid.log; returns the names of those that failed."""
    stage = "SFT" if until_sft else "run"
    failed: list[str] = []
    done = [name for name, recipe in recipes.items() if finished(recipe, until_sft)]
    if done:  # a resumed grid: they take no worker and no share of the cores
        console.print(f"{stage} stage: {len(done)} run(s) already finished: {', '.join(done)}")
        recipes = {name: r for name, r in recipes.items() if name not in done}
    if not recipes:
        return failed
    recipes = longest_first(recipes)
    if jobs <= 1:
        for n, (name, recipe) in enumerate(recipes.items(), 1):
            console.rule(f"[bold]{name}[/] {stage} ({n}/{len(recipes)})")
            began = time.perf_counter()
            try:
                run_recipe(recipe, console, until_sft)
            except Exception:  # the others go on; a re-run resumes the failed ones
                failed.append(name)
                console.print_exception()
                continue
            console.print(f"{name}: {time.perf_counter() - began:.0f} s")
        return failed
    at_once, threads = share_cores(jobs, len(recipes), os.cpu_count() or 1)
    console.print(f"{stage} stage: {len(recipes)} run(s), {at_once} at a time "
                  f"({threads} torch thread(s) each); follow one in RUN/grid.log")
    # spawn: a forked child of a process that touched CUDA or OpenMP can hang
    with ProcessPoolExecutor(at_once, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_run_in_worker, r.model_dump(), until_sft, threads): name
                   for name, r in recipes.items()}
        for n, future in enumerate(as_completed(futures), 1):
            name = futures[future]
            log = Path(recipes[name].run.dir) / "grid.log"
            try:
                console.print(f"{name} {stage}: {future.result():.0f} s ({n}/{len(recipes)}, "
                              f"log in {log})")
            except Exception as e:  # the others go on; a re-run resumes the failed ones
                failed.append(name)
                console.print(f"[red]{name} {stage} failed[/]: {e} (log in {log})")
    return failed


def _run_in_worker(recipe: dict[str, Any], until_sft: bool, threads: int) -> float:
    """One run in a worker process, its output appended to RUN/grid.log; returns seconds."""
    import torch

    torch.set_num_threads(threads)
    parsed = Recipe.model_validate(recipe)
    log = Path(parsed.run.dir) / "grid.log"
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
