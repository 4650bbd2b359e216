"""A recipe: one TOML file that says everything a run of `hsl iterate` does, validated whole
when it loads (unknown keys, bad values and training settings that cannot work fail then, not
hours into the run). `hsl grid` builds its runs' recipes from one base recipe."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from hsl_tools.evaluate import evaluated
from hsl_tools.records import every_error, write_json
from hsl_tools.run_dir import EVAL_DPO, EVAL_FINAL, EVAL_SFT, RunDir
from hsl_tools.train.config import GradAccum, TrainConfig, train_config


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Trains(_Section):
    """A stage that trains: its fields named as TrainConfig's are its training settings, which
    TrainConfig checks as the recipe loads."""

    batch_size: PositiveInt = 32
    grad_accum: GradAccum = "auto"

    def train_config(self, seed: int, **more: Any) -> TrainConfig:
        """This stage's training settings (`more`: what the loop decides, e.g. the objective)."""
        mine = self.model_dump(include=set(TrainConfig.model_fields) - set(more))
        return train_config(**mine, seed=seed, **more)

    @model_validator(mode="after")
    def _trains(self) -> _Trains:
        self.train_config(seed=0)
        return self


class RunSection(_Section):
    dir: str
    label: str | None = None  # the method's name in reports (default: from the settings)
    env: str = "household"
    seed: int = 42
    max_steps: PositiveInt | None = None  # the environment's T by default (40; WebShop 10)


class ModelSection(_Section):
    init: str | None = "tiny"  # an `hsl init-model` preset; empty to start from `base`
    base: str | None = None  # a model folder or hub name
    batch_size: PositiveInt = 32  # rollout batch

    @model_validator(mode="after")
    def _has_a_start(self) -> ModelSection:
        if not self.init and not self.base:
            raise ValueError("needs init (an hsl init-model preset) or base (a model)")
        return self


class SFTSection(_Trains):
    demos: PositiveInt = 200
    # a file of expert trajectories that runs share (as `hsl collect --policy expert --split
    # train` writes it): a run plays only the tasks it lacks, then takes its `demos` from it
    expert: str | None = None
    steps: PositiveInt | None = None
    epochs: float = 3.0
    lr: float = 2e-5
    schedule: str = "constant"
    warmup: int = 0
    lora_r: int = 0


class HSLSection(_Trains):
    iterations: int = Field(0, ge=0)
    collect: PositiveInt = 18
    temperature: float = Field(0.7, ge=0)
    # what each iteration trains on beside the ground truth; "none": no rollouts, the same
    # optimisation steps on the ground truth alone (the control for "HSL only adds steps")
    data: Literal["hindsight", "relabel_failure", "self_imitation", "none"] = "hindsight"
    relabeler: str = "rules"
    masker: str = "rules"
    steps: PositiveInt = 4
    lr: float = 2e-5
    lam: float = 0.3
    alpha: float = 0.8
    capacity: PositiveInt = 100
    mask: bool = True
    uniform: bool = False
    lora_r: int = 0
    # every iteration's checkpoint (model + optimizer, ~3x the model) or only the newest
    keep_checkpoints: bool = False


class DPOSection(_Trains):
    """ETO's DPO after SFT (or after the HSL iterations: DPO+HSL): the agent plays the
    ground-truth tasks; each failure is paired with the expert demo of its task."""

    steps: int = Field(0, ge=0)  # 0: no DPO stage
    tasks: PositiveInt | None = None  # ground-truth tasks the agent plays for pairs (sampled)
    batch_size: PositiveInt = 16
    # 1e-4 collapsed the tiny agent within 5 steps (chosen and rejected likelihoods both
    # fell; docs/RESULTS.md); at 1e-5 the chosen side holds. Pretrained models want less.
    lr: float = 1e-5
    beta: float = 0.1
    temperature: float = Field(0.7, ge=0)

    def train_config(self, seed: int, **more: Any) -> TrainConfig:
        return super().train_config(seed, objective="dpo", steps=self.steps or None, **more)


class EvalSection(_Section):
    every: int = Field(0, ge=0)  # 0: only after SFT and at the end
    splits: list[str] | None = None  # the environment's evaluation splits by default
    n: PositiveInt | Literal["all"] | None = None  # the first n tasks of each split; all if unset
    batch_size: PositiveInt = 32

    def tasks(self) -> int | None:
        """Tasks per split for `evaluate` (None: the whole split)."""
        return None if self.n == "all" else self.n


class Recipe(_Section):
    run: RunSection
    model: ModelSection = ModelSection()
    sft: SFTSection = SFTSection()
    hsl: HSLSection = HSLSection()
    dpo: DPOSection = DPOSection()
    eval: EvalSection = EvalSection()

    @property
    def folder(self) -> RunDir:
        return RunDir(Path(self.run.dir))

    def methods(self) -> dict[str, str]:
        """The method each evaluation of the run measures, by evaluation folder:
        eval-sft is SFT; eval-final e.g. "SFT+HSL NoMask" (or `run.label`); eval-dpo
        "DPO" or "DPO+HSL"."""
        h = self.hsl
        names = {EVAL_SFT: "SFT"}
        if h.iterations:
            suffix = {"hindsight": "+HSL", "relabel_failure": "+RelabelFailure",
                      "self_imitation": "+SelfImit", "none": " (same steps)"}[h.data]
            suffix += " NoMask" * (not h.mask) + " UniWeight" * h.uniform
            names[EVAL_FINAL] = self.run.label or "SFT" + suffix
        if self.dpo.steps:
            names[EVAL_DPO] = "DPO" + suffix if h.iterations else "DPO"
        return names

    def last_evaluation(self, until_sft: bool = False) -> str:
        """The evaluation the run (or its SFT stage alone) ends with."""
        if until_sft or not (self.hsl.iterations or self.dpo.steps):
            return EVAL_SFT
        return EVAL_DPO if self.dpo.steps else EVAL_FINAL


def parse_sets(items: list[str]) -> dict[str, Any]:
    """`section.key=value` overrides (the value in TOML; a bare word is a string)."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ValueError(f"--set {item!r}: want section.key=value")
        try:
            overrides[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            overrides[key] = value
    return overrides


def load_recipe(path: Path, sets: list[str] | None = None) -> Recipe:
    """A recipe from TOML, with `section.key=value` overrides; the error names every bad
    field."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: {e}") from None
    for key, value in parse_sets(sets or []).items():
        section, _, name = key.partition(".")
        data.setdefault(section, {})[name] = value
    return validated(data, str(path))


def validated(data: dict[str, Any], where: str) -> Recipe:
    """A Recipe from parsed TOML; a ValueError naming `where` and every problem."""
    try:
        return Recipe.model_validate(data)
    except ValidationError as e:
        raise ValueError(f"{where}: {every_error(e)}") from None


def finished(recipe: Recipe, until_sft: bool = False) -> bool:
    """Whether the run's last evaluation (of its SFT stage alone with `until_sft`) is written:
    the evaluation after DPO, after the HSL iterations, or after SFT, whichever comes last."""
    return evaluated(recipe.folder.evaluation(recipe.last_evaluation(until_sft)))


def write_recipe(recipe: Recipe) -> None:
    """RUN/recipe.json: the resolved recipe and its evaluations' method names, which makes a
    folder a run for `hsl report`."""
    recipe.folder.path.mkdir(parents=True, exist_ok=True)
    write_json(recipe.folder.recipe, {"methods": recipe.methods(), **recipe.model_dump()})
