"""The HSL loop of a recipe: SFT first, then iterations of collect -> relabel -> mask ->
buffer -> train, evaluating every few iterations. Each step lives in its own folder of the run
and is skipped when already done, so re-running a killed run continues where it stopped.

    run/model0/      the starting model          run/expert.jsonl  ground-truth demos
    run/sft/         SFT checkpoint              run/eval-sft/     its evaluation
    run/iter-001/    agent.jsonl goals.jsonl demos.jsonl ckpt/ [eval/] done
    run/buffer.jsonl the hindsight buffer D'     run/metrics.jsonl one line per iteration
    run/dpo/         agent.jsonl ckpt/ done      run/eval-dpo/     (with [dpo] steps > 0)
    run/recipe.json  the resolved recipe, which `hsl report` reads
"""

from __future__ import annotations

import json
import random
import shutil
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from rich.console import Console

from hsl_tools.agent import make_policy
from hsl_tools.collect import collect, collect_made_by
from hsl_tools.envs.base import Environment, make_env
from hsl_tools.evaluate import evaluate, success_line
from hsl_tools.records import (
    Demo,
    Trajectory,
    check_made_by,
    first_error,
    read_records,
    write_json,
    write_records,
)
from hsl_tools.relabel.relabelers import make_relabeler
from hsl_tools.relabel.stages import mask, relabel
from hsl_tools.run_lock import exclusive
from hsl_tools.train.data import load_demos, push
from hsl_tools.train.loop import TrainConfig, train

