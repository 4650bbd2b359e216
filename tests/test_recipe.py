"""A recipe is checked whole when it loads: every bad value (training settings included) is
named in one error, before anything runs; `--set` overrides are TOML values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hsl_tools.cli import app
from hsl_tools.grid import load_grid
from hsl_tools.recipe import Recipe, finished, load_recipe, parse_sets
from hsl_tools.records import write_json
from hsl_tools.run_dir import RunDir

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
RECIPE = RECIPES / "household-tiny.toml"


def test_sets_are_toml_values_and_bare_words_are_strings() -> None:
    assert parse_sets(["sft.lr=1e-3", "hsl.mask=false", "run.dir=runs/x", 'eval.splits=["seen"]']
                      ) == {"sft.lr": 1e-3, "hsl.mask": False, "run.dir": "runs/x",
                            "eval.splits": ["seen"]}
    with pytest.raises(ValueError, match="want section.key=value"):
        parse_sets(["lr=1"])


def test_a_recipe_names_every_bad_setting_at_load(tmp_path: Path) -> None:
    """Four mistakes, one error: an unknown key, a training setting TrainConfig refuses, a
    micro-batch count that does not divide its batch, and a model with no start."""
    sets = ["hsl.lamda=0.3", "sft.schedule=linear", "dpo.grad_accum=3", 'model.init=""',
            f"run.dir={tmp_path}"]
    with pytest.raises(ValueError) as e:
        load_recipe(RECIPE, sets)
    message = str(e.value)
    assert message.startswith(f"{RECIPE}: "), message
    for part in ("hsl.lamda: Extra inputs are not permitted", "schedule: Input should be",
                 "grad_accum 3 does not divide batch_size", "needs init"):
        assert part in message, message
    # the command says it in one line and writes nothing
    result = CliRunner().invoke(app, ["iterate", str(RECIPE), *(a for s in sets
                                                                 for a in ("--set", s))])
    assert result.exit_code != 0 and not (tmp_path / "recipe.json").exists()


def test_the_training_settings_are_the_sections_own() -> None:
    recipe = load_recipe(RECIPE, ["sft.lr=3e-4", "sft.steps=7", "hsl.lam=0.5", "dpo.steps=0"])
    sft = recipe.sft.train_config(seed=5)
    assert (sft.objective, sft.lr, sft.steps, sft.seed) == ("sft", 3e-4, 7, 5)
    hsl = recipe.hsl.train_config(seed=6, objective="hsl")
    assert (hsl.lam, hsl.steps, hsl.lr, hsl.mask) == (0.5, recipe.hsl.steps, recipe.hsl.lr, True)
    assert recipe.dpo.train_config(seed=0).objective == "dpo"


def test_a_run_folder_lists_its_iterations_in_order(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    for name in ("iter-010", "iter-002", "iter-1000", "iter-x", "iter-003.partial"):
        (tmp_path / name).mkdir()
    assert [i.number for i in run.iterations()] == [2, 10, 1000]
    assert run.iteration(2).eval_name == "iter-002/eval"
    assert [name for _, name, _ in run.evaluations(2)] == [
        "eval-sft", "iter-001/eval", "iter-002/eval", "eval-final", "eval-dpo"]


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


def test_a_run_is_finished_when_its_last_evaluation_is_written(tmp_path: Path) -> None:
    recipe = Recipe.model_validate({"run": {"dir": str(tmp_path)}, "hsl": {"iterations": 2},
                                    "dpo": {"steps": 5}})
    write_json(tmp_path / "eval-final" / "summary.json", {})
    assert not finished(recipe)  # DPO comes after the HSL iterations
    write_json(tmp_path / "eval-dpo" / "summary.json", {})
    assert finished(recipe)
    write_json(tmp_path / "eval-sft" / "summary.json", {})
    assert finished(recipe, until_sft=True)
