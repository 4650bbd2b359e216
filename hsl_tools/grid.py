"""A grid of recipe runs: one base recipe, named cells that change some of its settings, and
seeds. Each (cell, seed) is an ordinary resumable run in DIR/<cell>-s<seed>, so a killed grid
continues where it stopped. Cells whose runs would start identically (same model, demos, SFT
and evaluation settings, same seed) share one SFT: it is trained once and copied.

    base = "household-tiny.toml"    # relative to the grid file
    dir = "runs/grid"
    seeds = [42, 123, 2026]
    [cells.p25]                      # each table is merged over the base recipe
    sft = { demos = 100 }
    [cells.p25-nomask]
    sft = { demos = 100 }
    hsl = { mask = false }
"""

from __future__ import annotations

import json
import shutil
import time
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from rich.console import Console

from hsl_tools.iterate import Recipe, run_recipe

# what a run holds once its SFT stage is done, and can be handed to a run that starts alike
SHARED_START = ("model0", "expert.jsonl", "sft", "eval-sft")


class Grid(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base: str
    dir: str
    seeds: list[int] = [42]
    cells: dict[str, dict[str, dict[str, Any]]]


def load_grid(path: Path) -> tuple[Grid, dict[str, Recipe]]:
    """The grid and every (cell, seed) recipe by run name; errors name the cell and field."""
    try:
        grid = Grid.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except ValidationError as e:
        first = e.errors()[0]
        raise ValueError(f"{path}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    base = tomllib.loads((path.parent / grid.base).read_text(encoding="utf-8"))
    recipes = {}
    for cell, changes in grid.cells.items():
        for seed in grid.seeds:
            name = f"{cell}-s{seed}"
            data = {section: dict(values) for section, values in base.items()}
            for section, values in changes.items():
                data.setdefault(section, {}).update(values)
            data["run"].update(dir=str(Path(grid.dir) / name), seed=seed)
            try:
                recipes[name] = Recipe.model_validate(data)
            except ValidationError as e:
                first = e.errors()[0]
                raise ValueError(f"{path}: cells.{cell}: {'.'.join(map(str, first['loc']))}: "
                                 f"{first['msg']}") from None
    return grid, recipes


def start_key(recipe: Recipe) -> str:
    """Everything that decides a run's SFT checkpoint and its evaluation."""
    r = recipe.run
    return json.dumps([r.env, r.seed, r.max_steps, recipe.model.model_dump(),
                       recipe.sft.model_dump(), recipe.eval.model_dump()], sort_keys=True)


def run_grid(path: Path, console: Console, only: list[str] | None = None) -> list[Path]:
    """Run every (cell, seed) of the grid in order, sharing SFT stages; returns the run dirs."""
    _, recipes = load_grid(path)
    started: dict[str, Path] = {}
    dirs = []
    for n, (name, recipe) in enumerate(recipes.items(), 1):
        if only and not any(name.startswith(o) for o in only):
            continue
        run = Path(recipe.run.dir)
        donor = started.get(start_key(recipe))
        if donor is not None and not (run / "sft" / "done").exists():
            for item in SHARED_START:
                source, target = donor / item, run / item
                if source.is_dir():
                    shutil.copytree(source, target, dirs_exist_ok=True)
                elif source.exists():
                    run.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(source, target)
        console.rule(f"[bold]{name}[/] ({n}/{len(recipes)})" +
                     (f", SFT shared from {donor.name}" if donor is not None else ""))
        began = time.perf_counter()
        run_recipe(recipe, console)
        console.print(f"{name}: {time.perf_counter() - began:.0f} s")
        started.setdefault(start_key(recipe), run)
        dirs.append(run)
    return dirs