# micro-batches per training step, or "auto": one demo per pass on CPU, the whole batch on GPU
# (TrainConfig.grad_accum; the step is the same either way, only its speed differs)
GradAccum = int | Literal["auto"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Trains(_Section):
    """A training stage's step: `batch_size` demos in `grad_accum` micro-batches (checked when
    the recipe loads, not hours later when the stage starts)."""

    batch_size: int = 32
    grad_accum: GradAccum = "auto"

    @model_validator(mode="after")
    def _micro_batches_divide_the_batch(self) -> _Trains:
        if self.grad_accum != "auto" and (self.grad_accum < 1
                                          or self.batch_size % self.grad_accum):
            raise ValueError(f"grad_accum {self.grad_accum} does not divide batch_size "
                             f"{self.batch_size}")
        return self


class RunSection(_Section):
    dir: str
    label: str | None = None  # the method's name in reports (default: from the settings)
    env: str = "household"
    seed: int = 42
    max_steps: int | None = None  # the environment's T by default (40; WebShop 10)


class ModelSection(_Section):
    init: str | None = "tiny"  # an `hsl init-model` preset; empty to start from `base`
    base: str | None = None  # a model folder or hub name
    batch_size: int = 32  # rollout batch


class SFTSection(_Trains):
    demos: int = 200
    # a file of expert trajectories that runs share (as `hsl collect --policy expert --split
    # train` writes it): a run plays only the tasks it lacks, then takes its `demos` from it
    expert: str | None = None
    steps: int | None = None
    epochs: float = 3.0
    lr: float = 2e-5
    schedule: str = "constant"
    warmup: int = 0
    lora_r: int = 0


class HSLSection(_Trains):
    iterations: int = 0
    collect: int = 18
    temperature: float = 0.7
    # what each iteration trains on beside the ground truth; "none": no rollouts, the same
    # optimisation steps on the ground truth alone (the control for "HSL only adds steps")
    data: Literal["hindsight", "relabel_failure", "self_imitation", "none"] = "hindsight"
    relabeler: str = "rules"
    masker: str = "rules"
    steps: int = 4
    lr: float = 2e-5
    lam: float = 0.3
    alpha: float = 0.8
    capacity: int = 100
    mask: bool = True
    uniform: bool = False
    lora_r: int = 0
    # every iteration's checkpoint (model + optimizer, ~3x the model) or only the newest
    keep_checkpoints: bool = False


class DPOSection(_Trains):
    """ETO's DPO after SFT (or after the HSL iterations: DPO+HSL): the agent plays the
    ground-truth tasks; each failure is paired with the expert demo of its task."""

    steps: int = 0  # 0: no DPO stage
    tasks: int | None = None  # ground-truth tasks the agent plays for pairs (a seeded sample)
    batch_size: int = 16
    # 1e-4 collapsed the tiny agent within 5 steps (chosen and rejected likelihoods both
    # fell; docs/RESULTS.md); at 1e-5 the chosen side holds. Pretrained models want less.
    lr: float = 1e-5
    beta: float = 0.1
    temperature: float = 0.7


class EvalSection(_Section):
    every: int = 0  # 0: only after SFT and at the end
    splits: list[str] | None = None  # the environment's evaluation splits by default
    n: int | Literal["all"] | None = None  # the first n tasks of each split; "all" or unset: all
    batch_size: int = 32

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

    def methods(self) -> dict[str, str]:
        """The method each evaluation of the run measures, by evaluation folder:
        eval-sft is SFT; eval-final e.g. "SFT+HSL NoMask" (or `run.label`); eval-dpo
        "DPO" or "DPO+HSL"."""
        h = self.hsl
        names = {"eval-sft": "SFT"}
        if h.iterations:
            suffix = {"hindsight": "+HSL", "relabel_failure": "+RelabelFailure",
                      "self_imitation": "+SelfImit", "none": " (same steps)"}[h.data]
            suffix += " NoMask" * (not h.mask) + " UniWeight" * h.uniform
            names["eval-final"] = self.run.label or "SFT" + suffix
        if self.dpo.steps:
            names["eval-dpo"] = "DPO" + suffix if h.iterations else "DPO"
        return names


def load_recipe(path: Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """A recipe from TOML, with `section.key=value` overrides; errors name the field."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    for key, value in (overrides or {}).items():
        section, _, name = key.partition(".")
        data.setdefault(section, {})[name] = value
    try:
        return Recipe.model_validate(data)
    except ValidationError as e:
        raise ValueError(f"{path}: {first_error(e)}") from None


def _done(folder: Path) -> bool:
    return (folder / "done").exists()


def _mark_done(folder: Path) -> None:
    (folder / "done").write_text("")


def finished(recipe: Recipe, until_sft: bool = False) -> bool:
    """Whether the run's last evaluation (of its SFT stage alone with `until_sft`) is written:
    the evaluation after DPO, after the HSL iterations, or after SFT, whichever comes last."""
    last = "eval-sft" if until_sft or not (recipe.hsl.iterations or recipe.dpo.steps) else \
        "eval-dpo" if recipe.dpo.steps else "eval-final"
    return (Path(recipe.run.dir) / last / "summary.json").exists()


def write_recipe(recipe: Recipe) -> None:
    """RUN/recipe.json: the resolved recipe and its evaluations' method names, which makes a
    folder a run for `hsl report`."""
    run = Path(recipe.run.dir)
    run.mkdir(parents=True, exist_ok=True)
    write_json(run / "recipe.json", {"methods": recipe.methods(), **recipe.model_dump()})


def run_recipe(recipe: Recipe, console: Console, until_sft: bool = False) -> dict[str, Any]:
    """Run (or continue) a recipe, or only its SFT and eval-sft (`until_sft`); returns the
    evaluations by name. A second process on the same run folder is refused (FolderInUse)."""
    with exclusive(Path(recipe.run.dir)):
        return _run_stages(recipe, console, until_sft)


def _run_stages(recipe: Recipe, console: Console, until_sft: bool) -> dict[str, Any]:
    run = Path(recipe.run.dir)
    write_recipe(recipe)
    env = make_env(recipe.run.env, max_steps=recipe.run.max_steps)
    evals: dict[str, Any] = {}

    def evaluate_at(name: str, checkpoint: Path) -> None:
        folder = run / name
        policy = make_policy(f"hf:{checkpoint}", env.name)
        summary, _ = evaluate(env, policy, recipe.eval.splits or list(env.eval_splits),
                              recipe.eval.tasks(), folder, recipe.eval.batch_size)
        evals[name] = summary
        console.print(f"[bold]{name}[/]: {success_line(summary)}")

    start = _starting_model(recipe, run, console)
    expert = _expert_trajectories(recipe, env, run / "expert.jsonl", console)
    ground_truth = load_demos(expert)
    sft_dir = run / "sft"
    if not _done(sft_dir):
        s = recipe.sft
        train(start, sft_dir, TrainConfig(steps=s.steps, epochs=s.epochs, batch_size=s.batch_size,
                                          grad_accum=s.grad_accum, lr=s.lr, schedule=s.schedule,
                                          warmup=s.warmup, lora_r=s.lora_r, seed=recipe.run.seed),
              ground_truth, resume=True)
        _mark_done(sft_dir)
    evaluate_at("eval-sft", sft_dir)
    if until_sft:
        return evals
    checkpoint = sft_dir
    h = recipe.hsl
    for i in range(1, h.iterations + 1):
        folder = run / f"iter-{i:03d}"
        if not _done(folder):
            line = _iteration(recipe, env, run, folder, i, checkpoint, ground_truth)
            if recipe.eval.every and i % recipe.eval.every == 0 and i != h.iterations:
                evaluate_at(f"iter-{i:03d}/eval", folder / "ckpt")
                line["eval"] = evals[f"iter-{i:03d}/eval"]
            with (run / "metrics.jsonl").open("a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")
            _mark_done(folder)
            if not h.keep_checkpoints and i > 1:
                shutil.rmtree(run / f"iter-{i - 1:03d}" / "ckpt", ignore_errors=True)
            console.print(f"iteration {i}: {line['trajectories']} episodes "
                          f"({line['success']:.0%} won), {line['new_demos']} new demos, buffer "
                          f"{line['buffer']}, loss {line['loss']:.3f}")
        checkpoint = folder / "ckpt"
    if h.iterations:
        evaluate_at("eval-final", checkpoint)
    if recipe.dpo.steps:
        evaluate_at("eval-dpo", _dpo(recipe, env, run / "dpo", checkpoint, expert,
                                     ground_truth))
    return evals


def _dpo(recipe: Recipe, env: Environment, folder: Path, checkpoint: Path, expert: Path,
         ground_truth: list[Demo]) -> Path:
    """The agent plays the ground-truth tasks, then DPO prefers each expert demo over the
    agent's failure on the same task, from (and against) `checkpoint`."""
    d = recipe.dpo
    if not _done(folder):
        tasks = sorted({t.task_id for t in read_records(expert, Trajectory)})
        if d.tasks is not None and d.tasks < len(tasks):
            tasks = sorted(random.Random(f"{recipe.run.seed}/dpo").sample(tasks, d.tasks))
        policy = make_policy(f"hf:{checkpoint}", env.name, d.temperature, recipe.run.seed)
        collect(folder / "agent.jsonl", env, [(env.train_split, tasks)], policy,
                recipe.model.batch_size)
        config = TrainConfig(objective="dpo", steps=d.steps, batch_size=d.batch_size,
                             grad_accum=d.grad_accum, lr=d.lr, beta=d.beta, seed=recipe.run.seed)
        train(str(checkpoint), folder / "ckpt", config, ground_truth,
              rejected=list(read_records(folder / "agent.jsonl", Trajectory)),
              reference=str(checkpoint), resume=True)
        _mark_done(folder)
    return folder / "ckpt"


def _expert_trajectories(recipe: Recipe, env: Environment, out: Path, console: Console) -> Path:
    """OUT: the expert on the first `sft.demos` train tasks. With `sft.expert`, a file that
    runs share (collected once: on real ALFWorld a game takes the expert ~3 s), the run plays
    only the tasks it lacks into it, then takes its records of those tasks in task order."""
    tasks = env.task_ids(env.train_split, recipe.sft.demos)
    expert = make_policy("expert")
    if recipe.sft.expert is None:
        stats = collect(out, env, [(env.train_split, tasks)], expert, batch_size=256)
        console.print(f"expert demos: {stats.line(out)}")
        return out
    if out.exists():
        return out
    source = Path(recipe.sft.expert).expanduser()
    check_made_by(source, collect_made_by(env, expert))

    def found() -> dict[str, Trajectory]:
        if not source.exists():
            return {}
        return {t.task_id: t for t in read_records(source, Trajectory)
                if t.env == env.name and t.split == env.train_split}

    have = found()
    if any(t not in have for t in tasks):
        with exclusive(source.parent, wait=True):  # two runs sharing it collect it once
            stats = collect(source, env, [(env.train_split, tasks)], expert, batch_size=256)
        console.print(f"expert demos: {stats.line(source)}")
        have = found()
    write_records(out, (have[t] for t in tasks))
    console.print(f"expert demos: {len(tasks)} trajectories taken from {source}")
    return out


def _starting_model(recipe: Recipe, run: Path, console: Console) -> str:
    if not recipe.model.init:
        if not recipe.model.base:
            raise ValueError("recipe: [model] needs init (a preset) or base (a model)")
        return recipe.model.base
    folder = run / "model0"
    if not (folder / "config.json").exists():
        from hsl_tools.init_model import build_scratch

        params = build_scratch(folder, recipe.model.init, env=recipe.run.env,
                               seed=recipe.run.seed)
        console.print(f"built {recipe.model.init} model: {params / 1e6:.1f} M parameters")
    return str(folder)


def _iteration(recipe: Recipe, env: Environment, run: Path, folder: Path, i: int, checkpoint: Path,
               ground_truth: list[Demo]) -> dict[str, Any]:
    """collect b trajectories -> relabel -> mask -> push to the buffer -> k training steps."""
    h = recipe.hsl
    folder.mkdir(parents=True, exist_ok=True)
    if h.data == "none":  # the control: no rollouts, no buffer
        played, new, buffer = [], [], []
    else:
        tasks = random.Random(f"{recipe.run.seed}/{i}").sample(env.task_ids(env.train_split),
                                                               h.collect)
        policy = make_policy(f"hf:{checkpoint}", env.name, h.temperature, recipe.run.seed + i)
        collect(folder / "agent.jsonl", env, [(env.train_split, tasks)], policy,
                recipe.model.batch_size)
        # all of them, not just this call's: a killed iteration resumes with some played
        played = list(read_records(folder / "agent.jsonl", Trajectory))
        if h.data == "self_imitation":
            new = load_demos(folder / "agent.jsonl", "self_imitation")
        else:
            relabel(folder / "agent.jsonl", folder / "goals.jsonl",
                    make_relabeler(h.relabeler),
                    only_failed_final=h.data == "relabel_failure")
            mask(folder / "goals.jsonl", folder / "demos.jsonl",
                 make_relabeler(h.masker))
            new = list(read_records(folder / "demos.jsonl", Demo))
        buffer = push(run / "buffer.jsonl", new, h.capacity)
    config = TrainConfig(objective="hsl" if buffer else "sft", steps=h.steps,
                         batch_size=h.batch_size, grad_accum=h.grad_accum, lr=h.lr, lam=h.lam,
                         alpha=h.alpha, mask=h.mask, uniform=h.uniform, lora_r=h.lora_r,
                         seed=recipe.run.seed + i)
    metrics = train(str(checkpoint), folder / "ckpt", config, ground_truth, buffer, resume=True,
                    optimizer_from=checkpoint)
    return {"iteration": i, "trajectories": len(played),
            "success": sum(t.success for t in played) / len(played) if played else 0.0,
            "new_demos": len(new), "buffer": len(buffer), "loss": metrics.get("loss", 0.0),
            "tokens_per_s": metrics.get("tokens_per_s", 0.0)}
